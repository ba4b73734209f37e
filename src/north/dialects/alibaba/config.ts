import { z } from "zod";
import { cloudUrl, connectionKeys, isTlsUrl, syncKeys } from "../../cloud-config.js";
import path from "node:path";
import type { CloudCheckContext, CloudConfigProblem, ConnectionIdentity } from "../../dialect.js";
import { readSecretsFile } from "./secrets.js";
import { deviceKey, type DeviceKey } from "./subdevices.js";
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
    subDevices: z
      .object({
        secrets: z
          .string()
          .min(1)
          .describe(
            'YAML file of "productKey/deviceName": deviceSecret (mode 0600), relative to this file',
          )
          .optional(),
        register: z
          .enum(["static", "dynamic"])
          .default("static")
          .describe("dynamic: fetch missing secrets with thing/sub/register and keep them"),
        login: z
          .enum(["batch", "single"])
          .default("batch")
          .describe("batch: combine/batch_login, 50 devices a message; single: one each"),
      })
      .strict()
      .describe(
        "The mapping devices other than the gateway itself are sub-devices: added to its topology and logged in through it (on by default without url)",
      )
      .optional(),
    ...connectionKeys,
    ...syncKeys,
  })
  .strict();

export type AlibabaCloudConfig = z.output<typeof alibabaCloudSchema>;

export type SubDeviceOptions = NonNullable<AlibabaCloudConfig["subDevices"]>;

/**
 * Whether the mapping devices are sub-devices that log in through the gateway: when the
 * section says so, and always on Alibaba itself (no url), which drops the traffic of a device
 * that has not logged in. Against another broker, or the local cloud service without strict
 * sessions, the devices' shadows go out on the gateway's connection as they are.
 */
export function subDeviceOptions(cloud: AlibabaCloudConfig): SubDeviceOptions | undefined {
  if (cloud.subDevices) return cloud.subDevices;
  return cloud.url === undefined ? { register: "static", login: "batch" } : undefined;
}

/** The gateway's own device: a mapping for it is synced on its own connection, no login. */
export const isGatewayItself = (cloud: AlibabaCloudConfig, d: DeviceKey): boolean =>
  d.productKey === cloud.productKey && d.deviceName === cloud.deviceName;

/**
 * Without a URL the gateway connects to Alibaba itself, which takes only signed logins; each
 * sub-device needs a way to its secret: its mapping file, the secrets file, or registration.
 */
export function checkAlibabaCloud(
  cloud: AlibabaCloudConfig,
  { devices, configDir }: CloudCheckContext,
): CloudConfigProblem[] {
  const found: CloudConfigProblem[] = [];
  devices.forEach((d, i) => {
    if (d.addressing === "aws")
      found.push({
        device: i,
        path: ["device"],
        message:
          "the device names an AWS thing, but cloud.dialect is alibaba (the default): give productKey and deviceName, or set cloud.dialect: aws",
      });
  });
  if (cloud.url === undefined && cloud.deviceSecret === undefined) {
    found.push({
      path: [],
      message:
        "Alibaba Cloud needs deviceSecret to log in (write ${DEVICE_SECRET}); for another broker give url",
    });
  }
  const sub = subDeviceOptions(cloud);
  if (!sub) return found;
  let fromFile: ReadonlyMap<string, string> = new Map();
  if (sub.secrets !== undefined) {
    const read = readSecretsFile(path.resolve(configDir, sub.secrets));
    if (read.ok) fromFile = read.secrets;
    else found.push({ path: ["subDevices", "secrets"], message: read.message });
  }
  if (sub.register === "dynamic") return found;
  devices.forEach((d, i) => {
    if (d.addressing === "aws" || isGatewayItself(cloud, d) || d.deviceSecret !== undefined) return;
    if (fromFile.has(deviceKey(d))) return;
    found.push({
      device: i,
      path: ["device"],
      message:
        `sub-device ${deviceKey(d)} has no deviceSecret to log in through gateway ${cloud.productKey}/${cloud.deviceName}: ` +
        `write device.deviceSecret: \${ENV_NAME}, list it in cloud.subDevices.secrets, or set cloud.subDevices.register: dynamic`,
    });
  });
  return found;
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
