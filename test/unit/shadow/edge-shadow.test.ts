import { describe, expect, it } from "vitest";
import { GOOD, type PointValue, type Quality } from "../../../src/core/types.js";
import type { CompiledPoint, ModbusDevicePlan } from "../../../src/mapping/types.js";
import { EdgeShadow, type ReportedUpdate } from "../../../src/shadow/edge-shadow.js";

const point = (name: string, extra: Partial<CompiledPoint> = {}): CompiledPoint => ({
  name,
  path: name.split("."),
  table: "holding",
  address: 0,
  count: 1,
  codec: { type: "uint16", byteOrder: "AB" },
  writable: false,
  onChange: true,
  ...extra,
});

const plan = (points: CompiledPoint[]): ModbusDevicePlan => ({
  file: "dev.yaml",
  productKey: "pk",
  deviceName: "dev",
  sourceId: "plc1",
  kind: "modbus",
  unitId: 1,
  pollIntervalMs: 1000,
  points,
});

const bad: Quality = {
  status: "bad",
  code: "SG_MODBUS_TIMEOUT",
  reason: "unit 1 did not answer in time",
};

function feeder(points: CompiledPoint[]) {
  const shadow = new EdgeShadow([plan(points)]);
  const byName = new Map(points.map((p) => [p.name, p]));
  const feed = (
    now: number,
    values: Record<string, PointValue | Quality>,
  ): ReportedUpdate | undefined =>
    shadow.ingest(
      "dev",
      Object.entries(values).map(([name, v]) => {
        const p = byName.get(name);
        if (!p) throw new Error(name);
        return typeof v === "object" && !Array.isArray(v)
          ? { point: p, quality: v, ts: now }
          : { point: p, value: v, quality: GOOD, ts: now };
      }),
      now,
    );
  return { shadow, feed };
}

describe("EdgeShadow", () => {
  it("reports everything first, then only changed leaves, nested by dotted names", () => {
    const { shadow, feed } = feeder([point("a"), point("alarm.hi"), point("alarm.lo")]);
    const first = feed(1000, { a: 1, "alarm.hi": true, "alarm.lo": false });
    expect(first?.reported).toEqual({ a: 1, alarm: { hi: true, lo: false } });
    expect(first?.quality).toEqual({}); // a first value is not a change of quality
    expect(feed(2000, { a: 1, "alarm.hi": true, "alarm.lo": false })).toBeUndefined();
    expect(feed(3000, { a: 1, "alarm.hi": false, "alarm.lo": false })?.reported).toEqual({
      alarm: { hi: false },
    });
    expect(shadow.document("dev")?.state.reported).toEqual({
      a: 1,
      alarm: { hi: false, lo: false },
    });
  });

  it("applies an absolute deadband against the last reported value, not the last read", () => {
    const { feed } = feeder([point("t", { deadband: 0.5 })]);
    expect(feed(0, { t: 20 })?.reported).toEqual({ t: 20 });
    expect(feed(1, { t: 20.3 })).toBeUndefined();
    expect(feed(2, { t: 20.49 })).toBeUndefined(); // creeping does not escape the deadband
    expect(feed(3, { t: 20.5 })?.reported).toEqual({ t: 20.5 });
    expect(feed(4, { t: 20.1 })).toBeUndefined();
    expect(feed(5, { t: 19.9 })?.reported).toEqual({ t: 19.9 });
  });

  it("re-reports an unchanged value after its heartbeat, and onChange: false reports only then", () => {
    const { feed } = feeder([
      point("h", { heartbeatMs: 10_000 }),
      point("p", { onChange: false, heartbeatMs: 5000 }),
    ]);
    expect(feed(0, { h: 1, p: 1 })?.reported).toEqual({ h: 1, p: 1 });
    expect(feed(4000, { h: 1, p: 2 })).toBeUndefined();
    expect(feed(5000, { h: 1, p: 3 })?.reported).toEqual({ p: 3 });
    expect(feed(10_000, { h: 1, p: 3 })?.reported).toEqual({ h: 1, p: 3 });
  });

  it("keeps the last value of a point that went bad, marked stale, and says so once", () => {
    const { shadow, feed } = feeder([point("t"), point("never")]);
    feed(1000, { t: 42, never: bad });
    const stale = feed(2000, { t: bad, never: bad });
    expect(stale?.reported).toEqual({});
    expect(stale?.quality).toEqual({ t: { status: "stale", code: bad.code, reason: bad.reason } });
    expect(feed(3000, { t: bad, never: bad })).toBeUndefined();
    const doc = shadow.document("dev");
    expect(doc?.state.reported).toEqual({ t: 42 });
    expect(doc?.metadata.reported.t).toEqual({
      quality: "stale",
      timestamp: 1000,
      code: bad.code,
      reason: bad.reason,
    });
    expect(doc?.metadata.reported.never).toMatchObject({ quality: "bad", code: bad.code });
    // Recovery is reported even when the value is the same as before.
    const back = feed(4000, { t: 42 });
    expect(back?.reported).toEqual({ t: 42 });
    expect(back?.quality).toEqual({ t: GOOD });
    expect(shadow.document("dev")?.metadata.reported.t).toEqual({
      quality: "good",
      timestamp: 4000,
    });
  });

  it("emits each update as an event", () => {
    const { shadow, feed } = feeder([point("x")]);
    const seen: ReportedUpdate[] = [];
    shadow.on("update", (u) => seen.push(u));
    feed(1, { x: 5 });
    feed(2, { x: 5 });
    feed(3, { x: 6 });
    expect(seen.map((u) => u.reported)).toEqual([{ x: 5 }, { x: 6 }]);
    expect(seen[0]).toMatchObject({ productKey: "pk", deviceName: "dev", ts: 1 });
  });

  it("counts points by quality as they change: never read, good, stale, restored", () => {
    const { shadow, feed } = feeder([point("a"), point("b"), point("c")]);
    const counts = () => shadow.qualityCounts()[0];
    expect(counts()).toEqual({
      deviceName: "dev",
      sourceId: "plc1",
      counts: { good: 0, bad: 3, stale: 0 },
    });
    feed(1, { a: 1, b: 2 });
    expect(counts()?.counts).toEqual({ good: 2, bad: 1, stale: 0 });
    // b keeps its last value, marked stale; c was never read and stays bad.
    feed(2, { b: bad, c: bad });
    expect(counts()?.counts).toEqual({ good: 1, bad: 1, stale: 1 });
    feed(3, { b: bad }); // no change of quality, no change of counts
    expect(counts()?.counts).toEqual({ good: 1, bad: 1, stale: 1 });
    shadow.restore("dev", { c: 7 });
    expect(counts()?.counts).toEqual({ good: 1, bad: 0, stale: 2 });
    feed(4, { a: 2, b: 3, c: 8 });
    expect(counts()?.counts).toEqual({ good: 3, bad: 0, stale: 0 });
  });

  it("restores each mapped point's last command outcome with the values saved before a restart", () => {
    const { shadow } = feeder([point("x", { writable: true }), point("y", { writable: true })]);
    const applied = { status: "applied", ts: 1700000000, version: 4, value: 5 };
    shadow.restore("dev", {
      x: 5,
      _commands: { x: applied, gone: { status: "failed", ts: 1, version: 1 }, y: "not an outcome" },
    });
    // "gone" is no longer mapped, and y's entry is not an outcome: neither comes back.
    expect(shadow.commands("dev")).toEqual({ x: applied });
    expect(shadow.document("dev")?.state.reported).toEqual({ x: 5 });
  });

  it("moves a device's revision with every reading, restore and command outcome, never back, and says so", () => {
    const { shadow, feed } = feeder([point("x", { writable: true })]);
    const seen = [shadow.revision("dev")];
    // Each "revised" comes once the change is made: the revision it reads is the new one.
    const told: Array<[string, number | undefined]> = [];
    shadow.on("revised", (name) => told.push([name, shadow.revision(name)]));
    feed(1000, { x: 5 });
    seen.push(shadow.revision("dev"));
    feed(2000, { x: 5 }); // nothing to report, but the timestamps moved
    seen.push(shadow.revision("dev"));
    shadow.recordCommand("dev", "x", { status: "applied", value: 5 });
    seen.push(shadow.revision("dev"));
    shadow.restore("dev", { x: 4 });
    seen.push(shadow.revision("dev"));
    expect(seen).toEqual([...seen].sort((a = 0, b = 0) => a - b));
    expect(new Set(seen).size).toBe(seen.length);
    expect(told).toEqual(seen.slice(1).map((r) => ["dev", r]));
    expect(shadow.revision("nope")).toBeUndefined();
  });

  it("keeps the last command outcome per point and when readings last came in", () => {
    const { shadow, feed } = feeder([point("x", { writable: true })]);
    expect(shadow.readAt("dev")).toBeUndefined();
    feed(1000, { x: 5 });
    feed(2000, { x: 5 }); // nothing to report, but the device was read
    expect(shadow.readAt("dev")).toBe(2000);
    const notes: unknown[] = [];
    shadow.on("command", (n) => notes.push(n));
    shadow.recordCommand("dev", "x", { status: "rejected", reason: "above max" });
    shadow.recordCommand("dev", "x", { status: "applied", value: 6 });
    shadow.recordCommand("nope", "x", { status: "applied" });
    expect(shadow.commands("dev")).toEqual({ x: { status: "applied", value: 6 } });
    expect(notes).toEqual([
      { deviceName: "dev", point: "x", outcome: { status: "rejected", reason: "above max" } },
      { deviceName: "dev", point: "x", outcome: { status: "applied", value: 6 } },
    ]);
    // The outcomes are not reported values: the document the cloud is pushed stays values only.
    expect(shadow.document("dev")?.state.reported).toEqual({ x: 5 });
  });
});
