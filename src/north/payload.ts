import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import { isJsonObject } from "../core/json.js";
import type { JsonObject, JsonValue } from "../core/types.js";

/**
 * Bytes from the cloud -> one JSON object, for every dialect's decoder: size cap before parsing,
 * strict UTF-8, JSON, and no "__proto__" key (JSON.parse makes it an own key, but any later copy
 * by assignment would set a prototype instead; no shadow attribute needs the name). Never throws.
 */
export function parseJsonObject(
  payload: Buffer | Uint8Array,
  maxBytes: number,
): { ok: true; value: JsonObject } | { ok: false; reason: string } {
  if (!(payload instanceof Uint8Array))
    return { ok: false, reason: "payload is not a byte buffer" };
  if (payload.byteLength > maxBytes) {
    return {
      ok: false,
      reason: `payload is ${payload.byteLength} bytes, over the ${maxBytes}-byte limit`,
    };
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return { ok: false, reason: "payload is not valid UTF-8" };
  }
  let raw: unknown;
  let protoKey = false;
  try {
    raw = JSON.parse(text, (key, value: unknown) => {
      if (key === "__proto__") protoKey = true;
      return value;
    });
  } catch (e) {
    return { ok: false, reason: `payload is not JSON: ${(e as Error).message}` };
  }
  if (protoKey) return { ok: false, reason: 'payload contains a "__proto__" key' };
  // JSON.parse yields JSON values only.
  const value = raw as JsonValue;
  if (!isJsonObject(value)) return { ok: false, reason: "payload is not a JSON object" };
  return { ok: true, value };
}

/** JSON.stringify would turn NaN into null and drop undefined: the cloud would get other data. */
export function findUnencodable(v: unknown, path: string): string | undefined {
  if (v === null || typeof v === "string" || typeof v === "boolean") return undefined;
  if (typeof v === "number") {
    return Number.isFinite(v) ? undefined : `${path} is ${v}, which JSON cannot carry`;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = findUnencodable(v[i], `${path}[${i}]`);
      if (bad) return bad;
    }
    return undefined;
  }
  if (typeof v === "object") {
    for (const [k, child] of Object.entries(v)) {
      const bad = findUnencodable(child, `${path}.${k}`);
      if (bad) return bad;
    }
    return undefined;
  }
  return `${path} is a ${typeof v}, which JSON cannot carry`;
}

/** A request the gateway could not send as it stands (SG_SHADOW_ENCODE). */
export function encodeError(message: string): ShadowgateError {
  return new ShadowgateError(ErrorCodes.SHADOW_ENCODE, message);
}

/** A clientToken: not empty, and at most the dialect's bytes (Alibaba 128, AWS 64). */
export function checkClientToken(token: string, maxBytes: number): void {
  if (typeof token !== "string" || token === "") throw encodeError("clientToken is empty");
  const bytes = Buffer.byteLength(token, "utf8");
  if (bytes > maxBytes) throw encodeError(`clientToken is ${bytes} bytes; at most ${maxBytes}`);
}
