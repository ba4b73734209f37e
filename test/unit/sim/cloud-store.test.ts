import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { ShadowStore } from "../../../src/sim/cloud/store.js";
import type { CloudShadowDocument } from "../../../src/sim/cloud/shadow-document.js";

const stores: ShadowStore[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) s.close();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const open = (file?: string): ShadowStore => {
  const store = new ShadowStore(file);
  stores.push(store);
  return store;
};

const doc: CloudShadowDocument = {
  state: { desired: { t: 25 }, reported: { t: 20, list: [1, 2], nested: { a: "x" } } },
  metadata: {
    desired: { t: { timestamp: 1700000001 } },
    reported: { t: { timestamp: 1700000000 }, list: { timestamp: 1700000000 } },
  },
  timestamp: 1700000001,
  version: 7,
};

describe("ShadowStore", () => {
  it("returns undefined for a shadow never written, the document after put", () => {
    const store = open();
    expect(store.get("pk", "dn")).toBeUndefined();
    store.put("pk", "dn", doc);
    expect(store.get("pk", "dn")).toEqual(doc);
    expect(store.get("pk", "other")).toBeUndefined();
  });

  it("overwrites on put and lists keys sorted", () => {
    const store = open();
    store.put("pk", "b", doc);
    store.put("pk", "a", doc);
    store.put("pk", "a", { ...doc, version: 8, state: {}, metadata: {} });
    expect(store.get("pk", "a")).toMatchObject({ version: 8, state: {} });
    expect(store.keys()).toEqual([
      { productKey: "pk", deviceName: "a" },
      { productKey: "pk", deviceName: "b" },
    ]);
  });

  it("keeps documents in a WAL file across reopen", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-cloud-store-"));
    dirs.push(dir);
    const file = path.join(dir, "cloud.db");
    const first = open(file);
    first.put("pk", "dn", doc);
    first.close();
    expect(open(file).get("pk", "dn")).toEqual(doc);
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(raw.pragma("user_version", { simple: true })).toBe(2);
    } finally {
      raw.close();
    }
  });

  it("brings a version-1 file up to date and keeps topology and disabled devices across reopen", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-cloud-store-"));
    dirs.push(dir);
    const file = path.join(dir, "cloud.db");
    // A file as the service wrote it before sub-devices: only the shadows table, version 1.
    const v1 = new Database(file);
    v1.exec(
      `CREATE TABLE shadows (product_key TEXT NOT NULL, device_name TEXT NOT NULL,
         version INTEGER NOT NULL, timestamp INTEGER NOT NULL, state TEXT NOT NULL,
         metadata TEXT NOT NULL, PRIMARY KEY (product_key, device_name)) WITHOUT ROWID`,
    );
    v1.pragma("user_version = 1");
    v1.close();

    const gw = { productKey: "gwPk", deviceName: "gw" };
    const other = { productKey: "gwPk", deviceName: "gw2" };
    const a = { productKey: "pk", deviceName: "a" };
    const b = { productKey: "pk", deviceName: "b" };
    const first = open(file);
    first.attach(gw, [b, a]);
    first.attach(other, [b]); // moves b
    expect(first.setDisabled(a, true)).toBe(true);
    expect(first.setDisabled(a, true)).toBe(false);
    first.close();

    const again = open(file);
    expect(again.topology(gw)).toEqual([a]);
    expect(again.gatewayOf(b)).toEqual(other);
    expect(again.isDisabled(a)).toBe(true);
    again.detach([a]);
    expect(again.topology(gw)).toEqual([]);
    expect(again.gatewayOf(a)).toBeUndefined();
    expect(again.setDisabled(a, false)).toBe(true);
    expect(again.isDisabled(a)).toBe(false);
  });
});
