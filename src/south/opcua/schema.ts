import { z } from "zod";
import { duration, reconnectSchema } from "../../core/duration.js";

/** The gateway config's OPC UA sources. */

export const opcuaSource = z
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
    reconnect: reconnectSchema(1000, 30_000),
  })
  .strict();

export type OpcuaSourceConfig = z.output<typeof opcuaSource>;
