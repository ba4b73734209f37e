import { EventEmitter } from "node:events";
import { ErrorCodes } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import {
  ShadowErrorCodes,
  type ShadowReply,
  type ShadowState,
} from "../../north/dialects/alibaba/messages.js";
import { TopoStatus, deviceKey, type DeviceKey } from "../../north/dialects/alibaba/subdevices.js";
import { parseShadowTopic, shadowGetTopic } from "../../north/dialects/alibaba/topics.js";
import { GatewayRequests, type SessionEvent } from "./gateway-requests.js";
import { SubDeviceSessions, type DeviceSecret, type MessageOrigin } from "./sessions.js";
import {
  applyChange,
  emptyDocument,
  parseShadowRequest,
  type CloudShadowDocument,
  type ShadowErrorCode,
  type ShadowRequestBody,
} from "./shadow-document.js";
import type { ShadowStore } from "./store.js";
import type { ShadowTransport } from "./transport.js";

export { SERVICE_FILTERS, type ShadowTransport } from "./transport.js";

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
  /** A gateway's sub-device request answered, or a shadow request refused for want of a session. */
  session: [SessionEvent];
}

/** The operator's switch: whether it changed, and the gateway told on its topo/change topic. */
export interface SwitchOutcome {
  readonly changed: boolean;
  readonly gateway: DeviceKey | undefined;
  readonly notified: boolean;
}

/** What the service knows of a device. */
export interface DeviceStatus {
  /** It has a secret, a topology, a shadow or a disabled mark. */
  readonly known: boolean;
  readonly disabled: boolean;
  /** The gateway whose topology holds it. */
  readonly gateway: DeviceKey | undefined;
  /** The gateway it is logged in through. */
  readonly session: DeviceKey | undefined;
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
  /** Every device's secret, gateways and sub-devices alike: signs of topology adds and logins. */
  readonly deviceSecrets?: readonly DeviceSecret[];
  /** Shadow requests need the device's own connection or a sub-device login (520 otherwise). */
  readonly strictSessions?: boolean;
  /** Sub-devices online under one gateway before logins get 428. Default 2000 (Alibaba's). */
  readonly maxSubDevicesOnline?: number;
}

/** Alibaba's current limit of sub-devices online under one gateway (shadow-protocol.md 2.3). */
export const DEFAULT_MAX_SUB_DEVICES_ONLINE = 2000;

interface Device {
  readonly productKey: string;
  readonly deviceName: string;
}

/**
 * The service side of the Alibaba shadow protocol (shadow-protocol.md 1.3): answers requests
 * on /shadow/update/{pk}/{dn} on /shadow/get/{pk}/{dn} and pushes `control` when desired
 * changes. Every request is handled to the end synchronously (SQLite is synchronous), so
 * requests for one shadow are applied strictly in arrival order. The gateway side of
 * sub-devices (topology, logins, strict sessions) is in sessions.ts and gateway-requests.ts.
 */
export class ShadowService extends EventEmitter<ShadowServiceEvents> {
  private readonly store: ShadowStore;
  private readonly transport: ShadowTransport;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly sessions: SubDeviceSessions;
  private readonly gateways: GatewayRequests;

  constructor(opts: ShadowServiceOptions) {
    super();
    this.store = opts.store;
    this.transport = opts.transport;
    this.log = opts.logger;
    this.now = opts.now ?? Date.now;
    this.sessions = new SubDeviceSessions({
      store: opts.store,
      secrets: opts.deviceSecrets ?? [],
      now: this.now,
      strict: opts.strictSessions ?? false,
      maxOnline: opts.maxSubDevicesOnline ?? DEFAULT_MAX_SUB_DEVICES_ONLINE,
      logger: opts.logger,
    });
    this.gateways = new GatewayRequests({
      sessions: this.sessions,
      publish: (topic, payload) => this.publish(topic, payload, "sub-device"),
      emit: (e) => this.emit("session", e),
      logger: opts.logger,
    });
  }

  /** The stored document, or undefined when the shadow was never written. */
  getShadow(productKey: string, deviceName: string): CloudShadowDocument | undefined {
    return this.store.get(productKey, deviceName);
  }

  /** Every stored shadow's key. */
  shadows(): Array<{ productKey: string; deviceName: string }> {
    return this.store.keys();
  }

  /** Whether the device is logged in as a sub-device (through any gateway). */
  isLoggedIn(productKey: string, deviceName: string): boolean {
    return this.sessions.sessionOf({ productKey, deviceName }) !== undefined;
  }

  /** The sub-devices in a gateway's topology, sorted. */
  topology(gwProductKey: string, gwDeviceName: string): DeviceKey[] {
    return this.sessions.topology({ productKey: gwProductKey, deviceName: gwDeviceName });
  }

  /** combine.login and combine.batch_login messages received so far, well-formed or not. */
  get loginMessages(): number {
    return this.gateways.loginMessages;
  }

  /** Ends a sub-device's session, as the platform may; false when it had none. */
  dropSession(productKey: string, deviceName: string): boolean {
    return this.sessions.drop({ productKey, deviceName });
  }

  deviceStatus(productKey: string, deviceName: string): DeviceStatus {
    const d = { productKey, deviceName };
    const disabled = this.sessions.isDisabled(d);
    const gateway = this.sessions.gatewayOf(d);
    const known =
      disabled ||
      gateway !== undefined ||
      this.sessions.secretOf(d) !== undefined ||
      this.store.get(productKey, deviceName) !== undefined;
    return { known, disabled, gateway, session: this.sessions.sessionOf(d) };
  }

  /**
   * The operator disables or enables a device: disabling ends its session (its logins then get
   * 522 and its shadow requests are refused); the gateway whose topology holds it is told on
   * its topo/change topic (status 8 disabled, 2 enabled) when the switch changed.
   */
  async setDisabled(
    productKey: string,
    deviceName: string,
    disabled: boolean,
  ): Promise<SwitchOutcome> {
    const d = { productKey, deviceName };
    const changed = this.sessions.setDisabled(d, disabled);
    const gateway = this.sessions.gatewayOf(d);
    this.log.info(
      { productKey, deviceName, gateway: gateway && deviceKey(gateway), changed },
      disabled ? "device disabled" : "device enabled",
    );
    if (!changed || gateway === undefined) return { changed, gateway, notified: false };
    const status = disabled ? TopoStatus.DISABLED : TopoStatus.ENABLED;
    const notified = await this.gateways.topoChange(gateway, status, [d]);
    return { changed, gateway, notified };
  }

  /** A connection closed (embedded broker): the sub-device sessions it carried end. */
  readonly connectionClosed = (connection: string): void => {
    this.sessions.connectionClosed(connection);
  };

  /**
   * Handles one message published on a topic of SERVICE_FILTERS, with its publisher when the
   * transport knows it. Never throws.
   */
  readonly handleMessage = (topic: string, payload: Buffer, origin?: MessageOrigin): void => {
    const target = parseShadowTopic(topic);
    if (target === undefined || target.kind !== "update") {
      if (this.gateways.handle(topic, payload, origin)) return;
      // The reply topic is derived from the request topic; without one there is nobody to answer.
      this.log.warn(
        { code: ErrorCodes.CLOUD_REQUEST_INVALID, topic, bytes: payload.length },
        "message on a topic that is not /shadow/update/{productKey}/{deviceName}; not answered",
      );
      return;
    }
    const device: Device = { productKey: target.productKey, deviceName: target.deviceName };
    const admission = this.admit(device, origin);
    if (!admission.ok) {
      this.gateways.sessionError(device, topic, admission.reason, admission.notify);
      return;
    }
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

  private admit(device: Device, origin: MessageOrigin | undefined) {
    try {
      return this.sessions.admit(device, origin);
    } catch (e) {
      // The store could not say whether the device is disabled: the request goes on, and where
      // it is served the store's failure is logged (once) and answered 500.
      this.log.debug({ ...device, err: (e as Error).message }, "session check failed");
      return { ok: true } as const;
    }
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
  private send(device: Device, message: ShadowReply): Promise<boolean> {
    const topic = shadowGetTopic(device.productKey, device.deviceName);
    return this.publish(topic, JSON.stringify(message), message.method);
  }

  /** Resolves false (logged) if the broker refused the message. */
  private async publish(topic: string, payload: string, method: string): Promise<boolean> {
    try {
      await this.transport.publish(topic, payload);
      return true;
    } catch (e) {
      this.log.warn(
        { code: ErrorCodes.CLOUD_PUBLISH, topic, method, err: (e as Error).message },
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
