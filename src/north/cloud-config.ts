import { z } from "zod";
import { duration, reconnectSchema } from "../core/duration.js";

/**
 * The keys of the gateway config's `cloud` section that every dialect has: the MQTT connection
 * and the sync engine's pacing. Each dialect adds its own (dialects/<name>/config.ts) and
 * describes `url`, whose default it builds.
 */
export const cloudUrl = z
  .string()
  .regex(/^(mqtts?|wss?):\/\/.+/, "an mqtt://, mqtts://, ws:// or wss:// URL");

/** mqtts:// and wss:// carry TLS. */
export const isTlsUrl = (url: string): boolean => /^(mqtts|wss):/.test(url);

/** MQTT login and transport. */
export const connectionKeys = {
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
};

/** The sync engine's pacing and the link's reconnect backoff. */
export const syncKeys = {
  sendWindow: duration("Reported changes are gathered this long into one update").default(200),
  maxRatePerDevice: z
    .number()
    .positive()
    .default(10)
    .describe("Shadow requests per second per device"),
  maxInFlight: z.number().int().min(1).max(100).default(5).describe("Requests awaiting a reply"),
  replyTimeout: duration("How long to wait for a shadow reply").default(5000),
  conflictRetries: z.number().int().min(1).max(20).default(3),
  reconnect: reconnectSchema(1000, 60_000),
};
