/**
 * Issue 10, "Modbus TCP answers": the real ModbusDriver over a real TCP socket against a
 * scripted hostile slave, where the test decides each reply byte by byte. Defects:
 * 6. a byte count larger than the data was accepted and values decoded from what followed;
 * 7. a wrong MBAP protocol id was accepted and the frame decoded;
 * 8. after one answer with stray or missing bytes the stream never resynchronised.
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import type { RawPoint, RawSample } from "../../src/core/samples.js";
import { ModbusDriver, type ModbusDriverOptions } from "../../src/south/modbus/modbus-driver.js";
import { until } from "../helpers/until.js";

/** One request as the slave received it. */
interface Request {
  readonly tid: number;
  readonly unit: number;
  readonly fc: number;
  readonly address: number;
  readonly quantity: number;
  readonly socket: Socket;
}

/** What the slave sends for one request: bytes, or nothing (silence). */
type Reply = (req: Request) => Buffer | undefined;

/** MBAP header + PDU; every field can be falsified. */
function frame(
  req: Request,
  pdu: readonly number[],
  o: { tid?: number; protocol?: number; length?: number; unit?: number } = {},
): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt16BE(o.tid ?? req.tid, 0);
  head.writeUInt16BE(o.protocol ?? 0, 2);
  head.writeUInt16BE(o.length ?? pdu.length + 1, 4);
  head.writeUInt8(o.unit ?? req.unit, 6);
  return Buffer.concat([head, Buffer.from(pdu)]);
}

/** An FC3/FC4 PDU carrying `words`, with a byte count that may lie. */
function registersPdu(req: Request, words: readonly number[], byteCount = words.length * 2) {
  return [req.fc, byteCount, ...words.flatMap((w) => [w >> 8, w & 0xff])];
}

/**
 * A Modbus TCP slave on node:net whose replies the test scripts: `then(...)` queues replies for
 * the next requests, in order, whatever the connection; once they are used up it answers
 * correctly from `holding` and `coils`.
 */
class HostileSlave {
  readonly holding = new Uint16Array(64);
  readonly coils = new Uint8Array(64);
  /** Connections accepted so far. */
  connections = 0;
  requests = 0;
  private readonly script: Reply[] = [];
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  then(...replies: Reply[]): void {
    this.script.push(...replies);
  }

  async start(): Promise<number> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  correct(req: Request): Buffer {
    if (req.fc === 3 || req.fc === 4) {
      const words = Array.from(this.holding.subarray(req.address, req.address + req.quantity));
      return frame(req, registersPdu(req, words));
    }
    if (req.fc === 1) {
      const bytes = new Array<number>(Math.ceil(req.quantity / 8)).fill(0);
      for (let i = 0; i < req.quantity; i++) {
        if (this.coils[req.address + i] === 1)
          bytes[i >> 3] = (bytes[i >> 3] ?? 0) | (1 << (i & 7));
      }
      return frame(req, [1, bytes.length, ...bytes]);
    }
    // FC6: store, echo address and value.
    this.holding[req.address] = req.quantity;
    return frame(req, [
      6,
      req.address >> 8,
      req.address & 0xff,
      req.quantity >> 8,
      req.quantity & 0xff,
    ]);
  }

  private accept(socket: Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => this.sockets.delete(socket));
    let pending = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 6 && pending.length >= 6 + pending.readUInt16BE(4)) {
        const size = 6 + pending.readUInt16BE(4);
        const raw = pending.subarray(0, size);
        pending = pending.subarray(size);
        const req: Request = {
          tid: raw.readUInt16BE(0),
          unit: raw.readUInt8(6),
          fc: raw.readUInt8(7),
          address: raw.readUInt16BE(8),
          quantity: raw.readUInt16BE(10),
          socket,
        };
        this.requests++;
        const reply = this.script.shift() ?? ((r: Request) => this.correct(r));
        const out = reply(req);
        if (out !== undefined) socket.write(out);
      }
    });
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The driver's log lines, parsed. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) {
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: pino({ level: "debug" }, stream), lines };
}

async function setup(extra: Partial<ModbusDriverOptions> = {}) {
  const slave = new HostileSlave();
  const port = await slave.start();
  cleanups.push(() => slave.stop());
  const { log, lines } = capture();
  const d = new ModbusDriver(
    "plc1",
    {
      transport: { kind: "tcp", host: "127.0.0.1", port },
      timeoutMs: 200,
      maxRegistersPerRequest: 125,
      maxBitsPerRequest: 2000,
      maxGap: 8,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
      unitBackoffMs: 60_000,
      ...extra,
    },
    log,
  );
  cleanups.push(() => d.stop());
  await d.start();
  expect(d.health().state).toBe("online");
  /** Warnings about dropped frames, by kind. */
  const frameWarnings = (kind: string) =>
    lines.filter((l) => l["level"] === 40 && l["kind"] === kind).length;
  return { slave, d, frameWarnings };
}

const regs = (address: number, count: number): RawPoint => ({
  key: "x",
  table: "holding",
  address,
  count,
});

async function readOne(d: ModbusDriver, point: RawPoint): Promise<RawSample> {
  const [sample] = await d.read({ unitId: 1, points: [point] });
  if (sample === undefined) throw new Error("no sample");
  return sample;
}

/** Reads until the point is good with `data`; bounded so that a driver that never recovers fails. */
async function recovers(d: ModbusDriver, point: RawPoint, data: number[]): Promise<void> {
  let last: RawSample | undefined;
  try {
    await until(
      `a good read of ${JSON.stringify(data)}`,
      async () => {
        last = await readOne(d, point);
        return last.quality.status === "good" && JSON.stringify(last.data) === JSON.stringify(data);
      },
      5_000,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last sample ${JSON.stringify(last)}`);
  }
}

const badFrame = (reason: RegExp) => ({
  status: "bad",
  code: ErrorCodes.MODBUS_BAD_FRAME,
  reason: expect.stringMatching(reason) as unknown,
});

describe("Modbus TCP against a hostile slave (issue 10)", () => {
  it("6: a byte count larger than the data (0x08 with 2 registers) is a bad frame, and reads recover on a new connection", async () => {
    const { slave, d } = await setup();
    slave.holding.set([11, 12], 0);
    slave.then((req) => frame(req, registersPdu(req, [11, 12], 8)));
    expect((await readOne(d, regs(0, 2))).quality).toMatchObject(badFrame(/byte count 8/));
    // The stream could not be trusted after it: a new connection, and good values again.
    await recovers(d, regs(0, 2), [11, 12]);
    expect(slave.connections).toBe(2);
    expect(d.health().badFrames).toBe(1);
  });

  it("6: a byte count that disagrees with the MBAP length or with the request is never decoded", async () => {
    const { slave, d } = await setup();
    slave.holding.set([11, 12, 13], 0);
    slave.coils.set([1, 0, 1, 1, 0, 0, 0, 0, 1, 1], 0);
    const coils: RawPoint = { key: "c", table: "coil", address: 0, count: 10 };

    // Three registers of data under a byte count of 8: the fourth word would come from
    // whatever follows the frame.
    slave.then((req) => frame(req, registersPdu(req, [11, 12, 13], 8)));
    expect((await readOne(d, regs(0, 3))).quality).toMatchObject(badFrame(/byte count 8/));
    await recovers(d, regs(0, 3), [11, 12, 13]);

    // Ten coils are two bytes; a byte count of 8 with those two bytes.
    slave.then((req) => frame(req, [1, 8, 0b00001101, 0b00000011]));
    expect((await readOne(d, coils)).quality).toMatchObject(badFrame(/byte count 8/));
    await recovers(d, coils, [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]);

    // A well-formed frame carrying more registers than asked: dropped, the stream is intact.
    const before = slave.connections;
    slave.then((req) => frame(req, registersPdu(req, [11, 12, 13, 14])));
    expect((await readOne(d, regs(0, 2))).quality).toMatchObject(
      badFrame(/byte count 8 for 2 registers/),
    );
    expect(await readOne(d, regs(0, 2))).toMatchObject({
      quality: { status: "good" },
      data: [11, 12],
    });
    expect(slave.connections).toBe(before);
  });

  it.each([1, 0xffff])(
    "7: protocol id %i is not Modbus: the frame is dropped, the point is bad, then good again on a new connection",
    async (protocol) => {
      const { slave, d, frameWarnings } = await setup();
      slave.holding[5] = 42;
      slave.then((req) => frame(req, registersPdu(req, [999]), { protocol }));
      const first = await readOne(d, regs(5, 1));
      expect(first.quality).toMatchObject(badFrame(new RegExp(`protocol id ${protocol}`)));
      await recovers(d, regs(5, 1), [42]);
      expect(slave.connections).toBe(2);
      expect(frameWarnings("protocol-id")).toBe(1);
    },
  );

  /** A correct answer of 42 to a one-register read. */
  const answer42 = (req: Request): Buffer => frame(req, registersPdu(req, [42]));
  // Each answer breaks the stream a different way; the slave answers correctly after it.
  const broken: Array<[string, Reply, RegExp]> = [
    [
      "an MBAP length too large, then silence",
      (req) => frame(req, registersPdu(req, [42]), { length: 20 }),
      /incomplete frame/,
    ],
    [
      "an MBAP length too small",
      (req) => frame(req, registersPdu(req, [42]), { length: 3 }),
      /byte count 2 with 0 data bytes/,
    ],
    [
      "garbage bytes before the answer",
      (req) => Buffer.concat([Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x55]), answer42(req)]),
      /protocol id/,
    ],
    [
      "a truncated frame (9 of its 11 bytes), then silence",
      (req) => answer42(req).subarray(0, 9),
      /incomplete frame/,
    ],
  ];

  it.each(broken)(
    "8: after %s the point goes bad, the connection is reopened and reads are good again",
    async (_name, reply, reason) => {
      // demoteAfter: a timeout must not park the unit, which would hide a stream that stays
      // out of step (every later answer misread).
      const { slave, d } = await setup({ demoteAfter: 10 });
      slave.holding[0] = 42;
      slave.then(reply);
      const first = await readOne(d, regs(0, 1));
      expect(first.quality).toMatchObject(badFrame(reason));
      await recovers(d, regs(0, 1), [42]);
      expect(slave.connections).toBe(2);
      expect(d.health()).toMatchObject({ state: "online", badFrames: 1 });
    },
  );

  it("8: a late answer to an earlier request and a stray transaction id are dropped, counted, and logged once; the right answer is used", async () => {
    // demoteAfter keeps the unit from being parked after its timeout.
    const { slave, d, frameWarnings } = await setup({ demoteAfter: 10 });
    slave.holding[0] = 42;
    let held: Request | undefined;
    slave.then(
      (req) => {
        held = req; // no answer in time
        return undefined;
      },
      (req) =>
        Buffer.concat([
          held === undefined ? Buffer.alloc(0) : frame(held, registersPdu(held, [111])),
          frame(req, registersPdu(req, [42])),
        ]),
      (req) =>
        Buffer.concat([
          frame(req, registersPdu(req, [222]), { tid: (req.tid + 1000) & 0xffff }),
          frame(req, registersPdu(req, [42])),
        ]),
    );
    expect((await readOne(d, regs(0, 1))).quality).toMatchObject({
      code: ErrorCodes.MODBUS_TIMEOUT,
    });
    expect(await readOne(d, regs(0, 1))).toMatchObject({ quality: { status: "good" }, data: [42] });
    expect(await readOne(d, regs(0, 1))).toMatchObject({ quality: { status: "good" }, data: [42] });
    expect(d.health()).toMatchObject({ state: "online", badFrames: 2 });
    expect(slave.connections).toBe(1);
    expect(frameWarnings("stray")).toBe(1);
  });

  it("8: an answer from another unit or with another function code fails the request with a reason; the connection stays", async () => {
    const { slave, d, frameWarnings } = await setup();
    slave.holding[0] = 42;
    slave.then(
      (req) => frame(req, registersPdu(req, [7]), { unit: 2 }),
      (req) => frame(req, registersPdu(req, [7]), { unit: 2 }),
      (req) => frame(req, [4, 2, 0, 7]),
    );
    expect((await readOne(d, regs(0, 1))).quality).toMatchObject(badFrame(/answer from unit 2/));
    expect((await readOne(d, regs(0, 1))).quality).toMatchObject(badFrame(/answer from unit 2/));
    expect((await readOne(d, regs(0, 1))).quality).toMatchObject(
      badFrame(/function code 4 in the answer to function 3/),
    );
    expect(await readOne(d, regs(0, 1))).toMatchObject({ quality: { status: "good" }, data: [42] });
    expect(slave.connections).toBe(1);
    expect(d.health().badFrames).toBe(3);
    // Logged once per kind on a connection, not per frame.
    expect(frameWarnings("unit")).toBe(1);
    expect(frameWarnings("function")).toBe(1);
  });

  it("8: a write whose echo names another address is not reported as done", async () => {
    const { slave, d } = await setup();
    slave.then((req) =>
      frame(req, [6, 0, req.address + 1, req.quantity >> 8, req.quantity & 0xff]),
    );
    await expect(d.write(1, regs(3, 1), [77])).rejects.toMatchObject({
      code: ErrorCodes.MODBUS_BAD_FRAME,
      message: expect.stringMatching(/echoed address 4/) as unknown,
    });
    await d.write(1, regs(3, 1), [78]);
    expect(slave.holding[3]).toBe(78);
  });

  it("8: after 3 requests in a row without an answer the connection is reopened, and reads are good again", async () => {
    // demoteAfter keeps the unit from being parked, so every poll goes on the wire.
    const { slave, d } = await setup({ demoteAfter: 10 });
    slave.holding[0] = 42;
    slave.then(
      () => undefined,
      () => undefined,
      () => undefined,
    );
    for (let i = 0; i < 3; i++) {
      expect((await readOne(d, regs(0, 1))).quality).toMatchObject({
        status: "bad",
        code: ErrorCodes.MODBUS_TIMEOUT,
      });
    }
    await recovers(d, regs(0, 1), [42]);
    expect(slave.connections).toBe(2);
    expect(d.health()).toMatchObject({ state: "online", timeouts: 3 });
  });
});
