import Database from "better-sqlite3";
import type { ShadowMetadata, ShadowState } from "../../north/dialects/alibaba/messages.js";
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
];

interface Row {
  version: number;
  timestamp: number;
  state: string;
  metadata: string;
}

/** The service's shadow documents, one row per (productKey, deviceName). */
export class ShadowStore {
  private readonly db: Database.Database;
  private readonly select: Database.Statement<[string, string], Row>;
  private readonly upsert: Database.Statement<[string, string, number, number, string, string]>;
  private readonly selectKeys: Database.Statement<[], { product_key: string; device_name: string }>;

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
    return this.selectKeys
      .all()
      .map((r) => ({ productKey: r.product_key, deviceName: r.device_name }));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
