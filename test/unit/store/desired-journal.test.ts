import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { isNewByTimestamp as isNewCommand } from "../../../src/north/dialect.js";
import { SCHEMA_VERSION, openDatabase } from "../../../src/store/database.js";
import { DesiredJournal } from "../../../src/store/desired-journal.js";

describe("DesiredJournal", () => {
  it("keeps the last execution per device and point in a real SQLite file, across reopening", async () => {
    const file = path.join(
      await mkdtemp(path.join(tmpdir(), "sg-journal-")),
      "data",
      "shadowgate.db",
    );
    const db = openDatabase(file);
    const journal = new DesiredJournal(db);
    expect(journal.last("pk", "dev", "setpoint")).toBeUndefined();
    journal.record("pk", "dev", "setpoint", {
      ts: 100,
      version: 7,
      value: "55",
      status: "applied",
    });
    journal.record("pk", "dev", "setpoint", { ts: 101, version: 9, value: "60", status: "failed" });
    journal.record("pk", "other", "setpoint", {
      ts: 5,
      version: 1,
      value: "1",
      status: "rejected",
    });
    db.close();

    const again = openDatabase(file);
    expect(again.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(again.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
    const reopened = new DesiredJournal(again);
    expect(reopened.last("pk", "dev", "setpoint")).toEqual({
      ts: 101,
      version: 9,
      value: "60",
      status: "failed",
    });
    expect(reopened.last("pk", "other", "setpoint")).toEqual({
      ts: 5,
      version: 1,
      value: "1",
      status: "rejected",
    });
    again.close();
  });
});

describe("isNewCommand", () => {
  const last = { ts: 100, version: 7, value: "55" };
  it("orders by timestamp first", () => {
    expect(isNewCommand(undefined, { ts: 1, version: 1, value: "1" })).toBe(true);
    expect(isNewCommand(last, { ts: 101, version: 2, value: "55" })).toBe(true);
    expect(isNewCommand(last, { ts: 99, version: 50, value: "1" })).toBe(false);
  });
  it("breaks a whole-second tie by value: the same value is the same command, whatever its version", () => {
    expect(isNewCommand(last, { ts: 100, version: 30, value: "56" })).toBe(true);
    expect(isNewCommand(last, { ts: 100, version: 7, value: "56" })).toBe(true);
    // A control push carries every desired attribute not cleared yet with the version of the
    // latest change: an attribute executed earlier comes again with a later version.
    expect(isNewCommand(last, { ts: 100, version: 8, value: "55" })).toBe(false);
    expect(isNewCommand(last, { ts: 100, version: 30, value: "55" })).toBe(false);
  });
  it("takes another value in the same second with an older version for an earlier change arriving late", () => {
    // false (v5) ran, then true (v7); false's push redelivered: not run again (the cloud fuzzer's find).
    expect(isNewCommand(last, { ts: 100, version: 5, value: "56" })).toBe(false);
  });
});
