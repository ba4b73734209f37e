import { createHash } from "node:crypto";
import { ErrorCodes } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import {
  MAX_BATCH_LOGIN,
  MAX_TOPO_ADD,
  SUB_DEVICE_METHODS,
  SubDeviceCodes,
  decodeRequest,
  deviceKey,
  encodeReply,
  extErrorTopic,
  parseSubDeviceTopic,
  replyTopic,
  requestTopic,
  topoChangeTopic,
  type DeviceKey,
  type SubDeviceMethod,
} from "../../north/dialects/alibaba/subdevices.js";
import { BadParams, devicesOf, list, looseId, object, signedEntry } from "./gateway-params.js";
import {
  sameDevice,
  type MessageOrigin,
  type Outcome,
  type SubDeviceSessions,
} from "./sessions.js";

/**
 * The gateway's requests about its sub-devices (shadow-protocol.md 2.3), read off the wire and
 * answered on `<topic>_reply` with `{id, code, message, data}`. Nothing a gateway sends can make
 * this throw: a malformed request is answered 460 when it has an id, otherwise logged and left.
 */

/** The filters a transport subscribes to for the gateways' requests: requests only, never the
 * service's own `_reply` topics, so that no reply comes back to it as a request. */
export const GATEWAY_REQUEST_FILTERS: readonly string[] = SUB_DEVICE_METHODS.map((m) =>
  requestTopic(m, "+", "+"),
);

export type SessionEventKind =
  | "topo_get"
  | "topo_add"
  | "topo_delete"
  | "register"
  | "login"
  | "batch_login"
  | "logout"
  | "batch_logout"
  /** A shadow request refused for want of a session (or a disabled device): not applied. */
  | "refused";

/** What the service saw of a gateway's request, and the code it answered. */
export interface SessionEvent {
  readonly kind: SessionEventKind;
  readonly gateway: DeviceKey;
  /** The devices the request named (for "refused", the device whose shadow it was). */
  readonly devices: readonly DeviceKey[];
  readonly code: number;
}

const KINDS: Readonly<Record<SubDeviceMethod, SessionEventKind>> = {
  "thing.topo.get": "topo_get",
  "thing.topo.add": "topo_add",
  "thing.topo.delete": "topo_delete",
  "thing.sub.register": "register",
  "combine.login": "login",
  "combine.batch_login": "batch_login",
  "combine.logout": "logout",
  "combine.batch_logout": "batch_logout",
};

const MESSAGES: Readonly<Record<number, string>> = {
  [SubDeviceCodes.SUCCESS]: "success",
  [SubDeviceCodes.BAD_SIGN_TOPO]: "sign verification failed",
  [SubDeviceCodes.TOO_MANY_ONLINE]: "too many sub-devices online under the gateway",
  [SubDeviceCodes.TOO_MANY_REQUESTS]: "too many requests",
  [SubDeviceCodes.PARAMS]: "request parameter error",
  [SubDeviceCodes.SERVER]: "server error",
  [SubDeviceCodes.SESSION]: "device session error",
  [SubDeviceCodes.DISABLED]: "device disabled",
  [SubDeviceCodes.NOT_FOUND]: "device not found",
  [SubDeviceCodes.BAD_SIGN]: "invalid sign",
  [SubDeviceCodes.NO_TOPOLOGY]: "topological relation not found",
  [SubDeviceCodes.CANNOT_ADD_SELF]: "a gateway cannot add itself",
};

/** How many (connection, topic) pairs the once-only warning remembers. */
const MAX_REMEMBERED = 1000;

/** What a method answers: the reply's code and data, and the devices for the event. */
interface Answer {
  readonly code: number;
  readonly data: unknown;
  readonly devices: readonly DeviceKey[];
}

export interface GatewayRequestsOptions {
  readonly sessions: SubDeviceSessions;
  /** Publishes; resolves false (already logged) when the broker refused. */
  readonly publish: (topic: string, payload: string) => Promise<boolean>;
  readonly emit: (event: SessionEvent) => void;
  readonly logger: Logger;
}

export class GatewayRequests {
  private readonly sessions: SubDeviceSessions;
  private readonly publish: GatewayRequestsOptions["publish"];
  private readonly emit: GatewayRequestsOptions["emit"];
  private readonly log: Logger;
  /** Connections already told off for a gateway topic not their own (logged once each). */
  private readonly trespassers = new Set<string>();
  /** combine.login and combine.batch_login messages received, well-formed or not. */
  loginMessages = 0;
  /** Ids of the service's own notices (topo/change): unique per run, as Alink ids must be. */
  private noticeId = 0;

  constructor(opts: GatewayRequestsOptions) {
    this.sessions = opts.sessions;
    this.publish = opts.publish;
    this.emit = opts.emit;
    this.log = opts.logger;
  }

  /** Handles a message if its topic is a gateway's; false when it is not one. Never throws. */
  handle(topic: string, payload: Buffer, origin: MessageOrigin | undefined): boolean {
    const t = parseSubDeviceTopic(topic);
    if (t === undefined) return false;
    if (t.kind !== "request") {
      // A reply or notice is the service's own word (or another client's); nothing to answer.
      this.log.debug({ topic }, "gateway topic that carries no request; ignored");
      return true;
    }
    const gateway: DeviceKey = { productKey: t.gwPk, deviceName: t.gwDn };
    if (origin?.device !== undefined && !sameDevice(origin.device, gateway)) {
      // The platform grants a device its own topics only; it would not deliver this either.
      const once = `${origin.connection} ${topic}`;
      if (!this.trespassers.has(once)) {
        // Bounded: a client cycling through topics forgets its oldest warnings, nothing more.
        if (this.trespassers.size >= MAX_REMEMBERED) this.trespassers.clear();
        this.trespassers.add(once);
        this.log.warn(
          {
            code: ErrorCodes.CLOUD_REQUEST_INVALID,
            topic,
            productKey: origin.device.productKey,
            deviceName: origin.device.deviceName,
          },
          "a device published on another gateway's topic; not answered",
        );
      }
      return true;
    }
    if (t.method === "combine.login" || t.method === "combine.batch_login") this.loginMessages++;
    const request = decodeRequest(payload);
    if (!request.ok) {
      const id = looseId(payload);
      this.log.warn(
        { code: ErrorCodes.CLOUD_REQUEST_INVALID, topic, bytes: payload.length },
        `gateway request: ${request.reason}; ${id === undefined ? "not answered" : "answered 460"}`,
      );
      if (id !== undefined) this.reply(t.method, gateway, id, params460(request.reason));
      return true;
    }
    this.sessions.noteGateway(origin, gateway);
    let answer: Answer;
    try {
      answer = this.run(t.method, gateway, request.value.params, origin);
    } catch (e) {
      if (e instanceof BadParams) {
        this.log.warn(
          { code: ErrorCodes.CLOUD_REQUEST_INVALID, topic, id: request.value.id },
          `gateway request: ${e.message}; answered 460`,
        );
        answer = params460(e.message);
      } else {
        // A store failure (disk full, locked file): answered, logged, and the broker goes on.
        this.log.error(
          { code: ErrorCodes.CLOUD_INTERNAL, topic, err: (e as Error).message },
          "gateway request failed",
        );
        answer = { code: SubDeviceCodes.SERVER, data: null, devices: [] };
      }
    }
    this.log.info(
      {
        topic,
        gateway: deviceKey(gateway),
        devices: answer.devices.map(deviceKey),
        replyCode: answer.code,
      },
      `${t.method} answered ${answer.code}`,
    );
    this.reply(t.method, gateway, request.value.id, answer);
    this.emit({ kind: KINDS[t.method], gateway, devices: answer.devices, code: answer.code });
    return true;
  }

  /** Tells a gateway of a change to its sub-devices; resolves false if the broker refused. */
  topoChange(gateway: DeviceKey, status: number, devices: readonly DeviceKey[]): Promise<boolean> {
    const notice = {
      id: String(++this.noticeId),
      version: "1.0",
      method: "thing.topo.change",
      params: { status, subList: devices.map(keyOf) },
    };
    return this.publish(
      topoChangeTopic(gateway.productKey, gateway.deviceName),
      JSON.stringify(notice),
    );
  }

  /**
   * A shadow request without a session: not applied, and answered as the platform does, with
   * 520 on the /ext/error topic of the gateway whose connection sent it (sessions.ts says who
   * that is when the transport cannot tell).
   */
  sessionError(device: DeviceKey, topic: string, reason: string, notify: DeviceKey | undefined) {
    const d = keyOf(device);
    this.log.info(
      { ...d, topic, gateway: notify && deviceKey(notify), reason },
      notify === undefined
        ? "shadow request refused (device session error); no gateway to tell"
        : "shadow request refused (device session error)",
    );
    const code = SubDeviceCodes.SESSION;
    if (notify !== undefined) {
      const message = { code, message: MESSAGES[code], data: d };
      void this.publish(
        extErrorTopic(notify.productKey, notify.deviceName),
        JSON.stringify(message),
      );
    }
    this.emit({ kind: "refused", gateway: notify ?? d, devices: [d], code });
  }

  private run(
    method: SubDeviceMethod,
    gateway: DeviceKey,
    params: unknown,
    origin: MessageOrigin | undefined,
  ): Answer {
    const s = this.sessions;
    switch (method) {
      case "thing.topo.get": {
        const list = s.topology(gateway);
        return { code: SubDeviceCodes.SUCCESS, data: list, devices: list };
      }
      case "thing.topo.add": {
        const entries = list(params, MAX_TOPO_ADD).map((e) => signedEntry(e, undefined));
        return listAnswer(s.addTopology(gateway, entries), entries);
      }
      case "thing.topo.delete": {
        const devices = devicesOf(params);
        return listAnswer(s.deleteTopology(gateway, devices), devices);
      }
      case "thing.sub.register":
        return this.register(gateway, devicesOf(params));
      case "combine.login": {
        const entry = signedEntry(params, undefined);
        return oneAnswer(s.login(gateway, [entry], origin), entry);
      }
      case "combine.batch_login": {
        const p = object(params, "params");
        const entries = list(p.deviceList, MAX_BATCH_LOGIN, "deviceList").map((e) =>
          signedEntry(e, p.signMethod),
        );
        const keys = new Set(entries.map(deviceKey));
        if (keys.size < entries.length) throw new BadParams("deviceList names a device twice");
        return listAnswer(s.login(gateway, entries, origin), entries);
      }
      case "combine.logout": {
        const device = devicesOf([params])[0] as DeviceKey;
        return oneAnswer(s.logout(gateway, [device]), device);
      }
      case "combine.batch_logout": {
        const raw = Array.isArray(params) ? params : object(params, "params").deviceList;
        const devices = devicesOf(raw);
        return listAnswer(s.logout(gateway, devices), devices);
      }
    }
  }

  /**
   * thing.sub.register: the secret of each device the service knows (it stands for a product
   * that allows dynamic registration), all or nothing. The secrets go only into the reply.
   */
  private register(gateway: DeviceKey, devices: readonly DeviceKey[]): Answer {
    const failed = devices
      .map((d) => ({
        ...d,
        code: sameDevice(d, gateway)
          ? SubDeviceCodes.CANNOT_ADD_SELF
          : this.sessions.secretOf(d) === undefined
            ? SubDeviceCodes.NOT_FOUND
            : SubDeviceCodes.SUCCESS,
      }))
      .filter((d) => d.code !== SubDeviceCodes.SUCCESS);
    if (failed[0] !== undefined) return { code: failed[0].code, data: failed, devices };
    const data = devices.map((d) => ({
      iotId: iotId(d),
      productKey: d.productKey,
      deviceName: d.deviceName,
      deviceSecret: this.sessions.secretOf(d) ?? "",
    }));
    return { code: SubDeviceCodes.SUCCESS, data, devices };
  }

  private reply(method: SubDeviceMethod, gateway: DeviceKey, id: string, answer: Answer): void {
    const payload = encodeReply({
      id,
      code: answer.code,
      message: MESSAGES[answer.code] ?? "error",
      data: answer.data,
    });
    void this.publish(replyTopic(method, gateway.productKey, gateway.deviceName), payload);
  }
}

const params460 = (reason: string): Answer => ({
  code: SubDeviceCodes.PARAMS,
  data: { reason },
  devices: [],
});

const keyOf = (d: DeviceKey): DeviceKey => ({ productKey: d.productKey, deviceName: d.deviceName });

/** A list request's answer: the devices on success, the failed ones (with codes) otherwise. */
function listAnswer(outcome: Outcome, devices: readonly DeviceKey[]): Answer {
  const keys = devices.map(keyOf);
  return outcome.code === SubDeviceCodes.SUCCESS
    ? { code: outcome.code, data: keys, devices: keys }
    : { code: outcome.code, data: outcome.failed, devices: keys };
}

/** A one-device request's answer: `data` names the device either way. */
function oneAnswer(outcome: Outcome, d: DeviceKey): Answer {
  const device = keyOf(d);
  return { code: outcome.code, data: device, devices: [device] };
}

/** A platform-style iotId: stable per device, so a test or a gateway can compare them. */
const iotId = (d: DeviceKey): string =>
  createHash("sha256").update(deviceKey(d)).digest("base64url").slice(0, 20);
