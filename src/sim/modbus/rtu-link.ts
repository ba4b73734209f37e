import { EventEmitter } from "node:events";
import type { SerialPort } from "serialport";
import { crc16, lineTiming, rtuFrame, type LineTiming } from "../../south/modbus/rtu-frame.js";
import type { RtuStats, SimRequest, TransactionChannel, TransactionQueue } from "./transactions.js";

export interface RtuLinkOptions {
  /** The serial device: a real port (/dev/ttyUSB0) or a pty end (socat). */
  readonly path: string;
  /**
   * Bits per second. With it, an answer leaves only when the exchange would be over on a real
   * line (request on the wire + t3.5 + answer on the wire, + the response delay): a pty
   * ignores the baud rate, so this is what gives it one. Without it, answers go at once and
   * the port is opened at 19200, the spec's default rate.
   */
  readonly baud?: number;
  /** Default 8; Modbus RTU needs 8 data bits. */
  readonly dataBits?: 7 | 8;
  /** Default "none". */
  readonly parity?: "none" | "even" | "odd";
  /** Default 1. */
  readonly stopBits?: 1 | 2;
}

/** The counters behind SimulatorStats.rtu, which the link updates in place. */
export type RtuCounters = { -readonly [K in keyof RtuStats]: RtuStats[K] };

/** Bytes the slave threw away at a silence: a bad CRC, or too few bytes for a frame. */
export interface RtuDrop {
  readonly reason: "crc" | "partial";
  /** What was dropped, up to the largest RTU frame (256 bytes). */
  readonly bytes: Buffer;
}

export interface RtuLinkEvents {
  /** Emitted once the line has been silent for t3.5 after the dropped bytes: ready again. */
  dropped: [RtuDrop];
}

/** Modbus over serial line, 2.5.1: unit id + PDU (at most 253) + CRC. */
const MAX_FRAME = 256;
/** A silence timer firing this much after its time means the event loop was busy. */
const LATE_TIMER_MS = 5;
/** The spec's default rate (2.5.1: "19200 bps must be implemented and is the default"). */
const DEFAULT_BAUD = 19200;

/**
 * The length of the request frame at the head of `buf`, from its function code: a number, or
 * undefined while more bytes are needed to tell, or "silence" for a function code whose
 * request length the slave does not know (the frame ends at the next silence).
 */
function requestLength(buf: Buffer): number | "silence" | undefined {
  if (buf.length < 2) return undefined;
  const fc = buf[1]!;
  if (fc >= 0x01 && fc <= 0x06) return 8;
  if (fc === 0x0f || fc === 0x10) return buf.length < 7 ? undefined : 9 + buf[6]!;
  return "silence";
}

const crcOk = (frame: Buffer): boolean =>
  frame.length >= 4 && crc16(frame.subarray(0, -2)) === frame.readUInt16LE(frame.length - 2);

/**
 * The simulator's Modbus RTU slave side of one serial line. Framing follows the spec's state
 * machine in spirit: a frame is cut by its function code's request length (and checked at
 * once), or by a t3.5 silence for function codes without a fixed length. A bad CRC drops
 * everything up to the next silence; bytes that never make a frame are dropped at a silence.
 * Either way the slave is in step again after t3.5 of quiet, so garbage never wedges it.
 *
 * Only hosted units answer (other slaves may share an RS-485 line); unit 0 is a broadcast:
 * writes run on every unit, nothing is answered. Requests are served one at a time, in order.
 *
 * Created by ModbusSimulator.startRtu(); counters are in the simulator's stats().rtu.
 */
export class RtuLink extends EventEmitter<RtuLinkEvents> {
  readonly path: string;
  /** The line timing that paces answers; undefined: answers go at once. */
  readonly timing: LineTiming | undefined;
  private readonly options: Required<Omit<RtuLinkOptions, "baud">> & { baud: number };
  private readonly silenceMs: number;
  private port: SerialPort | undefined;
  private queue: TransactionQueue | undefined;
  /** Bytes of the frame being received. */
  private buffer: Buffer = Buffer.alloc(0);
  /** performance.now() when the first byte in `buffer` arrived. */
  private frameStart = 0;
  /** After a bad CRC: what was dropped so far; everything is dropped until the next silence. */
  private discarding: Buffer | undefined;
  private silenceTimer: NodeJS.Timeout | undefined;
  /** performance.now() when the last bytes arrived. */
  private lastDataAt = 0;
  /** The silence timer was re-armed once because it ran late. */
  private relistened = false;
  private closing: Promise<void> | undefined;

  constructor(
    opts: RtuLinkOptions,
    private readonly openQueue: (channel: TransactionChannel) => TransactionQueue,
    private readonly counters: RtuCounters,
  ) {
    super();
    const line = {
      baud: opts.baud ?? DEFAULT_BAUD,
      dataBits: opts.dataBits ?? 8,
      parity: opts.parity ?? "none",
      stopBits: opts.stopBits ?? 1,
    } as const;
    if (!(Number.isFinite(line.baud) && line.baud > 0)) {
      throw new RangeError(`baud rate ${line.baud} must be a positive number`);
    }
    this.path = opts.path;
    this.options = { path: opts.path, ...line };
    const timing = lineTiming(line);
    this.timing = opts.baud === undefined ? undefined : timing;
    // Without a baud rate, frames still end at the silence of the rate the port is opened at.
    this.silenceMs = timing.silenceMs;
  }

  get isOpen(): boolean {
    return this.port?.isOpen ?? false;
  }

  /** Opens the port; rejects with the system's reason (ENOENT, EACCES, ...). */
  async open(): Promise<void> {
    if (this.port) throw new Error(`the RTU link on ${this.path} is already open`);
    // Loaded here so that TCP-only users of the simulator never load the native binding.
    const { SerialPort } = await import("serialport");
    const o = this.options;
    const port = new SerialPort({
      path: o.path,
      baudRate: o.baud,
      dataBits: o.dataBits,
      parity: o.parity,
      stopBits: o.stopBits,
      autoOpen: false,
    });
    this.port = port;
    await new Promise<void>((resolve, reject) =>
      port.open((err) => (err ? reject(err) : resolve())),
    ).catch((err: unknown) => {
      this.port = undefined;
      throw err;
    });
    // Write errors on a line that went away: the master times out, as it would on RS-485.
    port.on("error", () => undefined);
    const timing = this.timing;
    // An RTU frame is the MBAP-form ADU less its 6-byte header, plus 2 CRC bytes.
    const frameBytes = (adu: Buffer): number => adu.length - 4;
    this.queue = this.openQueue({
      broadcast: true,
      unknownUnit: () => "ignore",
      requestMs: timing ? (adu) => timing.wireMs(frameBytes(adu)) + timing.silenceMs : () => 0,
      responseMs: timing ? (adu) => timing.wireMs(frameBytes(adu)) : () => 0,
      send: (response) => {
        port.write(rtuFrame(response.readUInt8(6), response.subarray(7)));
      },
    });
    port.on("data", (chunk: Buffer) => this.onData(chunk));
  }

  /** Drops pending answers and closes the port. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.silenceTimer = undefined;
    this.queue?.close();
    const port = this.port;
    if (port?.isOpen) {
      await new Promise<void>((resolve) => port.close(() => resolve()));
    }
  }

  private onData(chunk: Buffer): void {
    if (this.queue?.closed !== false) return;
    const now = performance.now();
    this.lastDataAt = now;
    this.relistened = false;
    this.armSilence();
    if (this.discarding) {
      this.discarding = keep(this.discarding, chunk);
      return;
    }
    if (this.buffer.length === 0) this.frameStart = now;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const length = requestLength(this.buffer);
      if (length === undefined || length === "silence" || this.buffer.length < length) break;
      const frame = this.buffer.subarray(0, length);
      if (!crcOk(frame)) {
        // The rest cannot be trusted to start a frame: drop it all up to the next silence.
        this.discarding = keep(Buffer.alloc(0), this.buffer);
        this.buffer = Buffer.alloc(0);
        return;
      }
      this.buffer = this.buffer.subarray(length);
      this.accept(frame, this.frameStart);
      // Bytes after a frame in the same chunk arrived no earlier than this chunk.
      this.frameStart = now;
    }
    if (this.buffer.length > MAX_FRAME) {
      // A function code without a known length and no silence in sight: noise.
      this.discarding = keep(Buffer.alloc(0), this.buffer);
      this.buffer = Buffer.alloc(0);
    }
  }

  private armSilence(): void {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    // Rounded up: a silence timed short would cut frames that are merely slow.
    this.silenceTimer = setTimeout(() => this.onSilence(), Math.ceil(this.silenceMs));
  }

  private onSilence(): void {
    this.silenceTimer = undefined;
    if (!this.relistened && performance.now() - this.lastDataAt > this.silenceMs + LATE_TIMER_MS) {
      // The timer ran late, so the event loop was busy, and the rest of a frame may be waiting
      // unread in the kernel (libuv runs timers before it polls for I/O): the quiet may have
      // been ours, not the line's. Listen once more before deciding.
      this.relistened = true;
      this.armSilence();
      return;
    }
    const buf = this.buffer;
    this.buffer = Buffer.alloc(0);
    if (this.discarding) {
      const bytes = this.discarding;
      this.discarding = undefined;
      this.drop("crc", bytes);
    } else if (buf.length > 0) {
      if (requestLength(buf) !== "silence" || buf.length < 4) this.drop("partial", buf);
      else if (crcOk(buf)) this.accept(buf, this.frameStart);
      else this.drop("crc", buf);
    }
  }

  private drop(reason: RtuDrop["reason"], bytes: Buffer): void {
    if (reason === "crc") this.counters.crcErrors++;
    else this.counters.partialFrames++;
    this.emit("dropped", { reason, bytes: Buffer.from(bytes) });
  }

  private accept(frame: Buffer, receivedAt: number): void {
    this.counters.frames++;
    // Rewrapped in MBAP form (transaction 0, protocol 0, length) for the shared serving path.
    const adu = Buffer.allocUnsafe(frame.length + 4);
    adu.writeUInt16BE(0, 0);
    adu.writeUInt16BE(0, 2);
    adu.writeUInt16BE(frame.length - 2, 4);
    frame.copy(adu, 6, 0, frame.length - 2);
    const request: SimRequest = { adu, receivedAt };
    this.queue?.push(request);
  }
}

/** `kept` + `more`, capped at the largest frame: the drop event shows what went, not all of it. */
function keep(kept: Buffer, more: Buffer): Buffer {
  if (kept.length >= MAX_FRAME) return kept;
  return Buffer.concat([kept, more.subarray(0, MAX_FRAME - kept.length)]);
}
