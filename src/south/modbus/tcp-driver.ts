import Modbus from "modbus-serial";
import { Backoff } from "../../core/backoff.js";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { ConnectionState } from "../../core/types.js";
import type { PollRequest, RawPoint, RawSample, SourceHealth, SouthDriver } from "../driver.js";
import { IoQueue } from "./io-queue.js";
import { EXCEPTION_NAMES, RequestPlanner, type ReadSpan } from "./planner.js";

export interface ModbusTcpOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly maxRegistersPerRequest: number;
  readonly maxBitsPerRequest: number;
  readonly maxGap: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** How long a unit that timed out is left alone before one probe. */
  readonly unitBackoffMs: number;
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
 * Modbus TCP on modbus-serial. One connection per source, possibly to a Modbus TCP gateway with
 * several unit ids behind it. Transactions run one at a time through an IoQueue. A unit that
 * times out is parked for `unitBackoffMs` so that a dead RS-485 slave behind a gateway costs its
 * neighbours at most one timeout per backoff period instead of one per poll.
 */
export class ModbusTcpDriver implements SouthDriver {
  private state: ConnectionState = "disconnected";
  private client: Client | undefined;
  private readonly queue = new IoQueue();
  private readonly planner: RequestPlanner;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly parkedUntil = new Map<number, number>();
  private readonly counters = { requests: 0, errors: 0, timeouts: 0, reconnects: 0 };
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
    private readonly opts: ModbusTcpOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.planner = new RequestPlanner({
      maxRegisters: opts.maxRegistersPerRequest,
      maxBits: opts.maxBitsPerRequest,
      maxGapRegisters: opts.maxGap,
    });
    this.backoff = new Backoff(opts.reconnectMinMs, opts.reconnectMaxMs);
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
    if (timedOut && !this.parkedUntil.has(req.unitId)) {
      this.log.warn(
        { unitId: req.unitId, parkMs: this.opts.unitBackoffMs, code: ErrorCodes.MODBUS_UNIT_DOWN },
        "unit did not answer; parked so it does not stall the other units",
      );
    }
    if (timedOut) this.parkedUntil.set(req.unitId, this.now() + this.opts.unitBackoffMs);
    else if (this.parkedUntil.delete(req.unitId)) {
      this.log.info({ unitId: req.unitId }, "unit answers again");
    }
    return samples;
  }

  async write(unitId: number, point: RawPoint, data: readonly number[]): Promise<void> {
    const down = this.unavailable(unitId, true);
    if (down) throw down;
    await this.queue.run(async () => {
      const client = this.online();
      client.setID(unitId);
      this.counters.requests++;
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
      } catch (err) {
        this.counters.errors++;
        throw this.noteFailure(classify(err, { unitId }));
      }
    }, "urgent");
  }

  /** Why a unit cannot be served now, or undefined when it can. */
  private unavailable(unitId: number, forWrite = false): ShadowgateError | undefined {
    if (this.state !== "online") {
      return new ShadowgateError(
        ErrorCodes.MODBUS_DISCONNECTED,
        `not connected to ${this.opts.host}:${this.opts.port} (${this.state})`,
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
    const client = this.online();
    client.setID(span.unitId);
    this.counters.requests++;
    try {
      switch (span.table) {
        case "holding":
          return (await this.onConnection(client.readHoldingRegisters(span.address, span.count)))
            .data;
        case "input":
          return (await this.onConnection(client.readInputRegisters(span.address, span.count)))
            .data;
        case "coil":
          return bits(
            (await this.onConnection(client.readCoils(span.address, span.count))).data,
            span.count,
          );
        case "discreteInput":
          return bits(
            (await this.onConnection(client.readDiscreteInputs(span.address, span.count))).data,
            span.count,
          );
      }
    } catch (err) {
      this.counters.errors++;
      throw this.noteFailure(classify(err, span));
    }
  }

  private noteFailure(e: ShadowgateError): ShadowgateError {
    if (e.code === ErrorCodes.MODBUS_TIMEOUT) this.counters.timeouts++;
    if (e.code === ErrorCodes.MODBUS_DISCONNECTED) this.lost(e.message);
    return e;
  }

  private connect(): Promise<void> {
    this.connecting ??= (async () => {
      this.transition("connecting");
      const client = new Modbus.default();
      client.setTimeout(this.opts.timeoutMs);
      try {
        await client.connectTCP(this.opts.host, { port: this.opts.port });
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

  private transition(next: ConnectionState, extra: Record<string, unknown> = {}): void {
    if (next === this.state) return;
    const from = this.state;
    this.state = next;
    const fields = {
      source: this.sourceId,
      from,
      to: next,
      host: this.opts.host,
      port: this.opts.port,
      ...extra,
    };
    if (next === "backoff") this.log.warn(fields, "connection state");
    else this.log.info(fields, "connection state");
  }
}

/** modbus-serial pads bit reads to whole bytes and hands back booleans. */
function bits(data: readonly boolean[], count: number): number[] {
  return data.slice(0, count).map((b) => (b ? 1 : 0));
}
