import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { DeviceSession, ShadowDevice } from "./dialect.js";
import type { LogOnce } from "./log-once.js";

interface DeviceState {
  readonly device: ShadowDevice;
  state: "closed" | "opening" | "open";
  retry?: NodeJS.Timeout;
}

/**
 * Each device's session on the connection, for a dialect with a per-device session step
 * (DeviceSession): closed when the link goes down, opened before the device's topics are used,
 * opened again after a session error, retried after a refusal, closed when the engine stops.
 * Without a session step every device is open.
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
    /** How long a refused login waits before the next try. */
    private readonly retryMs: number,
    /** Brings the device up again (open, subscribe, pump) after a session error or a refusal. */
    private readonly reopen: (deviceName: string) => void,
    private readonly once: LogOnce,
    private readonly log: Logger,
  ) {
    for (const device of devices) {
      this.devices.set(device.deviceName, { device, state: "closed" });
    }
  }

  isOpen(deviceName: string): boolean {
    return this.session === undefined || this.devices.get(deviceName)?.state === "open";
  }

  /** Logs the device in; true when it may use its topics now. */
  async open(deviceName: string): Promise<boolean> {
    const s = this.devices.get(deviceName);
    if (this.session === undefined || s?.state === "open") return true;
    if (s === undefined || s.state === "opening" || this.stopped) return false;
    s.state = "opening";
    clearTimeout(s.retry);
    const epoch = this.epoch;
    try {
      await this.session.login(s.device);
    } catch (err) {
      if (epoch !== this.epoch || this.stopped) return false;
      s.state = "closed";
      this.once.run(`login:${deviceName}`, () =>
        this.log.warn(
          { device: deviceName, err, code: ErrorCodes.SHADOW_REJECTED },
          "the cloud refused the device's session; trying again after each reply timeout (logged once per device)",
        ),
      );
      s.retry = setTimeout(() => this.reopen(deviceName), this.retryMs);
      return false;
    }
    // The link went down meanwhile: the next connection logs in again.
    if (epoch !== this.epoch || this.stopped) return false;
    s.state = "open";
    return true;
  }

  /** The cloud said the device has no session: log it in again. */
  lost(deviceName: string): void {
    const s = this.devices.get(deviceName);
    if (this.session === undefined || s === undefined || s.state !== "open") return;
    s.state = "closed";
    this.reopen(deviceName);
  }

  /** Sessions live on the connection: a new one starts with every device logged out. */
  offline(): void {
    this.epoch++;
    for (const s of this.devices.values()) {
      clearTimeout(s.retry);
      s.state = "closed";
    }
  }

  /** Logs every open device out, while the link is still up. */
  stop(linkOnline: boolean): void {
    this.stopped = true;
    const open: ShadowDevice[] = [];
    for (const s of this.devices.values()) {
      clearTimeout(s.retry);
      if (s.state === "open") open.push(s.device);
      s.state = "closed";
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
}
