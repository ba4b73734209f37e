import type { JsonObject } from "../../src/core/types.js";
import { mergeReported } from "../../src/core/json.js";
import type { Db } from "../../src/store/database.js";
import type { Outbox, OutboxStats } from "../../src/store/outbox.js";
import { ReportCodec } from "../../src/store/report-codec.js";

/** What Outbox.status() keeps in counters, counted again from the tables. */
export type Recount = Pick<OutboxStats, "rows" | "pending" | "oldestPendingAgeMs" | "devices">;

/**
 * The exact figures, from a scan of the file, as `now` sees them: the oracle for status().
 * A device's unconfirmed rows are those after its watermark (0 for a device whose first save
 * has not been written yet).
 */
export function recount(db: Db, now: number): Recount {
  const rows = db.prepare<[], number>("SELECT count(*) FROM reports").pluck().get() ?? 0;
  const devices = db
    .prepare<[], { productKey: string; deviceName: string; pending: number; oldest: number }>(
      `SELECT r.product_key AS productKey, r.device_name AS deviceName, count(*) AS pending,
         min(r.ts) AS oldest
       FROM reports r LEFT JOIN shadow_state s USING (product_key, device_name)
       WHERE r.seq > coalesce(s.acked_seq, 0) GROUP BY 1, 2`,
    )
    .all()
    .map(({ oldest, ...d }) => ({ ...d, oldestAgeMs: Math.max(0, now - oldest) }))
    .sort(byDevice);
  const pending = devices.reduce((n, d) => n + d.pending, 0);
  const oldest = Math.max(...devices.map((d) => d.oldestAgeMs));
  return { rows, pending, ...(pending > 0 && { oldestPendingAgeMs: oldest }), devices };
}

/** status()'s counted figures, devices in the recount's order. */
export function counted(box: Outbox): Recount {
  const { rows, pending, oldestPendingAgeMs, devices } = box.status();
  return {
    rows,
    pending,
    ...(oldestPendingAgeMs !== undefined && { oldestPendingAgeMs }),
    devices: [...devices].sort(byDevice),
  };
}

function byDevice(a: { productKey: string; deviceName: string }, b: typeof a): number {
  return a.productKey.localeCompare(b.productKey) || a.deviceName.localeCompare(b.deviceName);
}

/**
 * What pending() must return for a device, from its rows: those after its watermark merged in
 * order, up to the last of them.
 */
export function pendingFromRows(
  db: Db,
  productKey: string,
  deviceName: string,
): { upto: number; reported: JsonObject } | undefined {
  const rows = db
    .prepare<[string, string], { seq: number; reported: Buffer | string }>(
      `SELECT r.seq, r.reported FROM reports r LEFT JOIN shadow_state s USING (product_key, device_name)
       WHERE r.product_key = ? AND r.device_name = ? AND r.seq > coalesce(s.acked_seq, 0)
       ORDER BY r.seq`,
    )
    .all(productKey, deviceName);
  const last = rows.at(-1);
  if (last === undefined) return undefined;
  const codec = new ReportCodec(db);
  const reported = rows.reduce<JsonObject>(
    (acc, r) => mergeReported(acc, codec.decode(r.reported)),
    {},
  );
  return { upto: last.seq, reported };
}
