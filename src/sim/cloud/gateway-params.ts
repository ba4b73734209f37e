import { isSignMethod } from "../../north/dialects/alibaba/sign.js";
import { deviceList, type DeviceKey } from "../../north/dialects/alibaba/subdevices.js";
import type { SignedRequestEntry } from "./sessions.js";

/**
 * Reading the params of a gateway's requests (shadow-protocol.md 2.3) without trusting them:
 * every reader returns a checked value or throws BadParams, which the service answers with 460.
 */

/** Thrown by the readers; its message names the problem (never a secret or a sign). */
export class BadParams extends Error {}

/** The id of a message that failed decodeRequest, if it has one worth answering. */
export function looseId(payload: Buffer): string | undefined {
  try {
    const v: unknown = JSON.parse(payload.toString("utf8"));
    if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
    const id = (v as Record<string, unknown>).id;
    if (typeof id === "string" && id.length > 0 && id.length <= 64) return id;
    if (typeof id === "number" && Number.isFinite(id)) return String(id);
  } catch {
    // Not JSON: nothing to answer.
  }
  return undefined;
}

export function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new BadParams(`${what} is not an object`);
  return v as Record<string, unknown>;
}

export function list(v: unknown, max: number, what = "params"): unknown[] {
  if (!Array.isArray(v)) throw new BadParams(`${what} is not a list`);
  if (v.length === 0) throw new BadParams(`${what} is empty`);
  if (v.length > max) throw new BadParams(`${what} has ${v.length} entries; at most ${max}`);
  return v;
}

/** A name that becomes a topic level (/shadow/update/{pk}/{dn}): no wildcard, no separator. */
function name(v: unknown, what: string): string {
  if (typeof v !== "string" || v === "" || /[/+#\0]/.test(v))
    throw new BadParams(`${what} is not a non-empty name without / + # or NUL`);
  return v;
}

export function devicesOf(v: unknown): DeviceKey[] {
  const devices = deviceList(v);
  if (devices === undefined) throw new BadParams("not a list of {productKey, deviceName}");
  if (devices.length === 0) throw new BadParams("the list of devices is empty");
  for (const d of devices) {
    name(d.productKey, "productKey");
    name(d.deviceName, "deviceName");
  }
  return devices;
}

/**
 * A signed entry. Its sign method is `signmethod` in a topology add and `signMethod` in a login
 * (as the docs spell them); a batch login names it once for the list (`fallback`).
 */
export function signedEntry(v: unknown, fallback: unknown): SignedRequestEntry {
  const e = object(v, "an entry");
  const productKey = name(e.productKey, "productKey");
  const deviceName = name(e.deviceName, "deviceName");
  const field = (k: string): string => {
    const x = e[k];
    if (typeof x !== "string" || x === "")
      throw new BadParams(`${k} of ${productKey}/${deviceName} is missing`);
    return x;
  };
  const ts = e.timestamp;
  // The timestamp is signed as sent: a string of digits, or a number (the JS SDK sends one).
  const timestamp =
    typeof ts === "string" && /^\d+$/.test(ts)
      ? ts
      : typeof ts === "number" && Number.isSafeInteger(ts) && ts >= 0
        ? String(ts)
        : undefined;
  if (timestamp === undefined)
    throw new BadParams(`timestamp of ${productKey}/${deviceName} is not a whole number`);
  const method = e.signmethod ?? e.signMethod ?? fallback;
  if (typeof method !== "string" || !isSignMethod(method.toLowerCase()))
    throw new BadParams(`sign method of ${productKey}/${deviceName} is not one we know`);
  return {
    productKey,
    deviceName,
    clientId: field("clientId"),
    timestamp,
    sign: field("sign"),
    signMethod: method,
  };
}
