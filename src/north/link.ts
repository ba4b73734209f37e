import { EventEmitter } from "node:events";
import { connect, type IClientOptions, type MqttClient } from "mqtt";
import { ConnectionMachine } from "../core/connection.js";
import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { ConnectionState } from "../core/types.js";

export interface LinkOptions {
  /** mqtt://, mqtts://, ws:// or wss://: the transport follows the scheme. */
  readonly url: string;
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  readonly keepaliveSeconds: number;
  /** 4 = MQTT 3.1.1 (default), 5 = MQTT 5. */
  readonly protocolVersion: 4 | 5;
  readonly tls?: {
    ca?: Buffer;
    cert?: Buffer;
    key?: Buffer;
    rejectUnauthorized: boolean;
    alpn?: readonly string[];
  };
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly connectTimeoutMs?: number;
}

export interface LinkEvents {
  /** Connected (again). Listeners subscribe before they publish anything. */
  online: [];
  offline: [reason: string];
  message: [topic: string, payload: Buffer];
}

/**
 * What the sync engine and a dialect's session step need of the MQTT link (MqttLink in
 * production, a scripted fake in unit tests).
 */
export interface Link {
  readonly online: boolean;
  on<K extends keyof LinkEvents>(event: K, listener: (...args: LinkEvents[K]) => void): unknown;
  subscribe(topics: readonly string[]): Promise<void>;
  /** QoS 1 unless told (Alibaba's session messages go at QoS 0). */
  publish(topic: string, payload: string, qos?: 0 | 1): Promise<void>;
}

/**
 * The gateway's one MQTT connection, as an explicit state machine (disconnected -> connecting ->
 * online -> backoff -> connecting ... -> stopping) with jittered exponential backoff. mqtt.js's
 * own fixed-interval reconnect is switched off: a fleet reconnecting in lock-step after a cloud
 * outage is what jitter prevents.
 */
export class MqttLink extends EventEmitter<LinkEvents> implements Link {
  private readonly connection: ConnectionMachine;
  private client: MqttClient | undefined;
  private connects = 0;
  /** Connection attempts after a loss or a failed attempt. */
  private reconnects = 0;

  constructor(
    private readonly opts: LinkOptions,
    log: Logger,
  ) {
    super();
    this.connection = new ConnectionMachine(
      {
        reconnectMinMs: opts.reconnectMinMs,
        reconnectMaxMs: opts.reconnectMaxMs,
        fields: () => ({ url: this.opts.url, clientId: this.opts.clientId }),
      },
      log,
    );
  }

  get online(): boolean {
    return this.connection.online;
  }

  health(): { state: ConnectionState; connects: number; reconnects: number } {
    return { state: this.connection.state, connects: this.connects, reconnects: this.reconnects };
  }

  start(): void {
    if (this.connection.state === "disconnected") this.connect();
  }

  async stop(): Promise<void> {
    this.connection.stopping();
    const client = this.client;
    this.client = undefined;
    if (client) await client.endAsync(false).catch(() => client.end(true));
    this.connection.stopped();
  }

  async subscribe(topics: readonly string[]): Promise<void> {
    const client = this.require();
    const granted = await client.subscribeAsync([...topics], { qos: 1 });
    const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    if (refused.length > 0) {
      throw new ShadowgateError(ErrorCodes.MQTT_SUBSCRIBE, `broker refused ${refused.join(", ")}`);
    }
  }

  /** Resolves on PUBACK at QoS 1, once written at QoS 0. */
  async publish(topic: string, payload: string, qos: 0 | 1 = 1): Promise<void> {
    await this.require().publishAsync(topic, payload, { qos });
  }

  private require(): MqttClient {
    if (!this.client || !this.connection.online) {
      throw new ShadowgateError(ErrorCodes.MQTT_OFFLINE, `MQTT link is ${this.connection.state}`);
    }
    return this.client;
  }

  private connect(): void {
    this.connection.to("connecting");
    const options: IClientOptions = {
      clientId: this.opts.clientId,
      keepalive: this.opts.keepaliveSeconds,
      protocolVersion: this.opts.protocolVersion,
      reconnectPeriod: 0,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      clean: true,
      // mqtt-packet's number cache is 65,536 two-byte Buffers (~7 MB of heap, most of a
      // 48 MB gateway's headroom) generated at the first packet; off, it is never built and a
      // packet id or length costs one small Buffer as it is written.
      writeCache: false,
      ...(this.opts.username !== undefined && { username: this.opts.username }),
      ...(this.opts.password !== undefined && { password: this.opts.password }),
      ...(this.opts.tls && {
        rejectUnauthorized: this.opts.tls.rejectUnauthorized,
        ...(this.opts.tls.ca && { ca: this.opts.tls.ca }),
        ...(this.opts.tls.cert && { cert: this.opts.tls.cert }),
        ...(this.opts.tls.key && { key: this.opts.tls.key }),
        ...(this.opts.tls.alpn && { ALPNProtocols: [...this.opts.tls.alpn] }),
      }),
    };
    const client = connect(this.opts.url, options);
    this.client = client;
    client.on("connect", () => {
      if (this.client !== client) return;
      // Requests and PUBACKs are small and latency-bound: with Nagle on, a publish that follows
      // a PUBACK waits for the broker's delayed ACK (~40 ms on Linux).
      (client.stream as { setNoDelay?: (noDelay?: boolean) => void }).setNoDelay?.(true);
      this.connection.proven();
      this.connects++;
      this.connection.to("online");
      this.emit("online");
    });
    client.on("message", (topic, payload) => {
      if (this.client === client) this.emit("message", topic, payload);
    });
    client.on("error", (err) => {
      if (this.client === client) this.lost(client, err.message);
    });
    client.on("close", () => {
      if (this.client === client) this.lost(client, "connection closed");
    });
  }

  private lost(client: MqttClient, reason: string): void {
    const state = this.connection.state;
    if (state === "stopping" || state === "disconnected") return;
    this.client = undefined;
    client.removeAllListeners("message");
    client.end(true);
    this.connection.retry(reason, () => {
      this.reconnects++;
      this.connect();
    });
    if (state === "online") this.emit("offline", reason);
  }
}
