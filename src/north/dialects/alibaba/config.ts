import { z } from "zod";
import { cloudUrl, connectionKeys, isTlsUrl, syncKeys } from "../../cloud-config.js";
import type { CloudConfigProblem, ConnectionIdentity } from "../../dialect.js";
import { SIGN_METHODS, alibabaCredentials, alibabaHost, alibabaPort } from "./sign.js";

/**
 * The `cloud` section for Alibaba Cloud IoT: the gateway's own triple (its MQTT identity) and
 * the region its public endpoint is in, plus the keys every dialect has. `dialect` may be left
 * out: Alibaba is the default (and was the only dialect when the key came).
 */
export const alibabaCloudSchema = z
  .object({
    dialect: z.literal("alibaba").default("alibaba").describe("Cloud shadow dialect"),
    url: cloudUrl
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
    signMethod: z.enum(SIGN_METHODS).default("hmacsha256"),
    ...connectionKeys,
    ...syncKeys,
  })
  .strict();

export type AlibabaCloudConfig = z.output<typeof alibabaCloudSchema>;

/** Without a URL the gateway connects to Alibaba itself, which takes only signed logins. */
export function checkAlibabaCloud(cloud: AlibabaCloudConfig): CloudConfigProblem[] {
  if (cloud.url !== undefined || cloud.deviceSecret !== undefined) return [];
  return [
    {
      path: [],
      message:
        "Alibaba Cloud needs deviceSecret to log in (write ${DEVICE_SECRET}); for another broker give url",
    },
  ];
}

/**
 * The URL and login: Alibaba's public endpoint over TLS unless a URL is given; with a
 * deviceSecret the signed credentials (secure mode 2 over TLS, 3 over TCP), otherwise a plain
 * broker login, for mosquitto, EMQX and the local cloud service.
 */
export function alibabaConnection(cloud: AlibabaCloudConfig, now: number): ConnectionIdentity {
  const url =
    cloud.url ?? `mqtts://${alibabaHost(cloud.productKey, cloud.region)}:${alibabaPort(2)}`;
  const login = cloud.deviceSecret
    ? alibabaCredentials({
        productKey: cloud.productKey,
        deviceName: cloud.deviceName,
        deviceSecret: cloud.deviceSecret,
        signMethod: cloud.signMethod,
        secureMode: isTlsUrl(url) ? 2 : 3,
        timestamp: now,
        ...(cloud.clientId !== undefined && { clientId: cloud.clientId }),
      })
    : {
        clientId: cloud.clientId ?? `${cloud.productKey}.${cloud.deviceName}`,
        ...(cloud.username !== undefined && { username: cloud.username }),
        ...(cloud.password !== undefined && { password: cloud.password }),
      };
  return { url, ...login };
}
