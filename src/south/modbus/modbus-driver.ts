import Modbus from "modbus-serial";
import { Backoff } from "../../core/backoff.js";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { ConnectionState } from "../../core/types.js";
import type { PollRequest, RawPoint, RawSample, SourceHealth, SouthDriver } from "../driver.js";
import { IoQueue } from "./io-queue.js";
import { EXCEPTION_NAMES, RequestPlanner, type ReadSpan } from "./planner.js";
import { lineTiming, type LineTiming, type SerialLine } from "./rtu-frame.js";

/** Where the frames go: MBAP over TCP, RTU on a serial line, or RTU frames over TCP (a DTU). */
export type ModbusTransport =
  | { readonly kind: "tcp"; readonly host: string; readonly port: number }
  | { readonly kind: "rtu"; readonly path: string; readonly line: SerialLine }
  | { readonly kind: "rtu-over-tcp"; readonly host: string; readonly port: number };

export interface ModbusDriverOptions {
  readonly transport: ModbusTransport;
  /** How long an answer may take, beyond the frames' own time on a serial line. */
  readonly timeoutMs: number;
  /** Extra silence left between transactions on a serial line (slow slaves, RS-485 converters). */
  readonly turnaroundMs?: number;
  readonly maxRegistersPerRequest: number;
  readonly maxBitsPerRequest: number;
  readonly maxGap: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** How long a unit that timed out is left alone before one probe. */
  readonly unitBackoffMs: number;
  /** Polls in a row that time out before a unit is left alone (default 1). */
  readonly demoteAfter?: number;
}

type Client = InstanceType<typeof Modbus.default>;

/** modbus-serial's errors -> our catalogue. */
function classify(err: unknown, span: { unitId: number }): ShadowgateError {
  if (err instanceof ShadowgateError) return err;
  const e = err as { modbusCode?: number; errno?: string; code?: string; message?: string };
  if (typeof e.modbusCode === "number") {
    const name = EXCEPTION_NAMES[e.modbusCode] ?? "unknown exception";
    return new ShadowgateError(
      ErrorCodes.MODBUS_EXCEPTION,
      `exception ${String(e.modbusCode).padStart(2, "0")} (${name})`,
      { exceptionCode: e.modbusCode, unitId: span.unitId },
    );
  }
  // modbus-serial's words for a frame it could not use: noise, a partial or a late answer.
  if (/CRC error|Data length error|Unexpected data error/.test(e.message ?? "")) {
    return new ShadowgateError(ErrorCodes.MODBUS_BAD_FRAME, `unit ${span.unitId}: ${e.message}`, {
      unitId: span.unitId,
    });
  }
  if (e.errno === "ETIMEDOUT") {
    return new ShadowgateError(
      ErrorCodes.MODBUS_TIMEOUT,
      `unit ${span.unitId} did not answer in time`,
      {
        unitId: span.unitId,
      },
    );
  }
  return new ShadowgateError(
    ErrorCodes.MODBUS_DISCONNECTED,
    `connection lost: ${e.message ?? e.errno ?? e.code ?? String(err)}`,
    { unitId: span.unitId },
  );
}

/**
 * Modbus on modbus-serial, over TCP, an RS-485 line, or a serial device server. One connection
 * (or open port) per source, with possibly several unit ids behind it. Transactions run one at
 * a time through an IoQueue. A unit whose polls time out `demoteAfter` times in a row is parked
 * for `unitBackoffMs`, so that a dead slave costs its neighbours at most one timeout per backoff
 * period instead of one per poll.
 *
 * On a serial line the driver also keeps the line's timing: the t3.5 silence (plus
 * `turnaroundMs`) between frames, timeouts that add the frames' own wire time at the baud, and
 * after a timeout or a bad frame, a silence long enough for a late answer to pass, with the
 * receive buffer emptied before the next request, so that noise or a late answer is never read
 * as the next answer and the port stays open.
 */
export class ModbusDriver implements SouthDriver {
  private state: ConnectionState = "disconnected";
  private client: Client | undefined;
  private readonly queue = new IoQueue();
  private readonly planner: RequestPlanner;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly parkedUntil = new Map<number, number>();
  /** Polls in a row that timed out, per unit. */
  private readonly strikes = new Map<number, number>();
  private readonly counters = {
    requests: 0,
    errors: 0,
    timeouts: 0,
    reconnects: 0,
    badFrames: 0,
  };
  /** The serial line's timing; undefined over TCP, where the network does the framing. */
  private readonly timing: LineTiming | undefined;
  /** performance.now() before which the line must stay silent. */
  private lineFreeAt = 0;
  private connecting: Promise<void> | undefined;
  /**
   * Rejects when the current connection is lost or the source stops, so that the requests on
   * it settle then: modbus-serial's destroy() cancels the timeouts of pending transactions
   * without settling them, which would leave a request, and the IoQueue behind it (every later
   * poll and command of the source), waiting for ever.
   */
  private connectionGone: { promise: Promise<never>; reject: (e: Error) => void } | undefined;

  constructor(
    readonly sourceId: string,
    private readonly opts: ModbusDriverOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.planner = new RequestPlanner({
      maxRegisters: opts.maxRegistersPerRequest,
      maxBits: opts.maxBitsPerRequest,
      maxGapRegisters: opts.maxGap,
    });
    this.backoff = new Backoff(opts.reconnectMinMs, opts.reconnectMaxMs);
    this.timing = opts.transport.kind === "rtu" ? lineTiming(opts.transport.line) : undefined;
  }

  /** Resolves after the first connection attempt, whatever its outcome: a down PLC is not fatal. */
  async start(): Promise<void> {
    if (this.state !== "disconnected") return;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.transition("stopping");
    clearTimeout(this.reconnectTimer);
    this.settleInFlight("the source is stopping");
    const client = this.client;
    this.client = undefined;
    if (client) await new Promise<void>((resolve) => client.close(() => resolve()));
    this.transition("disconnected");
  }

  health(): SourceHealth {
    return {
      sourceId: this.sourceId,
      state: this.state,
      ...this.counters,
      illegal: this.planner.illegalRanges(),
    };
  }

  async read(req: PollRequest): Promise<RawSample[]> {
    const down = this.unavailable(req.unitId);
    if (down) {
      const ts = this.now();
      return req.points.map((p) => ({
        key: p.key,
        quality: { status: "bad", code: down.code, reason: down.message },
        ts,
      }));
    }
    // One queue job per transaction, not per poll: a write (urgent) then waits for at most the
    // request already on the wire, not for every request left in a device's poll.
    const priority = req.urgent ? "urgent" : "normal";
    const samples = await this.planner.execute(
      req.unitId,
      req.points,
      (span) => this.queue.run(() => this.transact(span), priority),
      this.now,
      { stopOnTransportError: true },
    );
    const timedOut = samples.some(
      (s) => s.quality.status === "bad" && s.quality.code === ErrorCodes.MODBUS_TIMEOUT,
    );
    if (timedOut) {
      const strikes = (this.strikes.get(req.unitId) ?? 0) + 1;
      this.strikes.set(req.unitId, strikes);
      if (strikes < (this.opts.demoteAfter ?? 1)) return samples;
      if (!this.parkedUntil.has(req.unitId)) {
        this.log.warn(
          {
            unitId: req.unitId,
            timeouts: strikes,
            parkMs: this.opts.unitBackoffMs,
            code: ErrorCodes.MODBUS_UNIT_DOWN,
          },
          "unit did not answer; parked so it does not stall the other units",
        );
      }
      this.parkedUntil.set(req.unitId, this.now() + this.opts.unitBackoffMs);
    } else {
      this.strikes.delete(req.unitId);
      if (this.parkedUntil.delete(req.unitId))
        this.log.info({ unitId: req.unitId }, "unit answers again");
    }
    return samples;
  }

  async write(unitId: number, point: RawPoint, data: readonly number[]): Promise<void> {
    const down = this.unavailable(unitId, true);
    if (down) throw down;
    await this.queue.run(async () => {
      const client = await this.begin(unitId, writeFrameBytes(point, data), 8);
      try {
        if (point.table === "coil") {
          if (data.length === 1)
            await this.onConnection(client.writeCoil(point.address, data[0] === 1));
          else
            await this.onConnection(
              client.writeCoils(
                point.address,
                data.map((b) => b === 1),
              ),
            );
        } else if (point.table === "holding") {
          if (data.length === 1)
            await this.onConnection(client.writeRegister(point.address, data[0] ?? 0));
          else await this.onConnection(client.writeRegisters(point.address, [...data]));
        } else {
          throw new ShadowgateError(
            ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
            `${point.table} is read-only`,
          );
        }
        this.end();
      } catch (err) {
        throw this.failed(err, { unitId }, 8);
      }
    }, "urgent");
  }

  /** Why a unit cannot be served now, or undefined when it can. */
  private unavailable(unitId: number, forWrite = false): ShadowgateError | undefined {
    if (this.state !== "online") {
      return new ShadowgateError(
        ErrorCodes.MODBUS_DISCONNECTED,
        `not connected to ${describe(this.opts.transport)} (${this.state})`,
        { unitId },
      );
    }
    const until = this.parkedUntil.get(unitId);
    // A parked unit is probed once its backoff ends; writes always get their chance.
    if (!forWrite && until !== undefined && this.now() < until) {
      return new ShadowgateError(
        ErrorCodes.MODBUS_UNIT_DOWN,
        `unit ${unitId} timed out recently; next probe in ${until - this.now()} ms`,
        { unitId },
      );
    }
    return undefined;
  }

  private online(): Client {
    if (this.state !== "online" || !this.client) {
      throw new ShadowgateError(ErrorCodes.MODBUS_DISCONNECTED, `not connected (${this.state})`);
    }
    return this.client;
  }

  private async transact(span: ReadSpan): Promise<readonly number[]> {
    const answer = readAnswerBytes(span);
    const client = await this.begin(span.unitId, 8, answer);
    try {
      let data: readonly number[];
      switch (span.table) {
        case "holding":
          data = (await this.onConnection(client.readHoldingRegisters(span.address, span.count)))
            .data;
          break;
        case "input":
          data = (await this.onConnection(client.readInputRegisters(span.address, span.count)))
            .data;
          break;
        case "coil":
          data = bits(
            (await this.onConnection(client.readCoils(span.address, span.count))).data,
            span.count,
          );
          break;
        case "discreteInput":
          data = bits(
            (await this.onConnection(client.readDiscreteInputs(span.address, span.count))).data,
            span.count,
          );
          break;
      }
      this.end();
      return data;
    } catch (err) {
      throw this.failed(err, span, answer);
    }
  }

  /**
   * Starts a transaction of `request` bytes expecting `answer` bytes: waits for the line's
   * silence, empties what noise or a late answer left in the receive buffer, and sets the
   * timeout to the configured one plus the frames' wire time.
   */
  private async begin(unitId: number, request: number, answer: number): Promise<Client> {
    if (this.timing) await silence(this.lineFreeAt);
    const client = this.online();
    client.setID(unitId);
    if (this.opts.transport.kind !== "tcp") discardReceived(client);
    if (this.timing) {
      client.setTimeout(
        Math.ceil(
          this.opts.timeoutMs + this.timing.wireMs(request + answer) + this.timing.silenceMs,
        ),
      );
    }
    this.counters.requests++;
    return client;
  }

  /** The transaction is over: the line must be silent for t3.5 (and the turnaround) now. */
  private end(extraMs = 0): void {
    if (!this.timing) return;
    this.lineFreeAt =
      performance.now() + this.timing.silenceMs + (this.opts.turnaroundMs ?? 0) + extraMs;
  }

  private failed(err: unknown, span: { unitId: number }, answer: number): ShadowgateError {
    this.counters.errors++;
    const e = classify(err, span);
    if (e.code === ErrorCodes.MODBUS_TIMEOUT) this.counters.timeouts++;
    if (e.code === ErrorCodes.MODBUS_BAD_FRAME) this.counters.badFrames++;
    // After a timeout or a bad frame an answer may still be on its way: let it pass first.
    const late =
      e.code === ErrorCodes.MODBUS_TIMEOUT || e.code === ErrorCodes.MODBUS_BAD_FRAME
        ? (this.timing?.wireMs(answer) ?? 0)
        : 0;
    this.end(late);
    if (e.code === ErrorCodes.MODBUS_DISCONNECTED) this.lost(e.message);
    return e;
  }

  private async open(client: Client): Promise<void> {
    const t = this.opts.transport;
    switch (t.kind) {
      case "tcp":
        return client.connectTCP(t.host, { port: t.port });
      case "rtu-over-tcp":
        // modbus-serial's "telnet" port: bare RTU frames over TCP (its TcpRTUBuffered port
        // would wrap them in MBAP headers).
        return client.connectTelnet(t.host, { port: t.port });
      case "rtu":
        return client.connectRTUBuffered(t.path, {
          baudRate: t.line.baud,
          dataBits: t.line.dataBits,
          parity: t.line.parity,
          stopBits: t.line.stopBits,
        });
    }
  }

  private connect(): Promise<void> {
    this.connecting ??= (async () => {
      this.transition("connecting");
      const client = new Modbus.default();
      client.setTimeout(this.opts.timeoutMs);
      try {
        await this.open(client);
      } catch (err) {
        this.scheduleReconnect(`connect failed: ${(err as Error).message}`);
        return;
      }
      if ((this.state as ConnectionState) === "stopping") {
        client.close(() => undefined);
        return;
      }
      client.on("close", () => {
        if (this.client === client) this.lost("connection closed by peer");
      });
      client.on("error", (err: unknown) => {
        if (this.client === client) this.lost(err instanceof Error ? err.message : String(err));
      });
      this.client = client;
      let reject: (e: Error) => void = () => undefined;
      const promise = new Promise<never>((_, r) => (reject = r));
      promise.catch(() => undefined); // settled only for the requests that race it
      this.connectionGone = { promise, reject };
      this.backoff.reset();
      this.transition("online");
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private lost(reason: string): void {
    if (this.state !== "online") return;
    const client = this.client;
    this.client = undefined;
    this.settleInFlight(reason);
    client?.destroy(() => undefined);
    this.scheduleReconnect(reason);
  }

  /** A request on the current connection, settled if the connection goes from under it. */
  private onConnection<T>(request: Promise<T>): Promise<T> {
    const gone = this.connectionGone?.promise;
    return gone ? Promise.race([request, gone]) : request;
  }

  /** Fails every request still waiting on the current connection. */
  private settleInFlight(reason: string): void {
    this.connectionGone?.reject(
      new ShadowgateError(ErrorCodes.MODBUS_DISCONNECTED, `connection lost: ${reason}`),
    );
    this.connectionGone = undefined;
  }

  private scheduleReconnect(reason: string): void {
    if (this.state === "stopping") return;
    const delay = this.backoff.next();
    this.transition("backoff", { reason, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => {
      this.counters.reconnects++;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private where(): Record<string, unknown> {
    const t = this.opts.transport;
    return t.kind === "rtu"
      ? { path: t.path, baud: t.line.baud }
      : { host: t.host, port: t.port, ...(t.kind === "rtu-over-tcp" && { framing: "rtu" }) };
  }

  private transition(next: ConnectionState, extra: Record<string, unknown> = {}): void {
    if (next === this.state) return;
    const from = this.state;
    this.state = next;
    const fields = { source: this.sourceId, from, to: next, ...this.where(), ...extra };
    if (next === "backoff") this.log.warn(fields, "connection state");
    else this.log.info(fields, "connection state");
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

/** The transport for logs and messages: host:port or the serial path. */
function describe(t: ModbusTransport): string {
  return t.kind === "rtu" ? t.path : `${t.host}:${t.port}`;
}

/** Bytes of an RTU answer to a read: unit, function, byte count, data, CRC. */
function readAnswerBytes(span: ReadSpan): number {
  const data =
    span.table === "holding" || span.table === "input" ? span.count * 2 : Math.ceil(span.count / 8);
  return 5 + data;
}

/** Bytes of an RTU write request: FC5/FC6 are 8; FC15/FC16 carry their data after 9. */
function writeFrameBytes(point: RawPoint, data: readonly number[]): number {
  if (data.length === 1) return 8;
  return 9 + (point.table === "coil" ? Math.ceil(data.length / 8) : data.length * 2);
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

/** modbus-serial pads bit reads to whole bytes and hands back booleans. */
function bits(data: readonly boolean[], count: number): number[] {
  return data.slice(0, count).map((b) => (b ? 1 : 0));
}
