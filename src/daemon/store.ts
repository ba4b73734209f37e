import path from "node:path";
import type { Logger } from "../core/logger.js";
import type { DevicePlan } from "../mapping/types.js";
import type { EdgeShadow } from "../shadow/edge-shadow.js";
import { openDatabase, openStore, type Db } from "../store/database.js";
import { DesiredJournal } from "../store/desired-journal.js";
import { Outbox } from "../store/outbox.js";
import type { Component } from "./component.js";

export interface StoreOptions {
  readonly dataDir: string;
  readonly history: { readonly maxAgeMs: number; readonly maxBytes: number };
}

/**
 * The SQLite file: the outbox of reports and the desired journal, on two connections (the
 * journal commits with synchronous=FULL, reports with NORMAL: see README, Durability). At start
 * the devices' last known values come back into the edge shadow, marked stale until polled.
 */
export class Store implements Component {
  readonly name = "store";
  private opened:
    { outbox: Outbox; journal: DesiredJournal; dbs: Db[]; degraded?: string } | undefined;

  constructor(
    private readonly opts: StoreOptions,
    private devices: readonly DevicePlan[],
    private readonly shadow: EdgeShadow,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const store = openStore(
      path.join(this.opts.dataDir, "shadowgate.db"),
      this.log.child({ component: "store" }),
    );
    const journalDb = openDatabase(store.file, "FULL");
    const reportsDb = openDatabase(store.file, "NORMAL");
    const outbox = new Outbox(
      reportsDb,
      this.opts.history,
      this.log.child({ component: "store.outbox" }),
    );
    this.opened = {
      outbox,
      journal: new DesiredJournal(journalDb),
      dbs: [journalDb, reportsDb],
      ...(store.degraded !== undefined && { degraded: store.degraded }),
    };
    this.restore(this.devices);
  }

  /** A reload: the added and changed devices' last known values come back, as at start. */
  replace(devices: readonly DevicePlan[], fresh: ReadonlySet<string>): void {
    this.devices = devices;
    this.restore(devices.filter((d) => fresh.has(d.deviceName)));
  }

  private restore(devices: readonly DevicePlan[]): void {
    const outbox = this.opened?.outbox;
    if (!outbox) return;
    for (const d of devices) {
      const saved = outbox.saved(d.productKey, d.deviceName);
      if (saved) this.shadow.restore(d.deviceName, saved.reported);
    }
  }

  async stop(): Promise<void> {
    const opened = this.opened;
    this.opened = undefined;
    if (!opened) return;
    opened.outbox.checkpoint();
    for (const db of opened.dbs) db.close();
  }

  /** The outbox and the journal, while the store is open. */
  get open(): { outbox: Outbox; journal: DesiredJournal } | undefined {
    return this.opened;
  }

  status(): Record<string, unknown> {
    if (!this.opened) return {};
    return {
      ...this.opened.outbox.status(),
      ...(this.opened.degraded !== undefined && { degraded: this.opened.degraded }),
    };
  }
}
