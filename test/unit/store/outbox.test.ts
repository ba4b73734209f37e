import { mkdtemp, writeFile } from "node:fs/promises";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { SCHEMA_VERSION, openDatabase, openStore } from "../../../src/store/database.js";
import { Outbox, readHistory } from "../../../src/store/outbox.js";

/** A logger that keeps what it logs. */
function capture() {
  const records: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: "debug" },
    { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, records };
}

async function tempFile(): Promise<string> {
  return path.join(await mkdtemp(path.join(tmpdir(), "sg-store-")), "shadowgate.db");
}

function outbox(opts: { maxAgeMs?: number; maxBytes?: number; maxStaged?: number } = {}) {
  const clock = { now: 1_000_000 };
  const log = capture();
  const db = openDatabase(":memory:");
  const box = new Outbox(
    db,
    {
      maxAgeMs: opts.maxAgeMs ?? 3_600_000,
      maxBytes: opts.maxBytes ?? 1 << 30,
      ...(opts.maxStaged && { maxStaged: opts.maxStaged }),
    },
    log.logger,
    () => clock.now,
  );
  return { db, box, clock, log };
}

describe("Outbox", () => {
  it("keeps reports in order per device until acknowledged, then as history", () => {
    const { db, box, clock } = outbox();
    box.stage("pk", "a", { t: 1 });
    box.stage("pk", "b", { x: 1 });
    box.stage("pk", "a", { t: 2, alarm: { hi: true } });
    expect(box.pending("pk", "a")).toBeUndefined(); // staged is not durable yet
    expect(box.flush().sort()).toEqual(["a", "b"]);
    const p = box.pending("pk", "a");
    expect(p?.reported).toEqual({ t: 2, alarm: { hi: true } });
    box.stage("pk", "a", { t: 3 });
    box.flush();
    clock.now += 5;
    box.ack("pk", "a", p?.upto, 17);
    expect(box.pending("pk", "a")?.reported).toEqual({ t: 3 });
    expect(box.saved("pk", "a")).toEqual({ version: 17, reported: { t: 3, alarm: { hi: true } } });
    const history = readHistory(db, "a");
    expect(history.map((h) => [h.reported, h.sent])).toEqual([
      [{ t: 1 }, true],
      [{ t: 2, alarm: { hi: true } }, true],
      [{ t: 3 }, false],
    ]);
    expect(box.stats()).toMatchObject({ rows: 4, pending: 2, refused: 0, dropped: 0 });
  });

  it("when the disk is full: counts refused writes, logs once a minute, loses nothing, and catches up", () => {
    const { db, box, clock, log } = outbox({ maxStaged: 3 });
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
    expect(box.stats().refused).toBe(5);
    const refusals = log.records.filter((r) => r.code === "SG_STORE_REFUSED");
    expect(refusals).toHaveLength(1);
    clock.now += 60_000;
    box.stage("pk", "a", { t: 6 });
    box.flush();
    expect(log.records.filter((r) => r.code === "SG_STORE_REFUSED")).toHaveLength(2);
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
  });

  it("after a kill between saves, comes back with the latest state, the backlog and the versions", async () => {
    const file = await tempFile();
    const clock = { now: 1_000_000 };
    const open = () => {
      const db = openDatabase(file, "NORMAL");
      return {
        db,
        box: new Outbox(
          db,
          { maxAgeMs: 3_600_000, maxBytes: 1 << 30 },
          capture().logger,
          () => clock.now,
        ),
      };
    };
    const first = open();
    first.box.stage("pk", "a", { t: 1, alarm: { hi: false } });
    first.box.flush(); // a device's first rows are saved at once
    first.box.ack("pk", "a", first.box.pending("pk", "a")?.upto, 3);
    for (let i = 2; i <= 4; i++) {
      clock.now += 1000; // well within the save interval: these rows are not in the saved state
      first.box.stage("pk", "a", { t: i, ...(i === 3 && { alarm: { hi: true } }) });
      first.box.flush();
    }
    const upto = first.box.pending("pk", "a")?.upto;
    first.box.stage("pk", "a", { t: 5 });
    first.box.flush();
    first.box.ack("pk", "a", upto, 4);
    // No checkpoint, no close: as after SIGKILL, only what SQLite committed is there.
    const saved = first.db.prepare("SELECT reported FROM shadow_state").get();
    expect(saved).toEqual({ reported: JSON.stringify({ t: 1, alarm: { hi: false } }) });

    const second = open();
    expect(second.box.saved("pk", "a")).toEqual({
      version: 4,
      reported: { t: 5, alarm: { hi: true } },
    });
    expect(second.box.pending("pk", "a")).toEqual({ upto: 5, reported: { t: 5 } });
    first.db.close();
    second.db.close();
  });

  it("prunes acknowledged history by age, then by size, and coalesces unsent rows last", () => {
    const { db, box, clock } = outbox({ maxAgeMs: 60_000 });
    for (let i = 0; i < 5; i++) box.stage("pk", "a", { t: i });
    box.flush();
    box.ack("pk", "a", box.pending("pk", "a")?.upto, 1);
    clock.now += 120_000;
    box.stage("pk", "a", { t: 99 });
    box.flush();
    box.prune();
    expect(readHistory(db, "a").map((h) => h.reported)).toEqual([{ t: 99 }]);

    // Size: over the cap with only unsent rows, each device keeps one row, its latest state.
    const small = outbox({ maxBytes: 1 });
    for (let i = 0; i < 50; i++) small.box.stage("pk", "a", { t: i, [`p${i % 7}`]: i });
    small.box.flush();
    small.box.prune();
    const rows = readHistory(small.db, "a");
    expect(rows).toHaveLength(1);
    expect(rows[0]?.reported).toMatchObject({ t: 49, p0: 49, p6: 48 });
    expect(small.box.stats().dropped).toBe(49);
    expect(small.log.records.some((r) => r.code === "SG_STORE_FULL")).toBe(true);
  });
});

describe("opening the database", () => {
  it("migrates a file written by an older version and keeps its data", async () => {
    const file = await tempFile();
    const old = new Database(file);
    old.exec(`CREATE TABLE desired_journal (
      product_key TEXT NOT NULL, device_name TEXT NOT NULL, attribute TEXT NOT NULL,
      ts INTEGER NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL, status TEXT NOT NULL,
      executed_at INTEGER NOT NULL, PRIMARY KEY (product_key, device_name, attribute)) WITHOUT ROWID`);
    old
      .prepare("INSERT INTO desired_journal VALUES ('pk','dev','sp',100,7,'55','applied',1)")
      .run();
    old.pragma("user_version = 1");
    old.close();
    const db = openDatabase(file);
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.prepare("SELECT value FROM desired_journal").get()).toEqual({ value: "55" });
    expect(db.prepare("SELECT count(*) AS n FROM reports").get()).toEqual({ n: 0 });
    db.close();
  });

  it("migrates a version 2 outbox: confirmed rows, unsent rows and saved state carry over", async () => {
    const file = await tempFile();
    const old = new Database(file);
    // The schema as version 2 wrote it (per-row acked_at, two indexes), with its data.
    old.exec(`CREATE TABLE reports (
       seq INTEGER PRIMARY KEY AUTOINCREMENT, product_key TEXT NOT NULL,
       device_name TEXT NOT NULL, ts INTEGER NOT NULL, reported TEXT NOT NULL, acked_at INTEGER);
     CREATE INDEX reports_outbox ON reports (product_key, device_name, seq) WHERE acked_at IS NULL;
     CREATE INDEX reports_device_ts ON reports (device_name, ts);
     CREATE TABLE shadow_state (
       product_key TEXT NOT NULL, device_name TEXT NOT NULL,
       version INTEGER NOT NULL DEFAULT 0, reported TEXT NOT NULL DEFAULT '{}',
       updated_at INTEGER NOT NULL, PRIMARY KEY (product_key, device_name)) WITHOUT ROWID;
     INSERT INTO reports (product_key, device_name, ts, reported, acked_at) VALUES
       ('pk', 'a', 1, '{"t":1}', 5), ('pk', 'b', 2, '{"x":1}', NULL),
       ('pk', 'a', 3, '{"t":2,"u":1}', 5), ('pk', 'a', 4, '{"t":3}', NULL);
     INSERT INTO shadow_state VALUES ('pk', 'a', 12, '{"t":3,"u":1}', 5),
       ('pk', 'b', 0, '{"x":1}', 2);`);
    old.exec(`CREATE TABLE desired_journal (product_key TEXT NOT NULL, device_name TEXT NOT NULL,
      attribute TEXT NOT NULL, ts INTEGER NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL,
      status TEXT NOT NULL, executed_at INTEGER NOT NULL,
      PRIMARY KEY (product_key, device_name, attribute)) WITHOUT ROWID`);
    old.pragma("user_version = 2");
    old.close();

    const db = openDatabase(file, "NORMAL");
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    const box = new Outbox(db, { maxAgeMs: 3_600_000, maxBytes: 1 << 30 }, capture().logger);
    expect(box.saved("pk", "a")).toEqual({ version: 12, reported: { t: 3, u: 1 } });
    expect(box.pending("pk", "a")).toEqual({ upto: 4, reported: { t: 3 } });
    expect(box.pending("pk", "b")).toEqual({ upto: 2, reported: { x: 1 } });
    expect(readHistory(db, "a").map((h) => [h.seq, h.sent])).toEqual([
      [1, true],
      [3, true],
      [4, false],
    ]);
    box.stage("pk", "a", { t: 4 });
    box.flush();
    expect(box.pending("pk", "a")).toEqual({ upto: 5, reported: { t: 4 } });
    // The first flush also ran retention: the confirmed rows (seen in 1970) are past 1 h.
    expect(box.stats()).toMatchObject({ rows: 3, pending: 3 });
    expect(readHistory(db, "a").map((h) => [h.seq, h.sent])).toEqual([
      [4, false],
      [5, false],
    ]);
    db.close();
  });

  it("moves a corrupt file aside and starts a new one, saying so", async () => {
    const file = await tempFile();
    await writeFile(file, "this is not an SQLite database, it is a text file ".repeat(100));
    const { logger, records } = capture();
    const { file: opened, degraded } = openStore(file, logger, 42);
    expect(opened).toBe(file);
    const db = openDatabase(opened);
    expect(degraded).toMatch(/corrupt database moved to .*shadowgate\.db\.corrupt-42/);
    expect(existsSync(`${file}.corrupt-42`)).toBe(true);
    expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    expect(records.find((r) => r.code === "SG_STORE_OPEN")?.movedTo).toBe(`${file}.corrupt-42`);
    db.close();
    expect(readdirSync(path.dirname(file)).sort()).toContain("shadowgate.db.corrupt-42");
  });

  it("runs from memory, loudly, when the file cannot be created", () => {
    const { logger, records } = capture();
    const { file, degraded } = openStore("/dev/null/cannot/shadowgate.db", logger);
    expect(file).toBe(":memory:");
    const db = openDatabase(file);
    expect(degraded).toMatch(/^cannot open \/dev\/null\/cannot\/shadowgate\.db/);
    expect(records.some((r) => r.code === "SG_STORE_OPEN" && r.level === 50)).toBe(true);
    expect(db.prepare("SELECT count(*) AS n FROM reports").get()).toEqual({ n: 0 });
    db.close();
  });
});
