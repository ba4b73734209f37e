import type { ConnectionState, JsonObject, JsonValue, Quality } from "../core/types.js";

/**
 * What the local HTTP API needs of the running gateway. src/api does not import the daemon
 * (docs/architecture.md): daemon/api-host.ts adapts the gateway to this, and tests put their own
 * host behind the routes.
 */

/**
 * A device's cloud state: `synced` (the cloud holds its latest reports), `syncing` (the link is
 * up, reports or a command are on their way), `offline` (the link or the cloud sync is down),
 * `refused` (the cloud will not take its traffic until an operator acts).
 */
export type CloudState =
  | { readonly state: "synced" }
  | { readonly state: "syncing" }
  | { readonly state: "offline"; readonly reason: string }
  | { readonly state: "refused"; readonly reason: string; readonly code?: number };

/**
 * The cloud shadow a device is synced to, in its platform's own terms: an Alibaba product key,
 * or an AWS thing and, for a named shadow, its name.
 */
export type CloudIdentity =
  | { readonly productKey: string; readonly thingName?: never; readonly shadowName?: never }
  | { readonly thingName: string; readonly shadowName?: string; readonly productKey?: never };

export type DeviceSummary = CloudIdentity & {
  readonly name: string;
  readonly source: string;
  /** Whether its source's connection is online. */
  readonly online: boolean;
  readonly points: number;
  /** When its readings last came in (ms since the epoch), if they have. */
  readonly lastPoll?: number;
  /** Absent without a cloud section. */
  readonly cloud?: CloudState;
  /** Reports the cloud has not confirmed yet; absent while there is no store. */
  readonly outbox?: number;
  /** Its source's connection state; `not open` when it could not be opened. */
  readonly connection: ConnectionState | "not open";
  /** Polls skipped because the one before still ran (its poll group's); absent when monitored. */
  readonly overruns?: number;
};

export interface PointState {
  readonly quality: Quality["status"];
  /** The time of its last good reading (ms since the epoch). */
  readonly timestamp?: number;
  readonly code?: string;
  readonly reason?: string;
}

export type DeviceShadowView = CloudIdentity & {
  readonly device: string;
  /** Last known values (stale ones included), and `_commands`: each point's last outcome. */
  readonly reported: JsonObject;
  /** Desired values received from the cloud and not executed yet, by point. */
  readonly desired: Readonly<Record<string, JsonValue>>;
  readonly points: Readonly<Record<string, PointState>>;
};

/** A local command's outcome, or why it never reached the guard. */
export type CommandReply =
  | { readonly status: "applied"; readonly outcome: JsonObject }
  /** The guard (or the device's codec) refused it: nothing was written. */
  | { readonly status: "rejected"; readonly reason: string; readonly outcome: JsonObject }
  /** The write or the read-back failed, or the device holds another value. */
  | { readonly status: "failed"; readonly reason: string; readonly outcome: JsonObject }
  | { readonly status: "not-found"; readonly reason: string }
  /** The gateway cannot run commands now (its journal is not open, it is reloading). */
  | { readonly status: "unavailable"; readonly reason: string };

/** What the event stream carries. */
export type ApiEvent =
  | { readonly type: "point"; readonly device: string; readonly reported: JsonObject }
  | {
      readonly type: "quality";
      readonly device: string;
      readonly quality: Readonly<Record<string, Quality>>;
    }
  | {
      readonly type: "command";
      readonly device: string;
      readonly point: string;
      readonly outcome: JsonObject;
    }
  | { readonly type: "link"; readonly online: boolean; readonly reason?: string };

export interface Readiness {
  readonly ready: boolean;
  /** Why it is not ready: empty when it is. */
  readonly reasons: readonly string[];
  readonly config: { readonly file: string; readonly devices: number };
  /** The store (outbox and journal): `none` without a cloud section. */
  readonly store: "open" | "closed" | "none";
  /** Each source's connection state; `not open` when it could not be opened. */
  readonly sources: Readonly<Record<string, ConnectionState | "not open">>;
}

/** What a reload applied in place, device by device (or "rebuilt": the gateway was rebuilt). */
export type ReloadPlan =
  | {
      readonly added: readonly string[];
      readonly changed: readonly string[];
      readonly removed: readonly string[];
      /** The cloud link was replaced (cloud section or cloud identities changed). */
      readonly reconnected: boolean;
    }
  | "rebuilt";

export type ReloadReply =
  | {
      readonly status: "applied";
      readonly plan: ReloadPlan;
      /** Sections that changed but take effect only at the next restart (api, log, memory). */
      readonly restartNeeded?: readonly string[];
    }
  /**
   * Every problem as `file:line:col key.path: message`; `omitted` counts those past the
   * loader's limit (config/load.ts), when there are any.
   */
  | { readonly status: "refused"; readonly problems: readonly string[]; readonly omitted?: number }
  /** The config was fine but applying it threw (a bug): logged. */
  | { readonly status: "failed"; readonly reason: string };

/** A reload's outcome, kept until the next one. */
export interface ReloadRecord {
  /** When it was applied or refused (ms since the epoch). */
  readonly at: number;
  /** SIGHUP (systemctl reload), the API, or `run --watch` seeing a file change. */
  readonly trigger: "signal" | "api" | "watch";
  readonly reply: ReloadReply;
}

/** A point as its mapping defines it, for people (the console). */
export interface PointDefinition {
  readonly name: string;
  /** Where it is read: "40010 (holding 9), int16 AB, scale 0.1", or an OPC UA node. */
  readonly where: string;
  readonly unit?: string;
  readonly writable: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly deadband?: number;
  /** False: reported only on heartbeat. */
  readonly onChange: boolean;
  readonly heartbeatMs?: number;
  /** Its line in the mapping file: `file:line`. */
  readonly defined?: string;
}

export type DeviceDetail = DeviceSummary & {
  /** The mapping file it comes from. */
  readonly file: string;
  readonly definitions: readonly PointDefinition[];
};

/** A point's raw words and its value under each byte order (`shadowgate read --raw`). */
export type RawReply =
  | { readonly status: "ok"; readonly raw: JsonObject }
  | { readonly status: "not-found"; readonly reason: string }
  /** The point has no raw words (a bit, an OPC UA variable). */
  | { readonly status: "no-raw"; readonly reason: string }
  /** The device did not answer, or answered with an error. */
  | { readonly status: "failed"; readonly reason: string };

/** A cloud shadow as the gateway last read it. */
export interface CloudShadowView {
  readonly version: number;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  /** When it was read (ms since the epoch). */
  readonly readAt: number;
  /** Whether it was read for this request (false: the last one read, the cloud not reachable). */
  readonly fresh: boolean;
}

export interface ApiHost {
  devices(): DeviceSummary[];
  /** Undefined for an unknown device. */
  device(deviceName: string): DeviceDetail | undefined;
  /** Undefined for an unknown device. */
  shadow(deviceName: string): DeviceShadowView | undefined;
  /**
   * Cheap: a key that changes whenever shadow(deviceName) would, so the API serves the same
   * serialized view to every reader until then. Undefined for an unknown device.
   */
  shadowRevision(deviceName: string): string | undefined;
  /**
   * Calls `listener` with a device's name whenever its shadowRevision() may have moved (after
   * each poll), until the returned function is called.
   */
  watchShadows(listener: (deviceName: string) => void): () => void;
  /** Guard, journal (with a cloud section), write, read-back; never throws. */
  command(deviceName: string, point: string, value: JsonValue): Promise<CommandReply>;
  /** Calls `listener` with every event until the returned function is called. */
  subscribe(listener: (event: ApiEvent) => void): () => void;
  /** Reads the point's raw words from the device now (through the source's queue). */
  raw(deviceName: string, point: string): Promise<RawReply>;
  /**
   * The point's latest values from the history, oldest first; a string says why there are
   * none to give (unknown device or point: not-found; no store: the reason).
   */
  history(
    deviceName: string,
    point: string,
    max: number,
  ):
    | { readonly status: "ok"; readonly values: ReadonlyArray<{ ts: number; value: JsonValue }> }
    | { readonly status: "not-found" | "unavailable"; readonly reason: string };
  /**
   * The cloud shadow as the gateway last read it, read again first when `fresh`; a string
   * says why there is none (unknown device: not-found; no cloud or never read: unavailable).
   */
  cloud(
    deviceName: string,
    fresh: boolean,
  ): Promise<
    | { readonly status: "ok"; readonly shadow: CloudShadowView }
    | { readonly status: "not-found" | "unavailable"; readonly reason: string }
  >;
  readiness(): Readiness;
  reload(): Promise<ReloadReply>;
  /** The last reload since the process started, if any. */
  lastReload(): ReloadRecord | undefined;
  /** The Prometheus exposition. */
  metrics(): Promise<{ contentType: string; body: string }>;
}
