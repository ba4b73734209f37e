import { z } from "zod";
import { duration, reconnectSchema } from "../../core/duration.js";

/** The gateway config's Modbus sources: TCP, an RS-485 line, and RTU frames over TCP. */

/** What every Modbus source has, whatever carries its frames. */
const modbusCommon = {
  maxRegistersPerRequest: z
    .number()
    .int()
    .min(1)
    .max(125)
    .default(125)
    .describe("Lower it for devices that accept fewer than 125 registers per read"),
  maxBitsPerRequest: z.number().int().min(1).max(2000).default(2000),
  maxGap: z
    .number()
    .int()
    .min(0)
    .max(124)
    .default(8)
    .describe("Unused registers a read may span to merge two points into one request"),
  reconnect: reconnectSchema(500, 30_000),
  unitBackoff: duration(
    "How long a unit id that timed out is left alone before it is probed again",
  ).default(5000),
};

/** How many polls in a row may time out before a unit is left alone for `unitBackoff`. */
const demoteAfter = (byDefault: number) =>
  z
    .number()
    .int()
    .min(1)
    .max(100)
    .default(byDefault)
    .describe("Polls in a row that time out before the unit is skipped for unitBackoff");

export const modbusTcpSource = z
  .object({
    protocol: z.literal("modbus-tcp"),
    host: z.string().min(1).describe("PLC or Modbus TCP gateway address"),
    port: z.number().int().min(1).max(65535).default(502),
    timeout: duration("How long to wait for one response").default(1000),
    // A TCP gateway that does not answer for a unit has a dead slave behind it.
    demoteAfter: demoteAfter(1),
    ...modbusCommon,
  })
  .strict();

export const modbusRtuSource = z
  .object({
    protocol: z.literal("modbus-rtu"),
    path: z.string().min(1).describe("Serial device, e.g. /dev/ttyUSB0 or /dev/ttyS1"),
    baud: z
      .number()
      .int()
      .min(300)
      .max(921_600)
      .default(9600)
      .describe("Line speed; every slave on the line uses the same"),
    parity: z.enum(["none", "even", "odd"]).default("none"),
    dataBits: z.union([z.literal(7), z.literal(8)]).default(8),
    stopBits: z.union([z.literal(1), z.literal(2)]).default(1),
    timeout: duration(
      "How long a slave may take to answer, beyond the frames' own time on the wire",
    ).default(500),
    turnaround: duration(
      "Extra silence between transactions, for slow slaves or RS-485 converters",
    ).default(0),
    // Noise costs a serial line the odd timeout; one alone does not make a slave dead.
    demoteAfter: demoteAfter(3),
    ...modbusCommon,
  })
  .strict();

export const modbusRtuOverTcpSource = z
  .object({
    protocol: z.literal("modbus-rtu-over-tcp"),
    host: z.string().min(1).describe("Serial device server or DTU address"),
    port: z.number().int().min(1).max(65535).describe("Its TCP port for the serial line"),
    timeout: duration("How long to wait for one response, the serial line's time included").default(
      1500,
    ),
    demoteAfter: demoteAfter(3),
    ...modbusCommon,
  })
  .strict();

export type ModbusTcpSourceConfig = z.output<typeof modbusTcpSource>;
export type ModbusRtuSourceConfig = z.output<typeof modbusRtuSource>;
export type ModbusRtuOverTcpSourceConfig = z.output<typeof modbusRtuOverTcpSource>;
export type ModbusSourceConfig =
  ModbusTcpSourceConfig | ModbusRtuSourceConfig | ModbusRtuOverTcpSourceConfig;
