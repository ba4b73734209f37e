import type { JsonObject, JsonValue } from "../core/types.js";
import type { JournalRecord } from "./dialect.js";

/** What the north side asks of the rest of the gateway, and what it counts. */

export interface CommandResult {
  readonly status: "applied" | "rejected" | "failed";
  readonly reason?: string;
  readonly value?: JsonValue;
}

/**
 * Where reported updates wait for the cloud: durable (the SQLite outbox in the gateway), in
 * order per device, and removed only when the cloud confirmed them.
 */
export interface Backlog {
  stage(productKey: string, deviceName: string, reported: JsonObject): void;
  /** Makes staged updates durable; returns the devices that got some. */
  flush(): string[];
  /** The device's unconfirmed updates merged in order, and the last one they include. */
  pending(
    productKey: string,
    deviceName: string,
  ): { upto: number; reported: JsonObject } | undefined;
  /** The cloud confirmed the device's updates up to `upto`, and is now at `version`. */
  ack(productKey: string, deviceName: string, upto: number | undefined, version: number): void;
  /** The version saved before a restart. */
  saved(productKey: string, deviceName: string): { version: number } | undefined;
}

/** The last desired value executed per device and point, kept across restarts. */
export interface Journal {
  last(pk: string, dn: string, point: string): (JournalRecord & { status: string }) | undefined;
  record(pk: string, dn: string, point: string, entry: JournalRecord & { status: string }): void;
  /** The point has no executed command on record (any more). */
  forget(pk: string, dn: string, point: string): void;
}

export interface SyncHooks {
  /** The device's whole current reported state, pushed after every (re)connect. */
  snapshot(deviceName: string): JsonObject;
  /** The device's point names, to map nested desired objects onto dotted points. */
  pointNames(deviceName: string): readonly string[];
  /**
   * Executes one desired value; never throws. With `resume`, the same command was cut short
   * by a crash: write only if the device does not hold the value already.
   */
  execute(
    deviceName: string,
    point: string,
    value: JsonValue,
    opts: { resume: boolean },
  ): Promise<CommandResult>;
  backlog: Backlog;
  journal: Journal;
  /**
   * A command's outcome, as staged under `_commands` for its point (cloud and local commands):
   * the gateway keeps it in the edge shadow for local readers.
   */
  outcome?(deviceName: string, point: string, outcome: JsonObject): void;
}

export interface SyncStats {
  sent: number;
  acknowledged: number;
  conflicts: number;
  rejected: number;
  timeouts: number;
  badMessages: number;
  duplicateCommands: number;
  commands: { applied: number; rejected: number; failed: number };
}
