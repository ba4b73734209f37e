import type { JsonObject, JsonValue } from "../../core/types.js";
import {
  MAX_ATTRIBUTES,
  ShadowErrorCodes,
  type MetadataSection,
  type ShadowMetadata,
  type ShadowState,
} from "../../north/dialects/alibaba/messages.js";

/**
 * The rules of the Alibaba shadow service (shadow-protocol.md 1.2-1.4) as pure functions:
 * request validation, the version rule, partial merge, "null" deletion and metadata. No I/O, so
 * the same rules serve MQTT requests and the HTTP API, and can be tested without a broker.
 */

/** The stored form of a shadow (doc-detail 53932). */
export interface CloudShadowDocument {
  state: ShadowState;
  metadata: ShadowMetadata;
  /** Epoch seconds of the last change; 0 for a shadow never written. */
  timestamp: number;
  version: number;
}

export type ShadowErrorCode = (typeof ShadowErrorCodes)[keyof typeof ShadowErrorCodes];

export interface ShadowFailure {
  readonly ok: false;
  readonly code: ShadowErrorCode;
  readonly message: string;
}

/** A section of a request: attributes to merge, or "clear" for the string "null" / JSON null. */
export type SectionPatch = JsonObject | "clear";

export type ShadowRequestBody =
  | {
      readonly method: "update";
      readonly reported?: SectionPatch;
      readonly desired?: SectionPatch;
      /** undefined = no version given: applied unconditionally as current + 1. */
      readonly version?: number;
    }
  | { readonly method: "delete"; readonly reported: SectionPatch; readonly version?: number }
  | { readonly method: "get" };

export type ParsedRequest =
  | { readonly ok: true; readonly request: ShadowRequestBody; readonly clientToken?: string }
  | (ShadowFailure & { readonly clientToken?: string });

const fail = (code: ShadowErrorCode, message: string): ShadowFailure => ({
  ok: false,
  code,
  message,
});

export const isPlainObject = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The string "null" is Alibaba's deletion marker; JSON null is tolerated (a clone uses it). */
const isNullMarker = (v: unknown): boolean => v === "null" || v === null;

/** Own properties only: a request may carry a "__proto__" key, which must stay plain data. */
const own = (o: JsonObject, key: string): JsonValue | undefined =>
  Object.hasOwn(o, key) ? o[key] : undefined;

const setOwn = (o: JsonObject | MetadataSection, key: string, value: unknown): void => {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
};

/**
 * Validates a message published to /shadow/update/{pk}/{dn}. The checks run in the order of the
 * documented codes, so a message with several faults gets the lowest code that applies.
 */
export function parseShadowRequest(text: string): ParsedRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return fail(ShadowErrorCodes.FORMAT, `malformed JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(raw)) return fail(ShadowErrorCodes.FORMAT, "the message is not a JSON object");
  const token = own(raw, "clientToken");
  const clientToken = typeof token === "string" ? token : undefined;
  const withToken = <T extends object>(r: T): T & { clientToken?: string } =>
    clientToken === undefined ? r : { ...r, clientToken };

  const method = own(raw, "method");
  if (method === undefined || method === null) {
    return withToken(fail(ShadowErrorCodes.METHOD_MISSING, "method is missing"));
  }
  if (method !== "update" && method !== "get" && method !== "delete") {
    return withToken(
      fail(
        ShadowErrorCodes.METHOD_INVALID,
        `method ${JSON.stringify(method)} is not update, get or delete`,
      ),
    );
  }
  if (method === "get") return withToken({ ok: true as const, request: { method } });

  const state = own(raw, "state");
  if (state === undefined || state === null) {
    return withToken(fail(ShadowErrorCodes.STATE_MISSING, "state is missing"));
  }
  if (!isPlainObject(state)) {
    return withToken(fail(ShadowErrorCodes.FORMAT, "state must be a JSON object"));
  }
  const version = own(raw, "version");
  if (version !== undefined && !(typeof version === "number" && Number.isSafeInteger(version))) {
    return withToken(
      fail(ShadowErrorCodes.VERSION_INVALID, `version ${JSON.stringify(version)} is not a number`),
    );
  }
  // -1 wipes the whole shadow whatever the state says, so the section checks do not apply.
  if (version === -1) {
    const request: ShadowRequestBody =
      method === "update" ? { method, version } : { method, reported: "clear", version };
    return withToken({ ok: true as const, request });
  }

  const sections: { reported?: SectionPatch; desired?: SectionPatch } = {};
  for (const name of ["reported", "desired"] as const) {
    // A delete names only reported attributes (shadow-protocol 1.3); desired there is ignored.
    if (method === "delete" && name === "desired") continue;
    const value = own(state, name);
    if (value === undefined) continue;
    if (isNullMarker(value)) sections[name] = "clear";
    else if (!isPlainObject(value)) {
      return withToken(
        fail(ShadowErrorCodes.FORMAT, `state.${name} must be a JSON object or "null"`),
      );
    } else if (Object.keys(value).length === 0) {
      return withToken(fail(ShadowErrorCodes.REPORTED_EMPTY, `state.${name} is empty`));
    } else sections[name] = value;
  }
  const v = version === undefined ? {} : { version };
  if (method === "delete") {
    if (sections.reported === undefined) {
      return withToken(fail(ShadowErrorCodes.REPORTED_MISSING, "state.reported is missing"));
    }
    return withToken({ ok: true as const, request: { method, reported: sections.reported, ...v } });
  }
  if (sections.reported === undefined && sections.desired === undefined) {
    return withToken(
      fail(ShadowErrorCodes.REPORTED_MISSING, "state has neither reported nor desired"),
    );
  }
  return withToken({ ok: true as const, request: { method, ...sections, ...v } });
}

export const emptyDocument = (): CloudShadowDocument => ({
  state: {},
  metadata: {},
  timestamp: 0,
  version: 0,
});

export interface AppliedChange {
  readonly ok: true;
  readonly document: CloudShadowDocument;
  /** At least one desired attribute was given a value: the device should get a control push. */
  readonly desiredSet: boolean;
}

export interface ChangeOptions {
  /** Epoch seconds for metadata and the document timestamp. */
  readonly now: number;
  /** Replace desired as a whole instead of merging (UpdateDeviceShadow with DeltaUpdate false). */
  readonly replaceDesired?: boolean;
}

/**
 * Applies a validated update or delete to a copy of `current`. Version rule (1.2): a given
 * version must be strictly greater than the stored one and becomes the stored version; -1
 * clears the whole shadow and resets the version to 0; no version = current + 1.
 */
export function applyChange(
  current: CloudShadowDocument,
  request: Exclude<ShadowRequestBody, { method: "get" }>,
  opts: ChangeOptions,
): AppliedChange | ShadowFailure {
  const { now } = opts;
  if (request.version === -1) {
    return { ok: true, document: { ...emptyDocument(), timestamp: now }, desiredSet: false };
  }
  if (request.version !== undefined && request.version <= current.version) {
    return fail(
      ShadowErrorCodes.VERSION_CONFLICT,
      `version ${request.version} is not greater than the current version ${current.version}`,
    );
  }
  const doc = structuredClone(current);
  let desiredSet = false;
  if (request.method === "delete") {
    removeSection(doc, "reported", request.reported, now);
  } else {
    if (request.reported !== undefined) mergeSection(doc, "reported", request.reported, now);
    if (request.desired !== undefined) {
      if (opts.replaceDesired) removeSection(doc, "desired", "clear", now);
      mergeSection(doc, "desired", request.desired, now);
      desiredSet = request.desired !== "clear" && setsAValue(request.desired);
    }
  }
  const count = Object.keys(doc.state.reported ?? {}).length;
  if (count > MAX_ATTRIBUTES) {
    return fail(
      ShadowErrorCodes.TOO_MANY_ATTRIBUTES,
      `reported would hold ${count} attributes, more than ${MAX_ATTRIBUTES}`,
    );
  }
  doc.version = request.version ?? current.version + 1;
  doc.timestamp = now;
  doc.state = inDocumentOrder(doc.state);
  doc.metadata = inDocumentOrder(doc.metadata);
  return { ok: true, document: doc, desiredSet };
}

/** desired before reported, as in Alibaba's documents, whichever was written first. */
function inDocumentOrder<T extends { desired?: unknown; reported?: unknown }>(s: T): T {
  const out = {} as T;
  if (s.desired !== undefined) out.desired = s.desired;
  if (s.reported !== undefined) out.reported = s.reported;
  return out;
}

function setsAValue(patch: JsonObject): boolean {
  return Object.values(patch).some((v) => !isNullMarker(v) && (!isPlainObject(v) || setsAValue(v)));
}

/**
 * Merges `patch` into `target`: objects recursively, everything else (arrays included) replaced
 * whole, "null" deletes. An object that the patch empties by deletions is dropped; an empty
 * object sent as a value is kept, because the sender asked for it.
 */
export function mergeInto(target: JsonObject, patch: JsonObject): void {
  for (const key of Object.keys(patch)) {
    const value = patch[key] as JsonValue;
    if (isNullMarker(value)) {
      delete target[key];
    } else if (isPlainObject(value)) {
      const existing = own(target, key);
      const base: JsonObject = isPlainObject(existing) ? existing : {};
      mergeInto(base, value);
      if (Object.keys(base).length === 0 && Object.keys(value).length > 0) delete target[key];
      else setOwn(target, key, base);
    } else {
      setOwn(target, key, structuredClone(value));
    }
  }
}

/**
 * Metadata is kept per top-level attribute ("one timestamp per attribute", 1.2): an attribute
 * gets the request's time when any part of it is touched, and loses its entry when deleted.
 */
function touchMetadata(
  doc: CloudShadowDocument,
  section: "reported" | "desired",
  keys: readonly string[],
  now: number,
): void {
  const values = doc.state[section] ?? {};
  const meta: MetadataSection = doc.metadata[section] ?? {};
  for (const key of keys) {
    if (Object.hasOwn(values, key)) setOwn(meta, key, { timestamp: now });
    else delete meta[key];
  }
  doc.metadata[section] = meta;
  dropIfEmpty(doc, section);
}

function mergeSection(
  doc: CloudShadowDocument,
  section: "reported" | "desired",
  patch: SectionPatch,
  now: number,
): void {
  if (patch === "clear") {
    removeSection(doc, section, "clear", now);
    return;
  }
  const values = doc.state[section] ?? {};
  mergeInto(values, patch);
  doc.state[section] = values;
  touchMetadata(doc, section, Object.keys(patch), now);
}

/** A delete removes what it names: a nested object descends, any other value deletes. */
function removeSection(
  doc: CloudShadowDocument,
  section: "reported" | "desired",
  patch: SectionPatch,
  now: number,
): void {
  if (patch === "clear") {
    delete doc.state[section];
    delete doc.metadata[section];
    return;
  }
  const values = doc.state[section] ?? {};
  removeFrom(values, patch);
  doc.state[section] = values;
  // A partial nested delete changes the attribute, so its timestamp moves like a merge's would.
  touchMetadata(doc, section, Object.keys(patch), now);
}

function removeFrom(target: JsonObject, patch: JsonObject): void {
  for (const key of Object.keys(patch)) {
    if (!Object.hasOwn(target, key)) continue;
    const value = patch[key];
    const existing = target[key];
    if (isPlainObject(value) && Object.keys(value).length > 0 && isPlainObject(existing)) {
      removeFrom(existing, value);
      if (Object.keys(existing).length === 0) delete target[key];
    } else {
      delete target[key];
    }
  }
}

/** Sections that become empty are dropped, as in a document that never had them. */
function dropIfEmpty(doc: CloudShadowDocument, section: "reported" | "desired"): void {
  const values = doc.state[section];
  if (values !== undefined && Object.keys(values).length === 0) {
    delete doc.state[section];
    delete doc.metadata[section];
  }
}
