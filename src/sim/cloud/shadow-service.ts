import { EventEmitter } from "node:events";
import { ErrorCodes } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import {
  ShadowErrorCodes,
  type ShadowReply,
  type ShadowState,
} from "../../north/dialects/alibaba/messages.js";
import { parseShadowTopic, shadowGetTopic } from "../../north/dialects/alibaba/topics.js";
import {
  applyChange,
  emptyDocument,
  parseShadowRequest,
  type CloudShadowDocument,
  type ShadowErrorCode,
  type ShadowRequestBody,
} from "./shadow-document.js";
import type { ShadowStore } from "./store.js";

/**
 * How the service meets MQTT: an embedded broker or a client of an external one. The service
 * neither knows nor cares which, like an MQTT.js client and its stream.
 */
export interface ShadowTransport {
  /** Delivers every message published to /shadow/update/+/+, in arrival order, until stop. */
  start(onRequest: (topic: string, payload: Buffer) => void): Promise<void>;
  /** Publishes at QoS 1; resolves once the broker has the message. */
  publish(topic: string, payload: string): Promise<void>;
  /**
   * Whether a connected client listens on the device's /shadow/get topic; undefined when the
   * transport cannot see subscriptions (an external broker).
   */
  isOnline(productKey: string, deviceName: string): boolean | undefined;
  stop(): Promise<void>;
}

/** A control push decided after desired changed. */
export interface ControlEvent {
  readonly productKey: string;
  readonly deviceName: string;
  readonly version: number;
  /** undefined: the transport cannot tell, so the push went out anyway. */
  readonly online: boolean | undefined;
  readonly published: boolean;
}

/** A device's update or delete request the service applied and stored (before its reply). */
export interface AppliedEvent {
  readonly productKey: string;
  readonly deviceName: string;
  readonly request: ShadowRequestBody;
  /** The document's version after the change. */
  readonly version: number;
  readonly clientToken: string | undefined;
}

export interface ShadowServiceEvents {
  control: [ControlEvent];
  applied: [AppliedEvent];
}

export type DesiredUpdateOutcome =
  | { readonly ok: true; readonly version: number; readonly control?: ControlEvent }
  | { readonly ok: false; readonly code: ShadowErrorCode; readonly message: string };

export interface ShadowServiceOptions {
  readonly store: ShadowStore;
  readonly transport: ShadowTransport;
  readonly logger: Logger;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now?: () => number;
}

interface Device {
  readonly productKey: string;
  readonly deviceName: string;
}

/**
 * The service side of the Alibaba shadow protocol (shadow-protocol.md 1.3): answers requests
 * on /shadow/update/{pk}/{dn} on /shadow/get/{pk}/{dn} and pushes `control` when desired
 * changes. Every request is handled to the end synchronously (SQLite is synchronous), so
 * requests for one shadow are applied strictly in arrival order.
 */
export class ShadowService extends EventEmitter<ShadowServiceEvents> {
  private readonly store: ShadowStore;
  private readonly transport: ShadowTransport;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(opts: ShadowServiceOptions) {
    super();
    this.store = opts.store;
    this.transport = opts.transport;
    this.log = opts.logger;
    this.now = opts.now ?? Date.now;
  }

  /** The stored document, or undefined when the shadow was never written. */
  getShadow(productKey: string, deviceName: string): CloudShadowDocument | undefined {
    return this.store.get(productKey, deviceName);
  }

  /** Every stored shadow's key. */
  shadows(): Array<{ productKey: string; deviceName: string }> {
    return this.store.keys();
  }

  /** Handles one message published on a shadow request topic. Never throws. */
  readonly handleMessage = (topic: string, payload: Buffer): void => {
    const target = parseShadowTopic(topic);
    if (target === undefined || target.kind !== "update") {
      // The reply topic is derived from the request topic; without one there is nobody to answer.
      this.log.warn(
        { code: ErrorCodes.CLOUD_REQUEST_INVALID, topic, bytes: payload.length },
        "message on a topic that is not /shadow/update/{productKey}/{deviceName}; not answered",
      );
      return;
    }
    const device: Device = { productKey: target.productKey, deviceName: target.deviceName };
    const parsed = parseShadowRequest(payload.toString("utf8"));
    if (!parsed.ok) {
      this.rejected(device, topic, parsed.code, parsed.message, parsed.clientToken);
      return;
    }
    try {
      this.serve(device, topic, parsed.request, parsed.clientToken);
    } catch (e) {
      // A store failure (disk full, locked file) must not take the broker down with it.
      this.log.error(
        { code: ErrorCodes.CLOUD_INTERNAL, topic, err: (e as Error).message },
        "shadow request failed",
      );
      void this.send(device, {
        method: "reply",
        payload: {
          status: "error",
          content: { errorcode: String(ShadowErrorCodes.SERVER), errormessage: "server error" },
        },
        timestamp: this.seconds(),
        ...(parsed.clientToken === undefined ? {} : { clientToken: parsed.clientToken }),
      });
    }
  };

  private serve(
    device: Device,
    topic: string,
    request: ShadowRequestBody,
    clientToken: string | undefined,
  ): void {
    if (request.method === "get") {
      this.answerGet(device, topic, clientToken);
      return;
    }
    const current = this.store.get(device.productKey, device.deviceName) ?? emptyDocument();
    const result = applyChange(current, request, { now: this.seconds() });
    if (!result.ok) {
      this.rejected(device, topic, result.code, result.message, clientToken);
      return;
    }
    this.store.put(device.productKey, device.deviceName, result.document);
    this.log.debug(
      { topic, method: request.method, version: result.document.version },
      "shadow request applied",
    );
    this.emit("applied", { ...device, request, version: result.document.version, clientToken });
    void this.send(device, {
      method: "reply",
      payload: { status: "success", version: result.document.version },
      timestamp: this.seconds(),
      ...(clientToken === undefined ? {} : { clientToken }),
    });
    if (result.desiredSet) void this.pushControl(device, result.document);
  }

  /**
   * UpdateDeviceShadow: sets desired from an application. `message` is the ShadowMessage,
   * as a JSON string (Alibaba's API) or an object. `delta` false replaces desired whole
   * (Alibaba's default), true merges. A version of 0 or none means "no versioning" (doc-detail
   * 69954) and stores current + 1. Resolves after the control push, if any, went out.
   */
  async updateDesired(
    productKey: string,
    deviceName: string,
    message: unknown,
    opts: { delta: boolean },
  ): Promise<DesiredUpdateOutcome> {
    const device: Device = { productKey, deviceName };
    const reject = (code: ShadowErrorCode, message: string): DesiredUpdateOutcome => {
      this.log.info(
        { code: codeFor(code), productKey, deviceName, shadowCode: code },
        `desired update rejected: ${message}`,
      );
      return { ok: false, code, message };
    };
    const text = typeof message === "string" ? message : JSON.stringify(message ?? null);
    const parsed = parseShadowRequest(text);
    if (!parsed.ok) return reject(parsed.code, parsed.message);
    const { request } = parsed;
    if (request.method !== "update") {
      return reject(
        ShadowErrorCodes.METHOD_INVALID,
        `the API takes method "update", not "${request.method}"`,
      );
    }
    if (request.reported !== undefined) {
      return reject(
        ShadowErrorCodes.FORMAT,
        "only state.desired can be set through the API; the device owns reported",
      );
    }
    if (request.desired === undefined && request.version !== -1) {
      return reject(ShadowErrorCodes.REPORTED_MISSING, "state.desired is missing");
    }
    const change: ShadowRequestBody & { method: "update" } =
      request.version === 0 ? { method: "update", desired: request.desired ?? "clear" } : request;
    const current = this.store.get(productKey, deviceName) ?? emptyDocument();
    const result = applyChange(current, change, {
      now: this.seconds(),
      replaceDesired: !opts.delta,
    });
    if (!result.ok) return reject(result.code, result.message);
    this.store.put(productKey, deviceName, result.document);
    this.log.info(
      { productKey, deviceName, version: result.document.version, delta: opts.delta },
      "desired updated through the API",
    );
    if (!result.desiredSet) return { ok: true, version: result.document.version };
    const control = await this.pushControl(device, result.document);
    return { ok: true, version: result.document.version, control };
  }

  private answerGet(device: Device, topic: string, clientToken: string | undefined): void {
    const doc = this.store.get(device.productKey, device.deviceName);
    const token = clientToken === undefined ? {} : { clientToken };
    if (doc === undefined || isEmpty(doc.state)) {
      // 407 "shadow document is empty", which iotkit treats as success. The stored version goes
      // along so that a client can continue (version + 1) instead of looping on 409 -> get.
      this.rejected(
        device,
        topic,
        ShadowErrorCodes.DOCUMENT_EMPTY,
        "shadow document is empty",
        clientToken,
        doc?.version ?? 0,
      );
      return;
    }
    void this.send(device, {
      method: "reply",
      payload: {
        status: "success",
        state: doc.state,
        metadata: doc.metadata,
        version: doc.version,
      },
      version: doc.version,
      timestamp: this.seconds(),
      ...token,
    });
  }

  private rejected(
    device: Device,
    topic: string,
    code: ShadowErrorCode,
    message: string,
    clientToken: string | undefined,
    version?: number,
  ): void {
    const level =
      code === ShadowErrorCodes.VERSION_CONFLICT || code === ShadowErrorCodes.DOCUMENT_EMPTY
        ? "info"
        : "warn";
    this.log[level]({ code: codeFor(code), topic, shadowCode: code }, `shadow request: ${message}`);
    void this.send(device, {
      method: "reply",
      payload: { status: "error", content: { errorcode: String(code), errormessage: message } },
      ...(version === undefined ? {} : { version }),
      timestamp: this.seconds(),
      ...(clientToken === undefined ? {} : { clientToken }),
    });
  }

  /**
   * Alibaba pushes control only to an online device (1.3); an offline one must `get` on
   * reconnect. Through an external broker the service cannot see who listens, so it publishes
   * anyway: a client with a persistent session may then get the push queued for it.
   */
  private async pushControl(device: Device, doc: CloudShadowDocument): Promise<ControlEvent> {
    const online = this.transport.isOnline(device.productKey, device.deviceName);
    const base = { ...device, version: doc.version, online };
    if (online === false) {
      this.log.debug({ ...base }, "device offline: control not pushed");
      const event: ControlEvent = { ...base, published: false };
      this.emit("control", event);
      return event;
    }
    const published = await this.send(device, {
      method: "control",
      payload: {
        status: "success",
        state: doc.state,
        metadata: doc.metadata,
      },
      version: doc.version,
      timestamp: this.seconds(),
    });
    const event: ControlEvent = { ...base, published };
    this.emit("control", event);
    return event;
  }

  /** Publishes on the device's get topic; resolves false (logged) if the broker refused it. */
  private async send(device: Device, message: ShadowReply): Promise<boolean> {
    const topic = shadowGetTopic(device.productKey, device.deviceName);
    try {
      await this.transport.publish(topic, JSON.stringify(message));
      return true;
    } catch (e) {
      this.log.warn(
        {
          code: ErrorCodes.CLOUD_PUBLISH,
          topic,
          method: message.method,
          err: (e as Error).message,
        },
        "could not publish to the broker",
      );
      return false;
    }
  }

  private seconds(): number {
    return Math.floor(this.now() / 1000);
  }
}

const isEmpty = (state: ShadowState): boolean =>
  state.desired === undefined && state.reported === undefined;

function codeFor(shadowCode: ShadowErrorCode): string {
  return shadowCode === ShadowErrorCodes.VERSION_CONFLICT
    ? ErrorCodes.CLOUD_VERSION_CONFLICT
    : ErrorCodes.CLOUD_REQUEST_INVALID;
}
