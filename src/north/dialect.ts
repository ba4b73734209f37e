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
  | { readonly kind: "control"; readonly version: number; readonly shadow: CloudShadow };

/** The parts of a cloud shadow the gateway acts on. */
export interface CloudShadow {
  /** Desired values; null marks a cleared attribute. */
  readonly desired: JsonObject;
  /** Per top-level desired attribute, its timestamp in the dialect's unit (Alibaba: seconds). */
  readonly desiredTimestamps: Readonly<Record<string, number>>;
  readonly reported: JsonObject;
}

/**
 * What an error reply means for the request: `conflict` gets the shadow and resends,
 * `permanent` drops it, `retry` sends it again later, `session` says the device has no session
 * on the connection (it logs in again, then gets and resends; see DeviceSession).
 */
export type ReplyClass = "success" | "conflict" | "permanent" | "retry" | "session";

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

/** What the cloud accepts, checked before a request goes (and by the config check). */
export interface DialectLimits {
  /** Top-level attributes in `reported` (Alibaba: 128, error 408 beyond). */
  readonly maxAttributes: number;
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
}

/** What a dialect's config check sees besides the cloud section. */
export interface CloudCheckContext {
  readonly devices: readonly ShadowDevice[];
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
  /** Where a device's requests go and where its replies and pushes come from. */
  topics(productKey: string, deviceName: string): ShadowTopics;
  encodeReport(reported: JsonObject, version: number, clientToken: string): string;
  /** The request that clears desired once its commands ran (Alibaba: the string "null"). */
  encodeClearDesired(version: number, clientToken: string): string;
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
   * execution (Alibaba: by whole-second timestamp, then value; AWS: by version alone).
   */
  isNewCommand(last: JournalRecord | undefined, offered: JournalRecord): boolean;
  classify(code: number): ReplyClass;
  /**
   * The per-device session step over the gateway's link, when the cloud and this config have
   * one (Alibaba: sub-devices); undefined when every device may use its topics at once.
   */
  session?(context: SessionContext<C>): DeviceSession | undefined;
}
