import { describe, expect, it } from "vitest";
import type { JsonObject, JsonValue } from "../../../src/core/types.js";
import { openDatabase } from "../../../src/store/database.js";
import { ReportCodec } from "../../../src/store/report-codec.js";
import { seededRandom } from "../../helpers/random.js";

/** What a report read back must equal: the report as JSON would carry it. */
const asJson = (r: JsonObject): JsonObject => JSON.parse(JSON.stringify(r)) as JsonObject;

/** Encodes in a write transaction, as the Outbox does, and returns a copy of the row value. */
function write(codec: ReportCodec, r: JsonObject): Buffer {
  return codec.transaction(() => Buffer.from(codec.encode(r)));
}

const mixed: JsonObject = {
  line0: { p000: 27.42, p001: -3.5, p002: 0.1 + 0.2, p003: Math.fround(23.456781) },
  line1: { count: 65535, neg: -40, big: 2 ** 40, huge: 1e300, zero: -0, tiny: 1.5e-7 },
  flags: { on: true, off: false, none: null },
  labels: { state: "running", unit: "°C", name: "温度センサー", long: "x".repeat(300) },
  other: { list: [1, "a", { b: null }], empty: {} },
  // Own properties named as Object.prototype's, as JSON.parse makes them.
  "dotted.name": JSON.parse('{"__proto__": {"x": 1}, "constructor": "c"}') as JsonObject,
  notFinite: Number.NaN,
  inf: Number.POSITIVE_INFINITY,
  skipped: undefined as unknown as JsonValue,
};

/** A random report: nested groups, leaves of every kind a shadow carries. */
function randomReport(rand: () => number, depth = 0): JsonObject {
  const out: JsonObject = {};
  const n = 1 + Math.floor(rand() * 8);
  for (let i = 0; i < n; i++) {
    const key = ["p", "line", "温", "a.b", "__proto__", "x"][Math.floor(rand() * 6)] + String(i);
    const kind = Math.floor(rand() * 10);
    out[key] =
      kind === 0 && depth < 3
        ? randomReport(rand, depth + 1)
        : kind === 1
          ? Math.floor((rand() - 0.5) * 2 ** 34)
          : kind === 2
            ? Math.round((rand() - 0.5) * 1e6) / 100
            : kind === 3
              ? Math.fround((rand() - 0.5) * 1e4)
              : kind === 4
                ? (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20)
                : kind === 5
                  ? rand() < 0.5
                  : kind === 6
                    ? null
                    : kind === 7
                      ? String.fromCharCode(...Array.from({ length: 5 }, () => 32 + rand() * 300))
                      : kind === 8
                        ? [rand(), "s"]
                        : Math.floor(rand() * 100);
  }
  return out;
}

describe("report codec", () => {
  it("reads back every kind of leaf as JSON would carry it", () => {
    const db = openDatabase(":memory:");
    const codec = new ReportCodec(db);
    const row = write(codec, mixed);
    expect(codec.decode(row)).toEqual(asJson(mixed));
    // A second codec on the same file (a restart, `shadowgate history`) reads it too.
    expect(new ReportCodec(db).decode(row)).toEqual(asJson(mixed));
  });

  it("round-trips random reports, seeded", () => {
    const db = openDatabase(":memory:");
    const codec = new ReportCodec(db);
    const rand = seededRandom(0xc0dec);
    for (let i = 0; i < 500; i++) {
      const r = randomReport(rand);
      expect(codec.decode(write(codec, r)), `report ${i}`).toEqual(asJson(r));
    }
  });

  it("stores a plant report in under a third of its JSON", () => {
    const db = openDatabase(":memory:");
    const codec = new ReportCodec(db);
    const group = (g: number): JsonObject =>
      Object.fromEntries(
        Array.from({ length: 9 }, (_, i) => [`p${g}${i}`, Math.round(2000 + g * 137.1 + i) / 100]),
      );
    const r: JsonObject = Object.fromEntries(
      Array.from({ length: 10 }, (_, g) => [`line${g}`, group(g)]),
    );
    write(codec, r); // numbers the paths
    expect(codec.encode(r).length * 3).toBeLessThan(JSON.stringify(r).length);
  });

  it("reads rows written before the encoding existed (JSON text)", () => {
    const codec = new ReportCodec(openDatabase(":memory:"));
    expect(codec.decode('{"a":{"b":1.25},"c":"x"}')).toEqual({ a: { b: 1.25 }, c: "x" });
  });

  it("forgets the paths a rolled-back transaction numbered, and numbers them again", () => {
    const db = openDatabase(":memory:");
    const codec = new ReportCodec(db);
    write(codec, { kept: 1 });
    expect(() =>
      codec.transaction(() => {
        codec.encode({ kept: 2, gone: { away: 3 } });
        throw new Error("disk full");
      }),
    ).toThrow("disk full");
    const row = write(codec, { gone: { away: 4 }, kept: 5 });
    expect(new ReportCodec(db).decode(row)).toEqual({ gone: { away: 4 }, kept: 5 });
    const paths = db.prepare("SELECT path FROM report_paths ORDER BY id").pluck().all();
    expect(paths).toEqual(['["kept"]', '["gone","away"]']);
  });

  it("a reader opened before a path was numbered finds it when a row names it", () => {
    const db = openDatabase(":memory:");
    const reader = new ReportCodec(db);
    const writer = new ReportCodec(db);
    const row = write(writer, { late: { leaf: 7 } });
    expect(reader.decode(row)).toEqual({ late: { leaf: 7 } });
  });

  it("says what is wrong with a row it cannot read", () => {
    const db = openDatabase(":memory:");
    const codec = new ReportCodec(db);
    const row = write(codec, { a: 1.5, b: "text" });
    expect(() => codec.decode(Buffer.from([9, 0]))).toThrow("report row in unknown format 9");
    expect(() => codec.decode(row.subarray(0, row.length - 2))).toThrow("report row truncated");
    // Path 999 (head 999 * 16 + 3, an integer: varint bytes 243 124), value 0.
    expect(() => codec.decode(Buffer.from([1, 243, 124, 0]))).toThrow(
      "report row names path 999, which is not in report_paths",
    );
  });
});
