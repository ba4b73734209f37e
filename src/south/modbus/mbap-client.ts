import { createConnection, type Socket } from "node:net";
import type { ModbusTable } from "../../core/types.js";
import {
  READ_FUNCTION,
  badFrameError,
  disconnectedError,
  exceptionError,
  readDataBytes,
  timeoutError,
  type LinkEvents,
  type ModbusLink,
} from "./modbus-link.js";

/**
 * Section numbers below are those of the Modbus Messaging on TCP/IP Implementation Guide
 * V1.0b ("Guide") and of the Modbus Application Protocol Specification V1.1b3 ("Protocol").
 */

/** Transaction id, protocol id, length and unit id (Guide 3.1.3). */
const HEADER_BYTES = 7;
/**
 * The length field counts the unit id and the PDU (Guide 3.1.3): at least a function code, and
 * a PDU holds at most 253 bytes (Protocol 4.1). Anything else is not a Modbus frame boundary.
 */
const MIN_LENGTH = 2;
const MAX_LENGTH = 254;
/**
 * Requests in a row left without an answer before the connection is reopened. A PLC that
 * restarted without closing its side leaves a half-open connection whose only symptom is
 * silence; a single timeout is more often one slow or dead unit behind a gateway.
 */
const TIMEOUTS_BEFORE_RECONNECT = 3;

const NO_DATA: number[] = [];

export interface MbapClientOptions {
  readonly host: string;
  readonly port: number;
  /** How long an answer may take; also the limit for the TCP connection to open. */
  readonly timeoutMs: number;
}

/**
 * A Modbus TCP client on node:net that owns the MBAP framing (modbus-serial's TCP port checks
 * neither the protocol id nor the byte count, and keeps stray bytes in its buffer for good).
 *
 * One transaction at a time, with an incrementing transaction id. Every frame is checked in
 * full. A frame that cannot be delimited, or whose PDU disagrees with its own MBAP length (the
 * following bytes would then be read as a header), is a framing error: the stream cannot be
 * trusted, so the connection is closed and the driver reopens it with backoff. A well-formed
 * frame that is not the answer (another transaction id, unit or function code, a byte count or
 * echo that does not fit the request) is dropped with a reason and the stream goes on.
 */
export class MbapClient implements ModbusLink {
  /** Bytes of a frame not complete yet, carried over to the next chunk. */
  private rx: Buffer | undefined;
  private lastTid = 0;
  // The transaction on the wire, in fields rather than an object per request.
  private tid = -1;
  private unitId = 0;
  private fc = 0;
  private address = 0;
  /** Registers or bits asked (FC1-4), quantity written (FC15/16), or the value written (FC5/6). */
  private quantity = 0;
  /** Data bytes the answer to a read must carry. */
  private dataBytes = 0;
  private resolve: ((data: number[]) => void) | undefined;
  private reject: ((err: Error) => void) | undefined;
  /** One timer per connection, re-armed for each request with refresh(). */
  private timer: NodeJS.Timeout | undefined;
  private unansweredInARow = 0;
  private closedBy: string | undefined;
  private readonly gone: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly opts: MbapClientOptions,
    private readonly events: LinkEvents,
  ) {
    this.gone = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", this.onData);
    socket.on("error", (err) => this.shutdown(err.message));
    socket.on("close", () => this.shutdown("connection closed by peer"));
  }

  /** Opens the TCP connection; rejects when it cannot be opened within `timeoutMs`. */
  static connect(opts: MbapClientOptions, events: LinkEvents): Promise<MbapClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: opts.host, port: opts.port });
      socket.setNoDelay(true);
      socket.setTimeout(opts.timeoutMs);
      const fail = (err: Error): void => {
        socket.destroy();
        reject(err);
      };
      const slow = (): void => fail(new Error(`no connection within ${opts.timeoutMs} ms`));
      socket.once("error", fail);
      socket.once("timeout", slow);
      socket.once("connect", () => {
        socket.off("error", fail);
        socket.off("timeout", slow);
        socket.setTimeout(0);
        resolve(new MbapClient(socket, opts, events));
      });
    });
  }

  read(unitId: number, table: ModbusTable, address: number, count: number): Promise<number[]> {
    const frame = this.header(12, unitId, READ_FUNCTION[table]);
    frame.writeUInt16BE(address, 8);
    frame.writeUInt16BE(count, 10);
    return this.transact(frame, address, count, readDataBytes(table, count));
  }

  async write(
    unitId: number,
    table: "coil" | "holding",
    address: number,
    data: readonly number[],
  ): Promise<void> {
    let frame: Buffer;
    let echo: number;
    if (data.length === 1) {
      // FC5 (0xFF00 = on) or FC6; the answer echoes address and value (Protocol 6.5, 6.6).
      echo = table === "coil" ? (data[0] === 1 ? 0xff00 : 0) : (data[0] ?? 0) & 0xffff;
      frame = this.header(12, unitId, table === "coil" ? 5 : 6);
      frame.writeUInt16BE(echo, 10);
    } else {
      // FC15 or FC16; the answer echoes address and quantity (Protocol 6.11, 6.12).
      echo = data.length;
      const bytes = table === "coil" ? Math.ceil(data.length / 8) : data.length * 2;
      frame = this.header(13 + bytes, unitId, table === "coil" ? 15 : 16);
      frame.writeUInt16BE(data.length, 10);
      frame.writeUInt8(bytes, 12);
      if (table === "coil") {
        // Coil n in bit n % 8 of byte n / 8, from the least significant bit (Protocol 6.11).
        for (let byte = 0; byte < bytes; byte++) {
          let bits = 0;
          for (let bit = 0; bit < 8; bit++) if (data[byte * 8 + bit] === 1) bits |= 1 << bit;
          frame.writeUInt8(bits, 13 + byte);
        }
      } else {
        data.forEach((word, i) => frame.writeUInt16BE(word & 0xffff, 13 + i * 2));
      }
    }
    frame.writeUInt16BE(address, 8);
    await this.transact(frame, address, echo, 0);
  }

  close(reason: string): Promise<void> {
    this.shutdown(reason);
    return this.gone;
  }

  /** A request frame with its MBAP header and function code filled in (Guide 4.4.1.2). */
  private header(size: number, unitId: number, fc: number): Buffer {
    const frame = Buffer.allocUnsafe(size);
    // A counter, so that a late answer to an earlier request is told apart (Guide 4.4.1.2).
    this.lastTid = (this.lastTid + 1) & 0xffff;
    frame.writeUInt16BE(this.lastTid, 0);
    frame.writeUInt16BE(0, 2);
    frame.writeUInt16BE(size - 6, 4);
    frame.writeUInt8(unitId, 6);
    frame.writeUInt8(fc, 7);
    return frame;
  }

  private transact(
    frame: Buffer,
    address: number,
    quantity: number,
    dataBytes: number,
  ): Promise<number[]> {
    if (this.closedBy !== undefined) return Promise.reject(disconnectedError(this.closedBy));
    if (this.resolve !== undefined) {
      return Promise.reject(new Error("MbapClient: a transaction is already on the wire (a bug)"));
    }
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.tid = this.lastTid;
      this.unitId = frame.readUInt8(6);
      this.fc = frame.readUInt8(7);
      this.address = address;
      this.quantity = quantity;
      this.dataBytes = dataBytes;
      this.socket.write(frame);
      if (this.timer === undefined) {
        this.timer = setTimeout(this.onTimeout, this.opts.timeoutMs);
        this.timer.unref();
      } else {
        this.timer.refresh();
      }
    });
  }

  private settle(err: Error | undefined, data: number[]): void {
    const { resolve, reject } = this;
    this.resolve = undefined;
    this.reject = undefined;
    this.tid = -1;
    if (err !== undefined) reject?.(err);
    else resolve?.(data);
  }

  private readonly onData = (chunk: Buffer): void => {
    let buf = chunk;
    if (this.rx !== undefined) {
      buf = Buffer.concat([this.rx, chunk]);
      this.rx = undefined;
    }
    let at = 0;
    while (buf.length - at >= HEADER_BYTES) {
      const protocol = buf.readUInt16BE(at + 2);
      const length = buf.readUInt16BE(at + 4);
      // Guide 4.4.1.3: the protocol id must be 0. Anything else is not Modbus, or not a header
      // at all (noise, or the tail of a frame whose length was wrong).
      if (protocol !== 0) {
        this.framingError("protocol-id", `protocol id ${protocol} in the MBAP header (not Modbus)`);
        return;
      }
      if (length < MIN_LENGTH || length > MAX_LENGTH) {
        this.framingError("length", `MBAP length ${length} (${MIN_LENGTH}..${MAX_LENGTH} allowed)`);
        return;
      }
      const end = at + 6 + length;
      if (end > buf.length) break;
      this.onFrame(buf, at, length);
      if (this.closedBy !== undefined) return;
      at = end;
    }
    if (at < buf.length) this.rx = buf.subarray(at);
  };

  /** A complete frame at `at`, `length` bytes after its length field. */
  private onFrame(buf: Buffer, at: number, length: number): void {
    const tid = buf.readUInt16BE(at);
    const unit = buf.readUInt8(at + 6);
    if (this.resolve === undefined || tid !== this.tid) {
      // Guide 4.4.1.3: an answer whose transaction id refers to no pending transaction is
      // discarded: a late answer to a request that timed out, or a duplicate.
      const waiting =
        this.resolve === undefined ? "no request outstanding" : `waiting for ${this.tid}`;
      this.events.badFrame("stray", `transaction id ${tid} (${waiting}): dropped`, unit);
      return;
    }
    // The server copies the request's unit id into the answer (Guide 3.1.3).
    if (unit !== this.unitId) {
      this.dropAnswer("unit", `answer from unit ${unit}`);
      return;
    }
    const fc = buf.readUInt8(at + 7);
    if (fc === (this.fc | 0x80)) {
      if (length !== 3) {
        this.framingError("length", `exception answer with MBAP length ${length} (3 expected)`);
        return;
      }
      this.unansweredInARow = 0;
      this.settle(exceptionError(buf.readUInt8(at + 8), unit), NO_DATA);
      return;
    }
    // Guide 4.4.1.3: another function code than the request's is a negative confirmation.
    if (fc !== this.fc) {
      this.dropAnswer("function", `function code ${fc} in the answer to function ${this.fc}`);
      return;
    }
    let data = NO_DATA;
    if (fc <= 4) {
      // Guide 3.1.2: the MBAP length and the PDU's byte count must tell the same boundary. When
      // they differ, one of them is wrong and the next header's position is unknown.
      if (length < 3) {
        this.framingError("byte-count", `no byte count (MBAP length ${length})`);
        return;
      }
      const count = buf.readUInt8(at + 8);
      if (count !== length - 3) {
        this.framingError(
          "byte-count",
          `byte count ${count} with ${length - 3} data bytes (MBAP length ${length})`,
        );
        return;
      }
      if (count !== this.dataBytes) {
        const what = fc <= 2 ? "bits" : "registers";
        this.dropAnswer(
          "byte-count",
          `byte count ${count} for ${this.quantity} ${what} (${this.dataBytes} expected)`,
        );
        return;
      }
      data = new Array<number>(this.quantity);
      const first = at + 9;
      if (fc >= 3) {
        for (let i = 0; i < this.quantity; i++) data[i] = buf.readUInt16BE(first + i * 2);
      } else {
        for (let i = 0; i < this.quantity; i++)
          data[i] = (buf.readUInt8(first + (i >> 3)) >> (i & 7)) & 1;
      }
    } else {
      // FC5/6/15/16 answers are the function code, the address and one 16-bit word.
      if (length !== 6) {
        this.framingError("length", `write answer with MBAP length ${length} (6 expected)`);
        return;
      }
      const address = buf.readUInt16BE(at + 8);
      const word = buf.readUInt16BE(at + 10);
      if (address !== this.address || word !== this.quantity) {
        this.dropAnswer(
          "echo",
          `write echoed address ${address}, ${word} (sent ${this.address}, ${this.quantity})`,
        );
        return;
      }
    }
    this.unansweredInARow = 0;
    this.settle(undefined, data);
  }

  /** A well-formed frame that is not a usable answer: the request fails, the stream goes on. */
  private dropAnswer(kind: string, detail: string): void {
    this.events.badFrame(kind, detail, this.unitId);
    this.unansweredInARow = 0;
    this.settle(badFrameError(this.unitId, detail), NO_DATA);
  }

  /** The stream cannot be trusted any more: fail the request and close the connection. */
  private framingError(kind: string, detail: string): void {
    this.events.badFrame(kind, detail, this.resolve === undefined ? undefined : this.unitId);
    if (this.resolve !== undefined) {
      this.settle(badFrameError(this.unitId, `${detail}; reconnecting`), NO_DATA);
    }
    this.shutdown(`bad frame: ${detail}`);
  }

  private readonly onTimeout = (): void => {
    // The timer of a request that was answered in time (refresh() re-arms it per request).
    if (this.resolve === undefined) return;
    if (this.rx !== undefined) {
      // Part of a frame came and the rest did not: whatever comes next would be read from the
      // middle of it, so the stream has lost its frame boundaries.
      this.framingError(
        "truncated",
        `${this.rx.length} bytes of an incomplete frame after ${this.opts.timeoutMs} ms`,
      );
      return;
    }
    this.unansweredInARow++;
    if (this.unansweredInARow < TIMEOUTS_BEFORE_RECONNECT) {
      this.settle(timeoutError(this.unitId), NO_DATA);
      return;
    }
    const reason = `no answer to ${this.unansweredInARow} requests in a row`;
    this.settle(timeoutError(this.unitId, ` (${reason}; reconnecting)`), NO_DATA);
    this.shutdown(reason);
  };

  /** Closes the socket once; a request still waiting fails with MODBUS_DISCONNECTED. */
  private shutdown(reason: string): void {
    if (this.closedBy !== undefined) return;
    this.closedBy = reason;
    clearTimeout(this.timer);
    this.rx = undefined;
    if (this.resolve !== undefined) this.settle(disconnectedError(reason), NO_DATA);
    this.socket.destroy();
    this.events.closed(reason);
  }
}
