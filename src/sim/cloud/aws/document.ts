import { isJsonObject } from "../../../core/json.js";
import type { JsonObject, JsonValue } from "../../../core/types.js";
import {
  AwsErrorCodes,
  MAX_CLIENT_TOKEN_BYTES,
  MAX_DEPTH,
  MAX_DOCUMENT_BYTES,
} from "../../../north/dialects/aws/codec.js";

/**
 * The AWS IoT Device Shadow document rules (shadow-protocol.md 3.2-3.4), as the local cloud
 * service applies them: partial updates merged recursively, JSON null deletes, arrays replaced
 * whole (and never holding null), versions by equality (an update naming a version must name
 * the current one; the service adds one), per-leaf metadata in epoch seconds, a delta of the
 * desired values reported differs from, and the 8 KB, depth-6 and clientToken limits with
 * AWS's error messages.
 */

export interface AwsShadowDocument {
  readonly state: { readonly desired?: JsonObject; readonly reported?: JsonObject };
  readonly metadata: { readonly desired?: JsonObject; readonly reported?: JsonObject };
  readonly version: number;
  /** Epoch seconds of the last change. */
  readonly timestamp: number;
}

/** AWS's error document, published on .../rejected and returned by the HTTP API. */
export interface AwsError {
  readonly code: number;
  readonly message: string;
}

const err = (code: number, message: string): AwsError => ({ code, message });

export const AwsErrors = {
  json: err(AwsErrorCodes.BAD_REQUEST, "Invalid JSON"),
  encoding: err(
    AwsErrorCodes.UNSUPPORTED_ENCODING,
    "Unsupported documented encoding; supported encoding is UTF-8",
  ),
  state: err(AwsErrorCodes.BAD_REQUEST, "Missing required node: state"),
  stateObject: err(AwsErrorCodes.BAD_REQUEST, "State node must be an object"),
  desired: err(AwsErrorCodes.BAD_REQUEST, "Desired node must be an object"),
  reported: err(AwsErrorCodes.BAD_REQUEST, "Reported node must be an object"),
  version: err(AwsErrorCodes.BAD_REQUEST, "Invalid version"),
  clientToken: err(AwsErrorCodes.BAD_REQUEST, "Invalid clientToken"),
  depth: err(
    AwsErrorCodes.BAD_REQUEST,
    `JSON contains too many levels of nesting; maximum is ${MAX_DEPTH}`,
  ),
  arrayNull: err(AwsErrorCodes.BAD_REQUEST, "Invalid node in state: an array may not hold null"),
  conflict: err(AwsErrorCodes.VERSION_CONFLICT, "Version conflict"),
  tooLarge: err(AwsErrorCodes.TOO_LARGE, "The payload exceeds the maximum size allowed"),
  inFlight: err(
    AwsErrorCodes.TOO_MANY_REQUESTS,
    "The request was rejected because it would have exceeded the limit of 10 in-flight requests on a single connection",
  ),
  noShadow: (name: string): AwsError =>
    err(AwsErrorCodes.NOT_FOUND, `No shadow exists with name: '${name}'`),
} as const;

/** A parsed request: its body and its clientToken, or AWS's error for it. */
export type Parsed<T> =
  | { ok: true; value: T; clientToken?: string }
  | { ok: false; error: AwsError; clientToken?: string };

export interface UpdateRequest {
  readonly desired?: JsonObject | null;
  readonly reported?: JsonObject | null;
  readonly version?: number;
}

/** Bytes -> the JSON object of a request, with its clientToken when it has a valid one. */
export function parseRequest(payload: Buffer): Parsed<JsonObject> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return { ok: false, error: AwsErrors.encoding };
  }
  // /get and /delete take an empty payload.
  if (text.trim() === "") return { ok: true, value: {} };
  let raw: JsonValue;
  try {
    raw = JSON.parse(text) as JsonValue;
  } catch {
    return { ok: false, error: AwsErrors.json };
  }
  if (!isJsonObject(raw)) return { ok: false, error: AwsErrors.json };
  const token = raw["clientToken"];
  if (token !== undefined) {
    if (typeof token !== "string" || Buffer.byteLength(token) > MAX_CLIENT_TOKEN_BYTES)
      return { ok: false, error: AwsErrors.clientToken };
    return { ok: true, value: raw, clientToken: token };
  }
  return { ok: true, value: raw };
}

/** The update request's parts, checked as AWS checks them (state up to `maxBytes`). */
export function parseUpdate(
  body: JsonObject,
  maxBytes = MAX_DOCUMENT_BYTES,
): { ok: true; value: UpdateRequest } | AwsFail {
  const version = body["version"];
  if (version !== undefined && !(Number.isSafeInteger(version) && (version as number) >= 0))
    return fail(AwsErrors.version);
  if (!Object.hasOwn(body, "state")) return fail(AwsErrors.state);
  const state = body["state"];
  if (!isJsonObject(state)) return fail(AwsErrors.stateObject);
  const desired = state["desired"];
  const reported = state["reported"];
  if (desired !== undefined && desired !== null && !isJsonObject(desired))
    return fail(AwsErrors.desired);
  if (reported !== undefined && reported !== null && !isJsonObject(reported))
    return fail(AwsErrors.reported);
  if (Buffer.byteLength(JSON.stringify(state)) > maxBytes) return fail(AwsErrors.tooLarge);
  for (const section of [desired, reported]) {
    if (!isJsonObject(section)) continue;
    const problem = checkNode(section, 1);
    if (problem) return fail(problem);
  }
  return {
    ok: true,
    value: {
      ...(desired !== undefined && { desired }),
      ...(reported !== undefined && { reported }),
      ...(version !== undefined && { version: version as number }),
    },
  };
}

type AwsFail = { ok: false; error: AwsError };
const fail = (error: AwsError): AwsFail => ({ ok: false, error });

function checkNode(v: JsonValue, depth: number): AwsError | undefined {
  if (Array.isArray(v)) {
    if (v.some((x) => x === null)) return AwsErrors.arrayNull;
    return undefined;
  }
  if (!isJsonObject(v)) return undefined;
  if (depth > MAX_DEPTH) return AwsErrors.depth;
  for (const child of Object.values(v)) {
    const p = checkNode(child, depth + 1);
    if (p) return p;
  }
  return undefined;
}

/** What an accepted update did: the new document and the messages it makes. */
export interface Applied {
  readonly document: AwsShadowDocument;
  /** Published on /update/accepted: the state sent, its metadata, the new version. */
  readonly accepted: JsonObject;
  /** Published on /update/delta when the update set desired values reported differs from. */
  readonly delta?: JsonObject;
  /** Published on /update/documents. */
  readonly documents: JsonObject;
}

/**
 * Applies an update to a shadow (undefined: none yet; `lastVersion`: a deleted one's, which a
 * new document continues). Returns the error AWS would answer instead when it refuses.
 */
export function applyUpdate(
  current: AwsShadowDocument | undefined,
  lastVersion: number,
  request: UpdateRequest,
  nowSeconds: number,
  clientToken?: string,
  maxDocumentBytes = MAX_DOCUMENT_BYTES,
): { ok: true; value: Applied } | AwsFail {
  const currentVersion = current?.version ?? lastVersion;
  if (request.version !== undefined && request.version !== currentVersion)
    return fail(AwsErrors.conflict);
  const state = { ...current?.state };
  const metadata = { ...current?.metadata };
  const sentMeta: JsonObject = {};
  for (const section of ["desired", "reported"] as const) {
    const change = request[section];
    if (change === undefined) continue;
    if (change === null) {
      delete state[section];
      delete metadata[section];
      sentMeta[section] = null;
      continue;
    }
    const merged = mergeState(state[section] ?? {}, change);
    const meta = mergeMeta(metadata[section] ?? {}, change, nowSeconds);
    if (Object.keys(merged).length > 0) {
      state[section] = merged;
      metadata[section] = meta;
    } else {
      delete state[section];
      delete metadata[section];
    }
    sentMeta[section] = stamp(change, nowSeconds);
  }
  const stateBytes = Buffer.byteLength(JSON.stringify(state));
  if (stateBytes > maxDocumentBytes) return fail(AwsErrors.tooLarge);
  const document: AwsShadowDocument = {
    state,
    metadata,
    version: currentVersion + 1,
    timestamp: nowSeconds,
  };
  const sent: JsonObject = {};
  if (request.desired !== undefined) sent["desired"] = request.desired;
  if (request.reported !== undefined) sent["reported"] = request.reported;
  const token: JsonObject = clientToken === undefined ? {} : { clientToken };
  const accepted: JsonObject = {
    state: sent,
    metadata: sentMeta,
    version: document.version,
    timestamp: nowSeconds,
    ...token,
  };
  let delta: JsonObject | undefined;
  if (isJsonObject(request.desired)) {
    // Only what this update set: a delta names the desired changes the device has to act on.
    const all = deltaOf(document.state.desired ?? {}, document.state.reported ?? {});
    const own = pick(all, request.desired);
    if (Object.keys(own).length > 0) {
      delta = {
        state: own,
        metadata: pickMeta(document.metadata.desired ?? {}, own),
        version: document.version,
        timestamp: nowSeconds,
        ...token,
      };
    }
  }
  const documents: JsonObject = {
    previous: current ? view(current) : null,
    current: view(document),
    timestamp: nowSeconds,
    ...token,
  };
  return { ok: true, value: { document, accepted, ...(delta && { delta }), documents } };
}

/** A document as /get/accepted and the HTTP API give it: state with delta, metadata, version. */
export function getResponse(doc: AwsShadowDocument, clientToken?: string): JsonObject {
  const delta = deltaOf(doc.state.desired ?? {}, doc.state.reported ?? {});
  return {
    state: {
      ...doc.state,
      ...(Object.keys(delta).length > 0 && { delta }),
    },
    metadata: doc.metadata,
    version: doc.version,
    timestamp: doc.timestamp,
    ...(clientToken !== undefined && { clientToken }),
  };
}

function view(doc: AwsShadowDocument): JsonObject {
  return { state: doc.state, metadata: doc.metadata, version: doc.version };
}

/** Recursive merge; null deletes; an object left empty by deletions goes too. */
function mergeState(target: JsonObject, change: JsonObject): JsonObject {
  const out: JsonObject = { ...target };
  for (const [k, v] of Object.entries(change)) {
    if (v === null) {
      delete out[k];
    } else if (isJsonObject(v)) {
      const prev = out[k];
      const merged = mergeState(isJsonObject(prev) ? prev : {}, v);
      if (Object.keys(merged).length > 0) define(out, k, merged);
      else delete out[k];
    } else define(out, k, v);
  }
  return out;
}

/** The metadata beside mergeState: each leaf set gets the timestamp, each deleted one goes. */
function mergeMeta(target: JsonObject, change: JsonObject, ts: number): JsonObject {
  const out: JsonObject = { ...target };
  for (const [k, v] of Object.entries(change)) {
    if (v === null) delete out[k];
    else if (isJsonObject(v)) {
      const prev = out[k];
      const merged = mergeMeta(isJsonObject(prev) && !("timestamp" in prev) ? prev : {}, v, ts);
      if (Object.keys(merged).length > 0) define(out, k, merged);
      else delete out[k];
    } else define(out, k, stamp(v, ts));
  }
  return out;
}

/** The metadata of a value set now: per leaf, arrays per element. */
function stamp(v: JsonValue, ts: number): JsonValue {
  if (Array.isArray(v)) return v.map((x) => stamp(x, ts));
  if (isJsonObject(v)) {
    const out: JsonObject = {};
    for (const [k, child] of Object.entries(v)) define(out, k, stamp(child, ts));
    return out;
  }
  return { timestamp: ts };
}

/** Desired values reported lacks or differs from, nested with the full path (3.2). */
export function deltaOf(desired: JsonObject, reported: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, want] of Object.entries(desired)) {
    const have = Object.hasOwn(reported, k) ? reported[k] : undefined;
    if (isJsonObject(want) && isJsonObject(have)) {
      const inner = deltaOf(want, have);
      if (Object.keys(inner).length > 0) define(out, k, inner);
    } else if (have === undefined || JSON.stringify(want) !== JSON.stringify(have)) {
      define(out, k, want);
    }
  }
  return out;
}

/** The part of `all` under the keys `shape` names. */
function pick(all: JsonObject, shape: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(shape)) {
    if (!Object.hasOwn(all, k)) continue;
    const a = all[k] as JsonValue;
    if (isJsonObject(v) && isJsonObject(a)) {
      const inner = pick(a, v);
      if (Object.keys(inner).length > 0) define(out, k, inner);
    } else define(out, k, a);
  }
  return out;
}

function pickMeta(meta: JsonObject, shape: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(shape)) {
    if (!Object.hasOwn(meta, k)) continue;
    const m = meta[k] as JsonValue;
    define(out, k, isJsonObject(v) && isJsonObject(m) && !("timestamp" in m) ? pickMeta(m, v) : m);
  }
  return out;
}

/** An own property even for "__proto__", which plain assignment would turn into a prototype. */
function define(obj: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
