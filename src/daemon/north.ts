import { readFileSync } from "node:fs";
import path from "node:path";
import type { CloudConfig } from "../config/gateway-schema.js";
import type { Logger } from "../core/logger.js";
import type { DevicePlan } from "../mapping/types.js";
import { alibabaDialect } from "../north/dialects/alibaba/index.js";
import { alibabaCredentials, alibabaHost, alibabaPort } from "../north/dialects/alibaba/sign.js";
import { MqttLink, type LinkOptions } from "../north/link.js";
import { SyncEngine, type SyncHooks } from "../north/sync.js";

/** The MQTT connect options for the cloud section: Alibaba-signed, or a plain broker login. */
export function linkOptions(cloud: CloudConfig, configDir: string, now = Date.now()): LinkOptions {
  const url =
    cloud.url ?? `mqtts://${alibabaHost(cloud.productKey, cloud.region)}:${alibabaPort(2)}`;
  const tlsUrl = /^(mqtts|wss):/.test(url);
  const login = cloud.deviceSecret
    ? alibabaCredentials({
        productKey: cloud.productKey,
        deviceName: cloud.deviceName,
        deviceSecret: cloud.deviceSecret,
        signMethod: cloud.signMethod,
        secureMode: tlsUrl ? 2 : 3,
        timestamp: now,
        ...(cloud.clientId !== undefined && { clientId: cloud.clientId }),
      })
    : {
        clientId: cloud.clientId ?? `${cloud.productKey}.${cloud.deviceName}`,
        ...(cloud.username !== undefined && { username: cloud.username }),
        ...(cloud.password !== undefined && { password: cloud.password }),
      };
  const file = (f: string | undefined): Buffer | undefined =>
    f === undefined ? undefined : readFileSync(path.resolve(configDir, f));
  const tls = cloud.tls;
  return {
    url,
    ...login,
    keepaliveSeconds: Math.round(cloud.keepalive / 1000),
    protocolVersion: cloud.protocolVersion,
    reconnectMinMs: cloud.reconnect.min,
    reconnectMaxMs: cloud.reconnect.max,
    ...((tls || tlsUrl) && {
      tls: {
        rejectUnauthorized: tls?.rejectUnauthorized ?? true,
        ...(tls?.ca !== undefined && { ca: file(tls.ca) }),
        ...(tls?.cert !== undefined && { cert: file(tls.cert) }),
        ...(tls?.key !== undefined && { key: file(tls.key) }),
      },
    }),
  };
}

/** The north side: one MQTT link and the sync engine over it. */
export function createNorth(
  cloud: CloudConfig,
  configDir: string,
  devices: readonly DevicePlan[],
  hooks: SyncHooks,
  log: Logger,
): { link: MqttLink; sync: SyncEngine } {
  const link = new MqttLink(linkOptions(cloud, configDir), log.child({ component: "north.link" }));
  const sync = new SyncEngine(
    link,
    alibabaDialect,
    devices.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName })),
    hooks,
    {
      sendWindowMs: cloud.sendWindow,
      minIntervalMs: 1000 / cloud.maxRatePerDevice,
      maxInFlight: cloud.maxInFlight,
      replyTimeoutMs: cloud.replyTimeout,
      conflictRetries: cloud.conflictRetries,
    },
    log.child({ component: "north.sync" }),
  );
  return { link, sync };
}
