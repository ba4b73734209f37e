import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { verifyAlibabaPassword } from "../../north/dialects/alibaba/sign.js";
import type { DeviceKey } from "../../north/dialects/alibaba/subdevices.js";
import { shadowGetTopic } from "../../north/dialects/alibaba/topics.js";
import type { MessageOrigin } from "./sessions.js";
import { SERVICE_FILTERS, type ShadowTransport } from "./transport.js";
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
  /** What the service serves (default: Alibaba's SERVICE_FILTERS). */
  readonly filters?: readonly string[];
  /**
   * MQTT over TLS with this server certificate; with `ca`, every client must present a
   * certificate that CA signed (AWS IoT's mutual TLS), or its handshake fails.
   */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
}

/** CONNACK return codes (MQTT 3.1.1 table 3.1); aedes declares them as an ambient const enum. */
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;

/** `deviceName&productKey`, the username of Alibaba's CONNECT (shadow-protocol.md 2.1). */
function deviceOfUsername(username: string | undefined): DeviceKey | undefined {
  const m = /^([^&]+)&([^&]+)$/.exec(username ?? "");
  return m ? { productKey: m[2] ?? "", deviceName: m[1] ?? "" } : undefined;
}

/**
 * An aedes broker on node:net with the shadow service attached in process. Because it sees every
 * SUBSCRIBE, it can tell whether a device is online in Alibaba's sense: a connected client
 * listens on the device's /shadow/get topic, directly or through a wildcard. Because it sees
 * every connection, it tells the service who published each message (the connection and the
 * device its username names) and when a connection ends, which is what sub-device sessions
 * hang on.
 */
export class EmbeddedBroker implements ShadowTransport {
  private readonly opts: EmbeddedBrokerOptions;
  private readonly log: Logger;
  /** Per connected client, the topic filters it holds. Keyed by the client object, not its id,
   * so a session takeover (same id, new connection) cannot mix the two up. */
  private readonly filters = new Map<Client, Set<string>>();
  /** The username each client sent in its CONNECT (set before the client is ready). */
  private readonly usernames = new WeakMap<Client, string | undefined>();
  /** Who each ready client is. */
  private readonly origins = new WeakMap<Client, MessageOrigin>();
  /** The connected client of each id: one per id (a takeover replaces it). */
  private readonly clients = new Map<string, Client>();
  private serial = 0;
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

  async start(
    onRequest: (topic: string, payload: Buffer, origin?: MessageOrigin) => void,
    onClosed?: (connection: string) => void,
  ): Promise<void> {
    const secretOf = this.opts.secretOf;
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        this.usernames.set(client, username);
        if (secretOf === undefined) {
          done(null, true);
          return;
        }
        const result = verifyAlibabaPassword({ clientId: client.id, username, password }, secretOf);
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
          result.code === ErrorCodes.AUTH_CLIENT_ID ? IDENTIFIER_REJECTED : BAD_USERNAME_OR_PASSWORD
        ) as AuthenticateError["returnCode"];
        done(err, null);
      },
    });
    this.aedes = aedes;
    this.track(aedes, onClosed);
    // Attached before the socket opens, so no request can arrive unheard. Every filter names
    // requests only, never the service's own replies, so nothing it publishes comes back.
    for (const filter of this.opts.filters ?? SERVICE_FILTERS) {
      await new Promise<void>((resolve) => {
        aedes.subscribe(
          filter,
          (packet, done) => {
            const payload =
              typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
            try {
              onRequest(packet.topic, payload, this.originOf(packet as { clientId?: string }));
            } finally {
              done();
            }
          },
          resolve,
        );
      });
    }
    const handle = (socket: Socket | TLSSocket): void => {
      // Replies are small and latency-bound; Nagle plus delayed ACKs would add ~40 ms to each.
      socket.setNoDelay(true);
      aedes.handle(socket);
    };
    const tls = this.opts.tls;
    const server = tls
      ? createTlsServer(
          {
            cert: tls.cert,
            key: tls.key,
            ...(tls.ca && { ca: tls.ca, requestCert: true, rejectUnauthorized: true }),
          },
          handle,
        ).on("tlsClientError", (e) => this.log.warn({ err: e.message }, "TLS handshake refused"))
      : createServer(handle);
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
    this.clients.clear();
  }

  /**
   * Who published a packet: aedes stamps the publisher's client id on what it delivers (none on
   * the service's own publishes). A client that has already gone (its QoS 1 message was still
   * in aedes's store when its socket closed) is unknown: the service then treats the message as
   * it treats one from an external broker.
   */
  private originOf(packet: { clientId?: string }): MessageOrigin | undefined {
    if (packet.clientId === undefined) return undefined;
    const client = this.clients.get(packet.clientId);
    return client === undefined || client.closed ? undefined : this.origins.get(client);
  }

  private track(aedes: Aedes, onClosed: ((connection: string) => void) | undefined): void {
    aedes.on("clientReady", (client) => {
      const device = deviceOfUsername(this.usernames.get(client));
      // The serial tells apart two connections with one client id (a reconnect, a takeover).
      const origin = { connection: `${client.id}#${++this.serial}`, ...(device && { device }) };
      this.origins.set(client, origin);
      this.clients.set(client.id, client);
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
      if (this.clients.get(client.id) === client) this.clients.delete(client.id);
      const origin = this.origins.get(client);
      if (origin !== undefined) onClosed?.(origin.connection);
      this.log.debug({ clientId: client.id }, "client disconnected");
    });
    aedes.on("clientError", (client, err) => {
      this.log.debug({ clientId: client.id, err: err.message }, "client error");
    });
  }
}
