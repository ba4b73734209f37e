import type { Aedes } from "aedes";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import { silentLogger, type Logger } from "../../core/logger.js";
import { EmbeddedBroker } from "./embedded-broker.js";
import { ExternalBroker, displayUrl } from "./external-broker.js";
import { CloudHttpApi } from "./http-api.js";
import { loadSecretsFile } from "./secrets-file.js";
import type { DeviceSecret } from "./sessions.js";
import { ShadowService, type ShadowTransport } from "./shadow-service.js";
import { stopsInReverse } from "./stops.js";
import { ShadowStore } from "./store.js";

export { CloudHttpApi, MAX_BODY_BYTES } from "./http-api.js";
export { EmbeddedBroker } from "./embedded-broker.js";
export { ExternalBroker, displayUrl } from "./external-broker.js";
export {
  DEFAULT_MAX_SUB_DEVICES_ONLINE,
  SERVICE_FILTERS,
  ShadowService,
  type AppliedEvent,
  type ControlEvent,
  type DesiredUpdateOutcome,
  type DeviceStatus,
  type ShadowServiceEvents,
  type ShadowTransport,
  type SwitchOutcome,
} from "./shadow-service.js";
export {
  GATEWAY_REQUEST_FILTERS,
  type SessionEvent,
  type SessionEventKind,
} from "./gateway-requests.js";
export { loadSecretsFile } from "./secrets-file.js";
export type { DeviceSecret, MessageOrigin } from "./sessions.js";
export {
  applyChange,
  emptyDocument,
  mergeInto,
  parseShadowRequest,
  type CloudShadowDocument,
  type ParsedRequest,
  type ShadowErrorCode,
  type ShadowRequestBody,
} from "./shadow-document.js";
export { ShadowStore } from "./store.js";
export { topicMatches } from "./topic-filter.js";

/** Everything on loopback: this is a simulator with no TLS and, by default, no credentials. */
const HOST = "127.0.0.1";

export interface CloudServiceOptions {
  /** Port of the embedded broker; 0 picks a free one. Default 1883. Ignored with brokerUrl. */
  readonly mqttPort?: number;
  /** Default 8080; 0 picks a free one. */
  readonly httpPort?: number;
  /** mqtt://host:port of an external broker; the service then runs as its client. */
  readonly brokerUrl?: string;
  /** SQLite file for the shadows; default in memory. */
  readonly dbFile?: string;
  /**
   * Every device's secret, gateways and sub-devices alike: they check the signs of topology
   * adds and sub-device logins, and with the embedded broker every CONNECT must be signed with
   * one of them (an external broker does its own authentication).
   */
  readonly deviceSecrets?: readonly DeviceSecret[];
  /** A YAML or JSON file of `"pk/dn": secret`, read at start; deviceSecrets win over it. */
  readonly secretsFile?: string;
  /**
   * Shadow requests need the device's own connection or a sub-device login through a
   * connected gateway; others are answered 520 on the gateway's /ext/error and not applied.
   */
  readonly strictSessions?: boolean;
  /** Sub-devices online under one gateway before logins get 428 (default 2000). */
  readonly maxSubDevicesOnline?: number;
  readonly logger?: Logger;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now?: () => number;
}

export interface RunningCloudService {
  /** Where devices connect (credentials stripped). */
  readonly mqttUrl: string;
  readonly httpUrl: string;
  readonly service: ShadowService;
  /** The embedded aedes broker; undefined with an external broker. */
  readonly broker: Aedes | undefined;
  /** Whether the embedded broker checks CONNECT credentials (it has device secrets). */
  readonly credentialsChecked: boolean;
  close(): Promise<void>;
}

/**
 * Starts the local cloud shadow service: store, broker (embedded or external), service and
 * HTTP API, in dependency order; `close()` stops them in reverse. A failure part-way closes
 * what had started and rejects with SG_CLOUD_START (SG_CONFIG_* for a bad secrets file).
 */
export async function startCloudService(
  opts: CloudServiceOptions = {},
): Promise<RunningCloudService> {
  const log = (opts.logger ?? silentLogger()).child({ component: "sim.cloud" });
  const fromFile = opts.secretsFile === undefined ? [] : await loadSecretsFile(opts.secretsFile);
  const secrets = [...fromFile, ...(opts.deviceSecrets ?? [])];
  let store: ShadowStore;
  try {
    store = new ShadowStore(opts.dbFile);
  } catch (e) {
    throw new ShadowgateError(
      ErrorCodes.CLOUD_START,
      `cannot open the shadow database ${opts.dbFile ?? ":memory:"}: ${(e as Error).message}`,
    );
  }
  const stops = stopsInReverse(log);
  stops.push(async () => store.close());
  const close = stops.close;

  try {
    let transport: ShadowTransport;
    let mqttUrl: string;
    let embedded: EmbeddedBroker | undefined;
    if (opts.brokerUrl !== undefined) {
      // The external broker authenticates its clients; the secrets only check signs here.
      transport = new ExternalBroker({ url: opts.brokerUrl, logger: log });
      mqttUrl = displayUrl(opts.brokerUrl);
    } else {
      const table = new Map(
        secrets.map((s) => [`${s.productKey}/${s.deviceName}`, s.deviceSecret]),
      );
      embedded = new EmbeddedBroker({
        port: opts.mqttPort ?? 1883,
        host: HOST,
        logger: log,
        ...(table.size > 0 && { secretOf: (pk: string, dn: string) => table.get(`${pk}/${dn}`) }),
      });
      transport = embedded;
      mqttUrl = "";
    }
    const service = new ShadowService({
      store,
      transport,
      logger: log,
      ...(opts.now && { now: opts.now }),
      deviceSecrets: secrets,
      strictSessions: opts.strictSessions ?? false,
      ...(opts.maxSubDevicesOnline !== undefined && {
        maxSubDevicesOnline: opts.maxSubDevicesOnline,
      }),
    });
    stops.push(() => transport.stop());
    await transport.start(service.handleMessage, service.connectionClosed);
    if (embedded !== undefined) mqttUrl = `mqtt://${HOST}:${embedded.port}`;

    const http = new CloudHttpApi({ service, logger: log });
    stops.push(() => http.stop());
    await http.start({ port: opts.httpPort ?? 8080, host: HOST });
    const httpUrl = `http://${HOST}:${http.port}`;
    log.info(
      {
        mqttUrl,
        httpUrl,
        secrets: secrets.length,
        credentials:
          opts.brokerUrl !== undefined
            ? "the external broker's"
            : secrets.length > 0
              ? "checked"
              : "any client",
        strictSessions: opts.strictSessions ?? false,
      },
      "cloud shadow service ready",
    );
    const credentialsChecked = embedded !== undefined && secrets.length > 0;
    return { mqttUrl, httpUrl, service, broker: embedded?.broker, credentialsChecked, close };
  } catch (e) {
    await close();
    throw e;
  }
}
