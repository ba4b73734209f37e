import { randomUUID } from "node:crypto";
import { connectAsync, type MqttClient } from "mqtt";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { SERVICE_FILTERS, type ShadowTransport } from "./transport.js";

export interface ExternalBrokerOptions {
  /** mqtt://host:port (credentials in the URL are passed on, never logged). */
  readonly url: string;
  readonly logger: Logger;
  /** What the service serves (default: Alibaba's SERVICE_FILTERS). */
  readonly filters?: readonly string[];
}

/** The URL without user and password, for logs and the console. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, "");
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * The service as a client of an external broker (mosquitto). It cannot see other clients'
 * subscriptions, so it does not know which devices are online: control pushes always go out
 * (a device with a persistent session may then receive one that Alibaba would not have sent).
 * Nor can it see who published a message or when a connection ends: messages come without an
 * origin, and a gateway's sub-device sessions last until it logs them out (or an operator
 * drops or disables them), not until its connection closes.
 */
export class ExternalBroker implements ShadowTransport {
  private readonly opts: ExternalBrokerOptions;
  private readonly log: Logger;
  private client: MqttClient | undefined;

  constructor(opts: ExternalBrokerOptions) {
    this.opts = opts;
    this.log = opts.logger;
  }

  async start(onRequest: (topic: string, payload: Buffer) => void): Promise<void> {
    const url = displayUrl(this.opts.url);
    let client: MqttClient;
    try {
      // No retries for the first connection: a wrong URL should fail the start, not hang it.
      client = await connectAsync(
        this.opts.url,
        {
          clientId: `shadowgate-cloud-${randomUUID().slice(0, 8)}`,
          clean: true,
          reconnectPeriod: 1000,
          connectTimeout: 10_000,
        },
        false,
      );
    } catch (e) {
      throw new ShadowgateError(
        ErrorCodes.CLOUD_START,
        `cannot connect to the MQTT broker ${url}: ${(e as Error).message}`,
      );
    }
    this.client = client;
    client.on("message", (topic, payload) => onRequest(topic, payload));
    client.on("offline", () => this.log.warn({ url }, "broker connection lost; reconnecting"));
    client.on("connect", () => this.log.info({ url }, "broker connection restored"));
    client.on("error", (e) => this.log.warn({ url, err: e.message }, "broker connection error"));
    try {
      // Resubscribed by mqtt.js after each reconnect (clean session).
      // Requests only (no `_reply` topic matches): nothing the service publishes comes back.
      const granted = await client.subscribeAsync([...(this.opts.filters ?? SERVICE_FILTERS)], {
        qos: 1,
      });
      const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
      if (refused.length > 0) throw new Error(`the broker refused ${refused.join(", ")}`);
    } catch (e) {
      await this.stop();
      throw new ShadowgateError(
        ErrorCodes.CLOUD_START,
        `cannot subscribe to the request topics on ${url}: ${(e as Error).message}`,
      );
    }
    this.log.info({ url }, "connected to the external MQTT broker");
  }

  publish(topic: string, payload: string): Promise<void> {
    const client = this.client;
    // mqtt.js would queue a QoS 1 message until the link is back; an HTTP caller waiting on a
    // control push should not hang that long, and a reply that late is useless anyway.
    if (client === undefined || !client.connected) {
      return Promise.reject(new Error("not connected to the broker"));
    }
    return client.publishAsync(topic, payload, { qos: 1 }).then(() => undefined);
  }

  isOnline(): undefined {
    return undefined;
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.endAsync();
  }
}
