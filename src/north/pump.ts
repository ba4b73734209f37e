// ~650 lines on purpose: gets (and the cloud snapshot they leave for the console), updates
// (split in parts where the dialect must), desired clears and their replies share one in-flight
// slot, one rate limit, one reply matcher and one redo path per device; split, each part would
// reach into the others' state.
import { randomBytes } from "node:crypto";
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { mergeReported } from "../core/json.js";
import type { JsonObject } from "../core/types.js";
import type {
  CloudShadow,
  Dialect,
  Inbound,
  RequestKind,
  ShadowDevice,
  ShadowTopics,
} from "./dialect.js";
import type { SyncHooks, SyncStats } from "./hooks.js";
import type { Link } from "./link.js";
import type { LogOnce } from "./log-once.js";

/** Requests a device may send back to back before the rate limit spaces them. */
const RATE_BURST = 3;
/**
 * A report refused as too large goes again in parts of half the size, down to this: smaller,
 * the cloud's refusal is about the document as a whole (or one value), which parts cannot cure.
 */
const MIN_PART_BYTES = 1024;

export interface SyncOptions {
  /** Reported changes are gathered this long before one update goes out. */
  readonly sendWindowMs: number;
  /** The per-device rate limit: on average one request per this interval. */
  readonly minIntervalMs: number;
  /** Requests awaiting a reply, over all devices (and at most the dialect's limit). */
  readonly maxInFlight: number;
  readonly replyTimeoutMs: number;
  /** Conflicts (409) in a row before the device pauses for a reply timeout. */
  readonly conflictRetries: number;
}

/** What the pump needs of the desired runner and of the device sessions. */
export interface PumpPeers {
  /** Desired batches are queued or executing for the device: no clear yet. */
  desiredBusy(deviceName: string): boolean;
  runDesired(deviceName: string, shadow: CloudShadow, version: number, exact: boolean): void;
  /** The device may use its topics (its session, if the dialect has one, is open). */
  sessionOpen(deviceName: string): boolean;
  /** The cloud said the device has no session on the connection. */
  sessionLost(deviceName: string): void;
}

interface InFlight {
  readonly token: string;
  readonly kind: RequestKind;
  readonly version?: number;
  /** The last backlog row a report carried, acknowledged on success. */
  readonly upto?: number;
  /** A report carrying the whole current state (after a get), redone if it fails. */
  readonly full?: boolean;
  /** A get that only learns the cloud's version (after a control push), not a reconnect's. */
  readonly refresh?: boolean;
  /** The desired points a clear sets to null (AWS; Alibaba clears the whole section). */
  readonly points?: readonly string[];
  readonly timer: NodeJS.Timeout;
}

export interface DeviceSync extends ShadowDevice {
  readonly topics: ShadowTopics;
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
  /** The desired points offered since the last clear went out: the next clear's. */
  readonly clearPoints: Set<string>;
  /**
   * The rest of a report the dialect split (AWS: over 8 KB), sent one part after another before
   * anything else; the last part carries the backlog row and the full-push mark.
   */
  parts: JsonObject[];
  partsUpto?: number;
  partsFull: boolean;
  /** Set once the cloud refused a report as too large: the size its parts keep to from then. */
  partBytes?: number;
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
  inFlight?: InFlight;
  /** Token bucket of the rate limit: a command's clear and read-back go out at once. */
  tokens: number;
  tokensAt: number;
  /** No request before this time (after repeated conflicts or a retryable error). */
  pausedUntil: number;
  conflicts: number;
  wakeTimer?: NodeJS.Timeout;
  /** The shadow as the last get read it (for the console: the cloud beside the edge). */
  cloud?: CloudSnapshot;
  /** Callers of readCloud waiting for the next get's reply (true) or the link's loss (false). */
  cloudWaiters: Array<(read: boolean) => void>;
}

/** A cloud shadow as a get read it. */
export interface CloudSnapshot {
  readonly version: number;
  readonly reported: JsonObject;
  readonly desired: JsonObject;
  /** When the reply came (ms since the epoch). */
  readonly readAt: number;
}

type Reply = Extract<Inbound, { kind: "reply" }>;

/**
 * The request pump: per device one request in flight (so versions go up in order), reported
 * updates batched per send window from the backlog, a token-bucket rate limit, a cap on
 * requests in flight over all devices, the version rule, conflict (409) recovery by
 * get-merge-resend, and the desired clear once the commands' outcomes are in the cloud.
 */
export class RequestPump {
  readonly devices = new Map<string, DeviceSync>();
  private readonly byTopicKey = new Map<string, DeviceSync>();
  private readonly maxInFlight: number;
  private inFlight = 0;
  private tokenSeq = 0;
  /** Tokens differ between processes, so a late reply to a dead one matches no request here. */
  private readonly tokenPrefix = `${randomBytes(3).toString("hex")}-`;
  private stopped = false;

  constructor(
    private readonly link: Link,
    private readonly dialect: Dialect,
    devices: readonly ShadowDevice[],
    private readonly hooks: SyncHooks,
    private readonly opts: SyncOptions,
    private readonly peers: PumpPeers,
    private readonly stats: SyncStats,
    private readonly once: LogOnce,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.maxInFlight = Math.min(opts.maxInFlight, dialect.limits.maxInFlight ?? Infinity);
    for (const { productKey, deviceName } of devices) {
      const state: DeviceSync = {
        productKey,
        deviceName,
        topics: dialect.topics(productKey, deviceName),
        version: hooks.backlog.saved(productKey, deviceName)?.version ?? 0,
        synced: false,
        refresh: false,
        fullPush: false,
        clearDesired: false,
        clearPoints: new Set(),
        parts: [],
        partsFull: false,
        clearRequestedFor: -1,
        clearAfterRow: 0,
        ackedRow: 0,
        tokens: RATE_BURST,
        tokensAt: now(),
        pausedUntil: -Infinity,
        conflicts: 0,
        cloudWaiters: [],
      };
      this.devices.set(deviceName, state);
      this.byTopicKey.set(`${productKey}/${deviceName}`, state);
    }
  }

  /** The device a decoded message names. */
  device(productKey: string, deviceName: string): DeviceSync | undefined {
    return this.byTopicKey.get(`${productKey}/${deviceName}`);
  }

  stop(): void {
    this.stopped = true;
    for (const d of this.devices.values()) {
      clearTimeout(d.wakeTimer);
      if (d.inFlight) clearTimeout(d.inFlight.timer);
      settleWaiters(d, false);
    }
  }

  /** The link went down: requests in flight are dropped, and every device reconciles again. */
  offline(): void {
    for (const d of this.devices.values()) {
      this.abandon(d);
      d.synced = false;
      settleWaiters(d, false);
    }
  }

  /**
   * Reads the cloud shadow again (a get, as after a control push: it learns the version, and
   * under the equality rule runs desired through the journal as every refresh does). Resolves
   * true once the reply is in `d.cloud`, false when the link is or goes down first.
   */
  readCloud(d: DeviceSync): Promise<boolean> {
    if (this.stopped || !this.link.online) return Promise.resolve(false);
    return new Promise((resolve) => {
      d.cloudWaiters.push(resolve);
      if (d.synced) d.refresh = true; // unsynced, the reconnect's get is on its way
      this.pump(d);
    });
  }

  /** Drops the request in flight, keeping what it carried for the next one. */
  abandon(d: DeviceSync): void {
    const f = d.inFlight;
    if (!f) return;
    clearTimeout(f.timer);
    d.inFlight = undefined;
    this.inFlight--;
    this.redo(d, f);
  }

  /**
   * A report's rows stay in the backlog until acknowledged, so only a full push is redone, and
   * a split report starts again whole.
   */
  private redo(d: DeviceSync, f: InFlight): void {
    if (f.full) d.fullPush = true;
    if (f.kind === "report") d.parts = [];
    if (f.kind === "clear") this.requeueClear(d, f);
  }

  private requeueClear(d: DeviceSync, f: InFlight): void {
    d.clearDesired = true;
    for (const p of f.points ?? []) d.clearPoints.add(p);
  }

  wake(d: DeviceSync, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.pump(d);
    if (d.wakeTimer) return;
    d.wakeTimer = setTimeout(() => {
      d.wakeTimer = undefined;
      this.pump(d);
    }, delayMs);
  }

  pumpAll(): void {
    for (const d of this.devices.values()) this.pump(d);
  }

  /**
   * Sends the next request a device needs, if it may send now. Called from timers, link events
   * and the desired chain, so it never throws: a request that cannot be built is logged once
   * and the device pauses for a reply timeout before it tries again.
   */
  pump(d: DeviceSync): void {
    try {
      this.pumpNow(d);
    } catch (err) {
      d.pausedUntil = this.now() + this.opts.replyTimeoutMs;
      this.once.run(`pump:${d.deviceName}`, () =>
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
    if (!this.peers.sessionOpen(d.deviceName)) return; // logging in; the login pumps
    if (this.inFlight >= this.maxInFlight) return; // a reply elsewhere pumps again
    const backlog = d.synced ? this.hooks.backlog.pending(d.productKey, d.deviceName) : undefined;
    // Everything the backlog holds goes as one update (a shadow is state, not a log); after a
    // get, with the whole current state on top of it.
    const reported = d.fullPush
      ? mergeReported(backlog?.reported ?? {}, this.hooks.snapshot(d.deviceName))
      : backlog?.reported;
    const report = reported !== undefined && Object.keys(reported).length > 0;
    // No clear while desired batches are queued: it would remove commands received but not
    // executed yet, and a SIGKILL before their turn would lose them. The last batch pumps.
    const clearDue =
      d.clearDesired && d.clearPoints.size > 0 && !this.peers.desiredBusy(d.deviceName);
    const part = d.synced && !d.refresh && d.parts.length > 0;
    if (d.synced && !d.refresh && !report && !clearDue && !part) return;
    // Once the outcomes are in the cloud, the clear goes before any further report.
    const clearFirst = clearDue && d.ackedRow >= d.clearAfterRow;
    const wait = this.waitFor(d);
    if (wait > 0) return this.wake(d, wait);
    const token = this.token();
    const version = this.dialect.nextVersion(d.version);
    if (!d.synced || d.refresh) {
      const refresh = d.synced;
      this.send(d, { token, kind: "get", refresh }, this.dialect.encodeGet(token));
    } else if (part || (report && !clearFirst)) {
      // Reports go before a desired clear, so a command's read-back reaches the cloud first.
      let next: JsonObject;
      let full: boolean;
      let upto: number | undefined;
      if (part) {
        next = d.parts.shift() as JsonObject;
        const last = d.parts.length === 0;
        full = d.partsFull;
        upto = last ? d.partsUpto : undefined;
      } else {
        full = d.fullPush;
        d.fullPush = false;
        upto = backlog?.upto;
        const whole = reported ?? {}; // a report is due: the backlog or the full push has some
        const parts = this.dialect.splitReport?.(whole, d.partBytes) ?? [whole];
        next = parts[0] ?? whole;
        if (parts.length > 1) {
          // The backlog's rows leave it with the last part; until then they are not acknowledged.
          d.parts = parts.slice(1);
          d.partsUpto = upto;
          d.partsFull = full;
          upto = undefined;
        }
      }
      let body: string;
      try {
        body = this.dialect.encodeReport(next, version, token);
      } catch (err) {
        // The cloud could never take it (the dialect's own limits): it leaves the outbox, said
        // once, rather than stopping the device's sync for good.
        this.stats.rejected++;
        this.once.run(`encode:${d.deviceName}`, () =>
          this.log.error(
            { device: d.deviceName, err, code: ErrorCodes.SHADOW_REJECTED },
            "a report cannot be sent; dropped",
          ),
        );
        this.acked(d, upto);
        return;
      }
      this.send(
        d,
        { token, kind: "report", version, full, ...(upto !== undefined && { upto }) },
        body,
      );
    } else {
      if (!report) d.fullPush = false; // an empty full push is done; a real one goes next
      const points = [...d.clearPoints];
      const body = this.dialect.encodeClearDesired(points, version, token);
      d.clearDesired = false;
      d.clearPoints.clear();
      this.send(d, { token, kind: "clear", version, points }, body);
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

  private token(): string {
    this.tokenSeq = (this.tokenSeq + 1) % Number.MAX_SAFE_INTEGER;
    return `${this.tokenPrefix}${this.tokenSeq.toString(36)}`;
  }

  private send(d: DeviceSync, request: Omit<InFlight, "timer">, body: string): void {
    const timer = setTimeout(() => this.timedOut(d, request.token), this.opts.replyTimeoutMs);
    d.inFlight = { ...request, timer };
    d.tokens -= 1;
    this.inFlight++;
    this.stats.sent++;
    this.link.publish(d.topics.requests[request.kind], body).catch((err: unknown) => {
      // The link went down under us; the offline event keeps the payload for the next connection.
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

  /** A control push: its desired values run; its version is not taken (see DeviceSync.version). */
  control(d: DeviceSync, topic: string, m: Extract<Inbound, { kind: "control" }>): void {
    // AWS delivers a delta and the reply to a later update in either order, so a lower version
    // is no sign of trouble there; its values go through the journal like any others.
    if (m.version < d.version && this.dialect.versionRule === "above") {
      // Not trusted as it stands (a reset shadow, or a replay); a get finds out the truth.
      this.stats.badMessages++;
      this.once.run(`backwards:${topic}`, () =>
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
    // Under the equality rule a push one above the known version is this change alone, whose
    // values run now: its version is taken (a wrong one costs a 409 and a get, nothing more).
    if (m.version === d.version + 1 && d.synced && this.dialect.versionRule === "equal") {
      d.version = m.version;
    } else if (m.version > d.version) {
      d.refresh = true;
      this.pump(d);
    }
    this.peers.runDesired(d.deviceName, m.shadow, m.version, true);
  }

  /** The shadow was deleted: it is read again, and the whole reported state goes up. */
  gone(d: DeviceSync, topic: string): void {
    this.log.info({ device: d.deviceName, topic }, "the cloud shadow was deleted; re-creating it");
    this.abandon(d);
    d.synced = false;
    this.pump(d);
  }

  reply(d: DeviceSync, topic: string, m: Reply): void {
    const f0 = d.inFlight;
    const kind = f0 && m.clientToken === f0.token ? f0.kind : "report";
    const cls = m.status === "error" ? this.dialect.classify(m.code, kind) : "success";
    // A session error is about the device, not one request: it may come without a token.
    if (cls === "session") return this.sessionLost(d, topic, m);
    const f = d.inFlight;
    if (!f || m.clientToken !== f.token) {
      this.once.run(`token:${topic}`, () =>
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

    if (cls === "success") {
      this.stats.acknowledged++;
      // Alibaba answers a get on an empty shadow with 407, which is no failure.
      if (m.status === "success") d.conflicts = 0;
      if (f.kind === "get")
        this.reconcile(d, f, m.version, m.status === "success" ? m.shadow : undefined);
      else this.confirmed(d, f, m.version);
    } else if (m.status === "error") {
      if (cls === "conflict") this.conflict(d, topic, f);
      else if (cls === "too-large") this.tooLarge(d, topic, f, m);
      else if (cls === "permanent") this.refused(d, topic, f, m);
      else {
        this.redo(d, f);
        d.pausedUntil = this.now() + this.opts.replyTimeoutMs;
      }
    }
    this.pumpAll();
  }

  private conflict(d: DeviceSync, topic: string, f: InFlight): void {
    this.stats.conflicts++;
    d.conflicts++;
    // The report's rows stay in the backlog; the get reconciles and they go again.
    this.redo(d, f);
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
  }

  /** A report refused as too large goes again in parts of half the size, while that can help. */
  private tooLarge(
    d: DeviceSync,
    topic: string,
    f: InFlight,
    m: Extract<Reply, { status: "error" }>,
  ): void {
    const bytes = Math.floor((d.partBytes ?? this.dialect.limits.maxDocumentBytes ?? 0) / 2);
    if (bytes < MIN_PART_BYTES) return this.refused(d, topic, f, m);
    d.partBytes = bytes;
    this.log.info(
      { device: d.deviceName, topic, partBytes: bytes, code: ErrorCodes.SHADOW_REJECTED },
      "the cloud refused a report as too large; sending it again in smaller parts",
    );
    this.redo(d, f);
  }

  private refused(
    d: DeviceSync,
    topic: string,
    f: InFlight,
    m: Extract<Reply, { status: "error" }>,
  ): void {
    this.stats.rejected++;
    this.once.run(`reject:${d.deviceName}:${m.code}`, () =>
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
    if (f.kind === "report") this.acked(d, f.upto);
  }

  /**
   * The device has no session on the connection (it was never logged in, or the cloud dropped
   * it): what its request carried goes again after a fresh login, and a get first, since
   * pushes sent meanwhile were lost.
   */
  private sessionLost(d: DeviceSync, topic: string, m: Reply): void {
    this.log.warn(
      { device: d.deviceName, topic, errorcode: m.status === "error" ? m.code : undefined },
      "the cloud has no session for this device; logging it in again",
    );
    this.sessionGone(d);
    this.peers.sessionLost(d.deviceName);
    this.pumpAll();
  }

  /**
   * The device's session is gone (lost or refused): its request in flight will get no reply,
   * and once it is back it reconciles again (a get first), since pushes sent meanwhile were lost.
   */
  sessionGone(d: DeviceSync): void {
    this.abandon(d);
    d.synced = false;
  }

  /** The backlog's rows up to `upto` are done with (sent, or refused for good). */
  private acked(d: DeviceSync, upto: number | undefined): void {
    this.hooks.backlog.ack(d.productKey, d.deviceName, upto, d.version);
    d.ackedRow = Math.max(d.ackedRow, upto ?? 0);
  }

  /** A report or clear succeeded: its rows leave the backlog, and the version is saved. */
  private confirmed(d: DeviceSync, f: InFlight, version: number | undefined): void {
    // Under the equality rule each update adds one; more means someone else changed the shadow
    // (a desired value set meanwhile, perhaps), and a clear naming this version could remove
    // what the gateway never saw: a get first, whose desired values run through the journal.
    if (this.dialect.versionRule === "equal" && version !== undefined && version > d.version + 1)
      d.refresh = true;
    d.version = Math.max(d.version, version ?? f.version ?? d.version);
    this.acked(d, f.upto);
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
    // No shadow yet (a 404 or an empty one) reads as an empty document.
    d.cloud = {
      version: d.version,
      reported: shadow?.reported ?? {},
      desired: shadow?.desired ?? {},
      readAt: this.now(),
    };
    settleWaiters(d, true);
    // A clear asked for a push's version above the cloud's own (a forged or garbled one) must
    // not keep the next real push from asking for its clear.
    d.clearRequestedFor = Math.min(d.clearRequestedFor, d.version);
    if (f.refresh) {
      this.hooks.backlog.ack(d.productKey, d.deviceName, undefined, d.version);
      // Under the equality rule the next clear names this version, so every desired value it
      // holds must have had its turn first (already executed ones are duplicates).
      if (shadow && this.dialect.versionRule === "equal")
        this.peers.runDesired(d.deviceName, shadow, d.version, false);
      return;
    }
    d.synced = true;
    // Reported: local wins. The whole current state goes up with the backlog.
    d.fullPush = true;
    this.hooks.backlog.ack(d.productKey, d.deviceName, undefined, d.version);
    if (shadow) this.peers.runDesired(d.deviceName, shadow, d.version, false);
  }

  /** A desired batch is done: the clear waits until every row queued now is acknowledged. */
  settled(
    deviceName: string,
    version: number,
    versionIsExact: boolean,
    points: readonly string[],
  ): void {
    const d = this.devices.get(deviceName);
    if (!d) return;
    for (const p of points) d.clearPoints.add(p);
    const queued = this.hooks.backlog.pending(d.productKey, d.deviceName)?.upto ?? 0;
    d.clearAfterRow = Math.max(d.clearAfterRow, queued);
    // Desired is cleared whenever it holds values, executed now or earlier (a clear that was
    // lost), so the cloud never keeps re-offering a command; a redelivered push of a version
    // already being cleared needs no second clear.
    if (!versionIsExact || version > d.clearRequestedFor) {
      d.clearDesired = true;
      d.clearRequestedFor = Math.max(d.clearRequestedFor, version);
    }
  }
}

function settleWaiters(d: DeviceSync, read: boolean): void {
  for (const resolve of d.cloudWaiters.splice(0)) resolve(read);
}
