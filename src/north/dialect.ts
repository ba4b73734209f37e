import type { JsonObject } from "../core/types.js";

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

export type ReplyClass = "success" | "conflict" | "permanent" | "retry";

/**
 * What differs between clouds: topics, message shapes, the version rule and how desired is
 * cleared. The link, backoff, batching and the sync pump are shared (architecture.md).
 */
export interface Dialect {
  readonly name: string;
  /** Where requests go and where replies and pushes come from. */
  topics(
    productKey: string,
    deviceName: string,
  ): { readonly request: string; readonly inbound: string };
  encodeReport(reported: JsonObject, version: number, clientToken: string): string;
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
  classify(code: number): ReplyClass;
}
