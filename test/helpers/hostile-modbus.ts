import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { ModbusDriverOptions, ModbusTransport } from "../../src/south/modbus/modbus-driver.js";

/**
 * A scripted hostile Modbus slave on node:net, for the fuzz tests: MBAP frames (Modbus TCP) or
 * bare RTU frames over TCP (what a serial device server carries). For each request it parses, a
 * callback returns what to do on that connection: write bytes (any bytes), wait, or close.
 *
 * The actions of one connection run strictly in order, each request's after the previous
 * request's, even when they wait: a late frame is queued behind what came before it, never
 * spliced into the middle of the next frame (the slave would then forge a well-formed frame out
 * of two, which no client could tell from a real one).
 *
 * The frame builders here compute the RTU CRC with their own table, independent of
 * src/south/modbus/rtu-frame.ts, so that a bug there cannot cancel out in the tests.
 */

export type Framing = "mbap" | "rtu";

/** One request as the slave parsed it. */
export interface SlaveRequest {
  /** The accepted connection it came on, counted from 1. */
  readonly connection: number;
  /** The MBAP transaction id; -1 in RTU framing. */
  readonly tid: number;
  readonly unit: number;
  readonly fc: number;
  readonly address: number;
  /** Registers or bits asked (FC1-4). */
  readonly quantity: number;
}

/** What the slave does on a connection: write bytes, wait (0 = one event-loop turn), close. */
export type SlaveAction =
  { readonly write: Uint8Array } | { readonly wait: number } | { readonly close: "end" | "reset" };

export class ScriptedSlave {
  /** Connections accepted so far. */
  connections = 0;
  /** Requests the slave could not parse (a client bug: it only sends well-formed reads). */
  readonly malformed: string[] = [];
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private stopped = false;

  constructor(
    private readonly framing: Framing,
    private readonly answer: (req: SlaveRequest) => readonly SlaveAction[],
  ) {}

  /** Listens on a free port of 127.0.0.1 and returns it. */
  async start(): Promise<number> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise((resolve) => server.close(resolve));
  }

  private accept(socket: Socket): void {
    const connection = ++this.connections;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("error", () => undefined);
    socket.on("close", () => this.sockets.delete(socket));
    let out: Promise<void> = Promise.resolve();
    let pending: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (;;) {
        const taken = this.framing === "mbap" ? takeMbap(pending) : takeRtu(pending);
        if (taken === undefined) break;
        pending = pending.subarray(taken.size);
        if (typeof taken.request === "string") {
          this.malformed.push(taken.request);
          continue;
        }
        const actions = this.answer({ connection, ...taken.request });
        out = out.then(() => this.perform(socket, actions));
      }
    });
  }

  private async perform(socket: Socket, actions: readonly SlaveAction[]): Promise<void> {
    for (const a of actions) {
      if (this.stopped || socket.destroyed || socket.writableEnded) return;
      if ("write" in a) {
        socket.write(a.write);
      } else if ("wait" in a) {
        await new Promise((resolve) =>
          a.wait > 0 ? setTimeout(resolve, a.wait) : setImmediate(resolve),
        );
      } else {
        if (a.close === "reset") socket.resetAndDestroy();
        else socket.end();
        return;
      }
    }
  }
}

type Taken = { size: number; request: Omit<SlaveRequest, "connection"> | string } | undefined;

/** One MBAP read request from the front of `buf`, or undefined while it is incomplete. */
function takeMbap(buf: Buffer): Taken {
  if (buf.length < 7) return undefined;
  const size = 6 + buf.readUInt16BE(4);
  if (buf.length < size) return undefined;
  const frame = buf.subarray(0, size);
  if (frame.readUInt16BE(2) !== 0 || size !== 12) {
    return { size, request: `MBAP request ${frame.toString("hex")}` };
  }
  return {
    size,
    request: {
      tid: frame.readUInt16BE(0),
      unit: frame.readUInt8(6),
      fc: frame.readUInt8(7),
      address: frame.readUInt16BE(8),
      quantity: frame.readUInt16BE(10),
    },
  };
}

/** One RTU read request (8 bytes, FC1-4) from the front of `buf`. */
function takeRtu(buf: Buffer): Taken {
  if (buf.length < 8) return undefined;
  const frame = buf.subarray(0, 8);
  if (crc16Reference(frame.subarray(0, 6)) !== frame.readUInt16LE(6)) {
    return { size: 8, request: `RTU request with a bad CRC ${frame.toString("hex")}` };
  }
  return {
    size: 8,
    request: {
      tid: -1,
      unit: frame.readUInt8(0),
      fc: frame.readUInt8(1),
      address: frame.readUInt16BE(2),
      quantity: frame.readUInt16BE(4),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Frames

/** Data bytes of the answer to a read of `quantity` registers (FC3/4) or bits (FC1/2). */
export function answerDataBytes(fc: number, quantity: number): number {
  return fc >= 3 ? quantity * 2 : Math.ceil(quantity / 8);
}

/** The data bytes of a read answer: words big-endian (FC3/4), or bits from the LSB (FC1/2). */
export function answerData(fc: number, values: readonly number[]): number[] {
  if (fc >= 3) return values.flatMap((w) => [(w >> 8) & 0xff, w & 0xff]);
  const bytes = new Array<number>(Math.ceil(values.length / 8)).fill(0);
  values.forEach((bit, i) => {
    if (bit) bytes[i >> 3] = (bytes[i >> 3] ?? 0) | (1 << (i & 7));
  });
  return bytes;
}

/** The PDU of a correct read answer: function code, byte count, data. */
export function readAnswerPdu(fc: number, values: readonly number[]): number[] {
  const data = answerData(fc, values);
  return [fc, data.length & 0xff, ...data];
}

/** An MBAP frame; the protocol id and the length field can be falsified. */
export function mbapFrame(
  tid: number,
  unit: number,
  pdu: readonly number[],
  o: { protocol?: number; length?: number } = {},
): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt16BE(tid & 0xffff, 0);
  head.writeUInt16BE(o.protocol ?? 0, 2);
  head.writeUInt16BE((o.length ?? pdu.length + 1) & 0xffff, 4);
  head.writeUInt8(unit & 0xff, 6);
  return Buffer.concat([head, Buffer.from(pdu)]);
}

/** An RTU frame: unit id, PDU, CRC (low byte first). */
export function rtuFrameReference(unit: number, pdu: readonly number[]): Buffer {
  const frame = Buffer.alloc(pdu.length + 3);
  frame[0] = unit & 0xff;
  Buffer.from(pdu).copy(frame, 1);
  frame.writeUInt16LE(crc16Reference(frame.subarray(0, -2)), frame.length - 2);
  return frame;
}

const CRC_TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-16/MODBUS, table-driven (a second implementation to check rtu-frame.ts against). */
export function crc16Reference(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) crc = (crc >>> 8) ^ (CRC_TABLE[(crc ^ b) & 0xff] ?? 0);
  return crc;
}

/**
 * Driver options for reading a hostile slave: every read goes on the wire (timeouts never park
 * the unit), and a closed connection is reopened at once (a run closes thousands on purpose).
 */
export function eagerDriverOptions(
  transport: ModbusTransport,
  timeoutMs: number,
): ModbusDriverOptions {
  return {
    transport,
    timeoutMs,
    maxRegistersPerRequest: 125,
    maxBitsPerRequest: 2000,
    maxGap: 0,
    reconnectMinMs: 0,
    reconnectMaxMs: 0,
    unitBackoffMs: 0,
    demoteAfter: 1_000_000,
  };
}
