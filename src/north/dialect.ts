import type { Logger } from "../core/logger.js";
import type { JsonObject } from "../core/types.js";
import type { Link } from "./link.js";

/** A message from the cloud, decoded and validated by a dialect. */
export type Inbound =
  | {
      readonly kind: "reply";
      readonly status: "success";
      readonly version?: number;
      readonly clientToken?: string;
      /** Present on the reply to a `get`: the whole shadow. */
      readonly shadow?: CloudShadow;
    }
  | {
      readonly kind: "reply";
      readonly status: "error";
      readonly code: number;
      readonly message: string;
      readonly version?: number;
      readonly clientToken?: string;
    }
  | { readonly kind: "control"; readonly version: number; readonly shadow: CloudShadow }
  /** Someone deleted the shadow (AWS /delete/accepted): the gateway reconciles from scratch. */
  | { readonly kind: "gone" };

/** The parts of a cloud shadow the gateway acts on. */
export interface CloudShadow {
  /** Desired values; null marks a cleared attribute. */
  readonly desired: JsonObject;
  /**
   * Desired timestamps in the dialect's unit (seconds on both clouds), by top-level attribute
   * (Alibaba) or by dotted leaf path (AWS); a leaf without its own takes its attribute's.
   */
  readonly desiredTimestamps: Readonly<Record<string, number>>;
  readonly reported: JsonObject;
}

/**
 * What an error reply means for the request: `conflict` gets the shadow and resends,
 * `permanent` drops it, `retry` sends it again later, `session` says the device has no session
 * on the connection (it logs in again, then gets and resends; see DeviceSession), `too-large`
 * sends the report again in smaller parts (AWS 413).
 */
export type ReplyClass = "success" | "conflict" | "permanent" | "retry" | "session" | "too-large";

/** The requests the sync engine sends. */
export type RequestKind = "get" | "report" | "clear";

/** One shadow the gateway keeps in sync: a device (Alibaba: productKey/deviceName). */
export interface ShadowDevice {
  readonly productKey: string;
  readonly deviceName: string;
  /** The device's own secret, for a session step that signs its login (never logged). */
  readonly deviceSecret?: string;
}

/** A device's topics on the gateway's connection. */
export interface ShadowTopics {
  /**
   * Subscribed before the device's first request: where its replies and pushes arrive (Alibaba:
   * /shadow/get/pk/dn; AWS: the accepted, rejected and delta topics).
   */
  readonly subscriptions: readonly string[];
  /** Where each request goes (Alibaba: all to /shadow/update/pk/dn; AWS: /get, /update). */
  readonly requests: Readonly<Record<RequestKind, string>>;
}

/** A desired value as the journal keeps it: the last one executed per device and point. */
export interface JournalRecord {
  readonly ts: number;
  readonly version: number;
  /** The value as JSON text. */
  readonly value: string;
}

/**
 * How the cloud checks a request's version: `above` (Alibaba) takes one greater than its own
 * and stores it; `equal` (AWS) takes only its current one and adds one itself, and requests
 * without a version are not checked. Under `equal` the desired clear names the version at which
 * the gateway saw every desired value, so the engine re-reads the shadow whenever the version
 * moved by more than its own requests explain.
 */
export type VersionRule = "above" | "equal";

/** What the cloud accepts, checked before a request goes (and by the config check). */
export interface DialectLimits {
  /** Top-level attributes in `reported` (Alibaba: 128, error 408 beyond); none if unlimited. */
  readonly maxAttributes?: number;
  /** Bytes of desired plus reported state in the stored document (AWS: 8 KB); none if unknown. */
  readonly maxDocumentBytes?: number;
  /** Nesting depth of the state (AWS: 6); none if unknown. */
  readonly maxDepth?: number;
  /**
   * Requests awaiting a reply on one connection (AWS: 10, error 429 beyond): the engine takes
   * the lower of this and the config's maxInFlight. None: the config alone decides.
   */
  readonly maxInFlight?: number;
}

/** The dialect's part of the MQTT connect options: where to, and who the gateway is. */
export interface ConnectionIdentity {
  /** mqtt://, mqtts://, ws:// or wss://: TLS follows the scheme. */
  readonly url: string;
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  /** TLS ALPN protocols (AWS IoT on port 443: x-amzn-mqtt-ca). */
  readonly alpn?: readonly string[];
}

/**
 * A problem with the dialect's cloud config, at a key path below `cloud` ([] = the section), or,
 * with `device` (an index into CloudCheckContext.devices), at a key path of that device's
 * mapping file.
 */
export interface CloudConfigProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
  readonly device?: number;
  /** Worth knowing, but the config works: `validate` shows it, and the gateway starts. */
  readonly warning?: boolean;
}

/** A point as the config check sees it (mapping/types.ts PointBase has these and more). */
export interface CheckedPoint {
  readonly name: string;
  /** The path below `state.reported`. */
  readonly path: readonly string[];
  readonly writable: boolean;
}

/** A mapping's device as the config check sees it (a compiled DevicePlan). */
export interface CheckedDevice extends ShadowDevice {
  /** How the mapping named its shadow: absent for an Alibaba triple, "aws" for a thing. */
  readonly addressing?: "aws";
  readonly points: readonly CheckedPoint[];
}

/** What a dialect's config check sees besides the cloud section. */
export interface CloudCheckContext {
  readonly devices: readonly CheckedDevice[];
  /** Files the cloud section names are relative to it. */
  readonly configDir: string;
}

/**
 * A per-device session on the gateway's one connection, for clouds where a device behind the
 * gateway must log in before its topics are used (Alibaba sub-devices, shadow-protocol.md 2.3).
 * The engine subscribes `subscriptions` and offers every message to `handle` first; it logs a
 * device in after every (re)connect and after the cloud said its session is gone, before it
 * subscribes the device's topics or sends its requests, and logs it out when it stops. Calls
 * made together may go out as one message (a batch login).
 */
export interface DeviceSession {
  /** Where the session step's replies and the cloud's notices arrive. */
  readonly subscriptions: readonly string[];
  /** Takes a message on one of `subscriptions`; false for any other (the engine decodes it). */
  handle(topic: string, payload: Buffer): boolean;
  /**
   * Resolves when the device may use its topics. Rejects with a SessionRefusal when the cloud
   * refused it for a reason that logging in again cannot cure (not retried), with any other
   * error when it may be tried again (retried with backoff).
   */
  login(device: ShadowDevice): Promise<void>;
  logout(device: ShadowDevice): Promise<void>;
  /** The connection dropped: requests awaiting a reply fail now. */
  offline(): void;
}

/** The cloud refused a device's session for good: an operator must act (code and reason kept). */
export class SessionRefusal extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
  ) {
    super(`${code} ${reason}`);
    this.name = "SessionRefusal";
  }
}

/** What the cloud says of sessions unasked, as a session step decodes it. */
export interface SessionEvents {
  /** The device has no session any more (Alibaba: 520 on /ext/error): log it in again. */
  lost(device: ShadowDevice): void;
  /** The cloud will not take the device's traffic (deleted, disabled): stop it, do not retry. */
  refused(device: ShadowDevice, code: number, reason: string): void;
  /** An operator enabled the device again (Alibaba: topo/change status 2 or 0): log it in. */
  resumed(device: ShadowDevice): void;
}

/** What a dialect's session step is built with. */
export interface SessionContext<C> {
  readonly link: Link;
  readonly cloud: C;
  /** Every device the gateway syncs; the session knows which one is the gateway itself. */
  readonly devices: readonly ShadowDevice[];
  readonly events: SessionEvents;
  /** Where the session may keep what it learns (Alibaba: registered sub-device secrets). */
  readonly dataDir: string;
  /** Files the cloud section names are relative to it. */
  readonly configDir: string;
  readonly log: Logger;
}

/**
 * What differs between clouds: connection identity and config keys, topics, limits, message
 * shapes, the version rule, the rule that says whether a desired value is a new command, how
 * desired is cleared, and an optional per-device session step. The link, backoff, batching,
 * the request pump and the desired runner are shared (architecture.md). `C` is the dialect's
 * cloud config section (dialects/index.ts has the table).
 */
export interface Dialect<C = unknown> {
  readonly name: string;
  /** The URL and login for the cloud section (Alibaba: the signed MQTT credentials). */
  connection(cloud: C, now: number): ConnectionIdentity;
  /**
   * Rules over several keys of the cloud section, beyond its schema, and over the devices it
   * will carry (Alibaba: each sub-device needs a way to its secret).
   */
  check(cloud: C, context: CloudCheckContext): CloudConfigProblem[];
  readonly limits: DialectLimits;
  readonly versionRule: VersionRule;
  /** Where a device's requests go and where its replies and pushes come from. */
  topics(productKey: string, deviceName: string): ShadowTopics;
  encodeReport(reported: JsonObject, version: number, clientToken: string): string;
  /**
   * Splits a report the cloud could not take in one request (AWS: over 8 KB, or `maxBytes`
   * after the cloud refused a part as too large) into parts that each fit, in order; absent
   * when the dialect has no size limit.
   */
  splitReport?(reported: JsonObject, maxBytes?: number): JsonObject[];
  /**
   * The request that clears desired once its commands ran: the points offered since the last
   * clear (dotted names), or the whole section (Alibaba: the string "null"; AWS: each point
   * set to JSON null).
   */
  encodeClearDesired(points: readonly string[], version: number, clientToken: string): string;
  encodeGet(clientToken: string): string;
  decode(
    topic: string,
    payload: Buffer,
  ):
    | { ok: true; productKey: string; deviceName: string; message: Inbound }
    | { ok: false; reason: string };
  /** The version to send after the last one known from the cloud. */
  nextVersion(lastKnown: number): number;
  /** A desired timestamp (CloudShadow.desiredTimestamps) in milliseconds since the epoch. */
  timestampMs(ts: number): number;
  /**
   * Whether an offered desired value is a command not executed yet, given the point's last
   * execution (both clouds: by whole-second timestamp, then value: isNewByTimestamp).
   */
  isNewCommand(last: JournalRecord | undefined, offered: JournalRecord): boolean;
  /** What an error code means for a request of this kind (AWS: 404 on a get is "no shadow yet"). */
  classify(code: number, kind: RequestKind): ReplyClass;
  /**
   * The per-device session step over the gateway's link, when the cloud and this config have
   * one (Alibaba: sub-devices); undefined when every device may use its topics at once.
   */
  session?(context: SessionContext<C>): DeviceSession | undefined;
}

/**
 * The new-command rule of clouds that stamp each desired value with the whole second it was
 * set and say nothing else of which change set it (Alibaba, AWS): a get reply carries the
 * document's current version (every report raises it), and a push carries the latest change's
 * version with all of desired, so a value set earlier and not cleared yet comes again with a
 * later version. So a value is a new command when its timestamp is later than the last
 * execution's, or, within the same second, when the value differs and its version is not older.
 * The same value within the same second is the same command (and writing an equal value again
 * would change nothing).
 */
export function isNewByTimestamp(last: JournalRecord | undefined, offered: JournalRecord): boolean {
  if (last === undefined || offered.ts > last.ts) return true;
  if (offered.ts < last.ts || offered.value === last.value) return false;
  // Another value within the same second: a later change, unless it comes with an older version
  // than the executed one. Every change raises the version past every document seen before it,
  // so an older version is an earlier change arriving late: a QoS 1 redelivery, or an AWS delta
  // overtaken by the next one. Found by the cloud fuzzer: false, true, then false redelivered,
  // all in one second, ran false twice.
  return offered.version >= last.version;
}
