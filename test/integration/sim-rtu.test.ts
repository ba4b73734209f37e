/**
 * The simulator as Modbus RTU slaves on a serial line: a socat pty pair, the simulator on one
 * end, and on the other mbpoll (libmodbus, an implementation we did not write) or raw bytes
 * from a test master. Timing is checked on a fake clock, never against the wall clock.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { SerialPort } from "serialport";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  ModbusTcpSimulator,
  defaultProfile,
  type RtuDrop,
  type RtuLinkOptions,
  type SimulatorOptions,
  type WriteEvent,
} from "../../src/sim/modbus/index.js";
import { lineTiming, rtuFrame } from "../../src/south/modbus/rtu-frame.js";
import { findExecutable } from "../../src/core/executables.js";
import { findSocat, openPtyPair, type PtyPair } from "../../src/sim/pty.js";
import { run, type Finished } from "../helpers/run.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const CLI = path.join(ROOT, "dist/cli/main.js");
const socat = findSocat();
const mbpollBin = findExecutable("mbpoll");
const missing = [socat === undefined && "socat", mbpollBin === undefined && "mbpoll"].filter(
  (m): m is string => m !== false,
);
// Skipped only on a developer machine without them; under CI their absence is a failure.
const skip = missing.length > 0 && process.env.CI !== "true";
if (skip) console.warn(`sim-rtu: skipped: ${missing.join(", ")} not installed (.ci/run does)`);

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function line(): Promise<PtyPair> {
  const pair = await openPtyPair();
  cleanups.push(() => pair.close());
  return pair;
}

async function rtuSimulator(
  opts: SimulatorOptions,
  rtu: RtuLinkOptions,
): Promise<ModbusTcpSimulator> {
  const sim = new ModbusTcpSimulator(opts);
  cleanups.push(() => sim.stop());
  await sim.startRtu(rtu);
  return sim;
}

/** mbpoll as an RTU master, once; addresses are 1-based (-r 1 is PDU address 0). */
const mbpoll = (device: string, args: string[], writeValues: string[] = []): Promise<Finished> =>
  run(mbpollBin ?? "mbpoll", ["-m", "rtu", "-P", "none", "-1", ...args, device, ...writeValues]);

/** mbpoll's values per polled slave: "-- Polling slave N..." then "[ref]: \tvalue" lines. */
function polled(stdout: string): Record<number, number[]> {
  const out: Record<number, number[]> = {};
  let slave: number[] | undefined;
  for (const text of stdout.split("\n")) {
    const header = /^-- Polling slave (\d+)/.exec(text);
    if (header) out[Number(header[1])] = slave = [];
    const value = /^\[\d+\]:\s+(\d+)/.exec(text);
    if (value) slave?.push(Number(value[1]));
  }
  return out;
}

/** A raw master on a pty end: writes bytes, collects what comes back. */
async function rawMaster(path: string): Promise<{
  write(bytes: Buffer): void;
  received(): Buffer;
  /** Resolves once at least `n` bytes have arrived. */
  receive(n: number): Promise<Buffer>;
  /** Frees the pty end for another master (two readers would split the answers). */
  close(): Promise<void>;
}> {
  const port = new SerialPort({ path, baudRate: 19200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  const close = (): Promise<void> =>
    new Promise<void>((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve()));
  cleanups.push(close);
  let bytes = Buffer.alloc(0);
  port.on("data", (chunk: Buffer) => {
    bytes = Buffer.concat([bytes, chunk]);
    port.emit("collected");
  });
  return {
    write: (b) => void port.write(b),
    received: () => bytes,
    receive: async (n) => {
      while (bytes.length < n) await once(port, "collected");
      return bytes;
    },
    close,
  };
}

const readHolding = (unitId: number, address: number, count: number): Buffer =>
  rtuFrame(unitId, Buffer.from([0x03, address >> 8, address & 0xff, count >> 8, count & 0xff]));

/** The answer to readHolding: unit, 03, byte count, the words. */
const holdingAnswer = (unitId: number, words: number[]): Buffer => {
  const pdu = Buffer.alloc(2 + words.length * 2);
  pdu[0] = 0x03;
  pdu[1] = words.length * 2;
  words.forEach((w, i) => pdu.writeUInt16BE(w, 2 + i * 2));
  return rtuFrame(unitId, pdu);
};

describe.skipIf(skip)("the simulator on a serial line (RTU)", () => {
  it("answers mbpoll's reads with what its memory holds", async () => {
    const pty = await line();
    const sim = await rtuSimulator({ units: [1] }, { path: pty.a, baud: 9600 });
    const words = [0, 1, 2, 300, 4000, 50000, 65535, 7, 8, 9999];
    sim.unit(1).holding.set(words, 0);
    sim.unit(1).input.set([31, 32, 33], 20);
    sim.unit(1).write("coil", 3, [1, 0, 1]);

    const holding = await mbpoll(pty.b, ["-b", "9600", "-a", "1", "-r", "1", "-c", "10"]);
    expect(holding.code, holding.stderr).toBe(0);
    expect(polled(holding.stdout)).toEqual({ 1: words });
    const input = await mbpoll(pty.b, ["-b", "9600", "-a", "1", "-t", "3", "-r", "21", "-c", "3"]);
    expect(polled(input.stdout)).toEqual({ 1: [31, 32, 33] });
    const coils = await mbpoll(pty.b, ["-b", "9600", "-a", "1", "-t", "0", "-r", "4", "-c", "3"]);
    expect(polled(coils.stdout)).toEqual({ 1: [1, 0, 1] });

    expect(sim.stats().served).toEqual({ 1: { 1: 1, 3: 1, 4: 1 } });
    expect(sim.stats().rtu).toEqual({ frames: 3, crcErrors: 0, partialFrames: 0, broadcasts: 0 });
    expect(sim.stats().connections).toEqual({ open: 0, accepted: 0 });
  });

  it("takes mbpoll's write into the profile's point and fires the write event", async () => {
    const pty = await line();
    const sim = await rtuSimulator(
      { profile: defaultProfile() },
      { path: pty.a, baud: 19200, parity: "even" },
    );
    const wrote = once(sim, "write") as Promise<[WriteEvent]>;
    // 40010 is the boiler's targetTemperature (int16, scale 0.1).
    const r = await mbpoll(pty.b, ["-b", "19200", "-P", "even", "-a", "1", "-r", "10"], ["650"]);
    expect(r.code, r.stderr).toBe(0);
    expect((await wrote)[0]).toEqual({ unitId: 1, table: "holding", address: 9, count: 1 });
    expect(sim.unit(1).holding[9]).toBe(650);
    expect(sim.profile?.get("targetTemperature")).toBe(65);
    const back = await mbpoll(pty.b, ["-b", "19200", "-P", "even", "-a", "1", "-r", "10"]);
    expect(polled(back.stdout)).toEqual({ 1: [650] });
  });

  it("hosts several units on one line; units it does not host, or silent ones, get no answer", async () => {
    const pty = await line();
    const sim = await rtuSimulator(
      { units: [1, 2, { unitId: 4, silent: true }], unknownUnit: "exception" },
      { path: pty.a, baud: 19200 },
    );
    sim.unit(1).holding.set([11, 12], 0);
    sim.unit(2).holding.set([21, 22], 0);
    const both = await mbpoll(pty.b, ["-b", "19200", "-a", "1,2", "-r", "1", "-c", "2"]);
    expect(both.code, both.stderr).toBe(0);
    expect(polled(both.stdout)).toEqual({ 1: [11, 12], 2: [21, 22] });

    // Answers come in request order, so an answer to unit 3 or 4 would arrive before unit 2's.
    // On a serial line "exception" does not apply: another slave may own unit 3.
    const master = await rawMaster(pty.b);
    master.write(Buffer.concat([readHolding(3, 0, 1), readHolding(4, 0, 1)]));
    master.write(readHolding(2, 1, 1));
    const answer = holdingAnswer(2, [22]);
    expect(await master.receive(answer.length)).toEqual(answer);
    expect(sim.stats().unanswered).toEqual({ unknownUnit: 1, silent: 1 });
    expect(sim.stats().requests).toBe(5);
  });

  it("drops a frame with a bad CRC without answering, and answers the next good one", async () => {
    const pty = await line();
    const sim = await rtuSimulator({ units: [1] }, { path: pty.a, baud: 9600 });
    sim.unit(1).holding.set([500, 501], 0);
    const master = await rawMaster(pty.b);
    const bad = readHolding(1, 0, 2);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    // 'dropped' is emitted after t3.5 of silence: the slave listens for a new frame again.
    const dropped = once(sim.rtu!, "dropped") as Promise<[RtuDrop]>;
    master.write(bad);
    expect((await dropped)[0]).toEqual({ reason: "crc", bytes: bad });

    master.write(readHolding(1, 0, 2));
    const answer = holdingAnswer(1, [500, 501]);
    expect(await master.receive(answer.length)).toEqual(answer);
    expect(sim.stats().rtu).toMatchObject({ frames: 1, crcErrors: 1, partialFrames: 0 });
    expect(sim.served(1)).toBe(1);
  });

  it("is not wedged by noise or by half a frame; mbpoll is answered afterwards", async () => {
    const pty = await line();
    const sim = await rtuSimulator({ units: [1] }, { path: pty.a });
    sim.unit(1).holding[0] = 77;
    const link = sim.rtu!;
    const master = await rawMaster(pty.b);

    // Half of an FC16 request that announces 246 data bytes.
    let dropped = once(link, "dropped") as Promise<[RtuDrop]>;
    const half = Buffer.from([0x01, 0x10, 0x00, 0x00, 0x00, 0x7b, 0xf6, 0x00, 0x01]);
    master.write(half);
    expect((await dropped)[0]).toEqual({ reason: "partial", bytes: half });

    // A stream of noise longer than any frame, with a function code of no known length.
    dropped = once(link, "dropped") as Promise<[RtuDrop]>;
    master.write(Buffer.alloc(600, 0x55));
    expect((await dropped)[0].reason).toBe("crc");

    // A frame whose function code the slave does not know ends at the silence; a good CRC
    // makes it a request like any other, answered with exception 01.
    const unknown = rtuFrame(1, Buffer.from([0x2b, 0x0e, 0x01, 0x00]));
    master.write(unknown);
    const exception = rtuFrame(1, Buffer.from([0xab, 0x01]));
    expect(await master.receive(exception.length)).toEqual(exception);

    await master.close();
    const r = await mbpoll(pty.b, ["-a", "1", "-r", "1"]);
    expect(polled(r.stdout)).toEqual({ 1: [77] });
    expect(sim.stats().rtu).toEqual({ frames: 2, crcErrors: 1, partialFrames: 1, broadcasts: 0 });
    expect(sim.stats().exceptions).toEqual({ 1: { 1: 1 } });
  });

  it("executes a broadcast write (unit 0) on every unit and answers nothing", async () => {
    const pty = await line();
    const sim = await rtuSimulator({ units: [1, 2] }, { path: pty.a, baud: 38400 });
    const writes: WriteEvent[] = [];
    sim.on("write", (e) => writes.push(e));
    const master = await rawMaster(pty.b);
    master.write(rtuFrame(0, Buffer.from([0x06, 0x00, 0x05, 0x01, 0x2c])));
    master.write(readHolding(2, 5, 1));
    const answer = holdingAnswer(2, [300]);
    expect(await master.receive(answer.length)).toEqual(answer);
    expect(sim.unit(1).holding[5]).toBe(300);
    expect(writes).toEqual([
      { unitId: 1, table: "holding", address: 5, count: 1 },
      { unitId: 2, table: "holding", address: 5, count: 1 },
    ]);
    expect(sim.stats().rtu.broadcasts).toBe(1);
    expect(sim.served(1)).toBe(0);
  });

  it("serves again after stopRtu() and startRtu() on a line that was re-created", async () => {
    const pty = await line();
    const sim = await rtuSimulator({ units: [1] }, { path: pty.a });
    sim.unit(1).holding[0] = 1;
    expect(polled((await mbpoll(pty.b, ["-a", "1"])).stdout)).toEqual({ 1: [1] });
    await sim.stopRtu();
    await pty.restart();
    await sim.startRtu({ path: pty.a });
    sim.unit(1).holding[0] = 2;
    expect(polled((await mbpoll(pty.b, ["-a", "1"])).stdout)).toEqual({ 1: [2] });
  });

  describe("timing (on a fake clock)", () => {
    /** Waits for the simulator to have taken in `n` frames, without timers (they are fake). */
    async function framesIn(sim: ModbusTcpSimulator, n: number): Promise<void> {
      const limit = Date.now() + 10_000;
      while (sim.stats().rtu.frames < n) {
        if (Date.now() > limit) throw new Error(`the simulator never got ${n} frame(s)`);
        await new Promise((r) => setImmediate(r));
      }
    }

    const fakeClock = (): void => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    };

    it("answers only when the exchange would be over at the line's baud rate", async () => {
      const pty = await line();
      const line1200 = { baud: 1200, dataBits: 8, parity: "none", stopBits: 1 } as const;
      const sim = await rtuSimulator(
        { units: [{ unitId: 1, responseDelayMs: 20 }] },
        { path: pty.a, ...line1200 },
      );
      sim.unit(1).holding.set([5, 6, 7], 0);
      const master = await rawMaster(pty.b);
      fakeClock();
      master.write(readHolding(1, 0, 3));
      await framesIn(sim, 1);

      const t = lineTiming(line1200);
      const answer = holdingAnswer(1, [5, 6, 7]);
      // request on the wire + t3.5 + the unit's delay + the answer on the wire: 207.5 ms.
      const exchangeMs = t.wireMs(8) + t.silenceMs + 20 + t.wireMs(answer.length);
      vi.advanceTimersByTime(Math.ceil(exchangeMs) - 1);
      expect(sim.served(1)).toBe(0);
      vi.advanceTimersByTime(2);
      expect(sim.served(1)).toBe(1);
      expect(await master.receive(answer.length)).toEqual(answer);
    });

    it("serves requests sent back to back one after the other, each taking its line time", async () => {
      const pty = await line();
      const line9600 = { baud: 9600, dataBits: 8, parity: "even", stopBits: 1 } as const;
      const sim = await rtuSimulator({ units: [1, 2] }, { path: pty.a, ...line9600 });
      sim.unit(1).holding[0] = 1;
      sim.unit(2).holding[0] = 2;
      const master = await rawMaster(pty.b);
      fakeClock();
      master.write(Buffer.concat([readHolding(1, 0, 1), readHolding(2, 0, 1)]));
      await framesIn(sim, 2);

      const t = lineTiming(line9600);
      const exchangeMs = t.wireMs(8) + t.silenceMs + t.wireMs(7);
      vi.advanceTimersByTime(Math.ceil(exchangeMs) - 1);
      expect([sim.served(1), sim.served(2)]).toEqual([0, 0]);
      vi.advanceTimersByTime(2);
      expect([sim.served(1), sim.served(2)]).toEqual([1, 0]);
      // The second exchange starts when the first is over: not before twice the line time.
      vi.advanceTimersByTime(Math.floor(2 * exchangeMs) - Math.ceil(exchangeMs) - 2);
      expect(sim.served(2)).toBe(0);
      vi.advanceTimersByTime(Math.ceil(exchangeMs) + 2);
      expect(sim.served(2)).toBe(1);
      const answers = Buffer.concat([holdingAnswer(1, [1]), holdingAnswer(2, [2])]);
      expect(await master.receive(answers.length)).toEqual(answers);
    });

    it("answers at once without a baud rate", async () => {
      const pty = await line();
      const sim = await rtuSimulator({ units: [1] }, { path: pty.a });
      const master = await rawMaster(pty.b);
      fakeClock();
      master.write(readHolding(1, 0, 1));
      await framesIn(sim, 1);
      expect(sim.served(1)).toBe(1);
      expect(await master.receive(7)).toEqual(holdingAnswer(1, [0]));
    });
  });

  describe("shadowgate sim modbus --rtu", () => {
    it("starts, says where it serves, answers mbpoll, exits 0 on SIGTERM", async () => {
      const pty = await line();
      const child = spawn(
        process.execPath,
        [CLI, "sim", "modbus", "--rtu", pty.a, "--baud", "19200"],
        {
          cwd: ROOT,
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let stdout = "";
      let stderr = "";
      child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        await exited;
      });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (b: Buffer) => {
          stdout += b.toString();
          if (stdout.includes("\n")) resolve();
        });
        void exited.then(() => reject(new Error(`the simulator exited: ${stderr}`)));
      });
      expect(stdout).toBe(`Modbus RTU simulator serving ${pty.a} (19200 baud 8N1, units 1)\n`);

      // The default profile: the boiler's targetTemperature (40010) holds 600.
      const r = await mbpoll(pty.b, ["-b", "19200", "-a", "1", "-r", "10"]);
      expect(r.code, r.stderr).toBe(0);
      expect(polled(r.stdout)).toEqual({ 1: [600] });
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    });
  });
});

describe("shadowgate sim modbus: bad serial flags", () => {
  it.each([
    [["--rtu", "/dev/null", "--parity", "mark"], "--parity mark is not one of none, even, odd"],
    [["--rtu", "/dev/null", "--baud", "fast"], "--baud fast is not a baud rate"],
    [["--rtu", "/dev/null", "--baud", "0"], "--baud 0 is not a baud rate"],
    [["--rtu", "/dev/null", "--data-bits", "9"], "--data-bits 9 is not one of 7, 8"],
    [["--rtu", "/dev/null", "--stop-bits", "3"], "--stop-bits 3 is not one of 1, 2"],
    [["--baud", "9600"], "--baud applies to a serial line: add --rtu PATH"],
    [["--rtu", "/dev/null", "--port", "70000"], "--port 70000 is not a TCP port"],
  ])("%j exits 64 with one line", async (args, message) => {
    const r = await run(process.execPath, [CLI, "sim", "modbus", ...args]);
    expect(r.code).toBe(64);
    expect(r.stderr.startsWith(message), r.stderr).toBe(true);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stdout).toBe("");
  });

  it("exits 1 with one line when the serial device cannot be opened", async () => {
    const r = await run(process.execPath, [CLI, "sim", "modbus", "--rtu", "/nonexistent/ttyS9"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^cannot start the simulator: .*\n$/);
  });
});
