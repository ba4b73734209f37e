import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Modbus from "modbus-serial";
import { afterEach, describe, expect, it } from "vitest";
import { until } from "../helpers/until.js";
import { ErrorCodes } from "../../src/core/errors.js";
import {
  ModbusTcpSimulator,
  startSimulator,
  type RunningSimulator,
  type SimulatorOptions,
  type WriteEvent,
} from "../../src/sim/modbus/index.js";

type Client = InstanceType<typeof Modbus.default>;

const sims: ModbusTcpSimulator[] = [];
const clients: Client[] = [];
const sockets: Socket[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) {
    if (c.isOpen) await new Promise<void>((resolve) => c.close(() => resolve()));
  }
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(sims.splice(0).map((s) => s.stop()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function startSim(
  opts: SimulatorOptions = {},
): Promise<{ sim: ModbusTcpSimulator; port: number }> {
  const sim = new ModbusTcpSimulator(opts);
  sims.push(sim);
  const { port } = await sim.start();
  return { sim, port };
}

async function client(port: number, unitId = 1, timeoutMs = 500): Promise<Client> {
  const c = new Modbus.default();
  clients.push(c);
  await c.connectTCP("127.0.0.1", { port });
  c.setID(unitId);
  c.setTimeout(timeoutMs);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<{ modbusCode?: number; errno?: string }> {
  try {
    await p;
  } catch (err) {
    return err as { modbusCode?: number; errno?: string };
  }
  throw new Error("expected the request to fail");
}

/** A raw socket that collects everything the server sends. */
async function rawSocket(port: number): Promise<{ socket: Socket; received: () => Buffer }> {
  const socket = connect({ host: "127.0.0.1", port, noDelay: true });
  sockets.push(socket);
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, received: () => Buffer.concat(chunks) };
}

function readFrame(tid: number, unitId: number, fc: number, address: number, qty: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(tid, 0);
  b.writeUInt16BE(0, 2);
  b.writeUInt16BE(6, 4);
  b.writeUInt8(unitId, 6);
  b.writeUInt8(fc, 7);
  b.writeUInt16BE(address, 8);
  b.writeUInt16BE(qty, 10);
  return b;
}

/** Splits a stream of response ADUs into [transaction id, first data word] pairs. */
function parseResponses(buf: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let o = 0;
  while (o + 6 <= buf.length) {
    const len = buf.readUInt16BE(o + 4);
    out.push([buf.readUInt16BE(o), buf.readUInt16BE(o + 9)]);
    o += 6 + len;
  }
  return out;
}

describe("ModbusTcpSimulator over TCP", () => {
  it("serves every function code: what is written reads back", async () => {
    const { sim, port } = await startSim();
    const writes: WriteEvent[] = [];
    sim.on("write", (e) => writes.push(e));
    const c = await client(port);

    await c.writeRegister(9, 600);
    expect((await c.readHoldingRegisters(9, 1)).data).toEqual([600]);
    await c.writeRegisters(100, [1, 2, 65535]);
    expect((await c.readHoldingRegisters(99, 5)).data).toEqual([0, 1, 2, 65535, 0]);
    await c.writeCoil(0, true);
    await c.writeCoils(10, [true, false, true, true, false, false, false, false, true]);
    const coils = (await c.readCoils(0, 19)).data;
    expect(coils[0]).toBe(true);
    expect(coils.slice(10, 19)).toEqual([
      true,
      false,
      true,
      true,
      false,
      false,
      false,
      false,
      true,
    ]);
    await c.writeCoil(0, false);
    expect((await c.readCoils(0, 1)).data[0]).toBe(false);

    sim.unit(1).write("discreteInput", 2, [1]);
    sim.unit(1).input[12] = 120;
    expect((await c.readDiscreteInputs(0, 3)).data.slice(0, 3)).toEqual([false, false, true]);
    expect((await c.readInputRegisters(12, 1)).data).toEqual([120]);

    expect(writes).toEqual([
      { unitId: 1, table: "holding", address: 9, count: 1 },
      { unitId: 1, table: "holding", address: 100, count: 3 },
      { unitId: 1, table: "coil", address: 0, count: 1 },
      { unitId: 1, table: "coil", address: 10, count: 9 },
      { unitId: 1, table: "coil", address: 0, count: 1 },
    ]);
    const stats = sim.stats();
    expect(stats.served[1]).toEqual({ 1: 2, 2: 1, 3: 2, 4: 1, 5: 2, 6: 1, 15: 1, 16: 1 });
    expect(sim.served(1, 3)).toBe(2);
    expect(sim.served(1)).toBe(11);
    expect(stats.connections).toEqual({ open: 1, accepted: 1 });
  });

  it("answers exception 02 for holes and 03 above the quantity limits", async () => {
    const { sim, port } = await startSim({
      units: [
        { unitId: 1, holes: [{ table: "holding", from: 99, to: 109 }] },
        { unitId: 2, maxRegistersPerRequest: 32 },
      ],
    });
    const c = await client(port);
    expect((await rejection(c.readHoldingRegisters(95, 10))).modbusCode).toBe(2);
    expect((await rejection(c.writeRegister(105, 1))).modbusCode).toBe(2);
    expect((await c.readHoldingRegisters(110, 10)).data).toHaveLength(10);
    expect((await rejection(c.readHoldingRegisters(110, 126))).modbusCode).toBe(3);
    expect((await c.readHoldingRegisters(110, 125)).data).toHaveLength(125);
    c.setID(2);
    expect((await rejection(c.readInputRegisters(0, 33))).modbusCode).toBe(3);
    expect((await c.readInputRegisters(0, 32)).data).toHaveLength(32);
    expect(sim.stats().exceptions).toEqual({ 1: { 2: 2, 3: 1 }, 2: { 3: 1 } });
  });

  it("never answers an unknown unit id by default, or answers 0x0B when asked to", async () => {
    const { sim, port } = await startSim({ units: [1, 2] });
    const c = await client(port, 3, 150);
    expect((await rejection(c.readHoldingRegisters(0, 1))).errno).toBe("ETIMEDOUT");
    expect(sim.stats().unanswered.unknownUnit).toBe(1);
    c.setID(2);
    expect((await c.readHoldingRegisters(0, 1)).data).toEqual([0]);

    sim.unknownUnit = "exception";
    c.setID(9);
    expect((await rejection(c.readHoldingRegisters(0, 1))).modbusCode).toBe(0x0b);
  });

  it("a silent unit never answers until it is revived; other units still do", async () => {
    const { sim, port } = await startSim({ units: [1, 2] });
    const c = await client(port, 1, 150);
    sim.unit(1).silent = true;
    expect((await rejection(c.readHoldingRegisters(0, 1))).errno).toBe("ETIMEDOUT");
    c.setID(2);
    expect((await c.readHoldingRegisters(0, 1)).data).toEqual([0]);
    sim.unit(1).silent = false;
    c.setID(1);
    expect((await c.readHoldingRegisters(0, 1)).data).toEqual([0]);
    expect(sim.stats().unanswered.silent).toBe(1);
  });

  it("dropConnections() closes every client; the listener keeps accepting", async () => {
    const { sim, port } = await startSim();
    const a = await client(port);
    const b = await client(port);
    const closed = Promise.all(
      [a, b].map((c) => new Promise<void>((resolve) => c.on("close", () => resolve()))),
    );
    sim.dropConnections();
    await closed;
    expect(a.isOpen).toBe(false);
    expect(sim.connectionCount).toBe(0);
    const again = await client(port);
    expect((await again.readCoils(0, 1)).data[0]).toBe(false);
  });

  it("drops a connection after N requests, answering the Nth first", async () => {
    const { sim, port } = await startSim({ dropAfterRequests: 2 });
    const c = await client(port);
    const closed = new Promise<void>((resolve) => c.on("close", () => resolve()));
    await c.writeRegister(0, 7);
    expect((await c.readHoldingRegisters(0, 1)).data).toEqual([7]);
    await closed;
    expect(sim.connectionCount).toBe(0);
  });

  it("parses frames merged into one chunk and frames split across chunks, answering in order", async () => {
    const { sim, port } = await startSim();
    for (let i = 0; i < 10; i++) sim.unit(1).holding[i] = 1000 + i;
    const { socket, received } = await rawSocket(port);

    const merged = Buffer.concat([0, 1, 2, 3, 4].map((i) => readFrame(100 + i, 1, 3, i, 1)));
    socket.write(merged);
    await until("5 responses", () => parseResponses(received()).length === 5);

    // Byte by byte, with the next frame's first bytes in the same chunk as the previous tail.
    const split = Buffer.concat([readFrame(200, 1, 3, 7, 1), readFrame(201, 1, 3, 8, 1)]);
    for (const cut of [
      [0, 1],
      [1, 5],
      [5, 11],
      [11, 15],
      [15, 24],
    ] as const) {
      socket.write(split.subarray(cut[0], cut[1]));
      await new Promise((r) => setImmediate(r));
    }
    await until("7 responses", () => parseResponses(received()).length === 7);
    expect(parseResponses(received())).toEqual([
      [100, 1000],
      [101, 1001],
      [102, 1002],
      [103, 1003],
      [104, 1004],
      [200, 1007],
      [201, 1008],
    ]);
  });

  it("keeps answers in request order when one unit is slower than another", async () => {
    const { sim, port } = await startSim({ units: [{ unitId: 1, responseDelayMs: 30 }, 2] });
    sim.unit(1).holding[0] = 11;
    sim.unit(2).holding[0] = 22;
    const { socket, received } = await rawSocket(port);
    socket.write(
      Buffer.concat([readFrame(1, 1, 3, 0, 1), readFrame(2, 2, 3, 0, 1), readFrame(3, 1, 3, 0, 1)]),
    );
    await until("3 responses", () => parseResponses(received()).length === 3);
    expect(parseResponses(received())).toEqual([
      [1, 11],
      [2, 22],
      [3, 11],
    ]);
  });

  it("serves several connections at once", async () => {
    const { sim, port } = await startSim({ units: [1, 2] });
    const cs = await Promise.all([client(port, 1), client(port, 2), client(port, 1)]);
    await Promise.all(cs.map((c, i) => c.writeRegister(i, 10 + i)));
    const reads = await Promise.all(cs.map((c) => c.readHoldingRegisters(0, 3)));
    expect(reads[0]!.data).toEqual([10, 0, 12]);
    expect(reads[1]!.data).toEqual([0, 11, 0]);
    expect(sim.stats().connections.open).toBe(3);
  });

  it("closes a connection whose MBAP length makes no sense", async () => {
    const { port } = await startSim();
    const { socket } = await rawSocket(port);
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    const bad = readFrame(1, 1, 3, 0, 1);
    bad.writeUInt16BE(1000, 4);
    socket.write(bad);
    await closed;
  });
});

describe("startSimulator with a profile", () => {
  const running: RunningSimulator[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.close()));
  });

  it("starts the default boiler profile at the mapping example's addresses", async () => {
    const r = await startSimulator({ port: 0 });
    running.push(r);
    const c = await client(r.port);
    const temp = await c.readHoldingRegisters(0, 2);
    expect(temp.buffer.readFloatBE(0)).toBeGreaterThan(15);
    expect((await c.readHoldingRegisters(9, 1)).data).toEqual([600]);
    expect((await c.readCoils(0, 1)).data[0]).toBe(true);
    expect((await c.readDiscreteInputs(2, 1)).data[0]).toBe(false);
    const flow = (await c.readInputRegisters(12, 1)).data[0]!;
    expect(flow).toBeGreaterThanOrEqual(115);
    expect(flow).toBeLessThanOrEqual(125);
    expect(r.sim.profile?.running).toBe(true);
  });

  it("moves the temperature toward a set point written over Modbus", async () => {
    const r = await startSimulator({
      profile: {
        units: [
          {
            unitId: 1,
            tick: "20ms",
            points: {
              temperature: { register: 40001, type: "float32", value: 20 },
              targetTemperature: { register: 40010, type: "int16", scale: 0.1, value: 20 },
              running: { coil: 1, value: true },
            },
            dynamics: [
              {
                kind: "approach",
                point: "temperature",
                target: "targetTemperature",
                tau: "300ms",
                when: "running",
              },
            ],
          },
        ],
      },
    });
    running.push(r);
    const profile = r.sim.profile!;
    const c = await client(r.port);
    await c.writeRegister(9, 800); // 80.0 degC
    expect(profile.get("targetTemperature")).toBe(80);
    await until("the temperature above 70", () => (profile.get("temperature") as number) > 70);
    const words = await c.readHoldingRegisters(0, 2);
    expect(words.buffer.readFloatBE(0)).toBeGreaterThan(70);
    expect(words.buffer.readFloatBE(0)).toBeLessThanOrEqual(80);

    await r.close();
    expect(profile.running).toBe(false);
    expect(r.sim.listening).toBe(false);
  });

  it("rejects a bad profile file with file:line:col before opening a socket", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sg-sim-"));
    dirs.push(dir);
    const file = join(dir, "plc.yaml");
    await writeFile(
      file,
      "units:\n  - unitId: 1\n    points:\n      t: { register: 40001, type: float99 }\n",
    );
    const err = await startSimulator({ profile: file }).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe(ErrorCodes.CONFIG_SCHEMA);
    expect(err?.message).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:4:35 units\\[0\\]\\.points\\.t\\.type: `,
      ),
    );

    await writeFile(file, "responseDelay: 1ms\nunits:\n  - unitId: 5\n");
    const r = await startSimulator({ profile: file });
    running.push(r);
    expect(r.sim.unitIds()).toEqual([5]);
    expect(r.sim.responseDelayMs).toBe(1);
  });
});
