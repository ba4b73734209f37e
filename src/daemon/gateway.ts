import path from "node:path";
import type { LoadedConfig } from "../config/load.js";
import type { Logger } from "../core/logger.js";
import type { Quality } from "../core/types.js";
import type { SyncEngine } from "../north/sync.js";
import { EdgeShadow } from "../shadow/edge-shadow.js";
import type { Probe } from "../south/protocol.js";
import { protocolOfKind } from "../south/registry.js";
import { CloudSync } from "./cloud-sync.js";
import { CommandExecutor } from "./commands.js";
import { Lifecycle, type Component, type ComponentStatus } from "./component.js";
import { Poller } from "./poller.js";
import { Sources } from "./sources.js";
import { Store } from "./store.js";

/** How long one component may take to start or to stop before the daemon moves on. */
export const START_TIMEOUT_MS = 30_000;
export const STOP_TIMEOUT_MS = 5000;

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
  private readonly lifecycle: Lifecycle;

  constructor(
    private readonly config: LoadedConfig,
    private readonly log: Logger,
  ) {
    const { devices } = config;
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
      this.cloud = new CloudSync(
        { cloud, configDir: path.dirname(config.configFile), dataDir: config.dataDir, devices },
        store,
        this.shadow,
        this.commands,
        log,
      );
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

  /** The sync engine, when the config has a cloud section and the gateway runs. */
  get sync(): SyncEngine | undefined {
    return this.cloud?.sync;
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
