// ~550 lines on purpose: save, flush, ack, retention, the in-memory counters and the console's
// recent values share one set of prepared statements, one report codec and one transaction
// discipline; split, each half would reach into the other.
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { getPath, mergeInto, mergeReported } from "../core/json.js";
import type { JsonObject, JsonValue } from "../core/types.js";
import type { Db } from "./database.js";
import { ReportCodec } from "./report-codec.js";

/** How far back (in rows of the whole table) `recent` looks for a point's values. */
const RECENT_SCAN_ROWS = 20_000;

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
  /** The cloud confirmed it (false: it still waits in the outbox). */
  readonly sent: boolean;
}

/** A device with unconfirmed reports, as Outbox.status() lists it. */
export interface DeviceBacklog {
  readonly productKey: string;
  readonly deviceName: string;
  /** Its rows the cloud has not confirmed yet. */
  readonly pending: number;
  /** How long ago the oldest of them was seen (its `ts`), in ms. */
  readonly oldestAgeMs: number;
}

/** What Outbox.status() returns: counters kept in memory, so reading them scans nothing. */
export interface OutboxStats {
  /** Reports the cloud has not confirmed yet (the sum over `devices`). */
  pending: number;
  /** Rows in the file: unconfirmed and history. */
  rows: number;
  /** Bytes of pages in use, which the size policy holds under `maxBytes` (from the header). */
  bytes: number;
  /** Reports in memory, not written yet: the next flush's, or waiting for a refusing disk. */
  staged: number;
  /** Writes the database refused (full disk, locked, corrupt, read-only). */
  refused: number;
  /** History rows dropped by the size policy (oldest first; never a device's latest state). */
  dropped: number;
  /** Reports written since the outbox opened. */
  queued: number;
  /** Reports the cloud confirmed since the outbox opened. */
  confirmed: number;
  /** How long ago the oldest unconfirmed report was seen, in ms; absent when none waits. */
  oldestPendingAgeMs?: number;
  /** The devices with unconfirmed reports, with how many and how old. */
  devices: DeviceBacklog[];
}

/** How often refused writes are logged again while they persist. */
const REFUSED_LOG_EVERY_MS = 60_000;
/** Retention runs at most this often. */
const PRUNE_EVERY_MS = 60_000;
/**
 * How often each device's latest state is saved whole. In between, the rows after the last
 * save are the rest of it (a restart merges them in), so a save need not follow every flush.
 */
const CHECKPOINT_EVERY_MS = 10_000;
/** Rows deleted per statement by retention, so that one minute's pruning never blocks long. */
const PRUNE_BATCH = 5_000;

/** What the outbox knows of one device, loaded from the file at first use, then kept here. */
interface Device {
  readonly pk: string;
  readonly dn: string;
  /** The last version the cloud confirmed. */
  version: number;
  /**
   * The latest state (the edge shadow's last known values) is `base` with `pending` merged
   * over it, so that each report is merged once, into `pending`. `base` holds at least every
   * confirmed row; it may hold some pending ones too, which merging `pending` again overrides
   * with the same values.
   */
  base: JsonObject;
  /** The last row of the device. */
  latestSeq: number;
  /** The last row in the saved latest state (shadow_state.reported_seq). */
  savedSeq: number;
  /** Every row up to this one is confirmed by the cloud. */
  ackedSeq: number;
  /** The rows after `ackedSeq`, merged in order, how many there are, and the oldest `ts`. */
  pending: JsonObject;
  pendingRows: number;
  oldestPendingTs: number;
}

const latest = (d: Device): JsonObject => mergeReported(d.base, d.pending);

/** Adds an unconfirmed row to the device's pending state, after the rows it holds. */
function addPending(d: Device, reported: JsonObject, ts: number): void {
  mergeInto(d.pending, reported);
  d.oldestPendingTs = d.pendingRows === 0 ? ts : Math.min(d.oldestPendingTs, ts);
  d.pendingRows++;
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
 * success reply. Order per device is the row order; a device's confirmed rows are those up to
 * its watermark (shadow_state.acked_seq), so a confirmation is one small write however many
 * rows it covers.
 *
 * Each device's latest state and its unconfirmed rows merged are kept in memory, loaded from
 * the file once: a flush costs its INSERTs, and pending() costs nothing however long the
 * backlog grew. The latest state is saved every CHECKPOINT_EVERY_MS and on close; after a
 * SIGKILL the rows written since the last save are merged into it again.
 *
 * Full store policy: first confirmed history past `maxAgeMs` goes; then, above `maxBytes`,
 * the oldest confirmed history; then a device's unconfirmed rows are coalesced into one (its
 * latest state survives; the steps in between are dropped, counted and logged). If the
 * database refuses writes, staged reports stay in memory, coalescing per device beyond
 * `maxStaged`, and are written when it recovers.
 *
 * status() reads counters kept as rows are written, confirmed and pruned: the row count is
 * taken once at open, and every device with unconfirmed rows is loaded then (one scan of the
 * rows after the lowest watermark), so the per-device counts cover the whole file. They stay
 * exact while this is the file's only writer, as in the gateway.
 */
export class Outbox {
  private staged: Staged[] = [];
  private readonly devices = new Map<string, Device>();
  private readonly counters = { refused: 0, dropped: 0, queued: 0, confirmed: 0 };
  /** Rows in the reports table. */
  private rows: number;
  private lastRefusedLog = -Infinity;
  private lastPrune = -Infinity;
  private lastCheckpoint: number;
  private readonly insert;
  private readonly rowsAfter;
  private readonly stateGet;
  private readonly ackSet;
  private readonly checkpointSet;
  private readonly stateCreate;
  private readonly codec: ReportCodec;

  constructor(
    private readonly db: Db,
    private readonly opts: OutboxOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.lastCheckpoint = now();
    this.codec = new ReportCodec(db);
    this.insert = db.prepare(
      "INSERT INTO reports (product_key, device_name, ts, reported) VALUES (?, ?, ?, ?)",
    );
    // By rowid range: the rows after a device's watermark are few, and at the end of the table.
    this.rowsAfter = db.prepare<
      [number, string, string],
      { seq: number; ts: number; reported: Buffer | string }
    >(
      `SELECT seq, ts, reported FROM reports
       WHERE seq > ? AND product_key = ? AND device_name = ? ORDER BY seq`,
    );
    this.stateGet = db.prepare<
      [string, string],
      { version: number; reported: string; reported_seq: number; acked_seq: number }
    >(
      `SELECT version, reported, reported_seq, acked_seq FROM shadow_state
       WHERE product_key = ? AND device_name = ?`,
    );
    this.ackSet = db.prepare(
      `INSERT INTO shadow_state (product_key, device_name, version, acked_seq, updated_at)
       VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (product_key, device_name) DO UPDATE SET version = excluded.version,
         acked_seq = max(acked_seq, excluded.acked_seq), updated_at = excluded.updated_at`,
    );
    this.checkpointSet = db.prepare(
      `INSERT INTO shadow_state (product_key, device_name, reported, reported_seq, updated_at)
       VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (product_key, device_name) DO UPDATE SET reported = excluded.reported,
         reported_seq = excluded.reported_seq, updated_at = excluded.updated_at`,
    );
    this.stateCreate = db.prepare(
      `INSERT OR IGNORE INTO shadow_state (product_key, device_name, updated_at) VALUES (?, ?, ?)`,
    );
    this.rows = db.prepare<[], number>("SELECT count(*) FROM reports").pluck().get() ?? 0;
    // Every device with unconfirmed rows is loaded now, so that status() counts them all: one
    // pass over the rows after the lowest watermark (a rowid range: CROSS JOIN keeps reports
    // the outer loop).
    const backlog = db.prepare<[], { pk: string; dn: string }>(
      `SELECT DISTINCT r.product_key AS pk, r.device_name AS dn
       FROM reports r CROSS JOIN shadow_state s USING (product_key, device_name)
       WHERE r.seq > (SELECT coalesce(min(acked_seq), 0) FROM shadow_state)
         AND r.seq > s.acked_seq`,
    );
    for (const { pk, dn } of backlog.all()) this.device(pk, dn);
  }

  /** Stages a report for the next flush. */
  stage(productKey: string, deviceName: string, reported: JsonObject, ts = this.now()): void {
    this.staged.push({ pk: productKey, dn: deviceName, ts, reported });
    if (this.staged.length > (this.opts.maxStaged ?? 10_000)) this.coalesceStaged();
  }

  /**
   * Writes every staged report in one transaction. Returns the devices that got rows (empty
   * when nothing was staged or the database refused).
   */
  flush(): string[] {
    if (this.staged.length === 0) return [];
    const batch = this.staged;
    const seqs: number[] = [];
    let touched: Device[];
    try {
      touched = [...new Set(batch.map((s) => this.device(s.pk, s.dn)))];
      this.codec.transaction(() => {
        // A device's state row goes in with its first rows: the save that follows (below) may
        // never happen (SIGKILL), and a device without a row is taken for one without rows.
        for (const d of touched) if (d.savedSeq === 0) this.stateCreate.run(d.pk, d.dn, this.now());
        for (const s of batch) {
          seqs.push(
            Number(
              this.insert.run(s.pk, s.dn, s.ts, this.codec.encode(s.reported)).lastInsertRowid,
            ),
          );
        }
      });
    } catch (err) {
      this.refused(err, batch.length);
      return [];
    }
    this.staged = [];
    this.rows += batch.length;
    this.counters.queued += batch.length;
    batch.forEach((s, i) => {
      const d = this.device(s.pk, s.dn);
      addPending(d, s.reported, s.ts);
      d.latestSeq = seqs[i] ?? d.latestSeq;
    });
    const now = this.now();
    // A device's first rows are saved at once, so that loading it never has to search the
    // whole table for rows after a missing save.
    if (touched.some((d) => d.savedSeq === 0) || now - this.lastCheckpoint >= CHECKPOINT_EVERY_MS)
      this.checkpoint();
    if (now - this.lastPrune >= PRUNE_EVERY_MS) this.prune();
    return touched.map((d) => d.dn);
  }

  /**
   * The device's unconfirmed reports merged in order, and the last row they include. The
   * object returned is merged into by the next flush, so use it before then.
   */
  pending(
    productKey: string,
    deviceName: string,
  ): { upto: number; reported: JsonObject } | undefined {
    let d: Device;
    try {
      d = this.device(productKey, deviceName);
    } catch (err) {
      this.refused(err, 0);
      return undefined;
    }
    return d.pendingRows === 0 ? undefined : { upto: d.latestSeq, reported: d.pending };
  }

  /** The cloud confirmed every row of the device up to `upto`, at `version`. */
  ack(productKey: string, deviceName: string, upto: number | undefined, version: number): void {
    try {
      const d = this.device(productKey, deviceName);
      const acked = Math.max(d.ackedSeq, upto ?? 0);
      this.ackSet.run(productKey, deviceName, version, acked, this.now());
      d.version = version;
      if (acked === d.ackedSeq) return;
      d.ackedSeq = acked;
      mergeInto(d.base, d.pending);
      const before = d.pendingRows;
      if (acked >= d.latestSeq) {
        d.pending = {};
        d.pendingRows = 0;
      } else this.loadPending(d); // rows came in after the report was made: a few
      this.counters.confirmed += Math.max(0, before - d.pendingRows);
    } catch (err) {
      this.refused(err, 0);
    }
  }

  /** The last cloud version and reported values saved for a device (after a restart). */
  saved(
    productKey: string,
    deviceName: string,
  ): { version: number; reported: JsonObject } | undefined {
    const d = this.device(productKey, deviceName);
    const reported = structuredClone(latest(d));
    if (d.version === 0 && d.latestSeq === 0 && Object.keys(reported).length === 0) return;
    return { version: d.version, reported };
  }

  /** Saves every device's latest state that changed since its last save. */
  checkpoint(): void {
    this.lastCheckpoint = this.now();
    const due = [...this.devices.values()].filter((d) => d.latestSeq > d.savedSeq);
    if (due.length === 0) return;
    try {
      this.db.transaction(() => {
        for (const d of due)
          this.checkpointSet.run(d.pk, d.dn, JSON.stringify(latest(d)), d.latestSeq, this.now());
      })();
      for (const d of due) d.savedSeq = d.latestSeq;
    } catch (err) {
      this.refused(err, 0);
    }
  }

  /**
   * The outbox's figures for health and metrics, from counters kept in memory (see the class
   * comment): cheap enough to read as often as wanted.
   */
  status(): OutboxStats {
    const now = this.now();
    const devices: DeviceBacklog[] = [];
    let pending = 0;
    let oldest = Infinity;
    for (const d of this.devices.values()) {
      if (d.pendingRows === 0) continue;
      pending += d.pendingRows;
      oldest = Math.min(oldest, d.oldestPendingTs);
      const oldestAgeMs = Math.max(0, now - d.oldestPendingTs);
      devices.push({ productKey: d.pk, deviceName: d.dn, pending: d.pendingRows, oldestAgeMs });
    }
    return {
      rows: this.rows,
      pending,
      bytes: this.liveBytes(),
      staged: this.staged.length,
      ...this.counters,
      ...(pending > 0 && { oldestPendingAgeMs: Math.max(0, now - oldest) }),
      devices,
    };
  }

  /**
   * A point's latest values in the history, oldest first, for the console's sparkline: at most
   * `max` of them, from the table's last RECENT_SCAN_ROWS rows (a rowid range, so the API's
   * thread spends a bounded time here however large the file).
   */
  recent(
    deviceName: string,
    path: readonly string[],
    max: number,
  ): Array<{ ts: number; value: JsonValue }> {
    const rows = this.db
      .prepare<[number, string], { ts: number; reported: Buffer | string }>(
        `SELECT ts, reported FROM reports
         WHERE seq > (SELECT coalesce(max(seq), 0) FROM reports) - ? AND device_name = ?
         ORDER BY seq DESC`,
      )
      .all(RECENT_SCAN_ROWS, deviceName);
    const out: Array<{ ts: number; value: JsonValue }> = [];
    for (const row of rows) {
      const value = getPath(this.codec.decode(row.reported), path);
      if (value !== undefined) out.push({ ts: row.ts, value });
      if (out.length >= max) break;
    }
    return out.reverse();
  }

  /** Retention: age first, then size (see the class comment). */
  prune(): void {
    this.lastPrune = this.now();
    // Rows past a device's last save are part of its latest state: they stay until saved.
    this.checkpoint();
    // The oldest confirmed rows, a batch at a time, below a row number.
    const oldest = this.db.prepare<[number], unknown>(
      `DELETE FROM reports WHERE seq IN (
         SELECT r.seq FROM reports r JOIN shadow_state s USING (product_key, device_name)
         WHERE r.seq < ? AND r.seq <= min(s.acked_seq, s.reported_seq)
         ORDER BY r.seq LIMIT ${PRUNE_BATCH})`,
    );
    const deleteOldest = (below: number): number => {
      const gone = oldest.run(below).changes;
      this.rows -= gone;
      return gone;
    };
    try {
      // Rows are appended as they are seen, so those past the age are the first ones: the
      // search stops at the first young row instead of reading the whole table every minute.
      const young = this.db
        .prepare<[number], { seq: number }>(
          "SELECT seq FROM reports WHERE ts >= ? ORDER BY seq LIMIT 1",
        )
        .get(this.now() - this.opts.maxAgeMs);
      const bound = young?.seq ?? Number.MAX_SAFE_INTEGER;
      while (deleteOldest(bound) === PRUNE_BATCH);
      while (this.liveBytes() > this.opts.maxBytes) {
        const gone = deleteOldest(Number.MAX_SAFE_INTEGER);
        if (gone > 0) {
          this.counters.dropped += gone;
          continue;
        }
        if (this.coalescePending() === 0) break;
      }
    } catch (err) {
      this.refused(err, 0);
    }
  }

  /** Merges each device's unconfirmed rows into one row; returns how many rows went. */
  private coalescePending(): number {
    const devices = [...this.devices.values()].filter((d) => d.pendingRows > 1);
    const drop = this.db.prepare(
      "DELETE FROM reports WHERE seq > ? AND product_key = ? AND device_name = ?",
    );
    const now = this.now();
    // The devices are updated once the transaction has committed, not before.
    const done = this.codec.transaction(() =>
      devices.map((d) => ({
        d,
        gone: drop.run(d.ackedSeq, d.pk, d.dn).changes,
        seq: Number(this.insert.run(d.pk, d.dn, now, this.codec.encode(d.pending)).lastInsertRowid),
      })),
    );
    let dropped = 0;
    for (const { d, gone, seq } of done) {
      this.rows += 1 - gone;
      dropped += d.pendingRows - 1;
      d.latestSeq = seq;
      d.pendingRows = 1;
      d.oldestPendingTs = now;
    }
    this.checkpoint();
    if (dropped > 0) {
      this.counters.dropped += dropped;
      this.log.warn(
        { dropped, maxBytes: this.opts.maxBytes, code: ErrorCodes.STORE_FULL },
        "store full: unsent reports coalesced into each device's latest state",
      );
    }
    return dropped;
  }

  /** The device's state, loaded from the file at first use (see the class comment). */
  private device(pk: string, dn: string): Device {
    const key = `${pk}/${dn}`;
    let d = this.devices.get(key);
    if (d) return d;
    const row = this.stateGet.get(pk, dn);
    d = {
      pk,
      dn,
      version: row?.version ?? 0,
      base: JSON.parse(row?.reported ?? "{}") as JsonObject,
      latestSeq: row?.reported_seq ?? 0,
      savedSeq: row?.reported_seq ?? 0,
      ackedSeq: row?.acked_seq ?? 0,
      pending: {},
      pendingRows: 0,
      oldestPendingTs: 0,
    };
    // A device without a state row never had rows (its first flush writes the row).
    if (row) {
      for (const r of this.rowsAfter.all(Math.min(d.savedSeq, d.ackedSeq), pk, dn)) {
        const reported = this.codec.decode(r.reported);
        if (r.seq > d.ackedSeq) addPending(d, reported, r.ts);
        else if (r.seq > d.savedSeq) mergeInto(d.base, reported);
        d.latestSeq = Math.max(d.latestSeq, r.seq);
      }
    }
    this.devices.set(key, d);
    return d;
  }

  private loadPending(d: Device): void {
    d.pending = {};
    d.pendingRows = 0;
    for (const r of this.rowsAfter.all(d.ackedSeq, d.pk, d.dn))
      addPending(d, this.codec.decode(r.reported), r.ts);
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

/**
 * Reports of one device, oldest first, for `shadowgate history` (works on a read-only handle).
 * A scan of the table: an index for it would slow every ingest for a rare query.
 */
export function readHistory(db: Db, deviceName: string, since = 0): HistoryRow[] {
  const rows = db
    .prepare<
      [string, number],
      { seq: number; pk: string; ts: number; reported: Buffer | string; sent: number }
    >(
      `SELECT r.seq, r.product_key AS pk, r.ts, r.reported, r.seq <= coalesce(s.acked_seq, 0) AS sent
       FROM reports r LEFT JOIN shadow_state s USING (product_key, device_name)
       WHERE r.device_name = ? AND r.ts >= ? ORDER BY r.seq`,
    )
    .all(deviceName, since);
  // Loaded after the rows, so the paths they use are there (report-codec.ts).
  const codec = new ReportCodec(db);
  return rows.map((r) => ({
    seq: r.seq,
    productKey: r.pk,
    deviceName,
    ts: r.ts,
    reported: codec.decode(r.reported),
    sent: r.sent === 1,
  }));
}
