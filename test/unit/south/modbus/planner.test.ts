import { describe, it, expect } from "vitest";
import { ErrorCodes, ShadowgateError } from "../../../../src/core/errors.js";
import type { ModbusTable } from "../../../../src/core/types.js";
import type { RawPoint } from "../../../../src/core/samples.js";
import {
  MAX_BITS_PER_READ,
  MAX_REGISTERS_PER_READ,
  RequestPlanner,
} from "../../../../src/south/modbus/planner.js";
import type { ReadFn, ReadRequest, ReadSpan } from "../../../../src/south/modbus/planner.js";

const pt = (key: string, address: number, count = 1, table: ModbusTable = "holding"): RawPoint => ({
  key,
  table,
  address,
  count,
});

/** `n` one-register (or one-bit) points at consecutive addresses from `start`. */
const run = (n: number, start = 0, table: ModbusTable = "holding", size = 1): RawPoint[] =>
  Array.from({ length: n }, (_, i) => pt(`p${start + i * size}`, start + i * size, size, table));

const spans = (reqs: readonly ReadRequest[]): Array<[string, number, number]> =>
  reqs.map((r) => [r.table, r.address, r.count]);

const exception = (code: number): ShadowgateError =>
  new ShadowgateError(ErrorCodes.MODBUS_EXCEPTION, `modbus exception ${code}`, {
    exceptionCode: code,
  });

/** Word value the fake device holds at a holding address: distinct and easy to predict. */
const word = (address: number): number => (address * 7 + 3) & 0xffff;

interface FakeDevice {
  readonly read: ReadFn;
  readonly calls: ReadSpan[];
  /** Calls that the device answered with an exception. */
  readonly failed: ReadSpan[];
}

/**
 * An in-memory slave: exception 03 when a read asks for more than `limit` values, exception 02
 * when it touches a hole, otherwise `word(address)` for registers and `address % 2` for bits.
 */
function fakeDevice(holes: readonly number[] = [], limit = Infinity): FakeDevice {
  const calls: ReadSpan[] = [];
  const failed: ReadSpan[] = [];
  const read: ReadFn = async (span) => {
    calls.push(span);
    const last = span.address + span.count - 1;
    if (span.count > limit) {
      failed.push(span);
      throw exception(3);
    }
    if (holes.some((h) => h >= span.address && h <= last)) {
      failed.push(span);
      throw exception(2);
    }
    return Array.from({ length: span.count }, (_, i) =>
      span.table === "coil" || span.table === "discreteInput"
        ? (span.address + i) % 2
        : word(span.address + i),
    );
  };
  return { read, calls, failed };
}

const touches = (s: ReadSpan, address: number): boolean =>
  address >= s.address && address < s.address + s.count;

const words = (address: number, count: number): number[] =>
  Array.from({ length: count }, (_, i) => word(address + i));

const clock = (): (() => number) => {
  let t = 1_000;
  return () => t++;
};

describe("RequestPlanner.plan", () => {
  it("exports the protocol limits", () => {
    expect(MAX_REGISTERS_PER_READ).toBe(125);
    expect(MAX_BITS_PER_READ).toBe(2000);
  });

  it("reads 1,000 contiguous registers in exactly ceil(1000/125) = 8 requests", () => {
    const reqs = new RequestPlanner().plan(1, run(1000));
    expect(reqs).toHaveLength(8);
    expect(spans(reqs)).toEqual(
      Array.from({ length: 8 }, (_, i) => ["holding", i * 125, 125] as [string, number, number]),
    );
    expect(reqs.every((r) => r.unitId === 1 && r.points.length === 125)).toBe(true);
    expect(new RequestPlanner().plan(1, run(1001))).toHaveLength(9);
  });

  it("plans from unsorted input and keeps tables apart", () => {
    const points = [pt("h5", 5), pt("c0", 0, 1, "coil"), pt("h0", 0), pt("i0", 0, 1, "input")];
    const reqs = new RequestPlanner().plan(1, points);
    expect(spans(reqs)).toEqual([
      ["coil", 0, 1],
      ["input", 0, 1],
      ["holding", 0, 6],
    ]);
    expect(reqs[2]?.points.map((p) => p.key)).toEqual(["h0", "h5"]);
  });

  it("reads through a gap of exactly maxGapRegisters but not one more", () => {
    const planner = new RequestPlanner();
    // 0 and 9: the 8 registers 1..8 are read through.
    expect(spans(planner.plan(1, [pt("a", 0), pt("b", 9)]))).toEqual([["holding", 0, 10]]);
    expect(spans(planner.plan(1, [pt("a", 0), pt("b", 10)]))).toEqual([
      ["holding", 0, 1],
      ["holding", 10, 1],
    ]);
    const tight = new RequestPlanner({ maxGapRegisters: 0 });
    expect(spans(tight.plan(1, [pt("a", 0), pt("b", 1), pt("c", 3)]))).toEqual([
      ["holding", 0, 2],
      ["holding", 3, 1],
    ]);
  });

  it("uses maxGapBits for bit tables", () => {
    const planner = new RequestPlanner();
    const a = pt("a", 0, 1, "discreteInput");
    expect(spans(planner.plan(1, [a, pt("b", 65, 1, "discreteInput")]))).toEqual([
      ["discreteInput", 0, 66],
    ]);
    expect(planner.plan(1, [a, pt("b", 66, 1, "discreteInput")])).toHaveLength(2);
    const custom = new RequestPlanner({ maxGapBits: 3 });
    expect(custom.plan(1, [pt("a", 0, 1, "coil"), pt("b", 4, 1, "coil")])).toHaveLength(1);
    expect(custom.plan(1, [pt("a", 0, 1, "coil"), pt("b", 5, 1, "coil")])).toHaveLength(2);
  });

  it("caps bit reads at 2000", () => {
    const reqs = new RequestPlanner().plan(1, run(2500, 0, "coil"));
    expect(spans(reqs)).toEqual([
      ["coil", 0, 2000],
      ["coil", 2000, 500],
    ]);
    expect(spans(new RequestPlanner({ maxBits: 99_999 }).plan(1, run(2001, 0, "coil")))).toEqual([
      ["coil", 0, 2000],
      ["coil", 2000, 1],
    ]);
  });

  it("honours a lower per-source cap and clamps options to the protocol limits", () => {
    expect(spans(new RequestPlanner({ maxRegisters: 32 }).plan(1, run(100)))).toEqual([
      ["holding", 0, 32],
      ["holding", 32, 32],
      ["holding", 64, 32],
      ["holding", 96, 4],
    ]);
    expect(new RequestPlanner({ maxRegisters: 500 }).plan(1, run(250))).toHaveLength(2);
    expect(new RequestPlanner({ maxRegisters: 0 }).plan(1, run(3))).toHaveLength(3);
    expect(new RequestPlanner({ maxRegisters: Number.NaN }).plan(1, run(250))).toHaveLength(2);
  });

  it("never splits a point across requests", () => {
    // 120 single registers then a 10-register string: 130 registers, but the string must not
    // be cut at 125.
    const points = [...run(120), pt("str", 120, 10)];
    expect(spans(new RequestPlanner().plan(1, points))).toEqual([
      ["holding", 0, 120],
      ["holding", 120, 10],
    ]);
    // 500 float32s: 124 registers (62 points) per request at most.
    const floats = run(500, 0, "holding", 2);
    const reqs = new RequestPlanner().plan(1, floats);
    expect(reqs).toHaveLength(9);
    for (const r of reqs) {
      expect(r.count).toBeLessThanOrEqual(125);
      for (const p of r.points) {
        expect(p.address).toBeGreaterThanOrEqual(r.address);
        expect(p.address + p.count).toBeLessThanOrEqual(r.address + r.count);
      }
    }
    expect(reqs.reduce((n, r) => n + r.points.length, 0)).toBe(500);
  });

  it("serves duplicated and overlapping points with one request", () => {
    const points = [pt("a", 100, 2), pt("b", 100, 2), pt("c", 101, 1), pt("d", 100, 4)];
    const reqs = new RequestPlanner().plan(1, points);
    expect(spans(reqs)).toEqual([["holding", 100, 4]]);
    expect(reqs[0]?.points.map((p) => p.key).sort()).toEqual(["a", "b", "c", "d"]);
  });

  it("throws a clear error for a point that no request can carry", () => {
    const small = new RequestPlanner({ maxRegisters: 32 });
    expect(() => small.plan(1, [pt("s", 0, 40)])).toThrow(/point "s" spans 40 registers.*32/);
    expect(() => new RequestPlanner().plan(1, [pt("x", 65535, 2)])).toThrow(/point "x"/);
    expect(() => new RequestPlanner().plan(1, [pt("y", -1)])).toThrow(/point "y"/);
    expect(() => new RequestPlanner().plan(1, [pt("z", 0, 0)])).toThrow(/point "z"/);
    expect(() => new RequestPlanner().plan(256, [pt("a", 0)])).toThrow(/unit id 256/);
  });
});

describe("RequestPlanner.execute", () => {
  it("slices each point's data out of the response, one sample per input point in order", async () => {
    const device = fakeDevice();
    const points = [pt("b", 10, 2), pt("a", 0, 3), pt("dup", 0, 3), pt("bits", 5, 4, "coil")];
    const samples = await new RequestPlanner().execute(1, points, device.read, clock());
    expect(device.calls).toEqual([
      { unitId: 1, table: "coil", address: 5, count: 4 },
      { unitId: 1, table: "holding", address: 0, count: 12 },
    ]);
    expect(samples).toEqual([
      { key: "b", quality: { status: "good" }, data: words(10, 2), ts: 1001 },
      { key: "a", quality: { status: "good" }, data: words(0, 3), ts: 1001 },
      { key: "dup", quality: { status: "good" }, data: words(0, 3), ts: 1001 },
      { key: "bits", quality: { status: "good" }, data: [1, 0, 1, 0], ts: 1000 },
    ]);
  });

  it("normalises transport values: signed words to 0..65535, truthy bits to 1", async () => {
    const read: ReadFn = async (span) => (span.table === "coil" ? [0, 5, 1] : [-1, 0x1_0002]);
    const samples = await new RequestPlanner().execute(
      1,
      [pt("w", 0, 2), pt("c", 0, 3, "coil")],
      read,
    );
    expect(samples.map((s) => s.data)).toEqual([
      [65535, 2],
      [0, 1, 1],
    ]);
  });

  it("bisects around holes (exception 02), remembers them and avoids them next time", async () => {
    // Holes at 5 (between two points) and 12 (a point itself).
    const device = fakeDevice([5, 12]);
    const planner = new RequestPlanner();
    const points = [pt("A", 0, 4), pt("B", 8, 2), pt("C", 10, 2), pt("D", 12, 1), pt("E", 14, 2)];
    expect(spans(planner.plan(1, points))).toEqual([["holding", 0, 16]]);

    const first = await planner.execute(1, points, device.read, clock());
    expect(device.calls.map((c) => [c.address, c.count])).toEqual([
      [0, 16],
      [0, 10], // A+B: fails on 5
      [0, 4],
      [8, 2],
      [10, 6], // C+D+E: fails on 12
      [10, 2],
      [12, 4], // D+E: fails on 12
      [12, 1], // D alone: proven illegal
      [14, 2],
    ]);
    expect(first.map((s) => [s.key, s.quality.status])).toEqual([
      ["A", "good"],
      ["B", "good"],
      ["C", "good"],
      ["D", "bad"],
      ["E", "good"],
    ]);
    expect(first[0]?.data).toEqual(words(0, 4));
    expect(first[1]?.data).toEqual(words(8, 2));
    expect(first[2]?.data).toEqual(words(10, 2));
    expect(first[4]?.data).toEqual(words(14, 2));
    expect(first[3]).toEqual({
      key: "D",
      quality: {
        status: "bad",
        code: ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
        reason: "exception 02 (illegal data address) at holding 12-12",
      },
      ts: expect.any(Number),
    });
    expect(first[3]?.data).toBeUndefined();
    expect(planner.illegalRanges()).toEqual(["1/holding/12-12"]);

    // The gap 4..7 holding the hole is no longer read through, the illegal point is not planned.
    expect(spans(planner.plan(1, points))).toEqual([
      ["holding", 0, 4],
      ["holding", 8, 4],
      ["holding", 14, 2],
    ]);
    device.calls.length = 0;
    device.failed.length = 0;
    const second = await planner.execute(1, points, device.read, clock());
    expect(device.calls).toHaveLength(3);
    expect(device.failed).toEqual([]);
    expect(device.calls.some((c) => touches(c, 5) || touches(c, 12))).toBe(false);
    expect(second.map((s) => s.data)).toEqual([
      words(0, 4),
      words(8, 2),
      words(10, 2),
      undefined,
      words(14, 2),
    ]);
    expect(second[3]?.quality).toEqual({
      status: "bad",
      code: ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
      reason: "holding 12-12 is a known illegal data address (exception 02 earlier); not read",
    });
  });

  it("never reads a point that overlaps a known illegal range, nor reads through one", async () => {
    const device = fakeDevice([12]);
    const planner = new RequestPlanner();
    await planner.execute(1, [pt("D", 12)], device.read);
    expect(planner.illegalRanges()).toEqual(["1/holding/12-12"]);
    device.calls.length = 0;
    const points = [pt("x", 10), pt("wide", 11, 3), pt("y", 14)];
    expect(spans(planner.plan(1, points))).toEqual([
      ["holding", 10, 1],
      ["holding", 14, 1],
    ]);
    const samples = await planner.execute(1, points, device.read);
    expect(samples.map((s) => s.quality.status)).toEqual(["good", "bad", "good"]);
    expect(device.calls).toHaveLength(2);
  });

  it("learns a device's size limit (exception 03) as a break between the halves", async () => {
    const device = fakeDevice([], 50);
    const planner = new RequestPlanner();
    const points = run(100);
    const first = await planner.execute(1, points, device.read);
    expect(device.calls.map((c) => [c.address, c.count])).toEqual([
      [0, 100],
      [0, 50],
      [50, 50],
    ]);
    expect(first.every((s, i) => s.quality.status === "good" && s.data?.[0] === word(i))).toBe(
      true,
    );
    expect(planner.illegalRanges()).toEqual([]);

    device.calls.length = 0;
    const second = await planner.execute(1, points, device.read);
    expect(device.calls.map((c) => [c.address, c.count])).toEqual([
      [0, 50],
      [50, 50],
    ]);
    expect(second.every((s) => s.quality.status === "good")).toBe(true);
  });

  it("converges under a size limit over a large contiguous block, without losing data", async () => {
    const device = fakeDevice([], 60);
    const planner = new RequestPlanner();
    const points = run(1000);
    const rounds: Array<{ calls: number; failed: number }> = [];
    for (let round = 0; round < 4; round++) {
      device.calls.length = 0;
      device.failed.length = 0;
      const samples = await planner.execute(1, points, device.read);
      expect(samples.every((s, i) => s.quality.status === "good" && s.data?.[0] === word(i))).toBe(
        true,
      );
      rounds.push({ calls: device.calls.length, failed: device.failed.length });
    }
    expect(rounds[1]!.calls).toBeLessThan(rounds[0]!.calls);
    expect(rounds[1]!.failed).toBeLessThan(rounds[0]!.failed);
    expect(rounds[3]!.failed).toBe(0);
    expect(rounds[3]!.calls).toBe(rounds[2]!.calls);
  });

  it("marks a single point bad on exception 03 without remembering it", async () => {
    const device = fakeDevice([], 5);
    const planner = new RequestPlanner();
    const points = [pt("str", 0, 10), pt("far", 100)];
    const samples = await planner.execute(1, points, device.read, () => 7);
    expect(samples[0]).toEqual({
      key: "str",
      quality: {
        status: "bad",
        code: ErrorCodes.MODBUS_EXCEPTION,
        reason: "exception 03 (illegal data value) at holding 0-9",
      },
      ts: 7,
    });
    expect(samples[1]?.quality).toEqual({ status: "good" });
    expect(planner.illegalRanges()).toEqual([]);
    device.calls.length = 0;
    await planner.execute(1, points, device.read);
    expect(device.calls.map((c) => [c.address, c.count])).toEqual([
      [0, 10],
      [100, 1],
    ]);
  });

  it.each([
    [1, "exception 01 (illegal function) at holding 0-9"],
    [4, "exception 04 (server device failure) at holding 0-9"],
    [6, "exception 06 (server device busy) at holding 0-9"],
    [0x0b, "exception 0B (gateway target device failed to respond) at holding 0-9"],
  ])("does not split on exception %i and learns nothing", async (code, reason) => {
    const calls: ReadSpan[] = [];
    const read: ReadFn = async (span) => {
      calls.push(span);
      if (span.address === 0) throw exception(code);
      return new Array<number>(span.count).fill(1);
    };
    const planner = new RequestPlanner();
    const points = [pt("a", 0), pt("b", 5, 5), pt("c", 200)];
    const samples = await planner.execute(1, points, read);
    expect(calls.map((c) => [c.address, c.count])).toEqual([
      [0, 10],
      [200, 1],
    ]);
    const quality = { status: "bad", code: ErrorCodes.MODBUS_EXCEPTION, reason };
    expect(samples.map((s) => s.quality)).toEqual([quality, quality, { status: "good" }]);
    expect(planner.illegalRanges()).toEqual([]);
    expect(spans(planner.plan(1, points))).toEqual([
      ["holding", 0, 10],
      ["holding", 200, 1],
    ]);
  });

  it("a timeout marks only that request's points bad and the next requests still run", async () => {
    const calls: number[] = [];
    const read: ReadFn = async (span) => {
      calls.push(span.address);
      if (span.address === 100) {
        throw new ShadowgateError(ErrorCodes.MODBUS_TIMEOUT, "no response within 1000 ms");
      }
      return words(span.address, span.count);
    };
    const planner = new RequestPlanner();
    const points = [pt("a", 0), pt("b", 100), pt("b2", 101), pt("c", 200)];
    const samples = await planner.execute(1, points, read);
    expect(calls).toEqual([0, 100, 200]);
    const timeout = {
      status: "bad",
      code: ErrorCodes.MODBUS_TIMEOUT,
      reason: "no response within 1000 ms",
    };
    expect(samples.map((s) => s.quality)).toEqual([
      { status: "good" },
      timeout,
      timeout,
      { status: "good" },
    ]);
    expect(samples[3]?.data).toEqual(words(200, 1));
    expect(planner.illegalRanges()).toEqual([]);
    expect(planner.plan(1, points)).toHaveLength(3);
  });

  it("stopOnTransportError skips the remaining requests after a transport failure", async () => {
    const calls: number[] = [];
    const read: ReadFn = async (span) => {
      calls.push(span.address);
      throw new ShadowgateError(ErrorCodes.MODBUS_DISCONNECTED, "socket closed");
    };
    const points = [pt("a", 0), pt("b", 100), pt("c", 0, 1, "coil")];
    const samples = await new RequestPlanner().execute(1, points, read, () => 5, {
      stopOnTransportError: true,
    });
    expect(calls).toEqual([0]);
    expect(samples).toEqual(
      ["a", "b", "c"].map((key) => ({
        key,
        quality: { status: "bad", code: ErrorCodes.MODBUS_DISCONNECTED, reason: "socket closed" },
        ts: 5,
      })),
    );
  });

  it("stopOnTransportError is not triggered by a Modbus exception", async () => {
    const calls: number[] = [];
    const read: ReadFn = async (span) => {
      calls.push(span.address);
      if (span.address === 0) throw exception(4);
      return [9];
    };
    const samples = await new RequestPlanner().execute(
      1,
      [pt("a", 0), pt("b", 100)],
      read,
      undefined,
      { stopOnTransportError: true },
    );
    expect(calls).toEqual([0, 100]);
    expect(samples.map((s) => s.quality.status)).toEqual(["bad", "good"]);
  });

  it("stopOnTransportError also stops inside a bisection", async () => {
    const calls: Array<[number, number]> = [];
    const read: ReadFn = async (span) => {
      calls.push([span.address, span.count]);
      if (span.count > 1) throw exception(2);
      throw new ShadowgateError(ErrorCodes.MODBUS_TIMEOUT, "timed out");
    };
    const samples = await new RequestPlanner().execute(
      1,
      [pt("a", 0), pt("b", 2), pt("c", 50)],
      read,
      undefined,
      { stopOnTransportError: true },
    );
    expect(calls).toEqual([
      [0, 3],
      [0, 1],
    ]);
    expect(samples.map((s) => s.quality)).toEqual(
      Array(3).fill({ status: "bad", code: ErrorCodes.MODBUS_TIMEOUT, reason: "timed out" }),
    );
  });

  it("treats a short response as bad data for that request only", async () => {
    const read: ReadFn = async (span) => (span.address === 0 ? [1] : [2]);
    const samples = await new RequestPlanner().execute(1, [pt("a", 0, 2), pt("b", 50)], read);
    expect(samples[0]?.quality).toEqual({
      status: "bad",
      code: ErrorCodes.MODBUS_EXCEPTION,
      reason: "short response: 1 of 2 values at holding 0-1",
    });
    expect(samples[1]).toMatchObject({ quality: { status: "good" }, data: [2] });
  });

  it("propagates plan errors instead of reading", async () => {
    const device = fakeDevice();
    await expect(
      new RequestPlanner({ maxRegisters: 8 }).execute(1, [pt("big", 0, 9)], device.read),
    ).rejects.toThrow(/point "big"/);
    expect(device.calls).toEqual([]);
  });
});

describe("RequestPlanner memory", () => {
  it("lists illegal ranges merged where adjacent, sorted by unit, table and address", async () => {
    const device = fakeDevice([12, 13, 40]);
    const planner = new RequestPlanner();
    await planner.execute(2, [pt("x", 40)], device.read);
    await planner.execute(1, [pt("a", 12), pt("b", 13), pt("c", 40)], device.read);
    await planner.execute(1, [pt("k", 13, 1, "coil")], fakeDevice([13]).read);
    expect(planner.illegalRanges()).toEqual([
      "1/coil/13-13",
      "1/holding/12-13",
      "1/holding/40-40",
      "2/holding/40-40",
    ]);
  });

  it("forget(unitId) clears one unit, forget() clears all", async () => {
    // The fake's holes are in every table: 0 hits holding "a", 4 lies between inputs "b" and "c".
    const device = fakeDevice([0, 4]);
    const planner = new RequestPlanner();
    // Unit 1 also learns a no-read-through gap (2..5) between "b" and "c".
    await planner.execute(
      1,
      [pt("a", 0), pt("b", 1, 1, "input"), pt("c", 6, 1, "input")],
      device.read,
    );
    await planner.execute(2, [pt("a", 0)], device.read);
    expect(planner.illegalRanges()).toEqual(["1/holding/0-0", "2/holding/0-0"]);
    expect(planner.plan(1, [pt("b", 1, 1, "input"), pt("c", 6, 1, "input")])).toHaveLength(2);

    planner.forget(1);
    expect(planner.illegalRanges()).toEqual(["2/holding/0-0"]);
    expect(planner.plan(1, [pt("b", 1, 1, "input"), pt("c", 6, 1, "input")])).toHaveLength(1);
    expect(planner.plan(1, [pt("a", 0)])).toHaveLength(1);
    expect(planner.plan(2, [pt("a", 0)])).toHaveLength(0);

    planner.forget();
    expect(planner.illegalRanges()).toEqual([]);
    expect(planner.plan(2, [pt("a", 0)])).toHaveLength(1);
  });

  it("still reads a point that lies inside a learned no-read-through gap, on its own", async () => {
    const device = fakeDevice([5]);
    const planner = new RequestPlanner();
    await planner.execute(1, [pt("a", 0), pt("b", 8)], device.read);
    expect(spans(planner.plan(1, [pt("a", 0), pt("m", 3), pt("b", 8)]))).toEqual([
      ["holding", 0, 1],
      ["holding", 3, 1],
      ["holding", 8, 1],
    ]);
  });

  it("keeps what it learned per unit", async () => {
    const device = fakeDevice([5]);
    const planner = new RequestPlanner();
    await planner.execute(1, [pt("a", 0), pt("b", 8)], device.read);
    expect(planner.plan(1, [pt("a", 0), pt("b", 8)])).toHaveLength(2);
    expect(planner.plan(3, [pt("a", 0), pt("b", 8)])).toHaveLength(1);
  });
});
