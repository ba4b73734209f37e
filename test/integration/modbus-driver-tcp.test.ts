import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import { testLogger } from "../helpers/logs.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import type { RawPoint, RawSample } from "../../src/core/samples.js";
import { ModbusDriver, type ModbusDriverOptions } from "../../src/south/modbus/modbus-driver.js";
import { until } from "../helpers/until.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function simulator(opts: ConstructorParameters<typeof ModbusTcpSimulator>[0] = {}) {
  const sim = new ModbusTcpSimulator(opts);
  const { port } = await sim.start({ port: 0 });
  cleanups.push(() => sim.stop());
  return { sim, port };
}

function driver(port: number, extra: Partial<ModbusDriverOptions> = {}) {
  const d = new ModbusDriver(
    "plc1",
    {
      transport: { kind: "tcp", host: "127.0.0.1", port },
      timeoutMs: 300,
      maxRegistersPerRequest: 125,
      maxBitsPerRequest: 2000,
      maxGap: 8,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      unitBackoffMs: 60_000,
      ...extra,
    },
    testLogger(),
  );
  cleanups.push(() => d.stop());
  return d;
}

const reg = (key: string, address: number, count = 1): RawPoint => ({
  key,
  table: "holding",
  address,
  count,
});
const byKey = (samples: RawSample[]) => Object.fromEntries(samples.map((s) => [s.key, s]));

describe("ModbusDriver over TCP against the simulator", () => {
  it("reads all four tables in merged requests", async () => {
    const { sim, port } = await simulator();
    const u = sim.unit(1);
    u.holding.set([11, 12, 13], 100);
    u.input.set([7], 5);
    u.coil[0] = 1;
    u.discreteInput[2] = 1;
    const d = driver(port);
    await d.start();
    sim.resetStats();
    const samples = await d.read({
      unitId: 1,
      points: [
        reg("a", 100),
        reg("b", 101, 2),
        { key: "in", table: "input", address: 5, count: 1 },
        { key: "c1", table: "coil", address: 0, count: 1 },
        { key: "c2", table: "coil", address: 1, count: 1 },
        { key: "di", table: "discreteInput", address: 2, count: 1 },
      ],
    });
    const s = byKey(samples);
    expect(s.a?.data).toEqual([11]);
    expect(s.b?.data).toEqual([12, 13]);
    expect(s.in?.data).toEqual([7]);
    expect(s.c1?.data).toEqual([1]);
    expect(s.c2?.data).toEqual([0]);
    expect(s.di?.data).toEqual([1]);
    expect(samples.every((x) => x.quality.status === "good")).toBe(true);
    // One request per table.
    expect(sim.stats().requests).toBe(4);
  });

  it("splits a read that hits a hole, remembers the hole, and keeps the other points good", async () => {
    const { sim, port } = await simulator({
      units: [{ unitId: 1, holes: [{ table: "holding", from: 3, to: 4 }] }],
    });
    sim.unit(1).holding.set([1, 2, 3, 0, 0, 6, 7], 0);
    const d = driver(port);
    await d.start();
    const points = [reg("p0", 0), reg("p2", 2), reg("p5", 5), reg("p6", 6)];
    const first = byKey(await d.read({ unitId: 1, points }));
    expect(first.p0?.data).toEqual([1]);
    expect(first.p2?.data).toEqual([3]);
    expect(first.p5?.data).toEqual([6]);
    expect(first.p6?.data).toEqual([7]);
    sim.resetStats();
    await d.read({ unitId: 1, points });
    // The gap over the hole is never read through again: two requests, no exception.
    expect(sim.stats().requests).toBe(2);
    expect(Object.values(sim.stats().exceptions[1] ?? {})).toEqual([]);

    // A point inside a hole is bad, remembered as illegal, and not asked for again.
    const inHole = await d.read({ unitId: 1, points: [reg("h", 3)] });
    expect(inHole[0]?.quality).toMatchObject({
      status: "bad",
      code: ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
      reason: expect.stringContaining("exception 02") as unknown,
    });
    expect(d.health().illegal).toEqual(["1/holding/3-3"]);
    sim.resetStats();
    const again = await d.read({ unitId: 1, points: [reg("h", 3), reg("p0", 0)] });
    expect(again[0]?.quality).toMatchObject({
      status: "bad",
      code: ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
    });
    expect(again[1]?.data).toEqual([1]);
    expect(sim.stats().requests).toBe(1);
  });

  it("serves several unit ids on one connection; a dead unit is parked and does not stall the others", async () => {
    const { sim, port } = await simulator({ units: [1, 2, 3] });
    sim.unit(1).holding[0] = 100;
    sim.unit(3).holding[0] = 300;
    sim.unit(2).silent = true;
    const d = driver(port);
    await d.start();
    for (let i = 0; i < 5; i++) {
      const [one] = await d.read({ unitId: 1, points: [reg("x", 0)] });
      const [two] = await d.read({ unitId: 2, points: [reg("x", 0), reg("y", 50)] });
      const [three] = await d.read({ unitId: 3, points: [reg("x", 0)] });
      expect(one?.data).toEqual([100]);
      expect(three?.data).toEqual([300]);
      expect(two?.quality).toMatchObject({
        status: "bad",
        code: i === 0 ? ErrorCodes.MODBUS_TIMEOUT : ErrorCodes.MODBUS_UNIT_DOWN,
      });
    }
    // Five polls of the dead unit cost exactly one request on the wire.
    expect(sim.stats().unanswered.silent).toBe(1);
    expect(d.health()).toMatchObject({ state: "online", timeouts: 1 });
  });

  it("probes a parked unit again after its backoff and serves it when it is back", async () => {
    const { sim, port } = await simulator({ units: [1] });
    sim.unit(1).silent = true;
    sim.unit(1).holding[0] = 9;
    const d = driver(port, { unitBackoffMs: 50 });
    await d.start();
    const [first] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(first?.quality).toMatchObject({ code: ErrorCodes.MODBUS_TIMEOUT });
    sim.unit(1).silent = false;
    let last: RawSample | undefined;
    await until("unit 1 to be served again", async () => {
      [last] = await d.read({ unitId: 1, points: [reg("x", 0)] });
      return last?.quality.status === "good";
    });
    expect(last?.data).toEqual([9]);
  });

  it("reconnects after the connection drops, with backoff, and reads again", async () => {
    const { sim, port } = await simulator();
    sim.unit(1).holding[0] = 5;
    const d = driver(port);
    await d.start();
    expect(d.health().state).toBe("online");
    sim.dropConnections();
    await until("backoff after the drop", () => d.health().state !== "online");
    await until("online again", () => d.health().state === "online");
    const [x] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(x?.data).toEqual([5]);
    expect(d.health().reconnects).toBeGreaterThanOrEqual(1);
  });

  it("settles a request that is on the wire when the connection drops, and polls again after", async () => {
    // Found by the fault-injection suite: a PLC restarted while a read waited for its answer
    // left that read pending for ever (modbus-serial's destroy() cancels the timeouts of
    // pending transactions without settling them), so the IoQueue, every later poll and every
    // command write of the source hung behind it.
    const { sim, port } = await simulator({ responseDelayMs: 5_000 });
    sim.unit(1).holding[0] = 5;
    const d = driver(port, { timeoutMs: 10_000 });
    await d.start();
    const read = d.read({ unitId: 1, points: [reg("x", 0)] });
    const write = d.write(1, reg("w", 1), [7]);
    await until("the read on the wire", () => sim.stats().requests >= 1);
    sim.dropConnections();
    const [x] = await read;
    expect(x?.quality).toMatchObject({ status: "bad", code: ErrorCodes.MODBUS_DISCONNECTED });
    await expect(write).rejects.toMatchObject({ code: ErrorCodes.MODBUS_DISCONNECTED });
    sim.responseDelayMs = 0;
    await until("online again", () => d.health().state === "online");
    const [y] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(y?.data).toEqual([5]);
  });

  it("survives a PLC that is down at start, and connects when it comes up", async () => {
    const probe = new ModbusTcpSimulator();
    const { port } = await probe.start({ port: 0 });
    await probe.stop(); // a port with nothing listening
    const d = driver(port);
    await d.start();
    expect(d.health().state).toBe("backoff");
    const [x] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(x?.quality).toMatchObject({ status: "bad", code: ErrorCodes.MODBUS_DISCONNECTED });
    const sim = new ModbusTcpSimulator();
    await sim.start({ port });
    cleanups.push(() => sim.stop());
    sim.unit(1).holding[0] = 77;
    await until("online", () => d.health().state === "online");
    const [y] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(y?.data).toEqual([77]);
  });

  it("puts a write ahead of the rest of a poll: it waits for at most the request on the wire", async () => {
    const { sim, port } = await simulator({ responseDelayMs: 5 });
    // Ten points 100 registers apart: ten requests per poll.
    const points = Array.from({ length: 10 }, (_, i) => reg(`p${i}`, i * 100));
    const d = driver(port);
    await d.start();
    sim.resetStats();
    let readsBeforeWrite = -1;
    sim.on("write", () => {
      readsBeforeWrite = sim.served(1, 3);
    });
    const poll = d.read({ unitId: 1, points });
    await until("the poll to be on the wire", () => sim.stats().requests >= 1);
    await d.write(1, reg("w", 5000), [42]);
    await poll;
    expect(sim.unit(1).holding[5000]).toBe(42);
    expect(sim.served(1, 3)).toBe(10);
    // The write overtook the poll: at most two reads (the one on the wire, one racing) before it.
    expect(readsBeforeWrite).toBeGreaterThanOrEqual(1);
    expect(readsBeforeWrite).toBeLessThanOrEqual(2);
  });

  it("writes registers and coils with the right function codes", async () => {
    const { sim, port } = await simulator();
    const writes: unknown[] = [];
    sim.on("write", (w) => writes.push(w));
    const d = driver(port);
    await d.start();
    await d.write(1, reg("one", 10), [600]);
    await d.write(1, reg("two", 20, 2), [0x4120, 0]);
    await d.write(1, { key: "c", table: "coil", address: 4, count: 1 }, [1]);
    expect(Array.from(sim.unit(1).holding.subarray(10, 11))).toEqual([600]);
    expect(Array.from(sim.unit(1).holding.subarray(20, 22))).toEqual([0x4120, 0]);
    expect(sim.unit(1).coil[4]).toBe(1);
    expect(sim.served(1, 6)).toBe(1);
    expect(sim.served(1, 16)).toBe(1);
    expect(sim.served(1, 5)).toBe(1);
    expect(writes).toHaveLength(3);
    await expect(
      d.write(1, { key: "i", table: "input", address: 0, count: 1 }, [1]),
    ).rejects.toMatchObject({
      code: ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
    });
  });
});
