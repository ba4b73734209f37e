import { z } from "zod";
import { duration } from "../core/duration.js";
import { cloudSchema } from "../north/dialects/index.js";
import { sourceSchema } from "../south/registry.js";

/**
 * The gateway config schema: the single source of the TypeScript type, the runtime validation
 * and config/schemas/gateway.schema.json.
 */

/** The heap cap a gateway of a few thousand points runs under (see the README's figures). */
export const DEFAULT_HEAP_MB = 128;

/** host:port, the host an IPv4 address, a name, or an IPv6 address in brackets. */
const LISTEN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Addresses only this box can reach: the API needs no token there. */
export function isLoopback(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(":"));
  return host === "localhost" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const apiSchema = z
  .object({
    listen: z
      .string()
      .regex(LISTEN, "write host:port, e.g. 127.0.0.1:8080 or [::1]:8080")
      .refine((l) => Number(LISTEN.exec(l)?.[1]) <= 65_535, "the port is above 65535")
      .default("127.0.0.1:8080")
      .describe("host:port; any address other than loopback needs a token"),
    token: z
      .string()
      .min(16, "an API token has at least 16 characters")
      .describe("Bearer token, e.g. ${SHADOWGATE_API_TOKEN}; loopback requests need none")
      .optional(),
  })
  .strict()
  .superRefine((api, ctx) => {
    if (!isLoopback(api.listen) && api.token === undefined)
      ctx.addIssue({
        code: "custom",
        path: ["listen"],
        message: `${api.listen} is reachable from other hosts: set api.token (e.g. \${SHADOWGATE_API_TOKEN}) or listen on 127.0.0.1`,
      });
  });

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
        memory: z
          .object({
            heapMb: z
              .number()
              .int()
              .min(32)
              .max(8192)
              .default(DEFAULT_HEAP_MB)
              .describe(
                "V8 heap cap in MB: the service unit passes it as --max-old-space-size; the log warns as the heap nears it",
              ),
          })
          .strict()
          .default({ heapMb: DEFAULT_HEAP_MB }),
      })
      .strict()
      .default({
        name: "shadowgate",
        dataDir: "./data",
        history: { maxAge: 7 * 86_400_000, maxSizeMb: 256 },
        memory: { heapMb: DEFAULT_HEAP_MB },
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
    api: apiSchema
      .describe("Local HTTP API (devices, shadows, local commands, events, health, metrics)")
      .optional(),
    mappings: z
      .union([z.string(), z.array(z.string()).min(1)])
      .describe("Mapping files or folders, relative to this file"),
  })
  .strict();

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
export type { CloudConfig } from "../north/dialects/index.js";
