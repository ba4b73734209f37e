import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { JsonObject, JsonValue } from "../core/types.js";
import { DesiredRunner } from "./desired.js";
import type { DeviceSession, Dialect, SessionEvents, ShadowDevice } from "./dialect.js";
import type { SyncHooks, SyncStats } from "./hooks.js";
import type { Link } from "./link.js";
import { LogOnce, logInternal } from "./log-once.js";
import { RequestPump, type CloudSnapshot, type DeviceSync, type SyncOptions } from "./pump.js";
import { DeviceSessions, type SessionStatus } from "./sessions.js";

/** The longest wait between two logins of a device that keep failing. */
const SESSION_RETRY_MAX_MS = 60_000;

/**
 * Keeps every device's cloud shadow in step with the edge shadow over one MQTT link, in one
 * dialect: the request pump (pump.ts) sends reported updates, gets and desired clears, and
 * the desired runner (desired.ts) executes desired values once each through the journal.
 * After every (re)connect: log each device in (if the dialect has a session step), subscribe,
 * get every shadow, execute what is new, push the whole current reported state, then resume.
 */
export class SyncEngine {
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
  private readonly once = new LogOnce();
  private readonly pump: RequestPump;
  private readonly desired: DesiredRunner;
  private readonly sessions: DeviceSessions;
  private readonly session: DeviceSession | undefined;

  constructor(
    private readonly link: Link,
    private readonly dialect: Dialect,
    devices: readonly ShadowDevice[],
    private readonly hooks: SyncHooks,
    private readonly opts: SyncOptions & {
      /**
       * Builds the dialect's per-device session step (Dialect.session) around the engine's
       * handlers of what the cloud says unasked; undefined or absent: no session step.
       */
      readonly session?: (events: SessionEvents) => DeviceSession | undefined;
    },
    private readonly log: Logger,
    now: () => number = Date.now,
  ) {
    this.pump = new RequestPump(
      link,
      dialect,
      devices,
      hooks,
      opts,
      {
        desiredBusy: (name) => this.desired.busy(name),
        runDesired: (name, shadow, version, exact) =>
          this.desired.run(name, shadow, version, exact),
        sessionOpen: (name) => this.sessions.isOpen(name),
        sessionLost: (name) => this.sessions.lost(name),
      },
      this.stats,
      this.once,
      log,
      now,
    );
    this.desired = new DesiredRunner(
      devices,
      dialect,
      hooks,
      {
        flush: () => this.flush(),
        settled: ({ deviceName }, version, exact, points) => {
          this.pump.settled(deviceName, version, exact, points);
          // The outcomes and read-backs go at once.
          this.flush(0);
          this.withDevice(deviceName, (d) => this.pump.pump(d));
        },
      },
      this.stats,
      this.once,
      log,
      now,
    );
    this.session = opts.session?.({
      lost: (device) =>
        this.guard("handling a lost session", () =>
          this.withDevice(device.deviceName, (d) => {
            if (!this.sessions.isOpen(d.deviceName)) return;
            this.log.warn(
              { device: d.deviceName },
              "the cloud lost the device's session; logging it in again",
            );
            this.pump.sessionGone(d);
            this.sessions.lost(d.deviceName);
          }),
        ),
      refused: (device, code, reason) =>
        this.guard("handling a refused device", () =>
          this.withDevice(device.deviceName, (d) => {
            this.pump.sessionGone(d);
            this.sessions.refused(d.deviceName, code, reason);
          }),
        ),
      resumed: (device) =>
        this.guard("handling a resumed device", () => this.sessions.resumed(device.deviceName)),
    });
    this.sessions = new DeviceSessions(
      this.session,
      devices,
      opts.replyTimeoutMs,
      SESSION_RETRY_MAX_MS,
      (name) => this.withDevice(name, (d) => this.bringUp(d)),
      this.once,
      log,
    );
    // Nothing may escape into the link's emitter: a bug handling one message or one reconnect
    // is logged and the engine goes on with the next.
    link.on("online", () => {
      this.onOnline().catch((err: unknown) => this.internal("bringing the shadows up", err));
    });
    link.on("offline", () =>
      this.guard("going offline", () => {
        this.sessions.offline();
        this.pump.offline();
      }),
    );
    link.on("message", (topic, payload) =>
      this.guard("handling a cloud message", () => this.onMessage(topic, payload), { topic }),
    );
  }

  /** A partial reported update from the edge shadow: staged now, durable at the next flush. */
  report(deviceName: string, reported: JsonObject): void {
    const d = this.pump.devices.get(deviceName);
    if (!d || Object.keys(reported).length === 0) return;
    this.hooks.backlog.stage(d.productKey, d.deviceName, reported);
  }

  /**
   * Makes staged reports durable (once per poll cycle) and schedules their sending after the
   * send window; a command's outcome and read-back go at once.
   */
  flush(delayMs = this.opts.sendWindowMs): void {
    for (const name of this.hooks.backlog.flush()) {
      this.withDevice(name, (d) => this.pump.wake(d, delayMs));
    }
  }

  /** Version and sync state per device, for health and tests. */
  deviceState(
    deviceName: string,
  ): { version: number; synced: boolean; busy: boolean; backlog: boolean } | undefined {
    const d = this.pump.devices.get(deviceName);
    return (
      d && {
        version: d.version,
        synced: d.synced,
        busy: d.inFlight !== undefined || d.fullPush || d.clearDesired,
        backlog: this.hooks.backlog.pending(d.productKey, d.deviceName) !== undefined,
      }
    );
  }

  /**
   * A command from the local API: journaled and run like a desired value, in order with the
   * device's cloud commands, its outcome under `_commands` marked local (desired.ts).
   */
  local(deviceName: string, point: string, value: JsonValue): Promise<JsonObject> {
    return this.desired.local(deviceName, point, value);
  }

  /** The device's desired values received from the cloud and not executed yet. */
  desiredPending(deviceName: string): Record<string, JsonValue> {
    return this.desired.pending(deviceName);
  }

  /** Each device's session (for a dialect with a session step; else empty). */
  sessionStatus(): Record<string, SessionStatus> {
    return this.sessions.enabled ? this.sessions.status() : {};
  }

  /**
   * The device's cloud shadow as the last get read it; `fresh` reads it again first, waiting at
   * most two reply timeouts (on a timeout or a lost link the last one read is returned, with
   * `fresh: false`). Undefined for an unknown device, or when it was never read.
   */
  async cloudShadow(
    deviceName: string,
    fresh: boolean,
  ): Promise<(CloudSnapshot & { fresh: boolean }) | undefined> {
    const d = this.pump.devices.get(deviceName);
    if (!d) return undefined;
    let read = false;
    if (fresh) {
      let timer: NodeJS.Timeout | undefined;
      read = await Promise.race([
        this.pump.readCloud(d),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), 2 * this.opts.replyTimeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    return d.cloud && { ...d.cloud, fresh: read };
  }

  /** Resolves when every device's queued desired executions (and logouts) have finished. */
  async idle(): Promise<void> {
    await Promise.all([this.desired.idle(), this.sessions.idle()]);
  }

  stop(): void {
    this.pump.stop();
    this.sessions.stop(this.link.online);
  }

  /**
   * Brings each device's shadow up on its own, so that a device the cloud or the broker
   * refuses does not hold up the others.
   */
  private async onOnline(): Promise<void> {
    if (this.session && this.session.subscriptions.length > 0) {
      // The session step's replies must have a subscription before its first request.
      const topics = this.session.subscriptions;
      try {
        await this.link.subscribe(topics);
      } catch (err) {
        // The link drops and comes back (or stays down): the next online subscribes again.
        this.log.error(
          { topic: topics.join(", "), err },
          "subscribing to the session topics failed",
        );
        return;
      }
    }
    await Promise.all([...this.pump.devices.values()].map((d) => this.bringUp(d)));
  }

  /**
   * Logs the device in (a dialect's session step), subscribes to its topics before anything is
   * published (or the first replies could be missed), then pumps, which starts with a get.
   */
  private async bringUp(d: DeviceSync): Promise<void> {
    // Without a session step, no await before the subscribe: it goes out before any request.
    if (!this.sessions.isOpen(d.deviceName) && !(await this.sessions.open(d.deviceName))) return;
    const topics = d.topics.subscriptions;
    try {
      await this.link.subscribe(topics);
    } catch (err) {
      this.log.error(
        { device: d.deviceName, topic: topics.join(", "), err },
        "subscribing to the shadow topic failed",
      );
      return;
    }
    this.pump.pump(d);
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (this.session?.handle(topic, payload)) return;
    const decoded = this.dialect.decode(topic, payload);
    if (!decoded.ok) {
      this.stats.badMessages++;
      this.once.run(`bad:${topic}:${decoded.reason}`, () =>
        this.log.warn(
          { topic, reason: decoded.reason, code: ErrorCodes.SHADOW_BAD_MESSAGE },
          "ignored a malformed message",
        ),
      );
      return;
    }
    const d = this.pump.device(decoded.productKey, decoded.deviceName);
    if (!d) {
      this.once.run(`unknown:${topic}`, () =>
        this.log.warn({ topic }, "message for a device this gateway does not serve"),
      );
      return;
    }
    const m = decoded.message;
    if (m.kind === "control") this.pump.control(d, topic, m);
    else if (m.kind === "gone") this.pump.gone(d, topic);
    else this.pump.reply(d, topic, m);
  }

  private withDevice(deviceName: string, fn: (d: DeviceSync) => void): void {
    const d = this.pump.devices.get(deviceName);
    if (d) fn(d);
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
    logInternal(this.log, what, err, fields);
  }
}
