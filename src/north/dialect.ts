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

/** A problem with the dialect's cloud config, at a key path below `cloud` ([] = the section). */
export interface CloudConfigProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * A per-device session on the gateway's one connection, for clouds where a device behind the
 * gateway must log in before its topics are used (Alibaba sub-devices, shadow-protocol.md 2.3).
 * The engine logs a device in after every (re)connect and after a reply of class `session`,
 * before it subscribes the device's topics or sends its requests, and logs it out when it stops.
 */
export interface DeviceSession {
  /** Resolves when the device may use its topics; rejects when the cloud refused (retried). */
  login(device: ShadowDevice): Promise<void>;
  logout(device: ShadowDevice): Promise<void>;
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
  /** Rules over several keys of the cloud section, beyond its schema. */
  check(cloud: C): CloudConfigProblem[];
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
  /** The per-device session step, when the cloud has one, over the gateway's link. */
  session?(context: { link: Link; cloud: C; log: Logger }): DeviceSession;
}
