import type { Logger } from "../../core/logger.js";
import {
  MAX_LOGINS_PER_MINUTE,
  SubDeviceCodes,
  deviceKey,
  verifyEntry,
  type DeviceKey,
} from "../../north/dialects/alibaba/subdevices.js";
import type { ShadowStore } from "./store.js";

/**
 * The platform's side of a gateway's sub-devices (shadow-protocol.md 2.3): which sub-devices
 * belong to which gateway (kept in the store, so it outlives a restart with --db), which are
 * disabled (the store too), and which are logged in through which gateway connection (memory:
 * a restart of the cloud ends every session, as the gateways' connections end with it). The
 * rules only; gateway-requests.ts reads the wire and answers.
 */

/** A device and its secret: gateways and sub-devices alike. */
export interface DeviceSecret {
  readonly productKey: string;
  readonly deviceName: string;
  readonly deviceSecret: string;
}

/** Who published a message, as far as the transport can tell. */
export interface MessageOrigin {
  /** Unique per MQTT connection for as long as the transport runs. */
  readonly connection: string;
  /** The device the connection logged in as (username `deviceName&productKey`), if it named one. */
  readonly device?: DeviceKey;
}

/** A signed entry of a topology add or a login, checked for shape (gateway-requests.ts). */
export interface SignedRequestEntry extends DeviceKey {
  readonly clientId: string;
  readonly timestamp: string;
  readonly sign: string;
  readonly signMethod: string;
}

export interface DeviceOutcome extends DeviceKey {
  readonly code: number;
}

/** A request's code, and on failure the devices that failed, each with its own code. */
export interface Outcome {
  readonly code: number;
  readonly failed: readonly DeviceOutcome[];
}

/** Whether a shadow request for a device may be served; if not, whose gateway to tell. */
export type Admission =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: string; readonly notify: DeviceKey | undefined };

export interface SubDeviceSessionsOptions {
  readonly store: ShadowStore;
  readonly secrets: readonly DeviceSecret[];
  readonly now: () => number;
  /** Shadow requests need the device's own connection or a sub-device login. */
  readonly strict: boolean;
  /** Sub-devices online under one gateway; Alibaba's current limit is 2,000. */
  readonly maxOnline: number;
  readonly logger: Logger;
}

interface Session {
  readonly device: DeviceKey;
  readonly gateway: DeviceKey;
  /** undefined when the transport cannot see connections (an external broker). */
  readonly connection: string | undefined;
}

const MINUTE_MS = 60_000;
const OK: Outcome = { code: SubDeviceCodes.SUCCESS, failed: [] };

export const sameDevice = (a: DeviceKey, b: DeviceKey): boolean =>
  a.productKey === b.productKey && a.deviceName === b.deviceName;

const key = (d: DeviceKey): DeviceKey => ({ productKey: d.productKey, deviceName: d.deviceName });

function outcome(failed: DeviceOutcome[]): Outcome {
  return failed[0] === undefined ? OK : { code: failed[0].code, failed };
}

export class SubDeviceSessions {
  private readonly store: ShadowStore;
  private readonly secrets: ReadonlyMap<string, string>;
  private readonly now: () => number;
  private readonly log: Logger;
  readonly strict: boolean;
  private readonly maxOnline: number;
  private readonly sessions = new Map<string, Session>();
  /** Per device, the times of the logins granted within the last minute (at most 5 of them). */
  private readonly granted = new Map<string, number[]>();
  /**
   * The gateway an anonymous connection spoke for in its requests: where a refusal of its shadow
   * requests goes when its username names no device.
   */
  private readonly speaksFor = new Map<string, DeviceKey>();

  constructor(opts: SubDeviceSessionsOptions) {
    this.store = opts.store;
    // A later entry for the same device wins: the command line after the secrets file.
    this.secrets = new Map(opts.secrets.map((s) => [deviceKey(s), s.deviceSecret]));
    this.now = opts.now;
    this.strict = opts.strict;
    this.maxOnline = opts.maxOnline;
    this.log = opts.logger;
  }

  secretOf(d: DeviceKey): string | undefined {
    return this.secrets.get(deviceKey(d));
  }

  topology(gateway: DeviceKey): DeviceKey[] {
    return this.store.topology(gateway);
  }

  gatewayOf(d: DeviceKey): DeviceKey | undefined {
    return this.store.gatewayOf(d);
  }

  isDisabled(d: DeviceKey): boolean {
    return this.store.isDisabled(d);
  }

  /** The gateway the device is logged in through, if it is. */
  sessionOf(d: DeviceKey): DeviceKey | undefined {
    return this.sessions.get(deviceKey(d))?.gateway;
  }

  /** Remembers which gateway an anonymous connection speaks for. */
  noteGateway(origin: MessageOrigin | undefined, gateway: DeviceKey): void {
    if (origin !== undefined && origin.device === undefined) {
      this.speaksFor.set(origin.connection, key(gateway));
    }
  }

  /**
   * thing.topo.add, all or nothing: each entry signed with the sub-device's own secret. A device
   * in another gateway's topology moves (as Alibaba's BatchAddThingTopo does) and its session
   * through the other gateway ends.
   */
  addTopology(gateway: DeviceKey, entries: readonly SignedRequestEntry[]): Outcome {
    const failed: DeviceOutcome[] = [];
    for (const e of entries) {
      const secret = this.secretOf(e);
      const code = sameDevice(e, gateway)
        ? SubDeviceCodes.CANNOT_ADD_SELF
        : secret === undefined
          ? SubDeviceCodes.NOT_FOUND
          : verifyEntry(e, e.signMethod, secret)
            ? SubDeviceCodes.SUCCESS
            : SubDeviceCodes.BAD_SIGN_TOPO;
      if (code !== SubDeviceCodes.SUCCESS) failed.push({ ...key(e), code });
    }
    if (failed.length > 0) return outcome(failed);
    for (const e of entries) {
      const session = this.sessions.get(deviceKey(e));
      if (session !== undefined && !sameDevice(session.gateway, gateway))
        this.end(e, "moved to another gateway's topology");
    }
    this.store.attach(gateway, entries.map(key));
    return OK;
  }

  /** thing.topo.delete, all or nothing: each device must be in this gateway's topology. */
  deleteTopology(gateway: DeviceKey, devices: readonly DeviceKey[]): Outcome {
    const failed = devices
      .filter((d) => !this.inTopology(gateway, d))
      .map((d) => ({ ...key(d), code: SubDeviceCodes.NOT_FOUND }));
    if (failed.length > 0) return outcome(failed);
    for (const d of devices) if (this.sessions.has(deviceKey(d))) this.end(d, "topology deleted");
    this.store.detach(devices);
    return OK;
  }

  /**
   * combine.login and combine.batch_login, all or nothing. Checks in Alibaba's order of concern:
   * known (6100), disabled (522), topology (6401), sign (6287), 5 logins a minute (429), online
   * limit (428). The sessions are bound to the connection the request came on.
   */
  login(
    gateway: DeviceKey,
    entries: readonly SignedRequestEntry[],
    origin: MessageOrigin | undefined,
  ): Outcome {
    const now = this.now();
    let online = this.onlineUnder(gateway);
    const failed: DeviceOutcome[] = [];
    for (const e of entries) {
      const code = this.loginCode(gateway, e, now, online);
      if (code !== SubDeviceCodes.SUCCESS) failed.push({ ...key(e), code });
      else if (!this.loggedInThrough(gateway, e)) online++;
    }
    if (failed.length > 0) return outcome(failed);
    for (const e of entries) {
      this.sessions.set(deviceKey(e), {
        device: key(e),
        gateway: key(gateway),
        connection: origin?.connection,
      });
      // loginCode pruned the list to the last minute; undefined only on a device's first login.
      this.granted.set(deviceKey(e), [...(this.granted.get(deviceKey(e)) ?? []), now]);
      this.log.info(
        { productKey: e.productKey, deviceName: e.deviceName, gateway: deviceKey(gateway) },
        "sub-device logged in",
      );
    }
    return OK;
  }

  /** combine.logout and batch_logout: every device logged in through the gateway leaves. */
  logout(gateway: DeviceKey, devices: readonly DeviceKey[]): Outcome {
    const failed: DeviceOutcome[] = [];
    for (const d of devices) {
      if (this.loggedInThrough(gateway, d)) this.end(d, "logged out");
      else failed.push({ ...key(d), code: SubDeviceCodes.SESSION });
    }
    return outcome(failed);
  }

  /** The connection of a gateway closed: the sessions it carried end with it. */
  connectionClosed(connection: string): DeviceKey[] {
    this.speaksFor.delete(connection);
    const ended = [...this.sessions.values()]
      .filter((s) => s.connection === connection)
      .map((s) => s.device);
    for (const d of ended) this.end(d, "gateway connection closed");
    return ended;
  }

  /** Ends a sub-device's session on purpose; false when it had none. */
  drop(d: DeviceKey, reason = "session dropped"): boolean {
    if (!this.sessions.has(deviceKey(d))) return false;
    this.end(d, reason);
    return true;
  }

  /** The operator's switch; true when it changed. Disabling ends the device's session. */
  setDisabled(d: DeviceKey, disabled: boolean): boolean {
    const changed = this.store.setDisabled(d, disabled);
    if (disabled) this.drop(d, "device disabled");
    return changed;
  }

  /**
   * Whether a shadow request for `d` published by `origin` may be served. A disabled device is
   * always refused. Under strict sessions the publisher must be the device's own connection or
   * the connection that logged it in. When the transport cannot tell who published (an external
   * broker), a session through any gateway admits the device, and a device in no topology is
   * taken for a directly connected one (the service cannot see connections there).
   */
  admit(d: DeviceKey, origin: MessageOrigin | undefined): Admission {
    let reason: string;
    if (this.isDisabled(d)) reason = "device disabled";
    else if (!this.strict) return { ok: true };
    else if (origin?.device !== undefined && sameDevice(origin.device, d)) return { ok: true };
    else {
      const session = this.sessions.get(deviceKey(d));
      if (session !== undefined) {
        if (origin === undefined || session.connection === origin.connection) return { ok: true };
        reason = `logged in through another connection (gateway ${deviceKey(session.gateway)})`;
      } else if (origin === undefined && this.gatewayOf(d) === undefined) {
        return { ok: true };
      } else {
        reason = "not logged in";
      }
    }
    const publisher =
      origin === undefined ? undefined : (origin.device ?? this.speaksFor.get(origin.connection));
    return { ok: false, reason, notify: publisher ?? this.sessionOf(d) ?? this.gatewayOf(d) };
  }

  private loginCode(gateway: DeviceKey, e: SignedRequestEntry, now: number, online: number) {
    const secret = this.secretOf(e);
    if (secret === undefined) return SubDeviceCodes.NOT_FOUND;
    if (this.isDisabled(e)) return SubDeviceCodes.DISABLED;
    if (!this.inTopology(gateway, e)) return SubDeviceCodes.NO_TOPOLOGY;
    if (!verifyEntry(e, e.signMethod, secret)) return SubDeviceCodes.BAD_SIGN;
    const recent = (this.granted.get(deviceKey(e)) ?? []).filter((t) => now - t < MINUTE_MS);
    this.granted.set(deviceKey(e), recent);
    if (recent.length >= MAX_LOGINS_PER_MINUTE) return SubDeviceCodes.TOO_MANY_REQUESTS;
    if (!this.loggedInThrough(gateway, e) && online >= this.maxOnline)
      return SubDeviceCodes.TOO_MANY_ONLINE;
    return SubDeviceCodes.SUCCESS;
  }

  private inTopology(gateway: DeviceKey, d: DeviceKey): boolean {
    const gw = this.gatewayOf(d);
    return gw !== undefined && sameDevice(gw, gateway);
  }

  private loggedInThrough(gateway: DeviceKey, d: DeviceKey): boolean {
    const gw = this.sessionOf(d);
    return gw !== undefined && sameDevice(gw, gateway);
  }

  private onlineUnder(gateway: DeviceKey): number {
    let n = 0;
    for (const s of this.sessions.values()) if (sameDevice(s.gateway, gateway)) n++;
    return n;
  }

  private end(d: DeviceKey, reason: string): void {
    const session = this.sessions.get(deviceKey(d));
    if (session === undefined) return;
    this.sessions.delete(deviceKey(d));
    this.log.info(
      {
        productKey: d.productKey,
        deviceName: d.deviceName,
        gateway: deviceKey(session.gateway),
        reason,
      },
      "sub-device session ended",
    );
  }
}
