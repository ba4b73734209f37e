import { EventEmitter } from "node:events";
import type { CloudConfig } from "../config/gateway-schema.js";
import type { Logger } from "../core/logger.js";
import type { ConnectionState } from "../core/types.js";
import type { DevicePlan } from "../mapping/types.js";
import type { MqttLink } from "../north/link.js";
import type { SyncEngine } from "../north/sync.js";
import type { EdgeShadow, ReportedUpdate } from "../shadow/edge-shadow.js";
import type { CommandExecutor } from "./commands.js";
import type { Component } from "./component.js";
import { createNorth } from "./north.js";
import type { Store } from "./store.js";

/** How long a command half-way through may take to finish and be journaled at stop. */
const IDLE_TIMEOUT_MS = 5000;

export interface CloudSyncOptions {
  readonly cloud: CloudConfig;
  readonly configDir: string;
  readonly dataDir: string;
  readonly devices: readonly DevicePlan[];
}

/** The MQTT link came up or went down (for the local API's event stream). */
export interface LinkChange {
  readonly online: boolean;
  readonly reason?: string;
}

/**
 * The north side as a component: the MQTT link and the sync engine over the store's outbox and
 * journal. Started last, after the first polls are under way; stopped first, so that a command
 * half-way through finishes and is journaled before the store closes.
 */
export class CloudSync implements Component {
  readonly name = "cloud";
  /** "link": each time the MQTT link comes up or goes down. */
  readonly events = new EventEmitter<{ link: [LinkChange] }>();
  private north: { link: MqttLink; sync: SyncEngine } | undefined;
  private readonly onUpdate = (u: ReportedUpdate): void => {
    if (this.north) this.north.sync.report(u.deviceName, u.reported);
    // Between two links (a reload replacing this one), reports go to the outbox directly.
    else if (this.opts.devices.some((d) => d.deviceName === u.deviceName))
      this.store.open?.outbox.stage(u.productKey, u.deviceName, u.reported);
  };

  constructor(
    private opts: CloudSyncOptions,
    private readonly store: Store,
    private readonly shadow: EdgeShadow,
    private readonly commands: CommandExecutor,
    private readonly log: Logger,
  ) {}

  get sync(): SyncEngine | undefined {
    return this.north?.sync;
  }

  async start(): Promise<void> {
    this.connect();
    this.shadow.off("update", this.onUpdate);
    this.shadow.on("update", this.onUpdate);
  }

  /**
   * A reload. The same cloud identities with new mappings: nothing to do (point names are read
   * from the current options). A changed cloud section or a device added, removed or given new
   * credentials: the link is replaced, while reports keep going into the outbox.
   */
  async replace(opts: CloudSyncOptions, reconnect: boolean): Promise<void> {
    // Both before the first await: the caller goes on while the old link closes.
    this.opts = opts;
    if (!reconnect || !this.north) return;
    await this.disconnect();
    this.connect();
  }

  /**
   * Closes the link. The shadow stays watched: the poller stops after this component, and the
   * reports of its last polls still go into the outbox (until the store closes), to be sent
   * after the next start.
   */
  async stop(): Promise<void> {
    await this.disconnect();
  }

  private connect(): void {
    const store = this.store.open;
    if (!store) throw new Error("the store is not open");
    this.north = createNorth(
      this.opts.cloud,
      this.opts.configDir,
      this.opts.dataDir,
      this.opts.devices,
      {
        snapshot: (name) => this.shadow.document(name)?.state.reported ?? {},
        pointNames: (name) =>
          this.opts.devices.find((d) => d.deviceName === name)?.points.map((p) => p.name) ?? [],
        execute: (name, point, value, opts) => this.commands.execute(name, point, value, opts),
        journal: store.journal,
        backlog: store.outbox,
        outcome: (name, point, outcome) => this.shadow.recordCommand(name, point, outcome),
      },
      this.log,
    );
    this.north.link.on("online", () => this.events.emit("link", { online: true }));
    this.north.link.on("offline", (reason) => this.events.emit("link", { online: false, reason }));
    this.north.link.start();
  }

  private async disconnect(): Promise<void> {
    const north = this.north;
    if (!north) return;
    this.north = undefined;
    north.sync.stop();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      north.sync.idle(),
      new Promise((resolve) => (timer = setTimeout(resolve, IDLE_TIMEOUT_MS))),
    ]).finally(() => clearTimeout(timer));
    await north.link.stop();
  }

  /** The MQTT link's state; undefined while the component is not started. */
  linkState(): ConnectionState | undefined {
    return this.north?.link.health().state;
  }

  /** A poll cycle ended: its reports become durable and are scheduled for sending. */
  flush(): void {
    if (this.north) this.north.sync.flush();
    else this.store.open?.outbox.flush();
  }

  status(): Record<string, unknown> {
    const north = this.north;
    if (!north) return {};
    return {
      link: north.link.health(),
      sync: north.sync.stats,
      sessions: north.sync.sessionStatus(),
      devices: Object.fromEntries(
        this.opts.devices.map((d) => [d.deviceName, north.sync.deviceState(d.deviceName)]),
      ),
    };
  }
}
