import { z } from "zod";
import { duration } from "../core/duration.js";
import { cloudSchema } from "../north/dialects/index.js";
import { sourceSchema } from "../south/registry.js";

/**
 * The gateway config schema: the single source of the TypeScript type, the runtime validation
 * and config/schemas/gateway.schema.json.
 */

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
export type { CloudConfig } from "../north/dialects/index.js";
