import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

export type Db = Database.Database;

/**
 * Numbered schema migrations, applied in order at open. Each runs once, in a transaction, and
 * `user_version` records how far a file has come, so an old file is brought up to date.
 */
const MIGRATIONS: readonly string[] = [
  // 1: the desired journal: per device and attribute, the last desired value executed.
  `CREATE TABLE desired_journal (
     product_key TEXT NOT NULL,
     device_name TEXT NOT NULL,
     attribute   TEXT NOT NULL,
     ts          INTEGER NOT NULL,  -- metadata.desired.<attr>.timestamp, whole seconds
     version     INTEGER NOT NULL,  -- shadow version the value came with
     value       TEXT NOT NULL,     -- the desired value, as JSON
     status      TEXT NOT NULL,     -- applied | rejected | failed
     executed_at INTEGER NOT NULL,  -- ms since the epoch
     PRIMARY KEY (product_key, device_name, attribute)
   ) WITHOUT ROWID`,
  // 2: reports (the outbox while unacknowledged, then history) and per-device shadow state.
  `CREATE TABLE reports (
     seq         INTEGER PRIMARY KEY AUTOINCREMENT,
     product_key TEXT NOT NULL,
     device_name TEXT NOT NULL,
     ts          INTEGER NOT NULL,  -- ms since the epoch, when the change was seen
     reported    TEXT NOT NULL,     -- the partial reported update, as JSON
     acked_at    INTEGER            -- NULL while the cloud has not confirmed it
   );
   CREATE INDEX reports_outbox ON reports (product_key, device_name, seq) WHERE acked_at IS NULL;
   CREATE INDEX reports_device_ts ON reports (device_name, ts);
   CREATE TABLE shadow_state (
     product_key TEXT NOT NULL,
     device_name TEXT NOT NULL,
     version     INTEGER NOT NULL DEFAULT 0,  -- the last version the cloud confirmed
     reported    TEXT NOT NULL DEFAULT '{}',  -- the edge shadow's last known values
     updated_at  INTEGER NOT NULL,
     PRIMARY KEY (product_key, device_name)
   ) WITHOUT ROWID`,
];

/**
 * Opens (creating if needed) the gateway's SQLite file. WAL lets readers run beside the writer;
 * synchronous=FULL makes each commit durable against power loss, which the journal's promise
 * (a command never runs twice) depends on.
 */
export function openDatabase(file: string): Db {
  if (file !== ":memory:") mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  const current = db.pragma("user_version", { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] ?? "");
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}
