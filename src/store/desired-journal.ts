import type { Db } from "./database.js";

export interface JournalEntry {
  readonly ts: number;
  readonly version: number;
  /** The desired value as JSON text. */
  readonly value: string;
  readonly status: string;
}

/**
 * Per device and attribute, the last desired value executed: its timestamp, the shadow version
 * it came with, and the value. The sync engine runs a desired value only when it is newer (see
 * isNewCommand), so a QoS 1 redelivery, the `get` after a reconnect or a restart never executes
 * a command twice. The journal is in SQLite so that it survives restarts.
 */
export class DesiredJournal {
  private readonly getStmt;
  private readonly putStmt;
  private readonly deleteStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, string, string], JournalEntry>(
      "SELECT ts, version, value, status FROM desired_journal WHERE product_key = ? AND device_name = ? AND attribute = ?",
    );
    this.putStmt = db.prepare(
      `INSERT INTO desired_journal (product_key, device_name, attribute, ts, version, value, status, executed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (product_key, device_name, attribute)
       DO UPDATE SET ts = excluded.ts, version = excluded.version, value = excluded.value,
                     status = excluded.status, executed_at = excluded.executed_at`,
    );
    this.deleteStmt = db.prepare(
      "DELETE FROM desired_journal WHERE product_key = ? AND device_name = ? AND attribute = ?",
    );
  }

  last(productKey: string, deviceName: string, attribute: string): JournalEntry | undefined {
    return this.getStmt.get(productKey, deviceName, attribute);
  }

  /** The attribute has no executed command on record (a refused one took its entry back). */
  forget(productKey: string, deviceName: string, attribute: string): void {
    this.deleteStmt.run(productKey, deviceName, attribute);
  }

  record(
    productKey: string,
    deviceName: string,
    attribute: string,
    entry: JournalEntry,
    now = Date.now(),
  ): void {
    this.putStmt.run(
      productKey,
      deviceName,
      attribute,
      entry.ts,
      entry.version,
      entry.value,
      entry.status,
      now,
    );
  }
}
