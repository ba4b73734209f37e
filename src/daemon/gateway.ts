import path from "node:path";
import type { ReloadPlan as ApiReloadPlan } from "../api/host.js";
import type { LoadedConfig } from "../config/load.js";
import { sameJson } from "../core/json.js";
import type { Logger } from "../core/logger.js";
import type { JsonValue, Quality } from "../core/types.js";
import type { DevicePlan, PointBase } from "../mapping/types.js";
import type { SyncEngine } from "../north/sync.js";
import { EdgeShadow } from "../shadow/edge-shadow.js";
import type { SourceHealth } from "../south/driver.js";
import type { Probe } from "../south/protocol.js";
import { protocolOfKind } from "../south/registry.js";
import { CloudSync, type CloudSyncOptions } from "./cloud-sync.js";
import { CommandExecutor } from "./commands.js";
import { Lifecycle, type Component, type ComponentStatus } from "./component.js";
import { Poller } from "./poller.js";
import { Sources } from "./sources.js";
import { Store } from "./store.js";

/** How long one component may take to start or to stop before the daemon moves on. */
export const START_TIMEOUT_MS = 30_000;
export const STOP_TIMEOUT_MS = 5000;

/** What a reload applied in place, device by device. */
export type ReloadPlan = Exclude<ApiReloadPlan, "rebuilt">;

/**
 * The composition root: the only place that wires the components. Start order: the store (with
 * a cloud section), the sources, the poller, the cloud sync; stop runs in reverse. Each is
 * isolated: one that fails to start is logged and the gateway runs without it.
 */
export class Gateway {
  readonly shadow: EdgeShadow;
  readonly commands: CommandExecutor;
  private readonly sources: Sources;
  private readonly poller: Poller;
  private readonly cloud: CloudSync | undefined;
  private readonly store: Store | undefined;
  /** The devices the cloud sync serves: the config's, and removed ones still draining. */
  private cloudDevices: readonly DevicePlan[];
  private readonly lifecycle: Lifecycle;

  constructor(
    private config: LoadedConfig,
    private readonly log: Logger,
  ) {
    const { devices } = config;
    this.cloudDevices = devices;
    this.shadow = new EdgeShadow(devices);
    this.sources = new Sources(
      {
        sources: config.gateway.sources,
        devices,
        dataDir: config.dataDir,
        configFile: config.configFile,
      },
      log,
    );
    const channel = (name: string) => this.sources.channel(name);
    this.commands = new CommandExecutor(
      new Map(devices.map((d) => [d.deviceName, d])),
      channel,
      this.shadow,
      log.child({ component: "daemon.commands" }),
    );
    this.poller = new Poller(
      { devices, channel, shadow: this.shadow, onCycle: () => this.cloud?.flush() },
      log,
    );
    const components: Component[] = [this.sources, this.poller];
    const cloud = config.gateway.cloud;
    if (cloud) {
      const { history } = config.gateway.gateway;
      const store = new Store(
        {
          dataDir: config.dataDir,
          history: { maxAgeMs: history.maxAge, maxBytes: history.maxSizeMb * 1024 * 1024 },
        },
        devices,
        this.shadow,
        log,
      );
      this.store = store;
      this.cloud = new CloudSync(this.cloudOptions(config), store, this.shadow, this.commands, log);
      components.unshift(store);
      components.push(this.cloud);
    }
    this.lifecycle = new Lifecycle(
      components,
      { startTimeoutMs: START_TIMEOUT_MS, stopTimeoutMs: STOP_TIMEOUT_MS },
      log,
    );
    this.shadow.on("update", (u) => this.logQuality(u.deviceName, u.quality));
  }

  async start(): Promise<void> {
    await this.lifecycle.start();
    this.log.info(
      {
        devices: this.config.devices.length,
        sources: Object.keys(this.sources.status()).length,
        gateway: this.config.gateway.gateway.name,
      },
      "gateway started",
    );
  }

  async stop(): Promise<void> {
    await this.lifecycle.stop();
    // Sources opened by pollOnce or probe alone (the one-shot commands) were never started by
    // the lifecycle; stopping twice is harmless.
    await this.sources.stop();
  }

  /**
   * Whether `apply` can take this config in place; otherwise (the data folder, the history
   * limits or the presence of a cloud section changed) the gateway must be rebuilt.
   */
  canApply(next: LoadedConfig): boolean {
    const a = this.config.gateway;
    const b = next.gateway;
    return (
      this.config.dataDir === next.dataDir &&
      sameJson(a.gateway.history, b.gateway.history) &&
      (a.cloud === undefined) === (b.cloud === undefined)
    );
  }

  /**
   * Applies a reloaded config in place (canApply first): devices and sources that did not change
   * keep polling on their grid over their open connections; changed and added devices start,
   * removed ones stop (their outbox rows stay until sent). A changed cloud section, or devices
   * with new cloud identities, replace the MQTT link; reports go on into the outbox meanwhile.
   */
  async apply(next: LoadedConfig): Promise<ReloadPlan> {
    const before = new Map(this.config.devices.map((d) => [d.deviceName, d]));
    const changedSources = new Set(
      Object.keys(this.config.gateway.sources).filter(
        (id) => !sameJson(this.config.gateway.sources[id], next.gateway.sources[id]),
      ),
    );
    const added: string[] = [];
    const changed: string[] = [];
    for (const d of next.devices) {
      const old = before.get(d.deviceName);
      if (!old) added.push(d.deviceName);
      else if (!sameJson(old, d) || changedSources.has(d.sourceId)) changed.push(d.deviceName);
    }
    const names = new Set(next.devices.map((d) => d.deviceName));
    const removed = [...before.keys()].filter((n) => !names.has(n));
    const fresh = new Set([...added, ...changed]);
    // A removed device whose reports the cloud has not all confirmed stays with the cloud sync
    // (no longer polled) until they are sent: its outbox rows are not dropped on the floor.
    const outbox = this.store?.open?.outbox;
    const draining = this.cloudDevices.filter(
      (d) => !names.has(d.deviceName) && outbox?.pending(d.productKey, d.deviceName) !== undefined,
    );
    const cloudDevices = [...next.devices, ...draining];
    const identity = (ds: readonly DevicePlan[]) =>
      ds
        .map((d) => [d.productKey, d.deviceName, d.deviceSecret ?? ""])
        .sort((a, b) => (a.join("/") < b.join("/") ? -1 : 1));
    const reconnected =
      this.cloud !== undefined &&
      (!sameJson(this.config.gateway.cloud, next.gateway.cloud) ||
        !sameJson(identity(this.cloudDevices), identity(cloudDevices)));

    // Off the grid first, so that no poll runs on a connection about to close.
    await this.poller.release(next.devices, fresh);
    await this.sources.replace(
      {
        sources: next.gateway.sources,
        devices: next.devices,
        dataDir: next.dataDir,
        configFile: next.configFile,
      },
      fresh,
      changedSources,
    );
    this.config = next;
    this.shadow.replace(next.devices, fresh);
    this.commands.devices = new Map(next.devices.map((d) => [d.deviceName, d]));
    this.store?.replace(next.devices, fresh);
    // Detaches the old link at once (reports go to the outbox meanwhile) and connects the new
    // one while the devices go back on the grid.
    this.cloudDevices = cloudDevices;
    const swapping = this.cloud?.replace(this.cloudOptions(next, cloudDevices), reconnected);
    // Devices whose connection stayed open are polled again at once; the others once their
    // sources have opened (a new OPC UA session can take seconds).
    await this.poller.adopt(next.devices, (d) => this.sources.source(d.sourceId) !== undefined);
    await this.sources.startFor(next.devices.filter((d) => fresh.has(d.deviceName)));
    await this.poller.adopt(next.devices);
    await swapping;
    return { added, changed, removed, reconnected };
  }

  /** The sync engine, when the config has a cloud section and the gateway runs. */
  get sync(): SyncEngine | undefined {
    return this.cloud?.sync;
  }

  // Read-only views for the local API (daemon/api-host.ts), each cheap to read.

  /** The devices this gateway serves, as their mappings compiled. */
  get devices(): readonly DevicePlan[] {
    return this.config.devices;
  }

  /** The config file this gateway was built from. */
  get configFile(): string {
    return this.config.configFile;
  }

  /** Whether the config has a cloud section (and so a store and a command journal). */
  get hasCloud(): boolean {
    return this.config.gateway.cloud !== undefined;
  }

  /** The cloud sync component, with a cloud section. */
  get cloudSync(): CloudSync | undefined {
    return this.cloud;
  }

  /** Whether the store (outbox and journal) is open; false without a cloud section. */
  get storeOpen(): boolean {
    return this.store?.open !== undefined;
  }

  /**
   * Per device with any, its reports the cloud has not confirmed yet (from the outbox's
   * counters); undefined while there is no open store.
   */
  outboxPending(): Map<string, number> | undefined {
    const outbox = this.store?.open?.outbox;
    return outbox && new Map(outbox.status().devices.map((d) => [d.deviceName, d.pending]));
  }

  /** The device's poll group's skipped ticks (see Poller.overruns). */
  overruns(device: DevicePlan): number | undefined {
    return this.poller.overruns(device);
  }

  /**
   * A point's latest values from the store's history, oldest first (at most `max`); undefined
   * while there is no open store (no cloud section: no history is kept).
   */
  history(
    device: DevicePlan,
    point: PointBase,
    max: number,
  ): Array<{ ts: number; value: JsonValue }> | undefined {
    return this.store?.open?.outbox.recent(device.deviceName, point.path, max);
  }

  /** Per opened source: its connection state and counters. */
  sourceHealth(): Record<string, SourceHealth> {
    return this.sources.status();
  }

  /** Every component's state and figures, cheap to read (no table scans). */
  status(): Record<string, ComponentStatus> {
    return this.lifecycle.status();
  }

  /** Connects what is needed, polls every (or the named) device once: then read the shadow. */
  async pollOnce(deviceNames?: readonly string[]): Promise<void> {
    const devices = this.config.devices.filter(
      (d) => !deviceNames || deviceNames.includes(d.deviceName),
    );
    await this.sources.startFor(devices);
    await this.poller.pollOnce(devices);
  }

  /** `read --raw`: one point's raw data under every layout, where its protocol has raw data. */
  async probe(deviceName: string, point: string): Promise<Probe> {
    const device = this.config.devices.find((d) => d.deviceName === deviceName);
    if (!device) return { ok: false, usage: true, message: `no device named ${deviceName}` };
    await this.sources.startFor([device]);
    const source = this.sources.source(device.sourceId);
    if (!source)
      return { ok: false, usage: false, message: `source ${device.sourceId} did not open` };
    if (!source.probe) {
      const { label } = protocolOfKind(device.kind);
      return {
        ok: false,
        usage: true,
        message: `${point} is read from ${device.sourceId}, a${/^[AEIOU]/.test(label) ? "n" : ""} ${label} source: the server types its values, there are no raw words to show`,
      };
    }
    return source.probe(device, point);
  }

  private cloudOptions(
    config: LoadedConfig,
    devices: readonly DevicePlan[] = config.devices,
  ): CloudSyncOptions {
    const { cloud } = config.gateway;
    if (!cloud) throw new Error("no cloud section");
    return {
      cloud,
      configDir: path.dirname(config.configFile),
      dataDir: config.dataDir,
      devices,
    };
  }

  /**
   * Quality changes are what an operator needs in the log: one line per device, change and
   * cause, naming the first points, so a PLC that drops 10k points does not write 10k lines.
   */
  private logQuality(deviceName: string, quality: Readonly<Record<string, Quality>>): void {
    const groups = new Map<string, { quality: Quality; points: string[] }>();
    for (const [point, q] of Object.entries(quality)) {
      const key = q.status === "good" ? "good" : `${q.status}/${q.code}`;
      const g = groups.get(key) ?? { quality: q, points: [] };
      g.points.push(point);
      groups.set(key, g);
    }
    const channel = this.sources.channel(deviceName);
    for (const { quality: q, points } of groups.values()) {
      const fields = {
        device: deviceName,
        ...channel?.fields,
        count: points.length,
        points: points.slice(0, 10),
      };
      if (q.status === "good") this.log.info(fields, "points good again");
      else
        this.log.warn(
          { ...fields, quality: q.status, code: q.code, reason: q.reason },
          "points not good",
        );
    }
  }
}
