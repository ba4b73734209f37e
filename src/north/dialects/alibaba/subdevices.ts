import { timingSafeEqual } from "node:crypto";
import { isSignMethod, sign, type SignMethod } from "./sign.js";

/**
 * The wire format of a gateway's sub-devices on Alibaba Cloud IoT (shadow-protocol.md 2.3):
 * topology (get, add, delete), dynamic registration, session login and logout, the cloud's
 * topology notices and session errors. Spoken by the gateway (the sub-device sessions) and by
 * the local cloud service; both read and write it through this file only.
 */

/** Requests on the gateway's `/sys` topics (Alink) and its `/ext/session` topics. */
export type SubDeviceMethod =
  | "thing.topo.get"
  | "thing.topo.add"
  | "thing.topo.delete"
  | "thing.sub.register"
  | "combine.login"
  | "combine.batch_login"
  | "combine.logout"
  | "combine.batch_logout";

const METHOD_PATHS: Readonly<Record<SubDeviceMethod, readonly ["sys" | "ext", string]>> = {
  "thing.topo.get": ["sys", "thing/topo/get"],
  "thing.topo.add": ["sys", "thing/topo/add"],
  "thing.topo.delete": ["sys", "thing/topo/delete"],
  "thing.sub.register": ["sys", "thing/sub/register"],
  "combine.login": ["ext", "combine/login"],
  "combine.batch_login": ["ext", "combine/batch_login"],
  "combine.logout": ["ext", "combine/logout"],
  "combine.batch_logout": ["ext", "combine/batch_logout"],
};

export const SUB_DEVICE_METHODS = Object.keys(METHOD_PATHS) as readonly SubDeviceMethod[];

/** At most this many entries per request (shadow-protocol.md 2.3). */
export const MAX_TOPO_ADD = 30;
export const MAX_BATCH_LOGIN = 50;
/** An old doc: more than 5 logins of one sub-device per minute are refused with 429. */
export const MAX_LOGINS_PER_MINUTE = 5;

/** The topic a request goes to. */
export function requestTopic(method: SubDeviceMethod, gwPk: string, gwDn: string): string {
  const [root, tail] = METHOD_PATHS[method];
  return root === "sys" ? `/sys/${gwPk}/${gwDn}/${tail}` : `/ext/session/${gwPk}/${gwDn}/${tail}`;
}

/** The topic its reply comes back on. */
export const replyTopic = (method: SubDeviceMethod, gwPk: string, gwDn: string): string =>
  `${requestTopic(method, gwPk, gwDn)}_reply`;

/** The cloud's session errors for the gateway's connection (520 device session error, ...). */
export const extErrorTopic = (gwPk: string, gwDn: string): string => `/ext/error/${gwPk}/${gwDn}`;

/** The cloud's topology notices (a sub-device created, deleted, enabled, disabled). */
export const topoChangeTopic = (gwPk: string, gwDn: string): string =>
  `/sys/${gwPk}/${gwDn}/thing/topo/change`;

/**
 * Every reply, notice and error the gateway subscribes to, each by its own name: the platform
 * grants a device its own topics, and no wildcard would bring the gateway's requests back to it.
 */
export const gatewaySubscriptions = (gwPk: string, gwDn: string): string[] => [
  ...SUB_DEVICE_METHODS.map((m) => replyTopic(m, gwPk, gwDn)),
  topoChangeTopic(gwPk, gwDn),
  extErrorTopic(gwPk, gwDn),
];

/** The method a request or reply topic carries, and the gateway it belongs to. */
export function parseSubDeviceTopic(
  topic: string,
):
  | { kind: "request" | "reply"; method: SubDeviceMethod; gwPk: string; gwDn: string }
  | { kind: "error" | "change"; gwPk: string; gwDn: string }
  | undefined {
  const ext = /^\/ext\/error\/([^/]+)\/([^/]+)$/.exec(topic);
  if (ext) return { kind: "error", gwPk: ext[1] ?? "", gwDn: ext[2] ?? "" };
  const m = /^\/(sys|ext\/session)\/([^/]+)\/([^/]+)\/(.+?)(_reply)?$/.exec(topic);
  if (!m) return undefined;
  const [, root, gwPk = "", gwDn = "", tail, reply] = m;
  if (root === "sys" && tail === "thing/topo/change" && !reply)
    return { kind: "change", gwPk, gwDn };
  const method = SUB_DEVICE_METHODS.find((k) => {
    const [r, t] = METHOD_PATHS[k];
    return t === tail && (r === "sys") === (root === "sys");
  });
  return method && { kind: reply ? "reply" : "request", method, gwPk, gwDn };
}

/** A device's name on the platform. */
export interface DeviceKey {
  readonly productKey: string;
  readonly deviceName: string;
}

export const deviceKey = (d: DeviceKey): string => `${d.productKey}/${d.deviceName}`;

/** A sub-device with its own secret: what signs its topology entry and its login. */
export interface SubDeviceIdentity extends DeviceKey {
  readonly deviceSecret: string;
}

/** The signed part of a topology entry or a login (names sorted; shadow-protocol.md 2.3). */
export interface SignedEntry extends DeviceKey {
  readonly clientId: string;
  readonly timestamp: string;
  readonly sign: string;
}

/** Signs a sub-device's entry; the clientId is `pk&dn`, as Alibaba's JS SDK sends it. */
export function signedEntry(
  d: SubDeviceIdentity,
  signMethod: SignMethod,
  now: number,
): SignedEntry {
  const clientId = `${d.productKey}&${d.deviceName}`;
  const timestamp = String(now);
  return {
    productKey: d.productKey,
    deviceName: d.deviceName,
    clientId,
    timestamp,
    sign: sign(signMethod, d.deviceSecret, {
      clientId,
      deviceName: d.deviceName,
      productKey: d.productKey,
      timestamp,
    }),
  };
}

/** Whether an entry is signed with the secret (the cloud's check); hex case does not matter. */
export function verifyEntry(
  entry: {
    productKey: string;
    deviceName: string;
    clientId: string;
    timestamp: string;
    sign: string;
  },
  signMethod: string,
  secret: string,
): boolean {
  // The platform accepts the method in any case (the JS SDK sends hmacSha256).
  const method = signMethod.toLowerCase();
  if (!isSignMethod(method)) return false;
  const expected = Buffer.from(sign(method, secret, entry));
  const given = Buffer.from(entry.sign.toLowerCase());
  // Constant time, like the CONNECT check: the sign is a secret-derived value.
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** `thing.topo.add` params: one signed entry per device, with its sign method. */
export const topoAddParams = (entries: readonly SignedEntry[], signMethod: SignMethod) =>
  entries.map((e) => ({ ...e, signmethod: signMethod }));

/** `combine.login` params. */
export const loginParams = (e: SignedEntry, signMethod: SignMethod) => ({
  ...e,
  signMethod,
  cleanSession: "true",
});

/** `combine.batch_login` params: one sign method for the list. */
export const batchLoginParams = (entries: readonly SignedEntry[], signMethod: SignMethod) => ({
  signMethod,
  deviceList: entries.map((e) => ({ ...e, cleanSession: "true" })),
});

/** The Alink envelope of a request. */
export function encodeRequest(id: string, method: SubDeviceMethod, params: unknown): string {
  return JSON.stringify({ id, version: "1.0", params, method });
}

/** A reply: `code` 200 is success; `data` is whatever the method returns. */
export interface SubDeviceReply {
  readonly id: string;
  readonly code: number;
  readonly message: string;
  readonly data: unknown;
}

export function encodeReply(r: SubDeviceReply): string {
  return JSON.stringify({ id: r.id, code: r.code, message: r.message, data: r.data });
}

type Decoded<T> = { ok: true; value: T } | { ok: false; reason: string };

function parseObject(payload: Buffer | string): Decoded<Record<string, unknown>> {
  let v: unknown;
  try {
    v = JSON.parse(typeof payload === "string" ? payload : payload.toString("utf8"));
  } catch {
    return { ok: false, reason: "not JSON" };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    return { ok: false, reason: "not a JSON object" };
  return { ok: true, value: v as Record<string, unknown> };
}

/** A reply as the gateway reads it; never throws. */
export function decodeReply(payload: Buffer | string): Decoded<SubDeviceReply> {
  const o = parseObject(payload);
  if (!o.ok) return o;
  const { id, code, message, data } = o.value;
  if (typeof id !== "string" && typeof id !== "number") return { ok: false, reason: "no id" };
  if (typeof code !== "number" || !Number.isInteger(code)) return { ok: false, reason: "no code" };
  return {
    ok: true,
    value: {
      id: String(id),
      code,
      message: typeof message === "string" ? message : "",
      data: data ?? null,
    },
  };
}

/** A request as the cloud reads it; never throws. */
export function decodeRequest(
  payload: Buffer | string,
): Decoded<{ id: string; method: string | undefined; params: unknown }> {
  const o = parseObject(payload);
  if (!o.ok) return o;
  const { id, method, params } = o.value;
  if (typeof id !== "string" || !/^\d{1,10}$/.test(id) || Number(id) > 4_294_967_295)
    return { ok: false, reason: "id is not a decimal string in 0..4294967295" };
  return {
    ok: true,
    value: { id, method: typeof method === "string" ? method : undefined, params },
  };
}

/** A list of devices in `data` or `params` (topo get/add replies, subList); [] when absent. */
export function deviceList(v: unknown): DeviceKey[] | undefined {
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) return undefined;
  const out: DeviceKey[] = [];
  for (const e of v) {
    if (typeof e !== "object" || e === null) return undefined;
    const { productKey, deviceName } = e as Record<string, unknown>;
    if (typeof productKey !== "string" || typeof deviceName !== "string") return undefined;
    out.push({ productKey, deviceName });
  }
  return out;
}

/** `/ext/error` and `thing.topo.change`, decoded. */
export type CloudNotice =
  | {
      readonly kind: "error";
      readonly code: number;
      readonly message: string;
      readonly device?: DeviceKey;
    }
  | { readonly kind: "change"; readonly status: number; readonly devices: readonly DeviceKey[] };

/** topo/change statuses (shadow-protocol.md 2.3). */
export const TopoStatus = { CREATED: 0, DELETED: 1, ENABLED: 2, DISABLED: 8 } as const;

export function decodeExtError(payload: Buffer | string): Decoded<CloudNotice> {
  const o = parseObject(payload);
  if (!o.ok) return o;
  const { code, message, data } = o.value;
  if (typeof code !== "number") return { ok: false, reason: "no code" };
  let device: DeviceKey | undefined;
  if (typeof data === "object" && data !== null) {
    const { productKey, deviceName } = data as Record<string, unknown>;
    if (typeof productKey === "string" && typeof deviceName === "string")
      device = { productKey, deviceName };
  }
  return {
    ok: true,
    value: {
      kind: "error",
      code,
      message: typeof message === "string" ? message : "",
      ...(device && { device }),
    },
  };
}

export function decodeTopoChange(payload: Buffer | string): Decoded<CloudNotice> {
  const o = parseObject(payload);
  if (!o.ok) return o;
  const params = o.value.params;
  if (typeof params !== "object" || params === null) return { ok: false, reason: "no params" };
  const { status, subList } = params as Record<string, unknown>;
  if (typeof status !== "number") return { ok: false, reason: "no status" };
  const devices = deviceList(subList);
  if (!devices) return { ok: false, reason: "subList is not a list of devices" };
  return { ok: true, value: { kind: "change", status, devices } };
}

/** Reply and error codes of sub-device requests (shadow-protocol.md 2.3). */
export const SubDeviceCodes = {
  SUCCESS: 200,
  BAD_SIGN_TOPO: 401,
  TOO_MANY_ONLINE: 428,
  TOO_MANY_REQUESTS: 429,
  PARAMS: 460,
  SERVER: 500,
  SESSION: 520,
  DELETED: 521,
  DISABLED: 522,
  NOT_FOUND: 6100,
  BAD_SIGN: 6287,
  NO_TOPOLOGY: 6401,
  CANNOT_ADD_SELF: 6402,
} as const;

/**
 * Codes after which logging in again cannot help until an operator acts (enables the device,
 * fixes its secret, adds its topology, raises the online limit): reported, not retried in a loop.
 */
export const REFUSAL_CODES: ReadonlySet<number> = new Set([
  SubDeviceCodes.BAD_SIGN_TOPO,
  SubDeviceCodes.TOO_MANY_ONLINE,
  SubDeviceCodes.PARAMS,
  SubDeviceCodes.DELETED,
  SubDeviceCodes.DISABLED,
  SubDeviceCodes.NOT_FOUND,
  SubDeviceCodes.BAD_SIGN,
  SubDeviceCodes.NO_TOPOLOGY,
]);
