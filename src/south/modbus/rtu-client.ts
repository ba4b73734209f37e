import Modbus from "modbus-serial";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { ModbusTable } from "../../core/types.js";
import {
  badFrameError,
  disconnectedError,
  exceptionError,
  readDataBytes,
  timeoutError,
  type LinkEvents,
  type ModbusLink,
} from "./modbus-link.js";
import { lineTiming, type LineTiming, type SerialLine } from "./rtu-frame.js";

type Client = InstanceType<typeof Modbus.default>;

/** Where the RTU frames go: a serial line, or a serial device server (a DTU) over TCP. */
export type RtuTransport =
  | { readonly kind: "rtu"; readonly path: string; readonly line: SerialLine }
  | { readonly kind: "rtu-over-tcp"; readonly host: string; readonly port: number };

export interface RtuClientOptions {
  /** How long an answer may take, beyond the frames' own time on a serial line. */
  readonly timeoutMs: number;
  /** Extra silence left between transactions on a serial line (slow slaves, RS-485 converters). */
  readonly turnaroundMs: number;
}

/**
 * Modbus RTU on modbus-serial, on a serial line or over TCP to a serial device server, with
 * checks around what modbus-serial lets through: the data it decodes must be exactly what was
 * asked (its FC1-4 parsers trust the byte count), and a write's echo must match the request.
 *
 * On a serial line it also keeps the line's timing: the t3.5 silence (plus `turnaroundMs`)
 * between frames, timeouts that add the frames' own wire time at the baud, and after a timeout
 * or a bad frame, a silence long enough for a late answer to pass (over TCP, one timeout). The
 * receive buffer is emptied before each request, so that noise or a late answer is never read as
 * the next answer and the port stays open.
 */
export class RtuClient implements ModbusLink {
  /** The serial line's timing; undefined over TCP, where the device server keeps it. */
  private readonly timing: LineTiming | undefined;
  /** performance.now() before which the line must stay silent. */
  private lineFreeAt = 0;
  private closedBy: string | undefined;
  /**
   * Rejects when the connection is closed, so that the request on it settles then:
   * modbus-serial's destroy() and close() cancel the timeouts of pending transactions without
   * settling them, which would leave a request, and the driver's IoQueue behind it (every later
   * poll and command of the source), waiting for ever.
   */
  private readonly gone: { promise: Promise<never>; reject: (e: Error) => void };

  private constructor(
    private readonly client: Client,
    transport: RtuTransport,
    private readonly opts: RtuClientOptions,
    private readonly events: LinkEvents,
  ) {
    this.timing = transport.kind === "rtu" ? lineTiming(transport.line) : undefined;
    let reject: (e: Error) => void = () => undefined;
    const promise = new Promise<never>((_, r) => (reject = r));
    promise.catch(() => undefined); // settled only for the requests that race it
    this.gone = { promise, reject };
    client.on("close", () => this.shutdown("connection closed by peer"));
    client.on("error", (err: unknown) =>
      this.shutdown(err instanceof Error ? err.message : String(err)),
    );
  }

  static async open(
    transport: RtuTransport,
    opts: RtuClientOptions,
    events: LinkEvents,
  ): Promise<RtuClient> {
    const client = new Modbus.default();
    client.setTimeout(opts.timeoutMs);
    if (transport.kind === "rtu-over-tcp") {
      // modbus-serial's "telnet" port: bare RTU frames over TCP (its TcpRTUBuffered port
      // would wrap them in MBAP headers).
      await client.connectTelnet(transport.host, { port: transport.port });
    } else {
      await client.connectRTUBuffered(transport.path, {
        baudRate: transport.line.baud,
        dataBits: transport.line.dataBits,
        parity: transport.line.parity,
        stopBits: transport.line.stopBits,
      });
    }
    return new RtuClient(client, transport, opts, events);
  }

  async read(
    unitId: number,
    table: ModbusTable,
    address: number,
    count: number,
  ): Promise<number[]> {
    const bytes = readDataBytes(table, count);
    const answer = 5 + bytes; // unit, function, byte count, data, CRC
    const client = await this.begin(unitId, 8, answer);
    try {
      let data: number[];
      if (table === "holding" || table === "input") {
        const res = await this.settled(
          table === "holding"
            ? client.readHoldingRegisters(address, count)
            : client.readInputRegisters(address, count),
        );
        // modbus-serial decodes byte count / 2 registers, whatever the count asked, rounding
        // up: a byte count one short of the data (2n - 1) still gave n registers, so the byte
        // count itself (the length of res.buffer) is checked too (found by the Modbus fuzzer,
        // test/fixtures/fuzz/modbus-rtu/rtu-byte-count-one-short.json).
        if (res.data.length !== count || res.buffer.length !== bytes) {
          throw this.byteCount(unitId, res.buffer.length, bytes);
        }
        data = res.data;
      } else {
        const res = await this.settled(
          table === "coil"
            ? client.readCoils(address, count)
            : client.readDiscreteInputs(address, count),
        );
        // modbus-serial hands back byte count x 8 booleans, padding included.
        if (res.data.length !== bytes * 8) {
          throw this.byteCount(unitId, res.data.length / 8, bytes);
        }
        data = res.data.slice(0, count).map((b) => (b ? 1 : 0));
      }
      this.end();
      return data;
    } catch (err) {
      throw this.failed(err, unitId, answer);
    }
  }

  async write(
    unitId: number,
    table: "coil" | "holding",
    address: number,
    data: readonly number[],
  ): Promise<void> {
    // FC5/FC6 are 8 bytes; FC15/FC16 carry their data after 9. The answer is 8 bytes.
    const request =
      data.length === 1 ? 8 : 9 + (table === "coil" ? Math.ceil(data.length / 8) : data.length * 2);
    const client = await this.begin(unitId, request, 8);
    try {
      let echo: { address: number; word: number; sent: number };
      if (table === "coil" && data.length === 1) {
        const res = await this.settled(client.writeCoil(address, data[0] === 1));
        echo = { address: res.address, word: res.state ? 1 : 0, sent: data[0] === 1 ? 1 : 0 };
      } else if (table === "coil") {
        const res = await this.settled(
          client.writeCoils(
            address,
            data.map((b) => b === 1),
          ),
        );
        echo = { address: res.address, word: res.length, sent: data.length };
      } else if (data.length === 1) {
        const word = (data[0] ?? 0) & 0xffff;
        const res = await this.settled(client.writeRegister(address, word));
        echo = { address: res.address, word: res.value, sent: word };
      } else {
        const res = await this.settled(client.writeRegisters(address, [...data]));
        echo = { address: res.address, word: res.length, sent: data.length };
      }
      if (echo.address !== address || echo.word !== echo.sent) {
        const detail = `write echoed address ${echo.address}, ${echo.word} (sent ${address}, ${echo.sent})`;
        this.events.badFrame("echo", detail, unitId);
        throw badFrameError(unitId, detail);
      }
      this.end();
    } catch (err) {
      throw this.failed(err, unitId, 8);
    }
  }

  async close(reason: string): Promise<void> {
    const open = this.client.isOpen;
    this.shutdown(reason);
    if (open) await new Promise<void>((resolve) => this.client.close(() => resolve()));
  }

  private shutdown(reason: string): void {
    if (this.closedBy !== undefined) return;
    this.closedBy = reason;
    this.gone.reject(disconnectedError(reason));
    this.events.closed(reason);
  }

  /** A request, settled if the connection goes from under it. */
  private settled<T>(request: Promise<T>): Promise<T> {
    return Promise.race([request, this.gone.promise]);
  }

  /**
   * Starts a transaction of `request` bytes expecting `answer` bytes: waits for the line's
   * silence, empties what noise or a late answer left in the receive buffer, and sets the
   * timeout to the configured one plus the frames' wire time.
   */
  private async begin(unitId: number, request: number, answer: number): Promise<Client> {
    if (this.timing || this.lineFreeAt > performance.now()) await silence(this.lineFreeAt);
    if (this.closedBy !== undefined) throw disconnectedError(this.closedBy);
    const client = this.client;
    client.setID(unitId);
    discardReceived(client);
    if (this.timing) {
      client.setTimeout(
        Math.ceil(
          this.opts.timeoutMs + this.timing.wireMs(request + answer) + this.timing.silenceMs,
        ),
      );
    }
    return client;
  }

  /** The transaction is over: the line must be silent for t3.5 (and the turnaround) now. */
  private end(extraMs = 0): void {
    if (!this.timing) {
      if (extraMs > 0) this.lineFreeAt = performance.now() + extraMs;
      return;
    }
    this.lineFreeAt = performance.now() + this.timing.silenceMs + this.opts.turnaroundMs + extraMs;
  }

  private failed(err: unknown, unitId: number, answer: number): ShadowgateError {
    const e = this.classify(err, unitId);
    // After a timeout or a bad frame an answer may still be on its way: let it pass first. On
    // a line, its wire time; over TCP a device server forwards a late answer whenever the slave
    // sends it, and an RTU answer names no request (no transaction id): a quiet period of one
    // timeout lets it arrive and be emptied, instead of being read as the next request's
    // answer (found by the Modbus fuzzer: a read of address 50 came back with address 10's
    // value).
    const late =
      e.code === ErrorCodes.MODBUS_TIMEOUT || e.code === ErrorCodes.MODBUS_BAD_FRAME
        ? this.timing
          ? this.timing.wireMs(answer)
          : this.opts.timeoutMs
        : 0;
    this.end(late);
    return e;
  }

  private byteCount(unitId: number, got: number, expected: number): ShadowgateError {
    const detail = `${got} data bytes in the answer (${expected} expected)`;
    this.events.badFrame("byte-count", detail, unitId);
    return badFrameError(unitId, detail);
  }

  /** modbus-serial's errors -> our catalogue. */
  private classify(err: unknown, unitId: number): ShadowgateError {
    if (err instanceof ShadowgateError) return err;
    const e = err as { modbusCode?: number; errno?: string; code?: string; message?: string };
    if (typeof e.modbusCode === "number") return exceptionError(e.modbusCode, unitId);
    const message = e.message ?? "";
    // modbus-serial's words for a frame it could not use: noise, a partial or a late answer.
    const kind = /CRC error/.test(message)
      ? "crc"
      : /Data length error/.test(message)
        ? "length"
        : /Unexpected data error/.test(message)
          ? "unexpected"
          : // Its FC3/FC4 parser reads past the frame when the byte count is larger than the data.
            e.code === "ERR_OUT_OF_RANGE" || e.code === "ERR_BUFFER_OUT_OF_BOUNDS"
            ? "byte-count"
            : undefined;
    if (kind !== undefined) {
      this.events.badFrame(kind, message, unitId);
      return badFrameError(unitId, message);
    }
    if (e.errno === "ETIMEDOUT") return timeoutError(unitId);
    return disconnectedError(message || (e.errno ?? e.code ?? String(err)));
  }
}

/**
 * Waits until performance.now() reaches `until`. A timer alone can end up to a millisecond
 * early (Node times it from the loop's cached clock), which at 115200 baud is most of t3.5; so
 * the timer stops a millisecond short and loop turns do the rest (B2 measured the gap).
 */
async function silence(until: number): Promise<void> {
  for (let left = until - performance.now(); left > 0; left = until - performance.now()) {
    await new Promise((resolve) =>
      left > 1.5 ? setTimeout(resolve, left - 1) : setImmediate(resolve),
    );
  }
}

/**
 * Empties modbus-serial's RTU receive buffer. It keeps bytes across requests and takes the
 * first frame with the expected unit and function code as the answer, so a late answer of a
 * timed-out request would be read as the answer to the next one (FC3 answers carry no address).
 * The buffer is private; if a later version renames it, this does nothing and the silence
 * kept after a timeout is the only guard.
 */
function discardReceived(client: Client): void {
  const port = (client as unknown as { _port?: { _buffer?: unknown } })._port;
  if (port && Buffer.isBuffer(port._buffer)) port._buffer = Buffer.alloc(0);
}
