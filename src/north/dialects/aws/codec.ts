import { z } from "zod";
import { isJsonObject } from "../../../core/json.js";
import type { JsonObject, JsonValue } from "../../../core/types.js";
import type { CheckedPoint, CloudShadow, Inbound } from "../../dialect.js";
import { checkClientToken, encodeError, findUnencodable, parseJsonObject } from "../../payload.js";
import { localShadowName } from "../../../core/shadow-identity.js";
import { parseShadowTopic } from "./topics.js";

/**
 * The gateway side of the AWS IoT Device Shadow codec (shadow-protocol.md 3.2-3.4). Reports
 * carry no version (the gateway owns reported, so they never conflict); a desired clear sets
 * each point to JSON null and names the version at which the gateway saw desired. The decoder
 * treats everything from the cloud as untrusted: it validates, never throws.
 */

/** Desired plus reported state in the stored document (metadata excluded). */
export const MAX_DOCUMENT_BYTES = 8192;
/** Levels of nesting below desired or reported. */
export const MAX_DEPTH = 6;
/** Requests awaiting a reply on one connection; the 11th is answered 429. */
export const MAX_IN_FLIGHT = 10;
export const MAX_CLIENT_TOKEN_BYTES = 64;
/**
 * The state a report carries, as JSON bytes: the document limit less room for `_commands`
 * outcomes already stored beside it would be a guess, so a report fills at most the limit and
 * the cloud's word (413, or 400 for the whole document) is final.
 */
const MAX_REPORT_BYTES = MAX_DOCUMENT_BYTES - '{"reported":}'.length;
/** A shadow message the gateway reads: a get reply holds desired, reported and delta (3 x 8 KB). */
const MAX_MESSAGE_BYTES = 64 * 1024;

export const AwsErrorCodes = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  VERSION_CONFLICT: 409,
  TOO_LARGE: 413,
  UNSUPPORTED_ENCODING: 415,
  TOO_MANY_REQUESTS: 429,
  INTERNAL: 500,
} as const;

// ---------------------------------------------------------------------------------------------
// Encoders

/** `{"state":{"reported":R},"clientToken":T}`: no version, so never a conflict. */
export function encodeReport(reported: JsonObject, clientToken: string): string {
  checkClientToken(clientToken, MAX_CLIENT_TOKEN_BYTES);
  if (!isJsonObject(reported)) throw encodeError("reported must be a JSON object");
  if (Object.keys(reported).length === 0) throw encodeError("reported is empty");
  const bad = findUnencodable(reported, "reported") ?? findAwsProblem(reported, "reported", 1);
  if (bad) throw encodeError(bad);
  return JSON.stringify({ state: { reported }, clientToken });
}

/**
 * `{"state":{"desired":{"a":{"b":null}}},"version":V,"clientToken":T}`: each point set to JSON
 * null, only if the shadow is still at the version the gateway saw (else 409, and it decides
 * again after a get), so a desired value set meanwhile is never cleared unseen.
 */
export function encodeClearDesired(
  points: readonly string[],
  version: number,
  clientToken: string,
): string {
  checkClientToken(clientToken, MAX_CLIENT_TOKEN_BYTES);
  if (!Number.isSafeInteger(version) || version < 0) {
    throw encodeError(`version ${String(version)} is not a non-negative integer`);
  }
  if (points.length === 0) throw encodeError("no desired points to clear");
  const desired: JsonObject = {};
  for (const point of points) setNull(desired, point.split("."));
  return JSON.stringify({ state: { desired }, version, clientToken });
}

/** `{"clientToken":T}` on /get: the payload's only use is the token. */
export function encodeGet(clientToken: string): string {
  checkClientToken(clientToken, MAX_CLIENT_TOKEN_BYTES);
  return JSON.stringify({ clientToken });
}

/** Sets path to null in obj, making objects on the way (own properties, even `__proto__`). */
function setNull(obj: JsonObject, path: readonly string[]): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    Object.defineProperty(obj, head, { value: null, enumerable: true, writable: true });
    return;
  }
  let child = Object.hasOwn(obj, head) ? obj[head] : undefined;
  if (!isJsonObject(child)) {
    child = {};
    Object.defineProperty(obj, head, { value: child, enumerable: true, writable: true });
  }
  setNull(child, rest);
}

/**
 * A report in parts that each fit the document limit, in order. Objects are updated key by
 * key on AWS (a partial update merges), so a part holds whole top-level attributes where they
 * fit and the leaves of an attribute too large alone otherwise; a single value too large for
 * any part goes alone (the cloud refuses it, and only it).
 */
export function splitReport(reported: JsonObject, maxBytes = MAX_REPORT_BYTES): JsonObject[] {
  const budget = Math.min(maxBytes, MAX_REPORT_BYTES);
  return jsonBytes(reported) <= budget ? [reported] : split(reported, budget);
}

function split(obj: JsonObject, budget: number): JsonObject[] {
  const parts: JsonObject[] = [];
  let entries: Array<[string, JsonValue]> = [];
  let used = 2; // {}
  const flush = (): void => {
    if (entries.length > 0) parts.push(Object.fromEntries(entries) as JsonObject);
    entries = [];
    used = 2;
  };
  for (const [key, value] of Object.entries(obj)) {
    const keyBytes = jsonBytes(key) + 1; // "key":
    const bytes = keyBytes + jsonBytes(value) + 1; // and a comma
    if (bytes + 2 > budget) {
      flush();
      const inner = budget - keyBytes - 2;
      const pieces = isJsonObject(value) && inner > 2 ? split(value, inner) : [value];
      for (const piece of pieces) parts.push(Object.fromEntries([[key, piece]]) as JsonObject);
      continue;
    }
    if (used + bytes > budget) flush();
    entries.push([key, value]);
    used += bytes;
  }
  flush();
  return parts;
}

const jsonBytes = (v: JsonValue): number => Buffer.byteLength(JSON.stringify(v), "utf8");

/** What AWS refuses with 400 that JSON allows: deeper than six levels, null in an array. */
function findAwsProblem(v: JsonValue, path: string, depth: number): string | undefined {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const item = v[i];
      if (item === null) return `${path}[${i}] is null, which an AWS shadow array may not hold`;
    }
    return undefined;
  }
  if (!isJsonObject(v)) return undefined;
  if (depth > MAX_DEPTH) return `${path} nests deeper than ${MAX_DEPTH} levels`;
  for (const [k, child] of Object.entries(v)) {
    const bad = findAwsProblem(child, `${path}.${k}`, depth + 1);
    if (bad) return bad;
  }
  return undefined;
}

/**
 * The most a device's reported document may hold, for the config check's warning: per point
 * its key and a number's longest text (24 bytes), and per writable point a command outcome
 * under `_commands`. An estimate: strings read from OPC UA may be longer.
 */
export function estimateReportedBytes(points: readonly CheckedPoint[]): number {
  let bytes = 2 + '"_commands":{},'.length;
  const objects = new Set<string>();
  for (const p of points) {
    for (let i = 1; i < p.path.length; i++) objects.add(p.path.slice(0, i).join("."));
    bytes += jsonBytes(p.path[p.path.length - 1] ?? p.name) + 1 + 24 + 1;
    if (p.writable) {
      // "name":{"status":"done","ts":1700000000,"version":1234567,"value":<24>},
      bytes += jsonBytes(p.name) + 1 + 70 + 24;
    }
  }
  for (const o of objects) bytes += jsonBytes(o.split(".").pop() ?? o) + 4; // "k":{},
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Decoder

const NON_NEGATIVE_INT = "must be a non-negative integer";
const Version = z
  .number({ error: NON_NEGATIVE_INT })
  .int(NON_NEGATIVE_INT)
  .min(0, NON_NEGATIVE_INT)
  .max(Number.MAX_SAFE_INTEGER - 1, "is beyond a safe integer");
const Timestamp = z.number({ error: "must be a number" }).min(0, "must not be negative");
const ClientToken = z.string({ error: "must be a string" });
const Obj = z.custom<JsonObject>((v) => isJsonObject(v as JsonValue), {
  error: "must be a JSON object",
});
/** A section may be null (cleared) on the wire; the gateway reads that as empty. */
const Section = z.union([Obj, z.null()], { error: "must be a JSON object or null" }).optional();

const Document = z.object({
  state: z.object({ desired: Section, reported: Section, delta: Section }).optional(),
  metadata: z.object({ desired: Section, reported: Section }).optional(),
  version: Version,
  timestamp: Timestamp.optional(),
  clientToken: ClientToken.optional(),
});
const Delta = z.object({
  state: Obj,
  metadata: Obj.optional(),
  version: Version,
  timestamp: Timestamp.optional(),
});
const Rejected = z.object({
  code: z.number({ error: "must be a number" }).int().min(0),
  message: z.string({ error: "must be a string" }).optional(),
  timestamp: Timestamp.optional(),
  clientToken: ClientToken.optional(),
});

export type DecodeResult =
  | { ok: true; productKey: string; deviceName: string; message: Inbound }
  | { ok: false; reason: string };

/** Decodes one message from a shadow reply topic. Never throws. */
export function decodeShadowMessage(topic: string, payload: Buffer | Uint8Array): DecodeResult {
  try {
    return decode(topic, payload);
  } catch (e) {
    return { ok: false, reason: `cannot decode: ${(e as Error).message}` };
  }
}

function decode(topic: string, payload: Buffer | Uint8Array): DecodeResult {
  const where = parseShadowTopic(topic);
  if (!where || where.stub === undefined || where.stub === "documents") {
    return fail(
      `topic "${topic}" is not a shadow reply the gateway reads ($aws/things/{thing}/shadow[/name/{shadow}]/…/accepted|rejected, /update/delta)`,
    );
  }
  const parsed = parseJsonObject(payload, MAX_MESSAGE_BYTES);
  if (!parsed.ok) return fail(parsed.reason);
  const raw = parsed.value;
  const ok = (message: Inbound): DecodeResult => ({
    ok: true,
    productKey: where.thingName,
    deviceName: localShadowName(where.thingName, where.shadowName),
    message,
  });

  if (where.stub === "rejected") {
    const r = Rejected.safeParse(raw);
    if (!r.success) return fail(describe(r.error));
    const m = r.data;
    return ok({
      kind: "reply",
      status: "error",
      code: m.code,
      message: m.message ?? "",
      ...(m.clientToken !== undefined && { clientToken: m.clientToken }),
    });
  }
  if (where.stub === "delta") {
    const r = Delta.safeParse(raw);
    if (!r.success) return fail(describe(r.error));
    const m = r.data;
    return ok({
      kind: "control",
      version: m.version,
      shadow: {
        desired: m.state,
        desiredTimestamps: leafTimestamps(m.metadata),
        reported: {},
      },
    });
  }
  // accepted
  if (where.operation === "delete") return ok({ kind: "gone" });
  const r = Document.safeParse(raw);
  if (!r.success) return fail(describe(r.error));
  const m = r.data;
  const shadow: CloudShadow | undefined =
    where.operation === "get"
      ? {
          // All of desired, not only the delta: a value the gateway executed and reported before
          // it died unacknowledged equals reported, so it is in no delta, yet it must still be
          // cleared. The journal tells executed values from new ones either way.
          desired: m.state?.desired ?? {},
          desiredTimestamps: leafTimestamps(m.metadata?.desired ?? undefined),
          reported: m.state?.reported ?? {},
        }
      : undefined;
  return ok({
    kind: "reply",
    status: "success",
    version: m.version,
    ...(m.clientToken !== undefined && { clientToken: m.clientToken }),
    ...(shadow && { shadow }),
  });
}

/**
 * Per-leaf metadata (`{"a":{"b":{"timestamp":1700000000}}}`) -> timestamps by dotted path, each
 * object's being its newest leaf's (a point whose value is an object changed when any leaf
 * did). An array's metadata is per element; it counts as one leaf, its newest element.
 */
export function leafTimestamps(meta: JsonObject | undefined): Record<string, number> {
  const out: Record<string, number> = Object.create(null) as Record<string, number>;
  const walk = (node: JsonValue, path: string): number | undefined => {
    if (Array.isArray(node)) {
      let newest: number | undefined;
      for (const item of node) newest = newer(newest, walk(item, ""));
      if (newest !== undefined && path !== "") out[path] = newest;
      return newest;
    }
    if (!isJsonObject(node)) return undefined;
    const own = node["timestamp"];
    if (typeof own === "number" && Number.isFinite(own)) {
      if (path !== "") out[path] = own;
      return own;
    }
    let newest: number | undefined;
    for (const [k, child] of Object.entries(node)) {
      newest = newer(newest, walk(child, path === "" ? k : `${path}.${k}`));
    }
    if (newest !== undefined && path !== "") out[path] = newest;
    return newest;
  };
  if (meta) walk(meta, "");
  return out;
}

const newer = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.max(a, b);

function fail(reason: string): DecodeResult {
  return { ok: false, reason };
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "invalid message";
  const path = issue.path.map(String).join(".") || "message";
  return `${path}: ${issue.message}`;
}
