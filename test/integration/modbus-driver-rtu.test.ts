/**
 * Modbus RTU on a serial line: the driver on one end of a socat pty pair, a slave on the other:
 * pymodbus's RTU server (an implementation we did not write), our simulator (several units on
 * one line, timing-true at a baud), or a hand-made slave that answers with broken frames.
 */
import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { SerialPort } from "serialport";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import { testLogger } from "../helpers/logs.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import type { RawPoint, RawSample } from "../../src/core/samples.js";
import { ModbusDriver, type ModbusDriverOptions } from "../../src/south/modbus/modbus-driver.js";
import { crc16, rtuFrame } from "../../src/south/modbus/rtu-frame.js";
import { findSocat, openPtyPair, type PtyPair } from "../../src/sim/pty.js";
import { pymodbusRtuMissing, startPymodbusRtu } from "../helpers/pymodbus.js";
import { until } from "../helpers/until.js";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function pty(): Promise<PtyPair> {
  const pair = await openPtyPair();
  cleanups.push(() => pair.close());
  return pair;
}

function driver(pathName: string, extra: Partial<ModbusDriverOptions> = {}): ModbusDriver {
  const d = new ModbusDriver(
    "line1",
    {
      transport: {
        kind: "rtu",
        path: pathName,
        line: { baud: 115_200, parity: "none", dataBits: 8, stopBits: 1 },
      },
      timeoutMs: 200,
      maxRegistersPerRequest: 125,
      maxBitsPerRequest: 2000,
      maxGap: 8,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      unitBackoffMs: 60_000,
      demoteAfter: 2,
      ...extra,
    },
    testLogger(),
  );
  cleanups.push(() => d.stop());
  return d;
}

async function rtuSimulator(
  pathName: string,
  opts: ConstructorParameters<typeof ModbusTcpSimulator>[0],
  baud?: number,
) {
  const sim = new ModbusTcpSimulator(opts);
  await sim.startRtu({ path: pathName, ...(baud !== undefined && { baud }) });
  cleanups.push(() => sim.stop());
  return sim;
}

const reg = (key: string, address: number, count = 1): RawPoint => ({
  key,
  table: "holding",
  address,
  count,
});

/** The sample's error code, or "good". */
const codeOf = (s: RawSample | undefined): string =>
  s === undefined ? "missing" : s.quality.status === "good" ? "good" : s.quality.code;

const pymodbusMissing = pymodbusRtuMissing();

describe("ModbusDriver on an RTU line", () => {
  it.skipIf(pymodbusMissing && process.env.CI !== "true")(
    "reads and writes pymodbus's RTU slave (an implementation we did not write)",
    async () => {
      const line = await pty();
      const server = await startPymodbusRtu(line.a, [
        { table: "holding", address: 0, words: [11, 22, 33] },
        { table: "holding", address: 100, type: "float32", byteOrder: "ABCD", value: 21.5 },
        { table: "coil", address: 3, value: true },
      ]);
      cleanups.push(server.stop);

      const d = driver(line.b);
      await d.start();
      const samples = await d.read({
        unitId: 1,
        points: [
          reg("a", 0, 3),
          reg("f", 100, 2),
          { key: "c", table: "coil", address: 3, count: 1 },
        ],
      });
      expect(samples.map((s) => [s.key, s.data])).toEqual([
        ["a", [11, 22, 33]],
        ["f", [0x41ac, 0x0000]], // 21.5 as IEEE 754, big-endian words
        ["c", [1]],
      ]);
      await d.write(1, reg("w", 5), [4242]);
      await d.write(1, reg("w2", 6, 2), [7, 8]);
      const [back] = await d.read({ unitId: 1, points: [reg("w", 5, 3)] });
      expect(back?.data).toEqual([4242, 7, 8]);
      expect(d.health()).toMatchObject({ state: "online", badFrames: 0, timeouts: 0 });
    },
  );

  it("serves several slaves on one line; a silent one is demoted after N timeouts and probed later", async () => {
    const line = await pty();
    const sim = await rtuSimulator(line.a, { units: [1, 2, 3] });
    sim.unit(1).holding[0] = 100;
    sim.unit(3).holding[0] = 300;
    sim.unit(2).silent = true;
    const d = driver(line.b, { demoteAfter: 2, unitBackoffMs: 60_000 });
    await d.start();
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const [one] = await d.read({ unitId: 1, points: [reg("x", 0)] });
      const [two] = await d.read({ unitId: 2, points: [reg("x", 0), reg("y", 50)] });
      const [three] = await d.read({ unitId: 3, points: [reg("x", 0)] });
      expect(one?.data).toEqual([100]);
      expect(three?.data).toEqual([300]);
      codes.push(codeOf(two));
    }
    // Two polls time out (one request each: the rest of the poll is not sent), then it is parked.
    expect(codes).toEqual([
      ErrorCodes.MODBUS_TIMEOUT,
      ErrorCodes.MODBUS_TIMEOUT,
      ErrorCodes.MODBUS_UNIT_DOWN,
      ErrorCodes.MODBUS_UNIT_DOWN,
      ErrorCodes.MODBUS_UNIT_DOWN,
    ]);
    expect(d.health()).toMatchObject({ state: "online", timeouts: 2, reconnects: 0 });
  });

  it("a parked slave is probed after its backoff and served again", async () => {
    const line = await pty();
    const sim = await rtuSimulator(line.a, { units: [1] });
    sim.unit(1).holding[0] = 9;
    sim.unit(1).silent = true;
    const d = driver(line.b, { demoteAfter: 1, unitBackoffMs: 50 });
    await d.start();
    const [first] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(codeOf(first)).toBe(ErrorCodes.MODBUS_TIMEOUT);
    sim.unit(1).silent = false;
    let last: Awaited<ReturnType<ModbusDriver["read"]>> = [];
    await until("the slave to be served again", async () => {
      last = await d.read({ unitId: 1, points: [reg("x", 0)] });
      return last[0]?.quality.status === "good";
    });
    expect(last[0]?.data).toEqual([9]);
  });

  it("a write overtakes queued reads on a slow line: it waits for the one on the wire only", async () => {
    const line = await pty();
    // 9600 baud, timing-true: a 125-register read holds the line ~300 ms.
    const sim = await rtuSimulator(line.a, { units: [1] }, 9600);
    const d = driver(line.b, {
      transport: {
        kind: "rtu",
        path: line.b,
        line: { baud: 9600, parity: "none", dataBits: 8, stopBits: 1 },
      },
    });
    await d.start();
    const done: string[] = [];
    const reads = [0, 200, 400, 600].map((address, i) =>
      d
        .read({ unitId: 1, points: [reg(`r${i}`, address, 125)] })
        .then((s) => done.push(`read${i}:${s[0]?.quality.status}`)),
    );
    const wrote = new Promise<void>((resolve) => sim.once("write", () => resolve()));
    // Issued once the first read is on the wire, with three more queued behind it.
    await new Promise((r) => setImmediate(r));
    const write = d.write(1, reg("w", 1000), [77]).then(() => done.push("write"));
    await Promise.all([...reads, write, wrote]);
    expect(done).toEqual(["read0:good", "write", "read1:good", "read2:good", "read3:good"]);
    expect(sim.unit(1).holding[1000]).toBe(77);
  });

  it("drops a bad CRC and a partial frame, resynchronises and keeps the port open", async () => {
    const line = await pty();
    // A hand-made slave: its first answer has a broken CRC, the second is cut short, then it
    // answers properly. Requests are 8 bytes (FC3).
    const port = new SerialPort({ path: line.a, baudRate: 115_200 });
    cleanups.push(() => new Promise((r) => port.close(() => r(undefined))));
    await new Promise<void>((resolve, reject) => port.once("open", resolve).once("error", reject));
    let answered = 0;
    let pending = Buffer.alloc(0);
    port.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 8) {
        const request = pending.subarray(0, 8);
        pending = pending.subarray(8);
        const count = request.readUInt16BE(4);
        const pdu = Buffer.alloc(2 + count * 2);
        pdu[0] = 3;
        pdu[1] = count * 2;
        for (let i = 0; i < count; i++) pdu.writeUInt16BE(500 + i, 2 + i * 2);
        const frame = rtuFrame(request[0] ?? 1, pdu);
        answered++;
        if (answered === 1)
          frame.writeUInt16LE(crc16(frame.subarray(0, -2)) ^ 0xffff, frame.length - 2);
        port.write(answered === 2 ? frame.subarray(0, frame.length - 3) : frame);
      }
    });
    const d = driver(line.b, { demoteAfter: 5 });
    await d.start();
    const first = await d.read({ unitId: 1, points: [reg("x", 0, 2)] });
    expect(codeOf(first[0])).toBe(ErrorCodes.MODBUS_BAD_FRAME);
    const second = await d.read({ unitId: 1, points: [reg("x", 0, 2)] });
    expect(codeOf(second[0])).toBe(ErrorCodes.MODBUS_TIMEOUT);
    const third = await d.read({ unitId: 1, points: [reg("x", 0, 2)] });
    expect(third[0]?.data).toEqual([500, 501]);
    expect(d.health()).toMatchObject({ state: "online", badFrames: 1, timeouts: 1, reconnects: 0 });
  });

  it("reopens a port that went away (adapter unplugged) with backoff, and reads again", async () => {
    const line = await pty();
    const sim = await rtuSimulator(line.a, { units: [1] });
    sim.unit(1).holding[0] = 5;
    const d = driver(line.b);
    await d.start();
    expect((await d.read({ unitId: 1, points: [reg("x", 0)] }))[0]?.data).toEqual([5]);
    await sim.stopRtu();
    await line.close(); // both pty ends vanish, as when a USB adapter is pulled
    // The port reports the hang-up by itself, or at the latest when the next request is written
    // to it (on a busy machine the hang-up alone once took over 15 s to arrive).
    await until("the driver to notice", async () => {
      if (d.health().state !== "online") return true;
      await d.read({ unitId: 1, points: [reg("x", 0)] });
      return d.health().state !== "online";
    });
    const [down] = await d.read({ unitId: 1, points: [reg("x", 0)] });
    expect(codeOf(down)).toBe(ErrorCodes.MODBUS_DISCONNECTED);
    await line.restart();
    await sim.startRtu({ path: line.a });
    await until("online again", () => d.health().state === "online");
    sim.unit(1).holding[0] = 6;
    let data: readonly number[] | undefined;
    await until("a good read after reopening", async () => {
      data = (await d.read({ unitId: 1, points: [reg("x", 0)] }))[0]?.data;
      return data?.[0] === 6;
    });
    expect(d.health().reconnects).toBeGreaterThanOrEqual(1);
  });

  it("speaks RTU over TCP to a serial device server (socat bridging TCP to the line)", async () => {
    const line = await pty();
    const sim = await rtuSimulator(line.a, { units: [4] });
    sim.unit(4).holding[10] = 1234;
    // A free port, then socat as the device server: TCP on one side, the serial line on the other.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const { port } = probe.address() as AddressInfo;
    await new Promise((r) => probe.close(r));
    const bridge = spawn(
      findSocat() ?? "socat",
      [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `FILE:${line.b},raw,echo=0`],
      { stdio: "ignore" },
    );
    cleanups.push(async () => {
      bridge.kill("SIGTERM");
    });
    const d = driver(line.b, {
      transport: { kind: "rtu-over-tcp", host: "127.0.0.1", port },
      reconnectMinMs: 20,
    });
    await d.start(); // socat may not listen yet: the driver retries with backoff
    await until("connected", () => d.health().state === "online");
    const [x] = await d.read({ unitId: 4, points: [reg("x", 10)] });
    expect(x, JSON.stringify(x)).toMatchObject({ quality: { status: "good" }, data: [1234] });
    await d.write(4, reg("y", 11), [99]);
    expect(sim.unit(4).holding[11]).toBe(99);
    expect(sim.stats().rtu).toMatchObject({ crcErrors: 0 });
  });
});
