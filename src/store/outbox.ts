import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { mergeInto, mergeReported } from "../core/json.js";
import type { JsonObject } from "../core/types.js";
import type { Db } from "./database.js";

export interface OutboxOptions {
  /** Acknowledged reports older than this are pruned. */
  readonly maxAgeMs: number;
  /** Above this many bytes of live data the oldest history goes first. */
  readonly maxBytes: number;
  /** Staged reports kept in memory while the database refuses writes, before they coalesce. */
  readonly maxStaged?: number;
}

export interface HistoryRow {
  readonly seq: number;
  readonly productKey: string;
  readonly deviceName: string;
  readonly ts: number;
  readonly reported: JsonObject;
  readonly ackedAt: number | null;
}

export interface OutboxStats {
  /** Reports the cloud has not confirmed yet. */
  pending: number;
  rows: number;
  bytes: number;
  /** Writes the database refused (full disk, locked, corrupt, read-only). */
  refused: number;
  /** History rows dropped by the size policy (oldest first; never a device's latest state). */
  dropped: number;
}

/** How often refused writes are logged again while they persist. */
const REFUSED_LOG_EVERY_MS = 60_000;
/** Retention runs at most this often. */
const PRUNE_EVERY_MS = 60_000;

/** A device's unconfirmed rows, merged: what pending() returns, kept up to date by flush(). */
interface PendingState {
  /** The last row merged in. */
  upto: number;
  /** How many rows are merged in (0: the device has nothing unconfirmed). */
  rows: number;
  reported: JsonObject;
}

interface Staged {
  pk: string;
  dn: string;
  ts: number;
  reported: JsonObject;
}

/**
 * Every reported update, in SQLite: the outbox while the cloud has not confirmed it, history
 * after. A report is durable (one transaction per flush, which the gateway calls once per
 * poll cycle) before the sync engine may send it, and leaves the outbox only on the cloud's
 * success reply. Order per device is the row order.
 *
 * Full store policy: first acknowledged history past `maxAgeMs` goes; then, above
 * `maxBytes`, the oldest acknowledged history; then a device's unacknowledged rows are
 * coalesced into one (its latest state survives; the steps in between are dropped, counted
 * and logged). If the database refuses writes, staged reports stay in memory, coalescing per
 * device beyond `maxStaged`, and are written when it recovers.
 */
export class Outbox {
  private staged: Staged[] = [];
  /**
   * Per device, its unconfirmed rows merged: loaded from the file once, then kept up to date by
   * every flush (from the reports in hand, no JSON parsing) and reset by ack(), so that
   * pending() costs nothing however long the backlog grew while the uplink was down.
   */
  private readonly pendingState = new Map<string, PendingState>();
  private readonly counters = { refused: 0, dropped: 0 };
  private lastRefusedLog = -Infinity;
  private lastPrune = -Infinity;
  private readonly insert;
  private readonly pendingRows;
  private readonly ackStmt;
  private readonly stateGet;
  private readonly stateVersionSet;
  private readonly stateReportedSet;

  constructor(
    private readonly db: Db,
    private readonly opts: OutboxOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.insert = db.prepare(
      "INSERT INTO reports (product_key, device_name, ts, reported) VALUES (?, ?, ?, ?)",
    );
    this.pendingRows = db.prepare<[string, string], { seq: number; reported: string }>(
      `SELECT seq, reported FROM reports
       WHERE product_key = ? AND device_name = ? AND acked_at IS NULL ORDER BY seq`,
    );
    this.ackStmt = db.prepare(
      `UPDATE reports SET acked_at = ?
       WHERE product_key = ? AND device_name = ? AND acked_at IS NULL AND seq <= ?`,
    );
    this.stateGet = db.prepare<[string, string], { version: number; reported: string }>(
      "SELECT version, reported FROM shadow_state WHERE product_key = ? AND device_name = ?",
    );
    this.stateVersionSet = db.prepare(
      `INSERT INTO shadow_state (product_key, device_name, version, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (product_key, device_name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`,
    );
    this.stateReportedSet = db.prepare(
      `INSERT INTO shadow_state (product_key, device_name, reported, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (product_key, device_name) DO UPDATE SET reported = excluded.reported, updated_at = excluded.updated_at`,
    );
  }

  /** Stages a report for the next flush. */
  stage(productKey: string, deviceName: string, reported: JsonObject, ts = this.now()): void {
    this.staged.push({ pk: productKey, dn: deviceName, ts, reported });
    if (this.staged.length > (this.opts.maxStaged ?? 10_000)) this.coalesceStaged();
  }

  /**
   * Writes every staged report in one transaction, with each device's latest state. Returns
   * the devices that got rows (empty when nothing was staged or the database refused).
   */
  flush(): string[] {
    if (this.staged.length === 0) return [];
    const batch = this.staged;
    const devices = new Map<string, { pk: string; dn: string; merged: JsonObject }>();
    const seqs: number[] = [];
    try {
      this.db.transaction(() => {
        for (const s of batch) {
          seqs.push(
            Number(this.insert.run(s.pk, s.dn, s.ts, JSON.stringify(s.reported)).lastInsertRowid),
          );
          const key = `${s.pk}/${s.dn}`;
          const d = devices.get(key) ?? { pk: s.pk, dn: s.dn, merged: {} };
          d.merged = mergeReported(d.merged, s.reported);
          devices.set(key, d);
        }
        const ts = this.now();
        for (const d of devices.values()) {
          const before = this.stateGet.get(d.pk, d.dn)?.reported ?? "{}";
          const latest = mergeReported(JSON.parse(before) as JsonObject, d.merged);
          this.stateReportedSet.run(d.pk, d.dn, JSON.stringify(latest), ts);
        }
      })();
    } catch (err) {
      this.refused(err, batch.length);
      return [];
    }
    this.staged = [];
    batch.forEach((s, i) => {
      const p = this.pendingState.get(`${s.pk}/${s.dn}`);
      if (!p) return; // loaded from the file, new rows included, when first needed
      mergeInto(p.reported, s.reported);
      p.upto = seqs[i] ?? p.upto;
      p.rows++;
    });
    if (this.now() - this.lastPrune >= PRUNE_EVERY_MS) this.prune();
    return [...devices.values()].map((d) => d.dn);
  }

  /**
   * The device's unconfirmed reports merged in order, and the last row they include. Read from
   * the file once per device, kept in memory after that; the object returned is merged into by
   * the next flush, so use it before then.
   */
  pending(
    productKey: string,
    deviceName: string,
  ): { upto: number; reported: JsonObject } | undefined {
    const key = `${productKey}/${deviceName}`;
    let p = this.pendingState.get(key);
    if (!p) {
      let rows: Array<{ seq: number; reported: string }>;
      try {
        rows = this.pendingRows.all(productKey, deviceName);
      } catch (err) {
        this.refused(err, 0);
        return undefined;
      }
      const reported: JsonObject = {};
      for (const r of rows) mergeInto(reported, JSON.parse(r.reported) as JsonObject);
      p = { upto: rows[rows.length - 1]?.seq ?? 0, rows: rows.length, reported };
      this.pendingState.set(key, p);
    }
    return p.rows === 0 ? undefined : { upto: p.upto, reported: p.reported };
  }

  /** The cloud confirmed every row of the device up to `upto`, at `version`. */
  ack(productKey: string, deviceName: string, upto: number | undefined, version: number): void {
    try {
      this.db.transaction(() => {
        const ts = this.now();
        if (upto !== undefined) this.ackStmt.run(ts, productKey, deviceName, upto);
        this.stateVersionSet.run(productKey, deviceName, version, ts);
      })();
      if (upto !== undefined) {
        const key = `${productKey}/${deviceName}`;
        const p = this.pendingState.get(key);
        // Everything merged was confirmed: nothing is pending. Otherwise rows came in after
        // the report was made: they are read again (a few) when next needed.
        if (p && upto >= p.upto)
          this.pendingState.set(key, { upto: p.upto, rows: 0, reported: {} });
        else this.pendingState.delete(key);
      }
    } catch (err) {
      this.refused(err, 0);
    }
  }

  /** The last cloud version and reported values saved for a device (after a restart). */
  saved(
    productKey: string,
    deviceName: string,
  ): { version: number; reported: JsonObject } | undefined {
    const row = this.stateGet.get(productKey, deviceName);
    return row && { version: row.version, reported: JSON.parse(row.reported) as JsonObject };
  }

  stats(): OutboxStats {
    const c = this.db
      .prepare<[], { rows: number; pending: number }>(
        "SELECT count(*) AS rows, count(*) FILTER (WHERE acked_at IS NULL) AS pending FROM reports",
      )
      .get() ?? { rows: 0, pending: 0 };
    return { ...c, bytes: this.liveBytes(), ...this.counters };
  }

  /** Retention: age first, then size (see the class comment). */
  prune(): void {
    this.lastPrune = this.now();
    try {
      this.db
        .prepare("DELETE FROM reports WHERE acked_at IS NOT NULL AND ts < ?")
        .run(this.now() - this.opts.maxAgeMs);
      while (this.liveBytes() > this.opts.maxBytes) {
        const gone = this.db
          .prepare(
            `DELETE FROM reports WHERE seq IN
             (SELECT seq FROM reports WHERE acked_at IS NOT NULL ORDER BY seq LIMIT 1000)`,
          )
          .run().changes;
        if (gone > 0) {
          this.counters.dropped += gone;
          continue;
        }
        const coalesced = this.coalescePending();
        if (coalesced === 0) break;
      }
    } catch (err) {
      this.refused(err, 0);
    }
  }

  /** Merges each device's unacknowledged rows into one row; returns how many rows went. */
  private coalescePending(): number {
    let dropped = 0;
    const devices = this.db
      .prepare<[], { pk: string; dn: string; n: number }>(
        `SELECT product_key AS pk, device_name AS dn, count(*) AS n FROM reports
         WHERE acked_at IS NULL GROUP BY product_key, device_name HAVING n > 1`,
      )
      .all();
    this.db.transaction(() => {
      for (const d of devices) {
        const p = this.pending(d.pk, d.dn);
        if (!p) continue;
        this.db
          .prepare(
            "DELETE FROM reports WHERE product_key = ? AND device_name = ? AND acked_at IS NULL",
          )
          .run(d.pk, d.dn);
        this.insert.run(d.pk, d.dn, this.now(), JSON.stringify(p.reported));
        dropped += d.n - 1;
      }
    })();
    this.pendingState.clear();
    if (dropped > 0) {
      this.counters.dropped += dropped;
      this.log.warn(
        { dropped, maxBytes: this.opts.maxBytes, code: ErrorCodes.STORE_FULL },
        "store full: unsent reports coalesced into each device's latest state",
      );
    }
    return dropped;
  }

  /** Bytes of pages in use (freed pages are reused, so they do not count). */
  private liveBytes(): number {
    const pages = this.db.pragma("page_count", { simple: true }) as number;
    const free = this.db.pragma("freelist_count", { simple: true }) as number;
    const size = this.db.pragma("page_size", { simple: true }) as number;
    return (pages - free) * size;
  }

  private coalesceStaged(): void {
    const byDevice = new Map<string, Staged>();
    for (const s of this.staged) {
      const key = `${s.pk}/${s.dn}`;
      const prev = byDevice.get(key);
      byDevice.set(key, prev ? { ...s, reported: mergeReported(prev.reported, s.reported) } : s);
    }
    this.counters.dropped += this.staged.length - byDevice.size;
    this.staged = [...byDevice.values()];
  }

  private refused(err: unknown, reports: number): void {
    this.counters.refused++;
    const now = this.now();
    if (now - this.lastRefusedLog < REFUSED_LOG_EVERY_MS) return;
    this.lastRefusedLog = now;
    this.log.error(
      {
        err,
        refused: this.counters.refused,
        staged: this.staged.length,
        reports,
        code: ErrorCodes.STORE_REFUSED,
      },
      "the database refused a write; reports are kept in memory (latest state per device) until it recovers",
    );
  }
}

/** Reports of one device, oldest first, for `shadowgate history` (works on a read-only handle). */
export function readHistory(db: Db, deviceName: string, since = 0): HistoryRow[] {
  return db
    .prepare<
      [string, number],
      { seq: number; pk: string; ts: number; reported: string; acked_at: number | null }
    >(
      `SELECT seq, product_key AS pk, ts, reported, acked_at FROM reports
       WHERE device_name = ? AND ts >= ? ORDER BY seq`,
    )
    .all(deviceName, since)
    .map((r) => ({
      seq: r.seq,
      productKey: r.pk,
      deviceName,
      ts: r.ts,
      reported: JSON.parse(r.reported) as JsonObject,
      ackedAt: r.acked_at,
    }));
}
