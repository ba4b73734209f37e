import { z } from "zod";
import { duration } from "./mapping-schema.js";

/**
 * The gateway config schema: the single source of the TypeScript type, the runtime validation
 * and config/schemas/gateway.schema.json.
 */

const modbusTcpSource = z
  .object({
    protocol: z.literal("modbus-tcp"),
    host: z.string().min(1).describe("PLC or Modbus TCP gateway address"),
    port: z.number().int().min(1).max(65535).default(502),
    timeout: duration("How long to wait for one response").default(1000),
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
  })
  .strict();

export const sourceSchema = z.discriminatedUnion("protocol", [modbusTcpSource]);

export const gatewayConfigSchema = z
  .object({
    version: z.literal(1).describe("Gateway config format version"),
    gateway: z
      .object({
        name: z.string().min(1).default("shadowgate"),
        dataDir: z.string().min(1).default("./data").describe("Relative to this file"),
      })
      .strict()
      .default({ name: "shadowgate", dataDir: "./data" }),
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
    mappings: z
      .union([z.string(), z.array(z.string()).min(1)])
      .describe("Mapping files or folders, relative to this file"),
  })
  .strict();

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
export type ModbusTcpSourceConfig = z.output<typeof modbusTcpSource>;
