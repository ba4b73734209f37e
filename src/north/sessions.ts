import { Backoff } from "../core/backoff.js";
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { SessionRefusal, type DeviceSession, type ShadowDevice } from "./dialect.js";
import type { LogOnce } from "./log-once.js";

/** A session that lasted this long was fine: its next loss is logged in again at once. */
const STABLE_SESSION_MS = 60_000;

/**
 * A device's session as health shows it: `refused` means the cloud will not take its traffic
 * until an operator acts (the code and reason say why); the device keeps polling and recording.
 */
export interface SessionStatus {
  readonly state: "closed" | "opening" | "open" | "refused";
  readonly code?: number;
  readonly reason?: string;
  readonly logins: number;
}

interface DeviceState {
  readonly device: ShadowDevice;
  state: SessionStatus["state"];
  refusal?: { code: number; reason: string };
  logins: number;
  /** When the session last opened, and losses since it was last stable. */
  openedAt: number;
  losses: number;
  retry?: NodeJS.Timeout;
  readonly backoff: Backoff;
}

/**
 * Each device's session on the connection, for a dialect with a per-device session step
 * (DeviceSession): closed when the link goes down, opened before the device's topics are used,
 * opened again after the cloud lost it, retried with backoff after a failure, left alone after
 * a refusal (until the cloud says the device is back), closed when the engine stops. Without a
 * session step every device is open.
 */
export class DeviceSessions {
  private readonly devices = new Map<string, DeviceState>();
  /** Counts link losses: a login that spans one is stale. */
  private epoch = 0;
  private stopped = false;
  private closing: Promise<void> = Promise.resolve();

  constructor(
    private readonly session: DeviceSession | undefined,
    devices: readonly ShadowDevice[],
    /** The first retry after a failed login; doubles up to `retryMaxMs`. */
    retryMs: number,
    retryMaxMs: number,
    /** Brings the device up again (open, subscribe, pump) after a session loss or a failure. */
    private readonly reopen: (deviceName: string) => void,
    private readonly once: LogOnce,
    private readonly log: Logger,
  ) {
    for (const device of devices) {
      this.devices.set(device.deviceName, {
        device,
        state: "closed",
        logins: 0,
        openedAt: 0,
        losses: 0,
        backoff: new Backoff(retryMs, retryMaxMs),
      });
    }
  }

  get enabled(): boolean {
    return this.session !== undefined;
  }

  isOpen(deviceName: string): boolean {
    return this.session === undefined || this.devices.get(deviceName)?.state === "open";
  }

  /** Logs the device in; true when it may use its topics now. */
  async open(deviceName: string): Promise<boolean> {
    const s = this.devices.get(deviceName);
    if (this.session === undefined || s?.state === "open") return true;
    if (s === undefined || s.state !== "closed" || this.stopped) return false;
    s.state = "opening";
    clearTimeout(s.retry);
    const epoch = this.epoch;
    try {
      s.logins++;
      await this.session.login(s.device);
    } catch (err) {
      if (epoch !== this.epoch || this.stopped) return false;
      if (err instanceof SessionRefusal) {
        this.refuse(s, err.code, err.reason);
        return false;
      }
      s.state = "closed";
      const delay = s.backoff.next();
      this.once.run(`login:${deviceName}`, () =>
        this.log.warn(
          { device: deviceName, err, retryInMs: delay, code: ErrorCodes.SESSION_LOGIN },
          "the device's login failed; trying again with backoff (logged once per device)",
        ),
      );
      s.retry = setTimeout(() => this.reopen(deviceName), delay);
      return false;
    }
    // The link went down meanwhile: the next connection logs in again.
    if (epoch !== this.epoch || this.stopped) return false;
    s.state = "open";
    s.openedAt = Date.now();
    // After failed logins only; a session that keeps being lost keeps its backoff (lost()).
    if (s.losses === 0) s.backoff.reset();
    delete s.refusal;
    this.once.forget(`login:${deviceName}`);
    return true;
  }

  /**
   * The cloud said the device has no session: log it in again, at once the first time, then
   * with a growing delay while the sessions keep being lost within a minute of their login.
   */
  lost(deviceName: string): void {
    const s = this.devices.get(deviceName);
    if (this.session === undefined || s === undefined || s.state !== "open") return;
    s.state = "closed";
    if (Date.now() - s.openedAt >= STABLE_SESSION_MS) {
      s.backoff.reset();
      s.losses = 0;
    }
    if (s.losses++ === 0) return this.reopen(deviceName);
    s.retry = setTimeout(() => this.reopen(deviceName), s.backoff.next());
  }

  /** The cloud will not take the device's traffic: no login until it says the device is back. */
  refused(deviceName: string, code: number, reason: string): void {
    const s = this.devices.get(deviceName);
    if (this.session === undefined || s === undefined || s.state === "refused") return;
    this.refuse(s, code, reason);
  }

  /** An operator enabled the device again: log it in. */
  resumed(deviceName: string): void {
    const s = this.devices.get(deviceName);
    if (this.session === undefined || s === undefined || s.state !== "refused") return;
    s.state = "closed";
    delete s.refusal;
    s.backoff.reset();
    this.log.info({ device: deviceName }, "the cloud takes the device again; logging it in");
    this.reopen(deviceName);
  }

  /** Sessions live on the connection: a new one starts with every device logged out. */
  offline(): void {
    this.epoch++;
    this.session?.offline();
    for (const s of this.devices.values()) {
      clearTimeout(s.retry);
      // A refusal outlives the connection: the cloud said it, an operator must act.
      if (s.state !== "refused") s.state = "closed";
    }
  }

  status(): Record<string, SessionStatus> {
    const out: Record<string, SessionStatus> = {};
    for (const [name, s] of this.devices) {
      out[name] = { state: s.state, logins: s.logins, ...s.refusal };
    }
    return out;
  }

  /** Logs every open device out, while the link is still up. */
  stop(linkOnline: boolean): void {
    this.stopped = true;
    const open: ShadowDevice[] = [];
    for (const s of this.devices.values()) {
      clearTimeout(s.retry);
      if (s.state === "open") {
        open.push(s.device);
        s.state = "closed";
      }
    }
    const session = this.session;
    if (session === undefined || !linkOnline) return;
    this.closing = Promise.all(
      open.map((device) =>
        session
          .logout(device)
          .catch((err: unknown) =>
            this.log.warn({ device: device.deviceName, err }, "logging the device out failed"),
          ),
      ),
    ).then(() => undefined);
  }

  /** Resolves when the logouts stop() began have ended. */
  idle(): Promise<void> {
    return this.closing;
  }

  private refuse(s: DeviceState, code: number, reason: string): void {
    clearTimeout(s.retry);
    s.state = "refused";
    s.refusal = { code, reason };
    // One line: the state stays in health until an operator acts, no retry loop fills the log.
    this.log.error(
      { device: s.device.deviceName, errorcode: code, reason, code: ErrorCodes.SESSION_REFUSED },
      "the cloud refused the device: its cloud traffic stops (it keeps polling and recording) until the cloud takes it again",
    );
  }
}
