import Database from "better-sqlite3";
import type { ShadowMetadata, ShadowState } from "../../north/dialects/alibaba/messages.js";
import type { DeviceKey } from "../../north/dialects/alibaba/subdevices.js";
import type { CloudShadowDocument } from "./shadow-document.js";

/**
 * Numbered schema migrations; `user_version` records how far a file has come. Version and
 * timestamp have their own columns so that a look at the file with sqlite3 answers the usual
 * question ("which version is the cloud at?") without parsing JSON.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE shadows (
     product_key TEXT NOT NULL,
     device_name TEXT NOT NULL,
     version     INTEGER NOT NULL,
     timestamp   INTEGER NOT NULL,  -- epoch seconds of the last change
     state       TEXT NOT NULL,     -- JSON {desired?, reported?}
     metadata    TEXT NOT NULL,     -- JSON {desired?, reported?}, per-attribute timestamps
     PRIMARY KEY (product_key, device_name)
   ) WITHOUT ROWID`,
  // A sub-device belongs to at most one gateway (adding it to another moves it, as Alibaba's
  // BatchAddThingTopo does), so the sub-device is the key. Disabled is the operator's switch.
  `CREATE TABLE topology (
     product_key TEXT NOT NULL,
     device_name TEXT NOT NULL,
     gw_product_key TEXT NOT NULL,
     gw_device_name TEXT NOT NULL,
     PRIMARY KEY (product_key, device_name)
   ) WITHOUT ROWID;
   CREATE INDEX topology_by_gateway ON topology (gw_product_key, gw_device_name);
   CREATE TABLE disabled_devices (
     product_key TEXT NOT NULL,
     device_name TEXT NOT NULL,
     PRIMARY KEY (product_key, device_name)
   ) WITHOUT ROWID`,
];

interface Row {
  version: number;
  timestamp: number;
  state: string;
  metadata: string;
}

type Key = [productKey: string, deviceName: string];
type KeyRow = { product_key: string; device_name: string };
const toKey = (r: KeyRow): DeviceKey => ({ productKey: r.product_key, deviceName: r.device_name });

/**
 * The service's shadow documents, one row per (productKey, deviceName), and what must outlive a
 * restart of the service about sub-devices: the gateways' topology and the disabled devices.
 */
export class ShadowStore {
  private readonly db: Database.Database;
  private readonly select: Database.Statement<[string, string], Row>;
  private readonly upsert: Database.Statement<[string, string, number, number, string, string]>;
  private readonly selectKeys: Database.Statement<[], KeyRow>;
  private readonly sql: {
    readonly subDevices: Database.Statement<Key, KeyRow>;
    readonly gateway: Database.Statement<Key, { gw_product_key: string; gw_device_name: string }>;
    readonly attach: Database.Statement<[...Key, ...Key]>;
    readonly detach: Database.Statement<Key>;
    readonly disabled: Database.Statement<Key, { one: number }>;
    readonly disable: Database.Statement<Key>;
    readonly enable: Database.Statement<Key>;
  };

  /** `file` undefined or ":memory:" keeps everything in memory (tests, the demo). */
  constructor(file?: string) {
    const path = file ?? ":memory:";
    this.db = new Database(path);
    if (path !== ":memory:") {
      // WAL: a reader (sqlite3 on the file, a second tool) never blocks the service's writes.
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = NORMAL");
    }
    const current = this.db.pragma("user_version", { simple: true }) as number;
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v] ?? "");
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
    this.select = this.db.prepare(
      "SELECT version, timestamp, state, metadata FROM shadows WHERE product_key = ? AND device_name = ?",
    );
    this.upsert = this.db.prepare(
      `INSERT INTO shadows (product_key, device_name, version, timestamp, state, metadata)
       VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (product_key, device_name) DO UPDATE SET
         version = excluded.version, timestamp = excluded.timestamp,
         state = excluded.state, metadata = excluded.metadata`,
    );
    this.selectKeys = this.db.prepare(
      "SELECT product_key, device_name FROM shadows ORDER BY product_key, device_name",
    );
    this.sql = {
      subDevices: this.db.prepare(
        `SELECT product_key, device_name FROM topology
         WHERE gw_product_key = ? AND gw_device_name = ? ORDER BY product_key, device_name`,
      ),
      gateway: this.db.prepare(
        "SELECT gw_product_key, gw_device_name FROM topology WHERE product_key = ? AND device_name = ?",
      ),
      attach: this.db.prepare(
        `INSERT INTO topology (product_key, device_name, gw_product_key, gw_device_name)
         VALUES (?, ?, ?, ?)
         ON CONFLICT (product_key, device_name) DO UPDATE SET
           gw_product_key = excluded.gw_product_key, gw_device_name = excluded.gw_device_name`,
      ),
      detach: this.db.prepare("DELETE FROM topology WHERE product_key = ? AND device_name = ?"),
      disabled: this.db.prepare(
        "SELECT 1 AS one FROM disabled_devices WHERE product_key = ? AND device_name = ?",
      ),
      disable: this.db.prepare(
        "INSERT OR IGNORE INTO disabled_devices (product_key, device_name) VALUES (?, ?)",
      ),
      enable: this.db.prepare(
        "DELETE FROM disabled_devices WHERE product_key = ? AND device_name = ?",
      ),
    };
  }

  /** The stored document, or undefined when the shadow was never written. */
  get(productKey: string, deviceName: string): CloudShadowDocument | undefined {
    const row = this.select.get(productKey, deviceName);
    if (row === undefined) return undefined;
    return {
      state: JSON.parse(row.state) as ShadowState,
      metadata: JSON.parse(row.metadata) as ShadowMetadata,
      timestamp: row.timestamp,
      version: row.version,
    };
  }

  put(productKey: string, deviceName: string, doc: CloudShadowDocument): void {
    this.upsert.run(
      productKey,
      deviceName,
      doc.version,
      doc.timestamp,
      JSON.stringify(doc.state),
      JSON.stringify(doc.metadata),
    );
  }

  /** Every stored shadow's key, sorted. */
  keys(): Array<{ productKey: string; deviceName: string }> {
    return this.selectKeys.all().map(toKey);
  }

  /** The sub-devices in a gateway's topology, sorted. */
  topology(gateway: DeviceKey): DeviceKey[] {
    return this.sql.subDevices.all(gateway.productKey, gateway.deviceName).map(toKey);
  }

  /** The gateway whose topology holds the device, if any. */
  gatewayOf(device: DeviceKey): DeviceKey | undefined {
    const r = this.sql.gateway.get(device.productKey, device.deviceName);
    return r && { productKey: r.gw_product_key, deviceName: r.gw_device_name };
  }

  /** Puts the devices in the gateway's topology (moving them from another), in one transaction. */
  attach(gateway: DeviceKey, devices: readonly DeviceKey[]): void {
    this.db.transaction(() => {
      for (const d of devices)
        this.sql.attach.run(d.productKey, d.deviceName, gateway.productKey, gateway.deviceName);
    })();
  }

  /** Takes the devices out of whatever topology holds them, in one transaction. */
  detach(devices: readonly DeviceKey[]): void {
    this.db.transaction(() => {
      for (const d of devices) this.sql.detach.run(d.productKey, d.deviceName);
    })();
  }

  isDisabled(device: DeviceKey): boolean {
    return this.sql.disabled.get(device.productKey, device.deviceName) !== undefined;
  }

  /** Sets the operator's switch; true when that changed it. */
  setDisabled(device: DeviceKey, disabled: boolean): boolean {
    const stmt = disabled ? this.sql.disable : this.sql.enable;
    return stmt.run(device.productKey, device.deviceName).changes > 0;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
