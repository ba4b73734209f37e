import type { LoadedConfig } from "../config/load.js";
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { Quality } from "../core/types.js";
import { decodeNodeSample, decodePoint, nodeRef } from "../mapping/decode.js";
import type { DevicePlan, ModbusDevicePlan, NodeDevicePlan } from "../mapping/types.js";
import { EdgeShadow } from "../shadow/edge-shadow.js";
import { type PointReading } from "../mapping/types.js";
import type { NodeDriver, SourceHealth, SouthDriver } from "../south/driver.js";
import type { ValueSample } from "../core/samples.js";
import { createOpcuaDriver } from "../south/opcua/index.js";
import { createDriver } from "../south/registry.js";
import path from "node:path";
import type { MqttLink } from "../north/link.js";
import type { SyncEngine } from "../north/sync.js";
import { openDatabase, openStore, type Db } from "../store/database.js";
import { DesiredJournal } from "../store/desired-journal.js";
import { Outbox, type OutboxStats } from "../store/outbox.js";
import { CommandExecutor, type Drivers } from "./commands.js";
import { createNorth } from "./north.js";
import { Scheduler, type PollGroup } from "./scheduler.js";

/** How long one component may take to stop before the daemon moves on. */
const STOP_TIMEOUT_MS = 5000;

/**
 * The composition root: the only place that wires drivers, the scheduler, the edge shadow, the
 * command executor and, when the config has a cloud section, the store and the north side.
 * Start order: store, drivers (each isolated: a source that fails to start is logged and
 * retried by its own state machine), scheduler, MQTT link. Stop runs in reverse.
 */
export class Gateway {
  readonly shadow: EdgeShadow;
  readonly commands: CommandExecutor;
  private readonly drivers: Drivers & {
    readonly modbus: Map<string, SouthDriver>;
    readonly nodes: Map<string, NodeDriver>;
  } = { modbus: new Map(), nodes: new Map() };
  /** Stops the subscriptions of OPC UA devices that are monitored, not polled. */
  private monitors: Array<() => Promise<void>> = [];
  private readonly scheduler: Scheduler;
  private dbs: Db[] = [];
  /** Why the store is not the durable file it should be, if it is not. */
  private storeDegraded: string | undefined;
  private outbox: Outbox | undefined;
  private north: { link: MqttLink; sync: SyncEngine } | undefined;

  constructor(
    private readonly config: LoadedConfig,
    private readonly log: Logger,
    driverFactory: typeof createDriver = createDriver,
  ) {
    this.shadow = new EdgeShadow(config.devices);
    const used = new Set(config.devices.map((d) => d.sourceId));
    for (const [id, source] of Object.entries(config.gateway.sources)) {
      if (used.has(id) && source.protocol !== "opcua")
        this.drivers.modbus.set(id, driverFactory(id, source, log));
    }
    this.scheduler = new Scheduler(this.pollGroups(), log.child({ component: "daemon.scheduler" }));
    this.commands = new CommandExecutor(
      new Map(config.devices.map((d) => [d.deviceName, d])),
      this.drivers,
      this.shadow,
      log.child({ component: "daemon.commands" }),
    );
    // Quality changes are what an operator needs in the log: one line per device, change and
    // cause, naming the first points, so a PLC that drops 10k points does not write 10k lines.
    this.shadow.on("update", (u) => {
      const device = config.devices.find((d) => d.deviceName === u.deviceName);
      const groups = new Map<string, { quality: Quality; points: string[] }>();
      for (const [point, q] of Object.entries(u.quality)) {
        const key = q.status === "good" ? "good" : `${q.status}/${q.code}`;
        const g = groups.get(key) ?? { quality: q, points: [] };
        g.points.push(point);
        groups.set(key, g);
      }
      for (const { quality: q, points } of groups.values()) {
        const fields = {
          device: u.deviceName,
          source: device?.sourceId,
          ...(device?.protocol === "modbus" && { unitId: device.unitId }),
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
    });
  }

  async start(): Promise<void> {
    this.openNorth();
    await this.createNodeDrivers();
    await Promise.all(
      this.allDrivers().map((d) =>
        d
          .start()
          .catch((err: unknown) =>
            this.log.error({ source: d.sourceId, err }, "source failed to start"),
          ),
      ),
    );
    for (const d of this.config.devices) {
      if (d.protocol === "opcua" && d.mode === "subscribe") await this.monitor(d);
    }
    this.scheduler.start();
    this.north?.link.start();
    this.log.info(
      {
        devices: this.config.devices.length,
        sources: this.drivers.modbus.size + this.drivers.nodes.size,
        gateway: this.config.gateway.gateway.name,
      },
      "gateway started",
    );
  }

  /** The sync engine, when the config has a cloud section and the gateway runs. */
  get sync(): SyncEngine | undefined {
    return this.north?.sync;
  }

  /** Opens the store and builds the north side; the link starts after the first polls. */
  private openNorth(): void {
    const cloud = this.config.gateway.cloud;
    if (!cloud) return;
    const store = openStore(
      path.join(this.config.dataDir, "shadowgate.db"),
      this.log.child({ component: "store" }),
    );
    this.storeDegraded = store.degraded;
    const journalDb = openDatabase(store.file, "FULL");
    const reportsDb = openDatabase(store.file, "NORMAL");
    this.dbs = [journalDb, reportsDb];
    const journal = new DesiredJournal(journalDb);
    const { history } = this.config.gateway.gateway;
    const outbox = (this.outbox = new Outbox(
      reportsDb,
      { maxAgeMs: history.maxAge, maxBytes: history.maxSizeMb * 1024 * 1024 },
      this.log.child({ component: "store.outbox" }),
    ));
    // The last known values come back, marked stale until the first poll reads them again.
    for (const d of this.config.devices) {
      const saved = outbox.saved(d.productKey, d.deviceName);
      if (saved) this.shadow.restore(d.deviceName, saved.reported);
    }
    const devices = this.config.devices;
    this.north = createNorth(
      cloud,
      path.dirname(this.config.configFile),
      devices,
      {
        snapshot: (name) => this.shadow.document(name)?.state.reported ?? {},
        pointNames: (name) =>
          devices.find((d) => d.deviceName === name)?.points.map((p) => p.name) ?? [],
        execute: (name, point, value, opts) => this.commands.execute(name, point, value, opts),
        journal,
        backlog: outbox,
      },
      this.log,
    );
    const { sync } = this.north;
    this.shadow.on("update", (u) => sync.report(u.deviceName, u.reported));
  }

  async stop(): Promise<void> {
    if (this.north) {
      this.north.sync.stop();
      // A command half-way through finishes and is journaled before the store closes.
      await withTimeout(this.north.sync.idle(), STOP_TIMEOUT_MS).catch(() => undefined);
      await withTimeout(this.north.link.stop(), STOP_TIMEOUT_MS).catch((err: unknown) =>
        this.log.warn({ err, code: ErrorCodes.SHUTDOWN_TIMEOUT }, "MQTT link did not stop cleanly"),
      );
      this.north = undefined;
    }
    this.scheduler.stop();
    for (const stop of this.monitors.splice(0)) await stop().catch(() => undefined);
    this.outbox?.checkpoint();
    await Promise.all(
      this.allDrivers().map((d) =>
        withTimeout(d.stop(), STOP_TIMEOUT_MS).catch((err: unknown) =>
          this.log.warn(
            { source: d.sourceId, err, code: ErrorCodes.SHUTDOWN_TIMEOUT },
            "source did not stop cleanly",
          ),
        ),
      ),
    );
    for (const db of this.dbs.splice(0)) db.close();
  }

  /** Connects what is needed, polls every (or the named) device once, and returns nothing: read the shadow. */
  async pollOnce(deviceNames?: readonly string[]): Promise<void> {
    const devices = this.config.devices.filter(
      (d) => !deviceNames || deviceNames.includes(d.deviceName),
    );
    await this.createNodeDrivers();
    await Promise.all(devices.map((d) => this.driver(d).start()));
    await Promise.all(devices.map((d) => this.poll(d)));
  }

  health(): {
    sources: SourceHealth[];
    scheduler: ReturnType<Scheduler["stats"]>;
    store?: OutboxStats & { degraded?: string };
  } {
    return {
      sources: this.allDrivers().map((d) => d.health()),
      scheduler: this.scheduler.stats(),
      ...(this.outbox && {
        store: {
          ...this.outbox.stats(),
          ...(this.storeDegraded && { degraded: this.storeDegraded }),
        },
      }),
    };
  }

  private allDrivers(): Array<SouthDriver | NodeDriver> {
    return [...this.drivers.modbus.values(), ...this.drivers.nodes.values()];
  }

  private driver(device: DevicePlan): SouthDriver | NodeDriver {
    const d =
      device.protocol === "modbus"
        ? this.drivers.modbus.get(device.sourceId)
        : this.drivers.nodes.get(device.sourceId);
    if (!d)
      throw new Error(
        `no driver for source ${device.sourceId} (validation should have caught this)`,
      );
    return d;
  }

  /**
   * OPC UA drivers, created on first need: node-opcua is loaded only when a device uses an OPC
   * UA source (a client costs ~130 MB RSS). Their PKI folder lives in the data directory.
   */
  private async createNodeDrivers(): Promise<void> {
    const used = new Set(this.config.devices.map((d) => d.sourceId));
    for (const [id, source] of Object.entries(this.config.gateway.sources)) {
      if (source.protocol !== "opcua" || !used.has(id) || this.drivers.nodes.has(id)) continue;
      this.drivers.nodes.set(
        id,
        await createOpcuaDriver(
          id,
          source,
          {
            pkiDir: path.join(this.config.dataDir, "pki", "opcua"),
            configDir: path.dirname(this.config.configFile),
          },
          this.log.child({ component: "south.opcua", source: id }),
        ),
      );
    }
  }

  /** Monitored items for an OPC UA device: each batch of changes is one reported update. */
  private async monitor(device: NodeDevicePlan): Promise<void> {
    const driver = this.drivers.nodes.get(device.sourceId);
    if (!driver) return;
    const stop = await driver
      .monitor(
        {
          id: device.deviceName,
          publishingIntervalMs: device.pollIntervalMs,
          nodes: device.points.map(nodeRef),
        },
        (samples) => {
          this.ingestNodes(device, samples);
          // Like a poll cycle: the batch is durable before it may be sent.
          this.north?.sync.flush();
        },
      )
      .catch((err: unknown) => {
        this.log.error(
          { source: device.sourceId, device: device.deviceName, err },
          "cannot monitor the device's nodes",
        );
        return undefined;
      });
    if (stop) this.monitors.push(stop);
  }

  private ingestNodes(device: NodeDevicePlan, samples: readonly ValueSample[]): void {
    const byKey = new Map(device.points.map((p) => [p.name, p]));
    const readings: PointReading[] = [];
    for (const s of samples) {
      const point = byKey.get(s.key);
      if (point) readings.push({ point, ...decodeNodeSample(point, s) });
    }
    this.shadow.ingest(device.deviceName, readings);
  }

  /** One poll group per source and interval, so devices polled alike share one timer. */
  private pollGroups(): PollGroup[] {
    const groups = new Map<string, DevicePlan[]>();
    for (const d of this.config.devices) {
      if (d.protocol === "opcua" && d.mode === "subscribe") continue; // monitored instead
      const id = `${d.sourceId}@${d.pollIntervalMs}ms`;
      groups.set(id, [...(groups.get(id) ?? []), d]);
    }
    return [...groups].map(([id, devices]) => ({
      id,
      intervalMs: devices[0]?.pollIntervalMs ?? 1000,
      run: async () => {
        for (const d of devices) await this.poll(d);
        // One transaction per poll cycle makes its reports durable before they are sent.
        this.north?.sync.flush();
      },
    }));
  }

  private async poll(device: DevicePlan): Promise<void> {
    if (device.protocol === "opcua") {
      const driver = this.drivers.nodes.get(device.sourceId);
      if (driver) this.ingestNodes(device, await driver.read(device.points.map(nodeRef)));
      return;
    }
    await this.pollModbus(device);
  }

  private async pollModbus(device: ModbusDevicePlan): Promise<void> {
    const driver = this.drivers.modbus.get(device.sourceId);
    if (!driver) return;
    const byKey = new Map(device.points.map((p) => [p.name, p]));
    const samples = await driver.read({
      unitId: device.unitId,
      points: device.points.map((p) => ({
        key: p.name,
        table: p.table,
        address: p.address,
        count: p.count,
      })),
    });
    const readings: PointReading[] = [];
    for (const s of samples) {
      const point = byKey.get(s.key);
      if (!point) continue;
      readings.push({ point, ts: s.ts, ...decodePoint(point, s.quality, s.data) });
    }
    this.shadow.ingest(device.deviceName, readings);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
