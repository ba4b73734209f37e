import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { isJsonObject as isObject, mergeReported } from "../core/json.js";
import type { JsonObject, JsonValue } from "../core/types.js";
import type { CloudShadow, Dialect, Inbound } from "./dialect.js";
import type { LinkEvents } from "./link.js";

/** What the sync engine needs of the MQTT link (MqttLink in production, a fake in unit tests). */
export interface Link {
  readonly online: boolean;
  on<K extends keyof LinkEvents>(event: K, listener: (...args: LinkEvents[K]) => void): unknown;
  subscribe(topics: readonly string[]): Promise<void>;
  publish(topic: string, payload: string): Promise<void>;
}

export interface JournalRecord {
  readonly ts: number;
  readonly version: number;
  /** The value as JSON text. */
  readonly value: string;
}

/**
 * Whether an offered desired value is a command not yet executed. Alibaba stamps each desired
 * attribute with the whole second it was set, and no message says which version set it: a get
 * reply carries the document's current version (every report raises it), and a control push
 * carries the version of the latest change together with the whole desired state, so an
 * attribute set earlier and not cleared yet comes again with a later version. So a value is a
 * new command when its timestamp is later than the last execution's, or, within the same
 * second, when the value differs. The same value within the same second is the same command
 * (and writing an equal value again would change nothing anyway).
 */
export function isNewCommand(last: JournalRecord | undefined, offered: JournalRecord): boolean {
  if (last === undefined || offered.ts > last.ts) return true;
  if (offered.ts < last.ts) return false;
  return offered.value !== last.value;
}

/** The journal status of a command whose write may or may not have happened yet. */
const EXECUTING = "executing";

/** Requests a device may send back to back before the rate limit spaces them. */
const RATE_BURST = 3;

/**
 * How far a desired value's timestamp may lie ahead of the gateway's clock. Beyond it the value
 * is bad input and refused: taken as it stands, its timestamp would outrank every real command
 * for the point until the clock caught up (years, for a garbled one). Clocks that drift apart
 * by a day are a problem to fix with NTP, which the refusal's reason says.
 */
export const MAX_DESIRED_AHEAD_MS = 24 * 3600 * 1000;

/** Distinct "logged once" keys kept before the set starts again (hostile input is unbounded). */
const LOGGED_ONCE_LIMIT = 1000;

/** The reserved reported key under which every command's outcome is visible in the shadow. */
export const COMMANDS_KEY = "_commands";

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
  /** The last desired value executed per device and point, kept across restarts. */
  journal: {
    last(pk: string, dn: string, point: string): (JournalRecord & { status: string }) | undefined;
    record(pk: string, dn: string, point: string, entry: JournalRecord & { status: string }): void;
    /** The point has no executed command on record (any more). */
    forget(pk: string, dn: string, point: string): void;
  };
}

export interface SyncOptions {
  /** Reported changes are gathered this long before one update goes out. */
  readonly sendWindowMs: number;
  /** The per-device rate limit: on average one request per this interval. */
  readonly minIntervalMs: number;
  /** Requests awaiting a reply, over all devices. */
  readonly maxInFlight: number;
  readonly replyTimeoutMs: number;
  /** Conflicts (409) in a row before the device pauses for a reply timeout. */
  readonly conflictRetries: number;
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

type Kind = "get" | "report" | "clear";

interface InFlight {
  readonly token: string;
  readonly kind: Kind;
  readonly version?: number;
  /** The last backlog row a report carried, acknowledged on success. */
  readonly upto?: number;
  /** A report carrying the whole current state (after a get), redone if it fails. */
  readonly full?: boolean;
  /** A get that only learns the cloud's version (after a control push), not a reconnect's. */
  readonly refresh?: boolean;
  readonly timer: NodeJS.Timeout;
}

interface DeviceSync {
  readonly productKey: string;
  readonly deviceName: string;
  readonly topics: { request: string; inbound: string };
  /**
   * The last version known from the cloud: from replies to the gateway's own requests and from
   * gets only. A control push's version is not taken (Alibaba stores whatever version it is
   * sent, so one forged or garbled push would carry every later request); it asks for a get.
   */
  version: number;
  /** Reconciled (get, desired, full report) since the link came up. */
  synced: boolean;
  /** A control push announced a later version: a get learns the cloud's own before the next request. */
  refresh: boolean;
  /** The whole current reported state is due (after a get: local wins). */
  fullPush: boolean;
  clearDesired: boolean;
  /** The newest pushed version whose desired values a clear was already asked for. */
  clearRequestedFor: number;
  /**
   * The desired clear waits until the backlog is acknowledged up to this row (the last one
   * queued when the clear was asked for: the command outcomes, also those left by a gateway
   * that died before sending them), so that the cloud has each outcome before desired is
   * cleared and the next command for the point can come. Then it goes ahead of further
   * reports, so that a device whose values change at the rate limit cannot starve it.
   */
  clearAfterRow: number;
  /** The last backlog row the cloud acknowledged (in this process's life). */
  ackedRow: number;
  /** Desired batches queued or executing: desired is cleared only once none is left. */
  batches: number;
  inFlight?: InFlight;
  /** Token bucket of the rate limit: a command's clear and read-back go out at once. */
  tokens: number;
  tokensAt: number;
  /** No request before this time (after repeated conflicts or a retryable error). */
  pausedUntil: number;
  conflicts: number;
  wakeTimer?: NodeJS.Timeout;
  /** Desired executions run one after another per device. */
  executing: Promise<void>;
  /**
   * Per point, the last command refused (timestamp and value), so that a redelivery of it is a
   * duplicate. Refused commands stay out of the journal: they must not move the point's
   * "last executed" mark, or a refusal stamped in the future would block every real command.
   */
  refused: Map<string, string>;
}

/**
 * Keeps every device's cloud shadow in step with the edge shadow over one MQTT link: partial
 * reported updates batched per device per send window, one request in flight per device (so
 * versions go up in order), conflict (409) recovery by get-merge-resend, and desired values
 * executed once each through the journal. After every (re)connect: subscribe, get every
 * shadow, execute what is new, push the whole current reported state, then resume.
 */
export class SyncEngine {
  private readonly devices = new Map<string, DeviceSync>();
  private readonly byTopicKey = new Map<string, DeviceSync>();
  private inFlight = 0;
  private tokenSeq = 0;
  private readonly loggedOnce = new Set<string>();
  readonly stats: SyncStats = {
    sent: 0,
    acknowledged: 0,
    conflicts: 0,
    rejected: 0,
    timeouts: 0,
    badMessages: 0,
    duplicateCommands: 0,
    commands: { applied: 0, rejected: 0, failed: 0 },
  };
  private stopped = false;

  constructor(
    private readonly link: Link,
    private readonly dialect: Dialect,
    devices: ReadonlyArray<{ productKey: string; deviceName: string }>,
    private readonly hooks: SyncHooks,
    private readonly opts: SyncOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    for (const d of devices) {
      const state: DeviceSync = {
        ...d,
        topics: dialect.topics(d.productKey, d.deviceName),
        version: hooks.backlog.saved(d.productKey, d.deviceName)?.version ?? 0,
        synced: false,
        refresh: false,
        fullPush: false,
        clearDesired: false,
        clearRequestedFor: -1,
        clearAfterRow: 0,
        ackedRow: 0,
        batches: 0,
        tokens: RATE_BURST,
        tokensAt: now(),
        pausedUntil: -Infinity,
        conflicts: 0,
        executing: Promise.resolve(),
        refused: new Map(),
      };
      this.devices.set(d.deviceName, state);
      this.byTopicKey.set(`${d.productKey}/${d.deviceName}`, state);
    }
    // Nothing may escape into the link's emitter: a bug handling one message or one reconnect
    // is logged and the engine goes on with the next.
    link.on("online", () => {
      this.onOnline().catch((err: unknown) => this.internal("bringing the shadows up", err));
    });
    link.on("offline", () => this.guard("going offline", () => this.onOffline()));
    link.on("message", (topic, payload) =>
      this.guard("handling a cloud message", () => this.onMessage(topic, payload), { topic }),
    );
  }

  /** A partial reported update from the edge shadow: staged now, durable at the next flush. */
  report(deviceName: string, reported: JsonObject): void {
    const d = this.devices.get(deviceName);
    if (!d || Object.keys(reported).length === 0) return;
    this.hooks.backlog.stage(d.productKey, d.deviceName, reported);
  }

  /**
   * Makes staged reports durable (once per poll cycle) and schedules their sending after the
   * send window; a command's outcome and read-back go at once.
   */
  flush(delayMs = this.opts.sendWindowMs): void {
    for (const name of this.hooks.backlog.flush()) {
      const d = this.devices.get(name);
      if (d) this.wake(d, delayMs);
    }
  }

  /** Version and sync state per device, for health and tests. */
  deviceState(
    deviceName: string,
  ): { version: number; synced: boolean; busy: boolean; backlog: boolean } | undefined {
    const d = this.devices.get(deviceName);
    return (
      d && {
        version: d.version,
        synced: d.synced,
        busy: d.inFlight !== undefined || d.fullPush || d.clearDesired,
        backlog: this.hooks.backlog.pending(d.productKey, d.deviceName) !== undefined,
      }
    );
  }

  /** Resolves when every device's queued desired executions have finished. */
  async idle(): Promise<void> {
    await Promise.all([...this.devices.values()].map((d) => d.executing));
  }

  stop(): void {
    this.stopped = true;
    for (const d of this.devices.values()) {
      clearTimeout(d.wakeTimer);
      if (d.inFlight) clearTimeout(d.inFlight.timer);
    }
  }

  /**
   * Brings each device's shadow up on its own: subscribe to its topic before anything is
   * published (or the first replies could be missed), then pump, which starts with a get. A
   * per-device step, so that a device the broker refuses does not hold up the others, and so
   * that Alibaba's sub-device login can slot in here later.
   */
  private async onOnline(): Promise<void> {
    await Promise.all(
      [...this.devices.values()].map(async (d) => {
        try {
          await this.link.subscribe([d.topics.inbound]);
        } catch (err) {
          this.log.error(
            { device: d.deviceName, topic: d.topics.inbound, err },
            "subscribing to the shadow topic failed",
          );
          return;
        }
        this.pump(d);
      }),
    );
  }

  private onOffline(): void {
    for (const d of this.devices.values()) {
      this.abandon(d);
      d.synced = false;
    }
  }

  /** Drops the request in flight, keeping what it carried for the next one. */
  private abandon(d: DeviceSync): void {
    const f = d.inFlight;
    if (!f) return;
    clearTimeout(f.timer);
    d.inFlight = undefined;
    this.inFlight--;
    // A report's rows stay in the backlog until acknowledged, so only a full push is redone.
    if (f.full) d.fullPush = true;
    if (f.kind === "clear") d.clearDesired = true;
  }

  private wake(d: DeviceSync, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.pump(d);
    if (d.wakeTimer) return;
    d.wakeTimer = setTimeout(() => {
      d.wakeTimer = undefined;
      this.pump(d);
    }, delayMs);
  }

  /**
   * Sends the next request a device needs, if it may send now. Called from timers, link events
   * and the desired chain, so it never throws: a request that cannot be built is logged once
   * and the device pauses for a reply timeout before it tries again.
   */
  private pump(d: DeviceSync): void {
    try {
      this.pumpNow(d);
    } catch (err) {
      d.pausedUntil = this.now() + this.opts.replyTimeoutMs;
      this.once(`pump:${d.deviceName}`, () =>
        this.log.error(
          { device: d.deviceName, version: d.version, err, code: ErrorCodes.INTERNAL },
          "cannot build the next shadow request; retrying after a reply timeout",
        ),
      );
      this.wake(d, this.opts.replyTimeoutMs);
    }
  }

  private pumpNow(d: DeviceSync): void {
    if (this.stopped || !this.link.online || d.inFlight) return;
    if (this.inFlight >= this.opts.maxInFlight) return; // a reply elsewhere pumps again
    const backlog = d.synced ? this.hooks.backlog.pending(d.productKey, d.deviceName) : undefined;
    // Everything the backlog holds goes as one update (a shadow is state, not a log); after a
    // get, with the whole current state on top of it.
    const reported = d.fullPush
      ? mergeReported(backlog?.reported ?? {}, this.hooks.snapshot(d.deviceName))
      : backlog?.reported;
    const report = reported !== undefined && Object.keys(reported).length > 0;
    // No clear while desired batches are queued: it would remove commands received but not
    // executed yet, and a SIGKILL before their turn would lose them. The last batch pumps.
    const clearDue = d.clearDesired && d.batches === 0;
    if (d.synced && !d.refresh && !report && !clearDue) return;
    // Once the outcomes are in the cloud, the clear goes before any further report.
    const clearFirst = clearDue && d.ackedRow >= d.clearAfterRow;
    const wait = this.waitFor(d);
    if (wait > 0) return this.wake(d, wait);
    const token = this.token(d);
    const version = this.dialect.nextVersion(d.version);
    if (!d.synced || d.refresh) {
      const refresh = d.synced;
      this.send(d, { token, kind: "get", refresh }, this.dialect.encodeGet(token));
    } else if (report && !clearFirst) {
      // Reports go before a desired clear, so a command's read-back reaches the cloud first.
      const full = d.fullPush;
      d.fullPush = false;
      let body: string;
      try {
        body = this.dialect.encodeReport(reported, version, token);
      } catch (err) {
        // The cloud could never take it (the dialect's own limits): it leaves the outbox, said
        // once, rather than stopping the device's sync for good.
        this.stats.rejected++;
        this.once(`encode:${d.deviceName}`, () =>
          this.log.error(
            { device: d.deviceName, err, code: ErrorCodes.SHADOW_REJECTED },
            "a report cannot be sent; dropped",
          ),
        );
        if (backlog) {
          this.hooks.backlog.ack(d.productKey, d.deviceName, backlog.upto, d.version);
          d.ackedRow = Math.max(d.ackedRow, backlog.upto);
        }
        return;
      }
      this.send(
        d,
        {
          token,
          kind: "report",
          version,
          full,
          ...(backlog && { upto: backlog.upto }),
        },
        body,
      );
    } else {
      if (!report) d.fullPush = false; // an empty full push is done; a real one goes next
      d.clearDesired = false;
      this.send(
        d,
        { token, kind: "clear", version },
        this.dialect.encodeClearDesired(version, token),
      );
    }
  }

  /** Milliseconds until the device may send, refilling its bucket first. */
  private waitFor(d: DeviceSync): number {
    const now = this.now();
    if (now < d.pausedUntil) return d.pausedUntil - now;
    const perMs = 1 / this.opts.minIntervalMs;
    d.tokens = Math.min(RATE_BURST, d.tokens + (now - d.tokensAt) * perMs);
    d.tokensAt = now;
    return d.tokens >= 1 ? 0 : Math.ceil((1 - d.tokens) / perMs);
  }

  private token(d: DeviceSync): string {
    this.tokenSeq = (this.tokenSeq + 1) % Number.MAX_SAFE_INTEGER;
    return `${d.productKey}.${d.deviceName}-${this.tokenSeq}`;
  }

  private send(d: DeviceSync, request: Omit<InFlight, "timer">, body: string): void {
    const timer = setTimeout(() => this.timedOut(d, request.token), this.opts.replyTimeoutMs);
    d.inFlight = { ...request, timer };
    d.tokens -= 1;
    this.inFlight++;
    this.stats.sent++;
    this.link.publish(d.topics.request, body).catch((err: unknown) => {
      // The link went down under us; onOffline keeps the payload for the next connection.
      this.log.debug({ device: d.deviceName, err }, "publish failed");
    });
  }

  private timedOut(d: DeviceSync, token: string): void {
    if (d.inFlight?.token !== token) return;
    this.stats.timeouts++;
    this.log.warn(
      { device: d.deviceName, kind: d.inFlight.kind, code: ErrorCodes.SHADOW_REPLY_TIMEOUT },
      "no reply from the cloud shadow in time; will retry",
    );
    this.abandon(d);
    this.pumpAll();
  }

  private pumpAll(): void {
    for (const d of this.devices.values()) this.pump(d);
  }

  private once(key: string, log: () => void): void {
    if (this.loggedOnce.has(key)) return;
    if (this.loggedOnce.size >= LOGGED_ONCE_LIMIT) this.loggedOnce.clear();
    this.loggedOnce.add(key);
    log();
  }

  /** Runs a handler of a link event; a bug in it is logged, never thrown into the emitter. */
  private guard(what: string, fn: () => void, fields: Record<string, unknown> = {}): void {
    try {
      fn();
    } catch (err) {
      this.internal(what, err, fields);
    }
  }

  private internal(what: string, err: unknown, fields: Record<string, unknown> = {}): void {
    this.log.error({ ...fields, err, code: ErrorCodes.INTERNAL }, `unexpected error ${what}`);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const decoded = this.dialect.decode(topic, payload);
    if (!decoded.ok) {
      this.stats.badMessages++;
      this.once(`bad:${topic}:${decoded.reason}`, () =>
        this.log.warn(
          { topic, reason: decoded.reason, code: ErrorCodes.SHADOW_BAD_MESSAGE },
          "ignored a malformed message",
        ),
      );
      return;
    }
    const d = this.byTopicKey.get(`${decoded.productKey}/${decoded.deviceName}`);
    if (!d) {
      this.once(`unknown:${topic}`, () =>
        this.log.warn({ topic }, "message for a device this gateway does not serve"),
      );
      return;
    }
    if (decoded.message.kind === "control") this.onControl(d, topic, decoded.message);
    else this.onReply(d, topic, decoded.message);
  }

  private onControl(d: DeviceSync, topic: string, m: Extract<Inbound, { kind: "control" }>): void {
    if (m.version < d.version) {
      // Not trusted as it stands (a reset shadow, or a replay); a get finds out the truth.
      this.stats.badMessages++;
      this.once(`backwards:${topic}`, () =>
        this.log.warn(
          { topic, version: m.version, known: d.version, code: ErrorCodes.SHADOW_BAD_MESSAGE },
          "control version went backwards; re-reading the shadow instead",
        ),
      );
      d.synced = false;
      this.pump(d);
      return;
    }
    // A later version means the cloud moved on (this desired change, or reports from
    // elsewhere): the next request learns the version with a get instead of taking the push's.
    if (m.version > d.version) {
      d.refresh = true;
      this.pump(d);
    }
    this.executeDesired(d, m.shadow, m.version, true);
  }

  private onReply(d: DeviceSync, topic: string, m: Exclude<Inbound, { kind: "control" }>): void {
    const f = d.inFlight;
    if (!f || m.clientToken !== f.token) {
      this.once(`token:${topic}`, () =>
        this.log.debug(
          { topic, clientToken: m.clientToken },
          "reply to no request in flight (late or foreign)",
        ),
      );
      return;
    }
    clearTimeout(f.timer);
    d.inFlight = undefined;
    this.inFlight--;

    if (m.status === "success") {
      this.stats.acknowledged++;
      d.conflicts = 0;
      if (f.kind === "get") this.reconcile(d, f, m.version, m.shadow);
      else this.confirmed(d, f, m.version);
    } else {
      const cls = this.dialect.classify(m.code);
      if (cls === "success") {
        // Alibaba answers a get on an empty shadow with 407, which is no failure.
        this.stats.acknowledged++;
        if (f.kind === "get") this.reconcile(d, f, m.version);
        else this.confirmed(d, f, m.version);
      } else if (cls === "conflict") {
        this.stats.conflicts++;
        d.conflicts++;
        // The report's rows stay in the backlog; the get reconciles and they go again.
        if (f.kind === "clear") d.clearDesired = true;
        d.synced = false; // get, merge, resend with the fresh version
        this.log.info(
          {
            device: d.deviceName,
            topic,
            known: d.version,
            attempt: d.conflicts,
            code: ErrorCodes.SHADOW_CONFLICT,
          },
          "shadow version conflict; re-reading",
        );
        if (d.conflicts > this.opts.conflictRetries) {
          this.log.warn(
            { device: d.deviceName, conflicts: d.conflicts },
            "repeated conflicts; pausing this shadow for a while",
          );
          d.conflicts = 0;
          d.pausedUntil = this.now() + this.opts.replyTimeoutMs;
        }
      } else if (cls === "permanent") {
        this.stats.rejected++;
        this.once(`reject:${d.deviceName}:${m.code}`, () =>
          this.log.error(
            {
              device: d.deviceName,
              topic,
              errorcode: m.code,
              message: m.message,
              kind: f.kind,
              code: ErrorCodes.SHADOW_REJECTED,
            },
            "the cloud refused a request; it is dropped (this is logged once per device and code)",
          ),
        );
        if (f.kind === "get") {
          d.synced = true; // nothing to reconcile with; go on reporting
          d.refresh = false;
        }
        // Rows the cloud can never accept leave the outbox (they stay in history).
        if (f.kind === "report") {
          this.hooks.backlog.ack(d.productKey, d.deviceName, f.upto, d.version);
          d.ackedRow = Math.max(d.ackedRow, f.upto ?? 0);
        }
      } else {
        if (f.full) d.fullPush = true;
        if (f.kind === "clear") d.clearDesired = true;
        d.pausedUntil = this.now() + this.opts.replyTimeoutMs;
      }
    }
    this.pumpAll();
  }

  /** A report or clear succeeded: its rows leave the backlog, and the version is saved. */
  private confirmed(d: DeviceSync, f: InFlight, version: number | undefined): void {
    d.version = Math.max(d.version, version ?? f.version ?? d.version);
    this.hooks.backlog.ack(d.productKey, d.deviceName, f.upto, d.version);
    d.ackedRow = Math.max(d.ackedRow, f.upto ?? 0);
  }

  /**
   * After a get: take the cloud's version; after a reconnect also push the whole reported state
   * and run new desired. A refresh (after a control push) only learns the version: the push's
   * desired values are being executed already.
   */
  private reconcile(
    d: DeviceSync,
    f: InFlight,
    version: number | undefined,
    shadow?: CloudShadow,
  ): void {
    // The get reply is the cloud's word on the version, even when it went down (a reset).
    d.version = version ?? d.version;
    d.refresh = false;
    // A clear asked for a push's version above the cloud's own (a forged or garbled one) must
    // not keep the next real push from asking for its clear.
    d.clearRequestedFor = Math.min(d.clearRequestedFor, d.version);
    if (f.refresh) {
      this.hooks.backlog.ack(d.productKey, d.deviceName, undefined, d.version);
      return;
    }
    d.synced = true;
    // Reported: local wins. The whole current state goes up with the backlog.
    d.fullPush = true;
    this.hooks.backlog.ack(d.productKey, d.deviceName, undefined, d.version);
    if (shadow) this.executeDesired(d, shadow, d.version, false);
  }

  /** Desired values -> dotted point names, with the timestamp of their top-level attribute. */
  private flattenDesired(
    d: DeviceSync,
    shadow: CloudShadow,
  ): Array<{ point: string; value: JsonValue; ts: number }> {
    const points = new Set(this.hooks.pointNames(d.deviceName));
    const out: Array<{ point: string; value: JsonValue; ts: number }> = [];
    const walk = (prefix: string, value: JsonValue, ts: number): void => {
      if (value === null) return; // cleared
      if (!points.has(prefix) && isObject(value)) {
        for (const [k, v] of Object.entries(value)) walk(`${prefix}.${k}`, v, ts);
      } else out.push({ point: prefix, value, ts });
    };
    for (const [attr, value] of Object.entries(shadow.desired)) {
      walk(attr, value, shadow.desiredTimestamps[attr] ?? 0);
    }
    return out;
  }

  private executeDesired(
    d: DeviceSync,
    shadow: CloudShadow,
    version: number,
    versionIsExact: boolean,
  ): void {
    const entries = this.flattenDesired(d, shadow);
    if (entries.length === 0) return;
    d.batches++;
    const batch = async (): Promise<void> => {
      try {
        for (const e of entries) {
          const offered = { ts: e.ts, version, value: JSON.stringify(e.value) };
          const last = this.hooks.journal.last(d.productKey, d.deviceName, e.point);
          // A command whose intent was journaled but whose outcome was not: the gateway died
          // in between. Whether the write landed is read from the device, not guessed.
          const interrupted =
            last?.status === EXECUTING && last.ts === offered.ts && last.value === offered.value;
          const refusedKey = `${offered.ts}:${offered.value}`;
          if (
            !interrupted &&
            (!isNewCommand(last, offered) || d.refused.get(e.point) === refusedKey)
          ) {
            this.stats.duplicateCommands++;
            continue;
          }
          const aheadMs = this.dialect.timestampMs(e.ts) - this.now();
          let result: CommandResult;
          let journaled = false;
          if (e.point === COMMANDS_KEY || e.point.startsWith(`${COMMANDS_KEY}.`)) {
            result = {
              status: "rejected",
              reason: `${COMMANDS_KEY} is reserved for command outcomes`,
            };
          } else if (aheadMs > MAX_DESIRED_AHEAD_MS) {
            result = {
              status: "rejected",
              reason: `its timestamp ${e.ts} is ${formatAhead(aheadMs)} ahead of the gateway's clock (at most ${formatAhead(MAX_DESIRED_AHEAD_MS)} is accepted); check both clocks (NTP)`,
            };
            this.once(`ahead:${d.deviceName}`, () =>
              this.log.warn(
                {
                  device: d.deviceName,
                  point: e.point,
                  ts: e.ts,
                  aheadMs,
                  code: ErrorCodes.SHADOW_BAD_MESSAGE,
                },
                "refused a desired value stamped far in the future (logged once per device)",
              ),
            );
          } else {
            journaled = true;
            try {
              this.hooks.journal.record(d.productKey, d.deviceName, e.point, {
                ...offered,
                status: EXECUTING,
              });
              result = await this.hooks.execute(d.deviceName, e.point, e.value, {
                resume: interrupted,
              });
            } catch (err) {
              // No intent on record, no write: executing it anyway could run it twice later.
              result = {
                status: "failed",
                reason: `the command journal refused the write: ${(err as Error).message}`,
              };
            }
          }
          this.stats.commands[result.status]++;
          // The outcome (and the read-back the executor staged) is made durable before the
          // journal says the command is done, and at once, not at the end of the batch: once
          // the journal says done, the command never runs again, so a SIGKILL in between must
          // find it still "executing", which a restart resolves by reading the device and then
          // reports, rather than done with its outcome lost.
          const outcome: JsonObject = {
            status: result.status,
            ts: e.ts,
            version,
            ...(result.reason !== undefined && { reason: result.reason }),
            ...(result.value !== undefined && { value: result.value }),
          };
          this.hooks.backlog.stage(d.productKey, d.deviceName, {
            [COMMANDS_KEY]: { [e.point]: outcome },
          });
          // Whatever that flush made durable (a poll's reports too) goes after the send window.
          for (const name of this.hooks.backlog.flush()) {
            const device = this.devices.get(name);
            if (device) this.wake(device, this.opts.sendWindowMs);
          }
          try {
            if (result.status !== "rejected") {
              d.refused.delete(e.point);
              this.hooks.journal.record(d.productKey, d.deviceName, e.point, {
                ...offered,
                status: result.status,
              });
            } else {
              // Nothing was written: the point's last executed command stays what it was.
              d.refused.set(e.point, refusedKey);
              if (journaled) this.restore(d, e.point, last, interrupted);
            }
          } catch (err) {
            this.log.error(
              { device: d.deviceName, point: e.point, err, code: ErrorCodes.STORE_REFUSED },
              "the command journal refused the outcome; after a restart the device is read before any rewrite",
            );
          }
        }
      } finally {
        d.batches--;
      }
      // The clear waits until every row queued now (the outcomes among them) is acknowledged.
      const queued = this.hooks.backlog.pending(d.productKey, d.deviceName)?.upto ?? 0;
      d.clearAfterRow = Math.max(d.clearAfterRow, queued);
      // Desired is cleared whenever it holds values, executed now or earlier (a clear that
      // was lost), so the cloud never keeps re-offering a command; a redelivered push of a
      // version already being cleared needs no second clear.
      if (!versionIsExact || version > d.clearRequestedFor) {
        d.clearDesired = true;
        d.clearRequestedFor = Math.max(d.clearRequestedFor, version);
      }
      // The outcomes and read-backs go at once.
      this.flush(0);
      this.pump(d);
    };
    // A batch that throws must not break the chain: every later command would wait on it.
    d.executing = d.executing
      .then(batch)
      .catch((err: unknown) =>
        this.internal("executing desired values", err, { device: d.deviceName }),
      );
  }

  /**
   * Puts back the journal entry a refused command replaced with its intent. An interrupted
   * command that is refused on resume leaves no entry: its predecessor is not known any more.
   */
  private restore(
    d: DeviceSync,
    point: string,
    previous: (JournalRecord & { status: string }) | undefined,
    interrupted: boolean,
  ): void {
    if (previous && !interrupted) {
      this.hooks.journal.record(d.productKey, d.deviceName, point, previous);
    } else this.hooks.journal.forget(d.productKey, d.deviceName, point);
  }
}

/** 90061000 -> "1 d 1 h", for messages about clocks. */
function formatAhead(ms: number): string {
  const hours = ms / 3_600_000;
  if (!Number.isFinite(hours) || hours >= 24 * 365 * 1000) return "over a thousand years";
  if (hours < 1) return `${Math.round(ms / 60_000)} min`;
  const days = Math.floor(hours / 24);
  const rest = Math.floor(hours - days * 24);
  return days > 0 ? `${days} d ${rest} h` : `${rest} h`;
}
