import { readFileSync } from "node:fs";
import path from "node:path";
import type { Logger } from "../core/logger.js";
import type { DevicePlan } from "../mapping/types.js";
import { isTlsUrl } from "../north/cloud-config.js";
import { dialectFor, type CloudConfig } from "../north/dialects/index.js";
import { MqttLink, type LinkOptions } from "../north/link.js";
import type { SyncHooks } from "../north/hooks.js";
import { SyncEngine } from "../north/sync.js";

/**
 * The MQTT connect options for the cloud section: the dialect's URL and login (Alibaba-signed,
 * or a plain broker login), the TLS files read relative to the config file.
 */
export function linkOptions(cloud: CloudConfig, configDir: string, now = Date.now()): LinkOptions {
  const { url, alpn, ...login } = dialectFor(cloud.dialect).connection(cloud, now);
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
    ...((tls || isTlsUrl(url)) && {
      tls: {
        rejectUnauthorized: tls?.rejectUnauthorized ?? true,
        ...(tls?.ca !== undefined && { ca: file(tls.ca) }),
        ...(tls?.cert !== undefined && { cert: file(tls.cert) }),
        ...(tls?.key !== undefined && { key: file(tls.key) }),
        ...(alpn && { alpn }),
      },
    }),
  };
}

/** The north side: one MQTT link and the sync engine over it, in the cloud section's dialect. */
export function createNorth(
  cloud: CloudConfig,
  configDir: string,
  dataDir: string,
  devices: readonly DevicePlan[],
  hooks: SyncHooks,
  log: Logger,
): { link: MqttLink; sync: SyncEngine } {
  const dialect = dialectFor(cloud.dialect);
  const link = new MqttLink(linkOptions(cloud, configDir), log.child({ component: "north.link" }));
  const syncLog = log.child({ component: "north.sync" });
  const shadowDevices = devices.map((d) => ({
    productKey: d.productKey,
    deviceName: d.deviceName,
    ...(d.deviceSecret !== undefined && { deviceSecret: d.deviceSecret }),
  }));
  const sync = new SyncEngine(
    link,
    dialect,
    shadowDevices,
    hooks,
    {
      sendWindowMs: cloud.sendWindow,
      minIntervalMs: 1000 / cloud.maxRatePerDevice,
      maxInFlight: cloud.maxInFlight,
      replyTimeoutMs: cloud.replyTimeout,
      conflictRetries: cloud.conflictRetries,
      session: (events) =>
        dialect.session?.({
          link,
          cloud,
          devices: shadowDevices,
          events,
          dataDir,
          configDir,
          log: syncLog.child({ component: "north.session" }),
        }),
    },
    syncLog,
  );
  return { link, sync };
}
