import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { createLogger, type Logger } from "../../src/core/logger.js";
import type { JsonObject } from "../../src/core/types.js";
import { keepLog, testLogger } from "./logs.js";
import { alibabaCredentials } from "../../src/north/dialects/alibaba/sign.js";
import {
  encodeRequest,
  gatewaySubscriptions,
  replyTopic,
  requestTopic,
  type SubDeviceMethod,
} from "../../src/north/dialects/alibaba/subdevices.js";
import { shadowUpdateTopic } from "../../src/north/dialects/alibaba/topics.js";
import {
  startCloudService,
  type CloudServiceOptions,
  type DeviceSecret,
  type RunningCloudService,
} from "../../src/sim/cloud/index.js";

/**
 * The local cloud shadow service and MQTT clients for tests. Everything started here is
 * tracked; call `closeCloudTestResources()` in afterEach (or afterAll) to close it all.
 *
 *   afterEach(closeCloudTestResources);
 *   const cloud = await startTestCloud();                 // aedes + HTTP on free ports
 *   const device = await connectTestClient(cloud.mqttUrl);
 *   await device.subscribe(shadowGetTopic("pk", "dn"));
 *   const reply = await device.request("pk", "dn", { method: "get" });
 */

const clouds: RunningCloudService[] = [];
const clients: TestClient[] = [];

/**
 * Starts the service on free 127.0.0.1 ports (embedded broker unless brokerUrl is given). It
 * logs into the run's secrets scan unless given a logger: it holds the device secrets too.
 */
export async function startTestCloud(opts: CloudServiceOptions = {}): Promise<RunningCloudService> {
  const cloud = await startCloudService({
    mqttPort: 0,
    httpPort: 0,
    logger: testLogger(),
    ...opts,
  });
  clouds.push(cloud);
  return cloud;
}

export async function closeCloudTestResources(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(clouds.splice(0).map((c) => c.close()));
}

/** A received message: the topic and the parsed JSON payload. */
export interface Received {
  readonly topic: string;
  // Tests look into replies freely; the assertions are the type check.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
  readonly message: any;
}

/**
 * An mqtt.js client that queues what it receives, so a test can await the next message
 * instead of sleeping. Messages are handed out in arrival order.
 */
export class TestClient {
  private readonly queue: Received[] = [];
  private readonly waiting: Array<{ topic?: string; resolve: (r: Received) => void }> = [];

  constructor(readonly mqtt: MqttClient) {
    mqtt.on("message", (topic, payload) => {
      let message: unknown;
      try {
        message = JSON.parse(payload.toString("utf8"));
      } catch {
        message = payload.toString("utf8");
      }
      const received = { topic, message };
      const i = this.waiting.findIndex((w) => w.topic === undefined || w.topic === topic);
      const waiter = i < 0 ? undefined : this.waiting.splice(i, 1)[0];
      if (waiter) waiter.resolve(received);
      else this.queue.push(received);
    });
  }

  /** The next message, in arrival order (test timeouts bound the wait). */
  next(): Promise<Received> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => this.waiting.push({ resolve }));
  }

  /** The next message on one topic; messages on other topics stay queued for next(). */
  nextOn(topic: string): Promise<Received> {
    const i = this.queue.findIndex((r) => r.topic === topic);
    const queued = i < 0 ? undefined : this.queue.splice(i, 1)[0];
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => this.waiting.push({ topic, resolve }));
  }

  /** Messages received on a topic that nobody has taken yet. */
  queuedOn(topic: string): Received[] {
    return this.queue.filter((r) => r.topic === topic);
  }

  /** How many received messages nobody has taken yet. */
  get pending(): number {
    return this.queue.length;
  }

  async subscribe(filter: string): Promise<void> {
    const granted = await this.mqtt.subscribeAsync(filter, { qos: 1 });
    if (granted.some((g) => g.qos === 128)) throw new Error(`subscription to ${filter} refused`);
  }

  async unsubscribe(filter: string): Promise<void> {
    await this.mqtt.unsubscribeAsync(filter);
  }

  /** Publishes at QoS 1; objects are sent as JSON, strings as they are. */
  async publish(topic: string, payload: unknown): Promise<void> {
    const text = typeof payload === "string" ? payload : JSON.stringify(payload);
    await this.mqtt.publishAsync(topic, text, { qos: 1 });
  }

  /** Publishes a request on the device's update topic and awaits the next message. */
  async request(productKey: string, deviceName: string, payload: unknown): Promise<Received> {
    const next = this.next();
    await this.publish(shadowUpdateTopic(productKey, deviceName), payload);
    return next;
  }

  async close(): Promise<void> {
    if (!this.mqtt.disconnected) await this.mqtt.endAsync();
  }
}

/**
 * An Alibaba `control` push carrying `desired`, each top-level attribute stamped `ts` (seconds),
 * as the cloud sends it on /shadow/get/{pk}/{dn}.
 */
export function controlMessage(
  version: number,
  desired: JsonObject,
  ts: number,
  timestamp = ts,
): JsonObject {
  return {
    method: "control",
    payload: {
      status: "success",
      state: { desired, reported: {} },
      metadata: {
        desired: Object.fromEntries(Object.keys(desired).map((k) => [k, { timestamp: ts }])),
      },
    },
    version,
    timestamp,
  };
}

/** Connects an mqtt.js client without retries; tracked for cleanup. */
export async function connectTestClient(
  url: string,
  opts: IClientOptions = {},
): Promise<TestClient> {
  const mqtt = await connectAsync(url, { reconnectPeriod: 0, ...opts }, false);
  const client = new TestClient(mqtt);
  clients.push(client);
  return client;
}

/**
 * A gateway's MQTT connection, signed with its own secret (the embedded broker checks it when
 * the service has device secrets) and subscribed to its sub-device replies, notices and errors.
 */
export async function connectGateway(url: string, gw: DeviceSecret): Promise<TestClient> {
  const client = await connectTestClient(
    url,
    alibabaCredentials({ ...gw, clientId: `${gw.productKey}.${gw.deviceName}`, secureMode: 3 }),
  );
  for (const filter of gatewaySubscriptions(gw.productKey, gw.deviceName))
    await client.subscribe(filter);
  return client;
}

let requestId = 0;

/**
 * Sends one of a gateway's sub-device requests in the Alink envelope and awaits its reply on
 * `<topic>_reply`. The id is unique within the test process unless given.
 */
export async function subDeviceRequest(
  client: TestClient,
  gw: { productKey: string; deviceName: string },
  method: SubDeviceMethod,
  params: unknown,
  id = String(++requestId),
): Promise<Received> {
  const reply = client.nextOn(replyTopic(method, gw.productKey, gw.deviceName));
  await client.publish(
    requestTopic(method, gw.productKey, gw.deviceName),
    encodeRequest(id, method, params),
  );
  return reply;
}

/** fetch + JSON: the status and the parsed body (or the text, when it is not JSON). */
export async function httpJson(
  url: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- bodies are asserted on, not typed
): Promise<{ status: number; body: any; headers: Headers }> {
  const body =
    init.body === undefined
      ? undefined
      : typeof init.body === "string"
        ? init.body
        : JSON.stringify(init.body);
  const res = await fetch(url, {
    method: init.method ?? (body === undefined ? "GET" : "POST"),
    headers: { "content-type": "application/json", ...init.headers },
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/**
 * A debug-level production logger (its redaction included) that keeps its records, for
 * assertions on what was logged; its lines also go to the run's logs for the secrets scan.
 */
export function captureLogger(): { logger: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: "debug",
    destination: {
      write: (line: string) => {
        records.push(JSON.parse(line) as Record<string, unknown>);
        keepLog("captured", line);
      },
    },
  });
  return { logger, records };
}
