import { createServer, type AddressInfo, type Server } from "node:net";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { verifyAlibabaPassword } from "../../north/dialects/alibaba/sign.js";
import { SHADOW_UPDATE_WILDCARD, shadowGetTopic } from "../../north/dialects/alibaba/topics.js";
import type { ShadowTransport } from "./shadow-service.js";
import { topicMatches } from "./topic-filter.js";

export interface EmbeddedBrokerOptions {
  /** 0 picks a free port. */
  readonly port: number;
  readonly host: string;
  readonly logger: Logger;
  /**
   * When given, every CONNECT must carry Alibaba credentials (shadow-protocol 2.1) signed with
   * the device's secret; otherwise any client is accepted.
   */
  readonly secretOf?: (productKey: string, deviceName: string) => string | undefined;
}

/** CONNACK return codes (MQTT 3.1.1 table 3.1); aedes declares them as an ambient const enum. */
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;

/**
 * An aedes broker on node:net with the shadow service attached in process. Because it sees every
 * SUBSCRIBE, it can tell whether a device is online in Alibaba's sense: a connected client
 * listens on the device's /shadow/get topic, directly or through a wildcard.
 */
export class EmbeddedBroker implements ShadowTransport {
  private readonly opts: EmbeddedBrokerOptions;
  private readonly log: Logger;
  /** Per connected client, the topic filters it holds. Keyed by the client object, not its id,
   * so a session takeover (same id, new connection) cannot mix the two up. */
  private readonly filters = new Map<Client, Set<string>>();
  private aedes: Aedes | undefined;
  private server: Server | undefined;
  private boundPort = 0;

  constructor(opts: EmbeddedBrokerOptions) {
    this.opts = opts;
    this.log = opts.logger;
  }

  /** The port it listens on, once started. */
  get port(): number {
    return this.boundPort;
  }

  /** The aedes instance, once started: tests await its events ("clientDisconnect"...). */
  get broker(): Aedes | undefined {
    return this.aedes;
  }

  async start(onRequest: (topic: string, payload: Buffer) => void): Promise<void> {
    const secretOf = this.opts.secretOf;
    const aedes = await Aedes.createBroker(
      secretOf === undefined
        ? {}
        : {
            authenticate: (client, username, password, done) => {
              const result = verifyAlibabaPassword(
                { clientId: client.id, username, password },
                secretOf,
              );
              if (result.ok) {
                this.log.info(
                  {
                    clientId: client.id,
                    productKey: result.productKey,
                    deviceName: result.deviceName,
                  },
                  "device authenticated",
                );
                done(null, true);
                return;
              }
              this.log.warn(
                { code: result.code, clientId: client.id, reason: result.reason },
                "CONNECT refused",
              );
              const err = new Error(result.reason) as AuthenticateError;
              err.returnCode = (
                result.code === ErrorCodes.AUTH_CLIENT_ID
                  ? IDENTIFIER_REJECTED
                  : BAD_USERNAME_OR_PASSWORD
              ) as AuthenticateError["returnCode"];
              done(err, null);
            },
          },
    );
    this.aedes = aedes;
    this.track(aedes);
    // Attached before the socket opens, so no request can arrive unheard.
    await new Promise<void>((resolve) => {
      aedes.subscribe(
        SHADOW_UPDATE_WILDCARD,
        (packet, done) => {
          const payload =
            typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
          try {
            onRequest(packet.topic, payload);
          } finally {
            done();
          }
        },
        resolve,
      );
    });
    const server = createServer((socket) => {
      // Replies are small and latency-bound; Nagle plus delayed ACKs would add ~40 ms to each.
      socket.setNoDelay(true);
      aedes.handle(socket);
    });
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.opts.port, this.opts.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      await this.stop();
      throw new ShadowgateError(
        ErrorCodes.CLOUD_START,
        `MQTT broker cannot listen on ${this.opts.host}:${this.opts.port}: ${(e as Error).message}`,
      );
    }
    this.boundPort = (server.address() as AddressInfo).port;
    this.log.info({ host: this.opts.host, port: this.boundPort }, "embedded MQTT broker listening");
  }

  publish(topic: string, payload: string): Promise<void> {
    const aedes = this.aedes;
    if (aedes === undefined || aedes.closed) {
      return Promise.reject(new Error("the embedded broker is not running"));
    }
    return new Promise((resolve, reject) => {
      aedes.publish(
        { cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  isOnline(productKey: string, deviceName: string): boolean {
    const topic = shadowGetTopic(productKey, deviceName);
    for (const filters of this.filters.values()) {
      for (const filter of filters) if (topicMatches(filter, topic)) return true;
    }
    return false;
  }

  async stop(): Promise<void> {
    const server = this.server;
    const aedes = this.aedes;
    this.server = undefined;
    this.aedes = undefined;
    const closed: Promise<void>[] = [];
    if (server?.listening) {
      closed.push(new Promise((resolve) => server.close(() => resolve())));
    }
    // Closing aedes closes every client connection, which lets server.close() complete.
    if (aedes !== undefined) closed.push(new Promise((resolve) => aedes.close(() => resolve())));
    await Promise.all(closed);
    this.filters.clear();
  }

  private track(aedes: Aedes): void {
    aedes.on("clientReady", (client) => {
      // A persistent session's subscriptions are restored without a "subscribe" event; aedes
      // keeps them on the client, keyed by topic filter.
      const restored = (client as Client & { subscriptions?: Record<string, unknown> })
        .subscriptions;
      this.filters.set(client, new Set(Object.keys(restored ?? {})));
      this.log.debug({ clientId: client.id }, "client connected");
    });
    aedes.on("subscribe", (subs, client) => {
      const set = this.filters.get(client) ?? new Set<string>();
      // 128 is the SUBACK failure code: the client does not hold that filter.
      for (const s of subs) if ((s.qos as number) !== 128) set.add(s.topic);
      this.filters.set(client, set);
    });
    aedes.on("unsubscribe", (topics, client) => {
      const set = this.filters.get(client);
      for (const t of topics) set?.delete(t);
    });
    aedes.on("clientDisconnect", (client) => {
      this.filters.delete(client);
      this.log.debug({ clientId: client.id }, "client disconnected");
    });
    aedes.on("clientError", (client, err) => {
      this.log.debug({ clientId: client.id, err: err.message }, "client error");
    });
  }
}
