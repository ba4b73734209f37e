import type { Aedes } from "aedes";
import { silentLogger, type Logger } from "../../../core/logger.js";
import { EmbeddedBroker } from "../embedded-broker.js";
import { ExternalBroker, displayUrl } from "../external-broker.js";
import { stopsInReverse } from "../stops.js";
import type { ShadowTransport } from "../transport.js";
import { AwsHttpApi } from "./http-api.js";
import { AWS_SERVICE_FILTERS, AwsShadowService, type AwsShadowStore } from "./service.js";

export {
  AwsShadowService,
  AwsShadowStore,
  AWS_SERVICE_FILTERS,
  type UpdatedEvent,
} from "./service.js";
export { AwsErrors, deltaOf, type AwsShadowDocument } from "./document.js";

const HOST = "127.0.0.1";

export interface AwsCloudServiceOptions {
  /** Port of the embedded broker; 0 picks a free one. Ignored with brokerUrl. */
  readonly mqttPort?: number;
  readonly httpPort?: number;
  /** mqtt://host:port of an external broker; the service then runs as its client. */
  readonly brokerUrl?: string;
  /**
   * The embedded broker speaks MQTT over TLS with this certificate; with `ca` it takes only
   * clients whose certificate that CA signed, as AWS IoT does.
   */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
  /** Requests stay in flight this long (default 0); then the 11th on a connection gets 429. */
  readonly replyDelayMs?: number;
  /** When given, only these things exist. */
  readonly things?: readonly string[];
  /** Where the shadows live: pass one to keep them across a stop and start. */
  readonly store?: AwsShadowStore;
  /** Bytes of state a document may hold (default 8 KB; one request carries at most 8 KB). */
  readonly maxDocumentBytes?: number;
  /** Bytes of state one update may carry (default 8 KB). */
  readonly maxRequestBytes?: number;
  readonly logger?: Logger;
  readonly now?: () => number;
}

export interface RunningAwsCloudService {
  readonly mqttUrl: string;
  readonly httpUrl: string;
  readonly service: AwsShadowService;
  /** The embedded aedes broker; undefined with an external broker. */
  readonly broker: Aedes | undefined;
  close(): Promise<void>;
}

/**
 * Starts the local AWS IoT Device Shadow service: broker (embedded, optionally with mutual TLS,
 * or external), service and HTTP API; `close()` stops them in reverse.
 */
export async function startAwsCloudService(
  opts: AwsCloudServiceOptions = {},
): Promise<RunningAwsCloudService> {
  const log = (opts.logger ?? silentLogger()).child({ component: "sim.cloud" });
  const stops = stopsInReverse(log);
  const close = stops.close;
  try {
    let transport: ShadowTransport;
    let embedded: EmbeddedBroker | undefined;
    if (opts.brokerUrl !== undefined) {
      transport = new ExternalBroker({
        url: opts.brokerUrl,
        logger: log,
        filters: AWS_SERVICE_FILTERS,
      });
    } else {
      embedded = new EmbeddedBroker({
        port: opts.mqttPort ?? 8883,
        host: HOST,
        logger: log,
        filters: AWS_SERVICE_FILTERS,
        ...(opts.tls && { tls: opts.tls }),
      });
      transport = embedded;
    }
    const service = new AwsShadowService({
      transport,
      logger: log,
      ...(opts.now && { now: opts.now }),
      ...(opts.replyDelayMs !== undefined && { replyDelayMs: opts.replyDelayMs }),
      ...(opts.things && { things: opts.things }),
      ...(opts.store && { store: opts.store }),
      ...(opts.maxDocumentBytes !== undefined && { maxDocumentBytes: opts.maxDocumentBytes }),
      ...(opts.maxRequestBytes !== undefined && { maxRequestBytes: opts.maxRequestBytes }),
    });
    stops.push(() => transport.stop());
    await transport.start(service.handleMessage, service.connectionClosed);
    const mqttUrl =
      embedded === undefined
        ? displayUrl(opts.brokerUrl ?? "")
        : `${opts.tls ? "mqtts" : "mqtt"}://${HOST}:${embedded.port}`;
    const http = new AwsHttpApi(service, log);
    stops.push(() => http.stop());
    await http.start({ port: opts.httpPort ?? 8080, host: HOST });
    const httpUrl = `http://${HOST}:${http.port}`;
    log.info({ mqttUrl, httpUrl, dialect: "aws" }, "cloud shadow service ready");
    return { mqttUrl, httpUrl, service, broker: embedded?.broker, close };
  } catch (e) {
    await close();
    throw e;
  }
}
