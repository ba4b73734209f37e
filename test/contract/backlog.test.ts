import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Backlog } from "../../src/north/hooks.js";
import { type Db, openDatabase, openReadOnly, openStore } from "../../src/store/database.js";
import {
  type HistoryRow,
  Outbox,
  type OutboxOptions,
  readHistory,
} from "../../src/store/outbox.js";
import { seededRandom } from "../helpers/random.js";
import { counted, pendingFromRows, recount } from "./recount.js";

/**
 * The backlog contract: what the sync engine relies on (Backlog in src/north/sync.ts) and what
 * README "Store and forward" promises, as one suite run against every implementation (the way
 * MQTT.js runs its abstract_store against each store). An implementation opens an empty
 * backlog the way the gateway does, with a clock the test moves.
 */
interface OpenBacklog {
  readonly box: Outbox;
  readonly db: Db;
  readonly clock: { now: number };
  /** The error codes the backlog logged, in order. */
  readonly logged: string[];
  /** The device's rows as a reader beside the writer sees them: what is committed. */
  committed(deviceName: string): HistoryRow[];
}

interface Implementation {
  readonly name: string;
  open(opts?: Partial<OutboxOptions>): Promise<OpenBacklog>;
}

const open: Db[] = [];
afterEach(() => {
  for (const db of open.splice(0)) db.close();
});

const quiet = pino({ level: "silent" });

/** The outbox on the file openStore chose, as the gateway opens its reports connection. */
function openOutbox(
  file: string,
  opts: Partial<OutboxOptions>,
  committed: (db: Db, deviceName: string) => HistoryRow[],
): OpenBacklog {
  const logged: string[] = [];
  const logger = pino(
    { level: "debug" },
    {
      write: (line: string) =>
        void logged.push(String((JSON.parse(line) as { code?: string }).code)),
    },
  );
  const clock = { now: 1_000_000 };
  const db = openDatabase(file, "NORMAL");
  open.push(db);
  const options = { maxAgeMs: 3_600_000, maxBytes: 1 << 30, ...opts };
  const box = new Outbox(db, options, logger, () => clock.now) satisfies Backlog;
  return { box, db, clock, logged, committed: (deviceName) => committed(db, deviceName) };
}

const implementations: Implementation[] = [
  {
    name: "the SQLite outbox on a file",
    async open(opts = {}) {
      const dir = await mkdtemp(path.join(tmpdir(), "sg-backlog-"));
      const { file } = openStore(path.join(dir, "shadowgate.db"), quiet);
      return openOutbox(file, opts, (_db, deviceName) => {
        // Another connection, as `shadowgate history` reads the file beside the daemon.
        const reader = openReadOnly(file);
        try {
          return readHistory(reader, deviceName);
        } finally {
          reader.close();
        }
      });
    },
  },
  {
    name: "the in-memory fallback",
    async open(opts = {}) {
      const { file } = openStore("/dev/null/cannot/shadowgate.db", quiet);
      expect(file).toBe(":memory:");
      return openOutbox(file, opts, (db, deviceName) => {
        // The only connection: committed means no transaction is left open.
        expect(db.inTransaction).toBe(false);
        return readHistory(db, deviceName);
      });
    },
  },
];

describe.each(implementations)("backlog contract: $name", (impl) => {
  it("holds staged reports in memory; flush makes them durable and names the devices", async () => {
    const { box, committed } = await impl.open();
    expect(box.flush()).toEqual([]);
    box.stage("pk", "a", { t: 1 });
    box.stage("pk", "b", { x: 1 });
    box.stage("pk", "a", { t: 2 });
    expect(box.pending("pk", "a")).toBeUndefined(); // staged is not durable yet
    expect(committed("a")).toEqual([]);
    expect(box.status()).toMatchObject({ staged: 3, rows: 0, pending: 0, devices: [] });
    expect(box.flush().sort()).toEqual(["a", "b"]);
    // Durable on return: committed, in order, waiting for the cloud.
    expect(committed("a").map((h) => [h.reported, h.sent])).toEqual([
      [{ t: 1 }, false],
      [{ t: 2 }, false],
    ]);
    expect(committed("b").map((h) => h.reported)).toEqual([{ x: 1 }]);
    expect(box.status()).toMatchObject({ staged: 0, rows: 3, pending: 3 });
    expect(box.flush()).toEqual([]);
  });

  it("counts reports queued (written) and confirmed by the cloud, for metrics", async () => {
    const { box } = await impl.open();
    box.stage("pk", "a", { t: 1 });
    box.stage("pk", "a", { t: 2 });
    box.stage("pk", "b", { x: 1 });
    expect(box.status()).toMatchObject({ queued: 0, confirmed: 0 }); // staged is not queued yet
    box.flush();
    expect(box.status()).toMatchObject({ queued: 3, confirmed: 0 });
    box.ack("pk", "a", box.pending("pk", "a")?.upto, 1);
    expect(box.status()).toMatchObject({ queued: 3, confirmed: 2 });
    box.ack("pk", "a", box.pending("pk", "a")?.upto, 1); // nothing new: nothing counted
    box.stage("pk", "a", { t: 3 });
    box.flush();
    box.ack("pk", "b", box.pending("pk", "b")?.upto, 1);
    expect(box.status()).toMatchObject({ queued: 4, confirmed: 3, pending: 1 });
  });

  it("merges a device's unconfirmed rows in order into one update, each device on its own", async () => {
    const { box, committed } = await impl.open();
    box.stage("pk", "a", { t: 1, alarm: { hi: false, lo: true }, list: [1, 2] });
    box.stage("pk", "b", { t: 100 });
    box.stage("pk", "a", { t: 2, alarm: { hi: true } });
    box.flush();
    box.stage("pk", "a", { list: [3] });
    box.flush();
    const rows = committed("a");
    expect(rows.map((h) => h.seq)).toEqual([...rows.map((h) => h.seq)].sort((x, y) => x - y));
    // Objects merge, everything else (arrays too) is replaced; the last row wins.
    expect(box.pending("pk", "a")).toEqual({
      upto: rows.at(-1)?.seq,
      reported: { t: 2, alarm: { hi: true, lo: true }, list: [3] },
    });
    expect(box.pending("pk", "b")?.reported).toEqual({ t: 100 });
    expect(box.pending("pk", "c")).toBeUndefined();
  });

  it("acknowledges up to a row: later rows stay pending, the watermark never goes back", async () => {
    const { box, committed } = await impl.open();
    const flushed = (reported: Record<string, number>) => {
      box.stage("pk", "a", reported);
      box.flush();
      return box.pending("pk", "a")?.upto;
    };
    const first = flushed({ t: 1 });
    const second = flushed({ t: 2, u: 1 });
    const third = flushed({ t: 3 });
    box.ack("pk", "a", second, 5);
    expect(box.pending("pk", "a")).toEqual({ upto: third, reported: { t: 3 } });
    expect(committed("a").map((h) => h.sent)).toEqual([true, true, false]);
    box.ack("pk", "a", first, 6); // a late reply to an older request
    expect(box.pending("pk", "a")).toEqual({ upto: third, reported: { t: 3 } });
    box.ack("pk", "a", undefined, 7); // a version alone, after a get
    expect(box.pending("pk", "a")).toEqual({ upto: third, reported: { t: 3 } });
    expect(box.saved("pk", "a")).toEqual({ version: 7, reported: { t: 3, u: 1 } });
    box.ack("pk", "a", third, 8);
    expect(box.pending("pk", "a")).toBeUndefined();
    // Confirmed rows stay as history.
    expect(committed("a").map((h) => [h.reported, h.sent])).toEqual([
      [{ t: 1 }, true],
      [{ t: 2, u: 1 }, true],
      [{ t: 3 }, true],
    ]);
    expect(box.status()).toMatchObject({ rows: 3, pending: 0, devices: [] });
  });

  it("saved(): nothing for a device never seen, else the last version and the latest state", async () => {
    const { box } = await impl.open();
    expect(box.saved("pk", "nobody")).toBeUndefined();
    box.stage("pk", "a", { t: 1, alarm: { hi: false } });
    box.flush();
    box.ack("pk", "a", box.pending("pk", "a")?.upto, 3);
    box.stage("pk", "a", { alarm: { hi: true } });
    box.flush();
    const saved = box.saved("pk", "a");
    expect(saved).toEqual({ version: 3, reported: { t: 1, alarm: { hi: true } } });
    if (saved) saved.reported["t"] = 99; // a copy: the caller may keep or change it
    expect(box.saved("pk", "a")?.reported).toEqual({ t: 1, alarm: { hi: true } });
  });

  it("retention: confirmed history goes after maxAge, unconfirmed rows stay whatever their age", async () => {
    const { box, clock, committed } = await impl.open({ maxAgeMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      box.stage("pk", "a", { t: i });
      box.stage("pk", "b", { x: i });
    }
    box.flush();
    box.ack("pk", "a", box.pending("pk", "a")?.upto, 1);
    clock.now += 120_000;
    box.stage("pk", "a", { t: 99 });
    box.flush(); // retention runs with the flushes, at most once a minute
    expect(committed("a").map((h) => h.reported)).toEqual([{ t: 99 }]);
    expect(committed("b")).toHaveLength(5);
    expect(box.saved("pk", "a")?.reported).toEqual({ t: 99 });
    expect(box.status()).toMatchObject({ rows: 6, pending: 6, dropped: 0 });
  });

  it("above maxBytes: confirmed history goes first, counted, before any unsent row", async () => {
    const maxBytes = 64 * 1024;
    const { box, committed, logged } = await impl.open({ maxBytes });
    for (let i = 1; i <= 3; i++) box.stage("pk", "b", { x: i });
    box.flush();
    const blob = "x".repeat(4000);
    for (let i = 0; i < 50; i++) box.stage("pk", "a", { t: i, blob });
    box.flush();
    box.ack("pk", "a", box.pending("pk", "a")?.upto, 1);
    expect(box.status().bytes).toBeGreaterThan(maxBytes);
    box.prune();
    expect(committed("a")).toEqual([]);
    expect(box.saved("pk", "a")?.reported).toEqual({ t: 49, blob }); // the latest state stays
    expect(committed("b").map((h) => h.reported)).toEqual([{ x: 1 }, { x: 2 }, { x: 3 }]);
    expect(box.status()).toMatchObject({ rows: 3, pending: 3, dropped: 50 });
    expect(box.status().bytes).toBeLessThanOrEqual(maxBytes);
    expect(logged).not.toContain("SG_STORE_FULL");
  });

  it("full of unsent rows: each device's are coalesced into one row of its latest state", async () => {
    const { box, committed, logged } = await impl.open({ maxBytes: 1 });
    for (let i = 0; i < 50; i++) box.stage("pk", "a", { t: i, [`p${i % 7}`]: i });
    box.stage("pk", "b", { x: 1 });
    box.flush();
    box.prune();
    const rows = committed("a");
    expect(rows).toHaveLength(1);
    const latest = { t: 49, p0: 49, p1: 43, p2: 44, p3: 45, p4: 46, p5: 47, p6: 48 };
    expect(rows[0]?.reported).toEqual(latest);
    expect(box.pending("pk", "a")).toEqual({ upto: rows[0]?.seq, reported: latest });
    expect(committed("b").map((h) => h.reported)).toEqual([{ x: 1 }]);
    expect(box.status()).toMatchObject({ rows: 2, pending: 2, dropped: 49 });
    expect(logged).toContain("SG_STORE_FULL");
    box.ack("pk", "a", rows[0]?.seq, 2);
    expect(box.pending("pk", "a")).toBeUndefined();
    expect(box.saved("pk", "a")).toEqual({ version: 2, reported: latest });
  });

  it("when the database refuses writes: counts, logs once a minute, keeps reports, catches up", async () => {
    const { box, db, clock, logged } = await impl.open({ maxStaged: 3 });
    box.stage("pk", "a", { t: 0 });
    box.flush();
    // A full disk, as SQLite sees it: no page may be added.
    db.pragma(`max_page_count = ${db.pragma("page_count", { simple: true }) as number}`);
    // Each report needs new pages (about 20 kB), so none fits into free space.
    const blob = "x".repeat(20_000);
    for (let i = 1; i <= 5; i++) {
      box.stage("pk", "a", { t: i, [`k${i}`]: i, blob });
      box.stage("pk", "b", { x: i });
      expect(box.flush()).toEqual([]);
      clock.now += 1000;
    }
    // Beyond maxStaged, the reports in memory are coalesced per device.
    expect(box.status()).toMatchObject({ refused: 5, staged: 2, rows: 1, pending: 1 });
    expect(box.pending("pk", "a")?.reported).toEqual({ t: 0 });
    expect(logged.filter((c) => c === "SG_STORE_REFUSED")).toHaveLength(1);
    clock.now += 60_000;
    box.stage("pk", "a", { t: 6 });
    box.flush();
    expect(logged.filter((c) => c === "SG_STORE_REFUSED")).toHaveLength(2);
    // The disk has room again: the latest state of every device is written, nothing is lost.
    db.pragma("max_page_count = 1073741823");
    expect(box.flush().sort()).toEqual(["a", "b"]);
    expect(box.pending("pk", "a")?.reported).toEqual({
      t: 6,
      k1: 1,
      k2: 2,
      k3: 3,
      k4: 4,
      k5: 5,
      blob,
    });
    expect(box.pending("pk", "b")?.reported).toEqual({ x: 5 });
    expect(box.status()).toMatchObject({ staged: 0 });
  });

  it("status() equals an exact recount after any sequence of operations (seeded)", async () => {
    const devices = ["a", "b", "c"];
    for (let seed = 1; seed <= 12; seed++) {
      const random = seededRandom(seed);
      const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(random() * xs.length)];
      const maxBytes = pick([1 << 30, 96 * 1024, 1]);
      const { box, db, clock } = await impl.open({ maxAgeMs: 60_000, maxBytes, maxStaged: 4 });
      /** Per device, the `upto` of each update sent (a reply may confirm any of them, late). */
      const sent = new Map(devices.map((d) => [d, [] as number[]]));
      const trail: string[] = [];
      let full = false;
      for (let step = 0; step < 150; step++) {
        const dn = pick(devices) ?? "a";
        const op = random();
        if (op < 0.35) {
          const value = random() < 0.1 ? "x".repeat(3000) : step;
          const ts = clock.now - Math.floor(random() * 5000);
          box.stage("pk", dn, { t: step, [`p${step % 5}`]: value }, ts);
          trail.push(`stage ${dn}`);
        } else if (op < 0.55) {
          trail.push(`flush [${box.flush().join(" ")}]`);
        } else if (op < 0.65) {
          const upto = box.pending("pk", dn)?.upto;
          if (upto !== undefined) sent.get(dn)?.push(upto);
          trail.push(`send ${dn} ${upto}`);
        } else if (op < 0.8) {
          const upto = random() < 0.2 ? undefined : pick(sent.get(dn) ?? []);
          box.ack("pk", dn, upto, step);
          trail.push(`ack ${dn} ${upto}`);
        } else if (op < 0.87) {
          clock.now += Math.floor(random() * 90_000);
          trail.push("time");
        } else if (op < 0.92) {
          box.prune();
          trail.push("prune");
        } else if (op < 0.95) {
          box.checkpoint();
          trail.push("checkpoint");
        } else {
          full = !full;
          const pages = full ? (db.pragma("page_count", { simple: true }) as number) : 1073741823;
          db.pragma(`max_page_count = ${pages}`);
          trail.push(full ? "disk full" : "disk free");
        }
        const where = `seed ${seed} (maxBytes ${maxBytes}): ${trail.join(", ")}`;
        expect(counted(box), where).toEqual(recount(db, clock.now));
        for (const d of devices)
          expect(box.pending("pk", d), `${where}: pending ${d}`).toEqual(
            pendingFromRows(db, "pk", d),
          );
      }
    }
  });
});
