import { z } from "zod";
import { duration } from "../core/duration.js";

/**
 * The gateway config schema: the single source of the TypeScript type, the runtime validation
 * and config/schemas/gateway.schema.json.
 */

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
  reconnect: z
    .object({
      min: duration("First delay before reconnecting").default(500),
      max: duration("Longest delay between reconnects").default(30_000),
    })
    .strict()
    .default({ min: 500, max: 30_000 }),
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

const modbusTcpSource = z
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

const modbusRtuSource = z
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

const modbusRtuOverTcpSource = z
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

const cloudSchema = z
  .object({
    dialect: z.literal("alibaba").default("alibaba").describe("Cloud shadow dialect"),
    url: z
      .string()
      .regex(/^(mqtts?|wss?):\/\/.+/, "an mqtt://, mqtts://, ws:// or wss:// URL")
      .describe("Broker URL; without it the Alibaba host is built from productKey and region")
      .optional(),
    region: z.string().min(1).default("cn-shanghai").describe("Alibaba region id"),
    productKey: z.string().min(1).describe("The gateway's own productKey (its MQTT identity)"),
    deviceName: z.string().min(1).describe("The gateway's own deviceName"),
    deviceSecret: z
      .string()
      .min(1)
      .describe("Signs Alibaba credentials; write ${ENV_NAME}, never the secret itself")
      .optional(),
    signMethod: z.enum(["hmacsha256", "hmacsha1", "hmacmd5"]).default("hmacsha256"),
    clientId: z.string().min(1).max(64).describe("Default: productKey.deviceName").optional(),
    username: z.string().describe("Plain broker login, when there is no deviceSecret").optional(),
    password: z.string().describe("Plain broker password; use ${ENV_NAME}").optional(),
    keepalive: duration("MQTT keep-alive, 30s to 1200s as Alibaba requires")
      .refine((ms) => ms >= 30_000 && ms <= 1_200_000, "keepalive must lie within 30s-1200s")
      .default(60_000),
    protocolVersion: z
      .union([z.literal(4), z.literal(5)])
      .default(4)
      .describe("4 = MQTT 3.1.1, 5 = MQTT 5"),
    tls: z
      .object({
        ca: z.string().describe("CA certificate file (PEM), relative to this file").optional(),
        cert: z.string().describe("Client certificate file (PEM)").optional(),
        key: z.string().describe("Client key file (PEM)").optional(),
        rejectUnauthorized: z.boolean().default(true).describe("Verify the broker's certificate"),
      })
      .strict()
      .optional(),
    sendWindow: duration("Reported changes are gathered this long into one update").default(200),
    maxRatePerDevice: z
      .number()
      .positive()
      .default(10)
      .describe("Shadow requests per second per device"),
    maxInFlight: z.number().int().min(1).max(100).default(5).describe("Requests awaiting a reply"),
    replyTimeout: duration("How long to wait for a shadow reply").default(5000),
    conflictRetries: z.number().int().min(1).max(20).default(3),
    reconnect: z
      .object({
        min: duration("First delay before reconnecting").default(1000),
        max: duration("Longest delay between reconnects").default(60_000),
      })
      .strict()
      .default({ min: 1000, max: 60_000 }),
  })
  .strict();

const opcuaSource = z
  .object({
    protocol: z.literal("opcua"),
    endpoint: z
      .string()
      .regex(/^opc\.tcp:\/\/.+/, "an opc.tcp:// URL")
      .describe("The server's endpoint URL, e.g. opc.tcp://plc:4840"),
    securityMode: z.enum(["None", "Sign", "SignAndEncrypt"]).default("None"),
    securityPolicy: z
      .enum(["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"])
      .describe("Default: Basic256Sha256 with Sign or SignAndEncrypt, None otherwise")
      .optional(),
    identity: z
      .discriminatedUnion("type", [
        z.object({ type: z.literal("anonymous") }).strict(),
        z
          .object({
            type: z.literal("username"),
            username: z.string().min(1),
            password: z.string().describe("Write ${ENV_NAME}, never the password itself"),
          })
          .strict(),
        z
          .object({
            type: z.literal("certificate"),
            certificate: z.string().min(1).describe("PEM or DER file, relative to this file"),
            privateKey: z.string().min(1).describe("PEM file, relative to this file"),
          })
          .strict(),
      ])
      .default({ type: "anonymous" }),
    timeout: duration("How long one service call may take").default(5000),
    reconnect: z
      .object({
        min: duration("First delay before reconnecting").default(1000),
        max: duration("Longest delay between reconnects").default(30_000),
      })
      .strict()
      .default({ min: 1000, max: 30_000 }),
  })
  .strict();

export const sourceSchema = z.discriminatedUnion("protocol", [
  modbusTcpSource,
  modbusRtuSource,
  modbusRtuOverTcpSource,
  opcuaSource,
]);

export const gatewayConfigSchema = z
  .object({
    version: z.literal(1).describe("Gateway config format version"),
    gateway: z
      .object({
        name: z.string().min(1).default("shadowgate"),
        dataDir: z.string().min(1).default("./data").describe("Relative to this file"),
        history: z
          .object({
            maxAge: duration("Confirmed reports are kept this long (e.g. 7d)").default(
              7 * 86_400_000,
            ),
            maxSizeMb: z
              .number()
              .positive()
              .default(256)
              .describe(
                "Above this size the oldest history goes first, never a device's latest state",
              ),
          })
          .strict()
          .default({ maxAge: 7 * 86_400_000, maxSizeMb: 256 }),
      })
      .strict()
      .default({
        name: "shadowgate",
        dataDir: "./data",
        history: { maxAge: 7 * 86_400_000, maxSizeMb: 256 },
      }),
    log: z
      .object({
        level: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
      })
      .strict()
      .default({ level: "info" }),
    sources: z
      .record(
        z.string().regex(/^[A-Za-z0-9_-]+$/, "source ids are letters, digits, _ and -"),
        sourceSchema,
      )
      .describe("Device connections, keyed by source id"),
    cloud: cloudSchema
      .describe("Cloud shadow sync over MQTT; without it the gateway runs local only")
      .optional(),
    mappings: z
      .union([z.string(), z.array(z.string()).min(1)])
      .describe("Mapping files or folders, relative to this file"),
  })
  .strict();

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
export type ModbusSourceConfig = Exclude<SourceConfig, { protocol: "opcua" }>;
export type OpcuaSourceConfig = Extract<SourceConfig, { protocol: "opcua" }>;
export type CloudConfig = z.output<typeof cloudSchema>;
export type ModbusTcpSourceConfig = z.output<typeof modbusTcpSource>;
