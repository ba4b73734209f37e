import { closeSync, existsSync, mkdirSync, openSync, renameSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

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
  // 3: a device's confirmed rows are those up to a watermark, so that one confirmation is one
  // small write, not an UPDATE of every row it covers; the latest state is saved periodically
  // (reported_seq says up to which row). No index on reports: each cost every INSERT a third of
  // ingest speed; the gateway reads rows by rowid range, `shadowgate history` scans.
  `ALTER TABLE shadow_state ADD COLUMN acked_seq INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE shadow_state ADD COLUMN reported_seq INTEGER NOT NULL DEFAULT 0;
   INSERT OR IGNORE INTO shadow_state (product_key, device_name, updated_at)
     SELECT DISTINCT product_key, device_name, 0 FROM reports;
   UPDATE shadow_state SET
     acked_seq = coalesce((SELECT max(seq) FROM reports r WHERE r.acked_at IS NOT NULL
       AND r.product_key = shadow_state.product_key AND r.device_name = shadow_state.device_name), 0),
     reported_seq = coalesce((SELECT max(seq) FROM reports r
       WHERE r.product_key = shadow_state.product_key AND r.device_name = shadow_state.device_name), 0);
   DROP INDEX reports_outbox;
   DROP INDEX reports_device_ts;
   ALTER TABLE reports DROP COLUMN acked_at;`,
  // 4: reports.reported holds new rows in the compact encoding of report-codec.ts (a BLOB; the
  // JSON text of older rows is read as before), whose leaf paths are numbered here.
  `CREATE TABLE report_paths (
     id   INTEGER PRIMARY KEY,
     path TEXT NOT NULL UNIQUE  -- the leaf's keys from the top, as a JSON array
   )`,
];

/** The schema version of a file this code has opened (its `user_version`). */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Opens an existing gateway database for reading only (the daemon may be running). */
export function openReadOnly(file: string): Db {
  return new Database(file, { readonly: true, fileMustExist: true });
}

/**
 * Opens (creating if needed) the gateway's SQLite file, in WAL mode so readers (`shadowgate
 * history`) run beside the writer. `synchronous` is chosen per connection:
 * - FULL for the command journal: each commit is on disk before the write to the device, so
 *   even a power loss cannot make a command run twice;
 * - NORMAL for reports: a commit survives the process dying (SIGKILL, OOM), and after a power
 *   loss at most the last moments of history are gone, while the devices' state is read again
 *   and pushed on restart. FULL there would fsync every poll cycle and, since SQLite blocks the
 *   event loop, hold up commands by the length of an fsync (B9 measured p99 +14 ms).
 */
export function openDatabase(file: string, synchronous: "FULL" | "NORMAL" = "FULL"): Db {
  if (file !== ":memory:") {
    // The store holds the plant's readings and the command journal: the service user's alone.
    // A folder made here is 0700; a new database file is created 0600 before SQLite opens it,
    // and SQLite gives its -wal and -shm files the database file's mode.
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    closeSync(openSync(file, "a", 0o600));
  }
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${synchronous}`);
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

/** SQLite error codes that mean the file is not a usable database. */
const CORRUPT = new Set(["SQLITE_CORRUPT", "SQLITE_NOTADB"]);

/**
 * Checks (migrating, repairing) the gateway's database for the daemon, which must come up
 * whatever state the file is in, and say why when it is not as it should be; returns the file
 * to open connections on:
 * - a corrupt file is moved aside (kept for inspection) and a fresh one is started;
 * - a file or folder that cannot be written falls back to memory: the gateway runs, but
 *   nothing survives a restart, which is logged as an error.
 * Locks and a full disk surface later as refused writes (see Outbox).
 */
export function openStore(
  file: string,
  log: Logger,
  now = Date.now(),
): { file: string; degraded?: string } {
  try {
    openDatabase(file).close();
    return { file };
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    if (CORRUPT.has(code)) {
      const aside = `${file}.corrupt-${now}`;
      for (const suffix of ["", "-wal", "-shm"]) {
        if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
      }
      log.error(
        { file, movedTo: aside, err, code: ErrorCodes.STORE_OPEN },
        "the database was corrupt; it was moved aside and a new one started (the command journal and unsent reports in it are not used)",
      );
      openDatabase(file).close();
      return { file, degraded: `corrupt database moved to ${aside}` };
    }
    log.error(
      { file, err, code: ErrorCodes.STORE_OPEN },
      "cannot open the database; running from memory: reports and the command journal will not survive a restart",
    );
    return { file: ":memory:", degraded: `cannot open ${file}: ${(err as Error).message}` };
  }
}
