import { z } from "zod";
import type { JsonObject, JsonValue } from "../../../core/types.js";
import {
  MAX_ATTRIBUTES,
  ShadowErrorCodes,
  type AttributeMetadata,
  type MetadataSection,
  type ShadowMetadata,
  type ShadowRequest,
  type ShadowState,
} from "./messages.js";
import { parseShadowTopic } from "./topics.js";
import { checkClientToken, encodeError, findUnencodable, parseJsonObject } from "../../payload.js";

/**
 * The gateway side of the Alibaba shadow codec (shadow-protocol.md 1.3). Encoders produce the
 * exact strings the Link SDK and iotkit-embedded send, plus the clientToken that iotkit uses to
 * match replies. The decoder treats everything from the cloud as untrusted: it validates, never
 * throws, and hands the sync engine one normalised shape whatever SDK dialect the sender used.
 */

/** Alibaba documents no message size limit; 64 KiB bounds what one bad push can cost us. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/** iotkit-embedded's limit on a clientToken (shadow-protocol.md 1.6). */
export const MAX_CLIENT_TOKEN_BYTES = 128;

// ---------------------------------------------------------------------------------------------
// Encoders (device -> cloud, on /shadow/update/{pk}/{dn})

/** `{"method":"update","state":{"reported":R},"version":V,"clientToken":T}` */
export function encodeUpdate(reported: JsonObject, version: number, clientToken: string): string {
  checkRequest(version, clientToken);
  // Checked here rather than learnt from a 404/405/408 reply a round-trip later.
  if (!isObject(reported)) throw encodeError("reported must be a JSON object");
  const count = Object.keys(reported).length;
  if (count === 0) throw encodeError("reported is empty (the cloud answers 405)");
  if (count > MAX_ATTRIBUTES) {
    throw encodeError(
      `reported has ${count} attributes; the cloud takes at most ${MAX_ATTRIBUTES} (408)`,
    );
  }
  const bad = findUnencodable(reported, "reported");
  if (bad) throw encodeError(bad);
  return encode({ method: "update", state: { reported }, version, clientToken });
}

/**
 * `{"method":"update","state":{"desired":"null"},...}`: the string "null", not JSON null, as in
 * the Link SDK's SHADOW_PAYLOAD_CLEAN_FMT and iotkit-embedded's delta response.
 */
export function encodeClearDesired(version: number, clientToken: string): string {
  checkRequest(version, clientToken);
  return encode({ method: "update", state: { desired: "null" }, version, clientToken });
}

/** `{"method":"get","clientToken":T}`: no version, as the Link SDK sends it. */
export function encodeGet(clientToken: string): string {
  checkClientToken(clientToken, MAX_CLIENT_TOKEN_BYTES);
  return encode({ method: "get", clientToken });
}

/** `{"method":"delete","state":{"reported":{"a":"null"}}...}`, or `"reported":"null"` for all. */
export function encodeDeleteReported(
  attrs: readonly string[] | "all",
  version: number,
  clientToken: string,
): string {
  checkRequest(version, clientToken);
  let reported: JsonObject | "null";
  if (attrs === "all") {
    reported = "null";
  } else {
    if (!Array.isArray(attrs) || attrs.length === 0) {
      throw encodeError('no attributes to delete (pass "all" to delete every reported one)');
    }
    const entries: Array<[string, JsonValue]> = [];
    for (const a of attrs) {
      if (typeof a !== "string" || a === "") throw encodeError("attribute names must not be empty");
      entries.push([a, "null"]);
    }
    reported = Object.fromEntries(entries) as JsonObject;
  }
  return encode({ method: "delete", state: { reported }, version, clientToken });
}

// ---------------------------------------------------------------------------------------------
// Error codes (shadow-protocol.md 1.4)

/** 200, and 407 ("shadow document is empty"), which iotkit-embedded counts as success. */
export const isSuccessCode = (code: number): boolean =>
  code === 200 || code === ShadowErrorCodes.DOCUMENT_EMPTY;

/** 400-408 except 407: the request itself is wrong, so sending it again cannot help. */
export const isPermanentError = (code: number): boolean =>
  code >= ShadowErrorCodes.FORMAT &&
  code <= ShadowErrorCodes.TOO_MANY_ATTRIBUTES &&
  !isSuccessCode(code);

/** 409: our version is not above the cloud's; recover with a get. */
export const isConflict = (code: number): boolean => code === ShadowErrorCodes.VERSION_CONFLICT;

// ---------------------------------------------------------------------------------------------
// Decoder (cloud -> device, on /shadow/get/{pk}/{dn})

export type DecodedShadowMessage =
  | {
      kind: "reply";
      status: "success";
      version: number;
      clientToken?: string;
      timestamp: number;
      /** Present on a get reply (that is how the SDKs tell one apart). */
      state?: ShadowState;
      metadata?: ShadowMetadata;
    }
  | {
      kind: "reply";
      status: "error";
      code: number;
      message: string;
      clientToken?: string;
      version?: number;
      timestamp: number;
    }
  | {
      kind: "control";
      version: number;
      timestamp: number;
      /** A cleared attribute (`"null"` or null on the wire) is null. */
      desired: JsonObject;
      /** One entry per desired attribute. */
      desiredMetadata: Record<string, AttributeMetadata>;
      reported?: JsonObject;
    };

export type DecodeResult =
  | { ok: true; productKey: string; deviceName: string; message: DecodedShadowMessage }
  | { ok: false; reason: string };

export interface DecodeOptions {
  /** Larger payloads are rejected before parsing. Default 64 KiB. */
  maxBytes?: number;
}

/**
 * The largest version the gateway accepts from the cloud: it must be able to send a greater one
 * as a safe integer (Number.MAX_SAFE_INTEGER - 1). Alibaba documents the version as a long; a
 * value beyond this is bad input, not a shadow to follow.
 */
export const MAX_VERSION = Number.MAX_SAFE_INTEGER - 1;
const NON_NEGATIVE_INT = "must be a non-negative integer";
const Version = z
  .number({ error: NON_NEGATIVE_INT })
  .int(NON_NEGATIVE_INT)
  .min(0, NON_NEGATIVE_INT)
  .max(
    MAX_VERSION,
    `must be at most ${MAX_VERSION} (the gateway must be able to send a greater one)`,
  );
const Timestamp = z
  .number({ error: "must be a non-negative number" })
  .min(0, "must be a non-negative number");
const ClientToken = z.string({ error: "must be a string" });
const JsonObjectSchema = z.custom<JsonObject>(isObject, { error: "must be a JSON object" });
/** A state section: an object, or cleared with the string "null" (or, tolerated, JSON null). */
const Section = z.union([JsonObjectSchema, z.literal("null"), z.null()], {
  error: 'must be a JSON object, "null" or null',
});
const AttrMeta = z.object({ timestamp: Timestamp });
const MetaSection: z.ZodType<MetadataSection> = z.lazy(() =>
  z.record(z.string(), z.union([AttrMeta, MetaSection], { error: "must be {timestamp} metadata" })),
);
/** "null" and null read as "no metadata", the way a cleared section is read. */
const MetaSectionOrCleared = z.preprocess(
  (v) => (isCleared(v) ? undefined : v),
  MetaSection.optional(),
);
const State = z.object({ desired: Section.optional(), reported: Section.optional() });
const Metadata = z.object({ desired: MetaSectionOrCleared, reported: MetaSectionOrCleared });

const Envelope = {
  version: Version.optional(),
  timestamp: Timestamp,
  clientToken: ClientToken.optional(),
};

const SuccessReply = z.object({
  ...Envelope,
  payload: z.object({
    status: z.literal("success"),
    version: Version.optional(),
    state: State.optional(),
    metadata: Metadata.optional(),
  }),
});

/** The doc's template shows errorcode as a string ("${errorcode}"); iotkit atoi()s it. */
const ErrorCodeValue = z.union(
  [
    z.number().int().min(0),
    z
      .string()
      .regex(/^\s*\d{1,9}\s*$/)
      .transform((s) => Number(s.trim())),
  ],
  { error: "must be a non-negative integer or a string of digits" },
);

const ErrorReply = z.object({
  ...Envelope,
  payload: z.object({
    status: z.literal("error"),
    version: Version.optional(),
    content: z.object({
      errorcode: ErrorCodeValue,
      errormessage: z.string({ error: "must be a string" }).optional(),
    }),
  }),
});

const Control = z.object({
  ...Envelope,
  payload: z.object({
    // The SDKs ignore it; when it is there, it must say what they assume.
    status: z.literal("success").optional(),
    version: Version.optional(),
    state: State,
    metadata: Metadata.optional(),
  }),
});

/** Decodes one message from a /shadow/get topic. Never throws. */
export function decodeShadowMessage(
  topic: string,
  payload: Buffer | Uint8Array,
  options: DecodeOptions = {},
): DecodeResult {
  try {
    return decode(topic, payload, options);
  } catch (e) {
    // Belt and braces: a bug here must not take the MQTT message handler down with it.
    return { ok: false, reason: `cannot decode: ${(e as Error).message}` };
  }
}

function decode(topic: string, payload: Buffer | Uint8Array, options: DecodeOptions): DecodeResult {
  const where = typeof topic === "string" ? parseShadowTopic(topic) : undefined;
  if (!where || where.kind !== "get") {
    return fail(`topic "${String(topic)}" is not /shadow/get/{productKey}/{deviceName}`);
  }
  const parsed = parseJsonObject(payload, options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  if (!parsed.ok) return fail(parsed.reason);
  const raw = parsed.value;

  const method = raw["method"];
  if (method === undefined) return fail("method missing");
  if (method !== "reply" && method !== "control") {
    return fail(`unknown method ${JSON.stringify(method)} (expected "reply" or "control")`);
  }
  const body = raw["payload"];
  if (body === undefined) return fail("payload missing");
  if (!isObject(body)) return fail("payload: must be a JSON object");

  const ok = (message: DecodedShadowMessage): DecodeResult => ({
    ok: true,
    productKey: where.productKey,
    deviceName: where.deviceName,
    message,
  });

  if (method === "control") {
    const r = Control.safeParse(raw);
    if (!r.success) return fail(describe(r.error, raw));
    const m = r.data;
    const version = m.version ?? m.payload.version;
    if (version === undefined) return fail("version missing (neither at top level nor in payload)");
    const desired = sectionOf(m.payload.state.desired, true) ?? {};
    const reported = sectionOf(m.payload.state.reported, false);
    const metaDesired = m.payload.metadata?.desired;
    const desiredMetadata: Record<string, AttributeMetadata> = {};
    for (const attr of Object.keys(desired)) {
      desiredMetadata[attr] = { timestamp: newestTimestamp(metaDesired?.[attr]) ?? m.timestamp };
    }
    return ok({
      kind: "control",
      version,
      timestamp: m.timestamp,
      desired,
      desiredMetadata,
      ...(reported === undefined ? {} : { reported }),
    });
  }

  const status = body["status"];
  if (status === undefined) return fail("payload.status missing");
  if (status === "success") {
    const r = SuccessReply.safeParse(raw);
    if (!r.success) return fail(describe(r.error, raw));
    const m = r.data;
    // The Link SDK puts a get reply's version at top level, the update reply example in the doc
    // puts it in payload; Python linkkit reads both. Top level wins, as in the Link SDK.
    const version = m.version ?? m.payload.version;
    if (version === undefined) return fail("version missing (neither at top level nor in payload)");
    const state = stateOf(m.payload.state);
    const metadata = metadataOf(m.payload.metadata);
    return ok({
      kind: "reply",
      status: "success",
      version,
      ...(m.clientToken === undefined ? {} : { clientToken: m.clientToken }),
      timestamp: m.timestamp,
      ...(state === undefined ? {} : { state }),
      ...(metadata === undefined ? {} : { metadata }),
    });
  }
  if (status === "error") {
    const r = ErrorReply.safeParse(raw);
    if (!r.success) return fail(describe(r.error, raw));
    const m = r.data;
    const version = m.version ?? m.payload.version;
    return ok({
      kind: "reply",
      status: "error",
      code: m.payload.content.errorcode,
      message: m.payload.content.errormessage ?? "",
      ...(m.clientToken === undefined ? {} : { clientToken: m.clientToken }),
      ...(version === undefined ? {} : { version }),
      timestamp: m.timestamp,
    });
  }
  return fail(`unknown payload.status ${JSON.stringify(status)} (expected "success" or "error")`);
}

// ---------------------------------------------------------------------------------------------

function fail(reason: string): DecodeResult {
  return { ok: false, reason };
}

/** The first problem, as `path: message`, or `path missing` when the key is absent. */
function describe(error: z.ZodError, raw: unknown): string {
  const issue = error.issues[0];
  if (!issue) return "invalid message";
  const path = issue.path.map(String).join(".") || "message";
  if (issue.path.length > 0 && valueAt(raw, issue.path) === undefined) return `${path} missing`;
  return `${path}: ${issue.message}`;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let node = raw;
  for (const key of path) {
    if (!isObject(node) || typeof key !== "string" || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCleared(v: unknown): v is "null" | null {
  return v === "null" || v === null;
}

/** A state section with "null" read as absent; in desired, cleared attributes become null. */
function sectionOf(
  section: JsonObject | "null" | null | undefined,
  nullifyValues: boolean,
): JsonObject | undefined {
  if (section === undefined || isCleared(section)) return undefined;
  const obj = section as JsonObject;
  return nullifyValues ? nullifyCleared(obj) : obj;
}

/** Arrays are replaced whole on Alibaba, so a "null" inside one is data, not a deletion. */
function nullifyCleared(obj: JsonObject): JsonObject {
  return Object.fromEntries(
    Object.entries(obj).map(([k, v]): [string, JsonValue] => [
      k,
      isCleared(v) ? null : isObject(v) ? nullifyCleared(v) : v,
    ]),
  ) as JsonObject;
}

function stateOf(
  state:
    { desired?: JsonObject | "null" | null; reported?: JsonObject | "null" | null } | undefined,
): ShadowState | undefined {
  if (state === undefined) return undefined;
  const desired = sectionOf(state.desired, true);
  const reported = sectionOf(state.reported, false);
  return {
    ...(desired === undefined ? {} : { desired }),
    ...(reported === undefined ? {} : { reported }),
  };
}

function metadataOf(
  m: { desired?: MetadataSection | undefined; reported?: MetadataSection | undefined } | undefined,
): ShadowMetadata | undefined {
  if (m === undefined) return undefined;
  const { desired, reported } = m;
  return {
    ...(desired === undefined ? {} : { desired }),
    ...(reported === undefined ? {} : { reported }),
  };
}

/**
 * An attribute's timestamp; for an object attribute with per-leaf metadata, its newest leaf, so
 * a change anywhere inside counts as a new command. Undefined when the cloud sent none.
 */
function newestTimestamp(m: AttributeMetadata | MetadataSection | undefined): number | undefined {
  if (m === undefined) return undefined;
  if (typeof m.timestamp === "number") return m.timestamp;
  let newest: number | undefined;
  for (const child of Object.values(m as MetadataSection)) {
    const t = newestTimestamp(child);
    if (t !== undefined && (newest === undefined || t > newest)) newest = t;
  }
  return newest;
}

function encode(req: ShadowRequest): string {
  return JSON.stringify(req);
}

function checkRequest(version: number, clientToken: string): void {
  // -1 is valid on the wire but wipes the whole shadow; no gateway request means that.
  if (!Number.isSafeInteger(version) || version < 0) {
    throw encodeError(`version ${String(version)} is not a non-negative integer`);
  }
  checkClientToken(clientToken, MAX_CLIENT_TOKEN_BYTES);
}
