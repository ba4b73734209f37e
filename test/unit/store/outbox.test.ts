import { mkdtemp, writeFile } from "node:fs/promises";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { SCHEMA_VERSION, openDatabase, openStore } from "../../../src/store/database.js";
import { Outbox, readHistory } from "../../../src/store/outbox.js";
import { counted, recount } from "../../contract/recount.js";

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

/**
 * What holds for a backlog of any kind (order, acknowledgement, coalescing, retention, refused
 * writes, status() against a recount) is in test/contract/backlog.test.ts, run against the
 * file and the in-memory fallback. Here: what only a file has, a life across restarts.
 */
describe("Outbox on a file", () => {
  const clock = { now: 1_000_000 };
  const reopen = (file: string) => {
    const db = openDatabase(file, "NORMAL");
    const box = new Outbox(
      db,
      { maxAgeMs: 3_600_000, maxBytes: 1 << 30 },
      capture().logger,
      () => clock.now,
    );
    return { db, box };
  };

  it("after a kill between saves, comes back with the latest state, the backlog and the versions", async () => {
    const file = await tempFile();
    const first = reopen(file);
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

    const second = reopen(file);
    expect(second.box.saved("pk", "a")).toEqual({
      version: 4,
      reported: { t: 5, alarm: { hi: true } },
    });
    expect(second.box.pending("pk", "a")).toEqual({ upto: 5, reported: { t: 5 } });
    expect(counted(second.box)).toEqual(recount(second.db, clock.now));
    first.db.close();
    second.db.close();
  });

  it("a kill between a device's first rows and their first save loses none of them", async () => {
    const file = await tempFile();
    const first = reopen(file);
    // The save that follows a device's first flush never happens, as when SIGKILL falls between.
    first.box.checkpoint = () => undefined;
    first.box.stage("pk", "new", { t: 1 });
    first.box.stage("pk", "new", { u: 2 });
    first.box.flush();
    const second = reopen(file);
    expect(second.box.pending("pk", "new")).toEqual({ upto: 2, reported: { t: 1, u: 2 } });
    expect(second.box.status()).toMatchObject({ pending: 2 });
    expect(second.box.saved("pk", "new")).toEqual({ version: 0, reported: { t: 1, u: 2 } });
  });

  it("status() counts the whole file at open, a backlog of a device no mapping names too", async () => {
    const file = await tempFile();
    const first = reopen(file);
    for (let i = 0; i < 4; i++) {
      for (const dn of ["a", "b", "gone"]) first.box.stage("pk", dn, { t: i }, clock.now + i);
      first.box.flush();
    }
    first.box.ack("pk", "a", first.box.pending("pk", "a")?.upto, 1);
    first.box.stage("pk", "a", { t: 9 });
    first.box.flush();
    first.box.ack("pk", "b", 5, 1); // the first two of b's four rows (seq 2 and 5)
    clock.now += 5_000;
    // No close: whatever a kill leaves. Nothing of the second outbox has asked for a device.
    const second = reopen(file);
    const expected = {
      rows: 13,
      pending: 7,
      oldestPendingAgeMs: 5_000,
      devices: [
        { productKey: "pk", deviceName: "a", pending: 1, oldestAgeMs: 5_000 },
        { productKey: "pk", deviceName: "b", pending: 2, oldestAgeMs: 4_998 },
        { productKey: "pk", deviceName: "gone", pending: 4, oldestAgeMs: 5_000 },
      ],
    };
    expect(counted(second.box)).toEqual(expected);
    expect(recount(second.db, clock.now)).toEqual(expected);
    first.db.close();
    second.db.close();
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
    const now = Date.now();
    const opts = { maxAgeMs: 3_600_000, maxBytes: 1 << 30 };
    const box = new Outbox(db, opts, capture().logger, () => now);
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
    expect(box.status()).toMatchObject({ rows: 3, pending: 3 });
    expect(counted(box)).toEqual(recount(db, now));
    expect(readHistory(db, "a").map((h) => [h.seq, h.sent])).toEqual([
      [4, false],
      [5, false],
    ]);
    // The old row stays JSON text, the new one is in the compact encoding; both read back.
    expect(
      db.prepare("SELECT typeof(reported) AS t FROM reports WHERE device_name = 'a'").pluck().all(),
    ).toEqual(["text", "blob"]);
    expect(readHistory(db, "a").map((h) => h.reported)).toEqual([{ t: 3 }, { t: 4 }]);
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
