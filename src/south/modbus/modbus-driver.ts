import { ConnectionMachine } from "../../core/connection.js";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { PollRequest, SourceHealth, SouthDriver, UnitHealth } from "../driver.js";
import type { RawPoint, RawSample } from "../../core/samples.js";
import { IoQueue } from "./io-queue.js";
import { MbapClient } from "./mbap-client.js";
import type { LinkEvents, ModbusLink } from "./modbus-link.js";
import { RequestPlanner, type ReadSpan } from "./planner.js";
import { RtuClient, type RtuTransport } from "./rtu-client.js";

/** Where the frames go: MBAP over TCP, RTU on a serial line, or RTU frames over TCP (a DTU). */
export type ModbusTransport =
  { readonly kind: "tcp"; readonly host: string; readonly port: number } | RtuTransport;

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

/** A unit's figures, as the driver counts them. */
type UnitCounters = { -readonly [K in keyof UnitHealth]: number };

/**
 * Modbus over TCP (our own MBAP client), an RS-485 line, or a serial device server (RTU frames,
 * on modbus-serial): the transport is a ModbusLink, and everything else is shared. One
 * connection (or open port) per source, with possibly several unit ids behind it. Transactions
 * run one at a time through an IoQueue. A unit whose polls time out `demoteAfter` times in a row
 * is parked for `unitBackoffMs`, so that a dead slave costs its neighbours at most one timeout
 * per backoff period instead of one per poll.
 *
 * A link drops the frames it cannot use (each counted in badFrames, each kind logged once per
 * connection). When the TCP stream cannot be trusted any more (a framing error, a partial frame
 * at a timeout, or no answer to several requests in a row) the MBAP client closes the
 * connection, and the driver reopens it with backoff; the points read bad meanwhile. The backoff
 * starts over only once a device answered on the new connection, so a peer that accepts
 * connections and then talks nonsense is retried less and less often.
 */
export class ModbusDriver implements SouthDriver {
  private readonly connection: ConnectionMachine;
  private link: ModbusLink | undefined;
  private readonly queue = new IoQueue();
  private readonly planner: RequestPlanner;
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
  /** The counters again per unit id, created at a unit's first request. */
  private readonly units = new Map<number, UnitCounters>();
  private readonly errorCodes = new Map<string, number>();
  /** Kinds of bad frame already logged on the current connection: one warning per kind. */
  private readonly loggedFrameKinds = new Set<string>();
  private connecting: Promise<void> | undefined;

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
    this.connection = new ConnectionMachine(
      {
        reconnectMinMs: opts.reconnectMinMs,
        reconnectMaxMs: opts.reconnectMaxMs,
        fields: () => ({ source: this.sourceId, ...this.where() }),
      },
      log,
    );
  }

  /** Resolves after the first connection attempt, whatever its outcome: a down PLC is not fatal. */
  async start(): Promise<void> {
    if (this.connection.state !== "disconnected") return;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.connection.stopping();
    const link = this.link;
    this.link = undefined;
    if (link) await link.close("the source is stopping");
    this.connection.stopped();
  }

  health(): SourceHealth {
    return {
      sourceId: this.sourceId,
      state: this.connection.state,
      ...this.counters,
      illegal: this.planner.illegalRanges(),
      units: Object.fromEntries([...this.units].map(([id, u]) => [String(id), { ...u }])),
      errorCodes: Object.fromEntries(this.errorCodes),
    };
  }

  async read(req: PollRequest): Promise<RawSample[]> {
    if (!req.urgent) this.unit(req.unitId).polls++;
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
    const table = point.table;
    if (table !== "coil" && table !== "holding") {
      throw new ShadowgateError(ErrorCodes.MODBUS_ILLEGAL_ADDRESS, `${table} is read-only`);
    }
    await this.queue.run(async () => {
      const link = this.online();
      this.counters.requests++;
      this.unit(unitId).requests++;
      try {
        await link.write(unitId, table, point.address, data);
      } catch (err) {
        throw this.failed(err, unitId);
      }
      this.connection.proven();
    }, "urgent");
  }

  /** Why a unit cannot be served now, or undefined when it can. */
  private unavailable(unitId: number, forWrite = false): ShadowgateError | undefined {
    if (!this.connection.online) {
      return new ShadowgateError(
        ErrorCodes.MODBUS_DISCONNECTED,
        `not connected to ${describe(this.opts.transport)} (${this.connection.state})`,
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

  private online(): ModbusLink {
    if (!this.connection.online || !this.link) {
      throw new ShadowgateError(
        ErrorCodes.MODBUS_DISCONNECTED,
        `not connected (${this.connection.state})`,
      );
    }
    return this.link;
  }

  private async transact(span: ReadSpan): Promise<readonly number[]> {
    const link = this.online();
    this.counters.requests++;
    this.unit(span.unitId).requests++;
    let data: number[];
    try {
      data = await link.read(span.unitId, span.table, span.address, span.count);
    } catch (err) {
      throw this.failed(err, span.unitId);
    }
    // A device answered on this connection: the next reconnect starts from the shortest delay.
    this.connection.proven();
    return data;
  }

  private failed(err: unknown, unitId: number): ShadowgateError {
    this.counters.errors++;
    const unit = this.unit(unitId);
    unit.errors++;
    const e =
      err instanceof ShadowgateError
        ? err
        : new ShadowgateError(
            ErrorCodes.MODBUS_DISCONNECTED,
            `connection lost: ${err instanceof Error ? err.message : String(err)}`,
          );
    this.errorCodes.set(e.code, (this.errorCodes.get(e.code) ?? 0) + 1);
    if (e.code === ErrorCodes.MODBUS_TIMEOUT) {
      this.counters.timeouts++;
      unit.timeouts++;
    }
    if (e.code === ErrorCodes.MODBUS_EXCEPTION) this.connection.proven();
    if (e.code === ErrorCodes.MODBUS_DISCONNECTED) this.lost(e.message);
    return e;
  }

  private unit(unitId: number): UnitCounters {
    let u = this.units.get(unitId);
    if (!u) {
      u = { polls: 0, requests: 0, errors: 0, timeouts: 0 };
      this.units.set(unitId, u);
    }
    return u;
  }

  /** A link dropped a frame: counted every time, logged once per kind and connection. */
  private badFrame(kind: string, detail: string, unitId: number | undefined): void {
    this.counters.badFrames++;
    const fields = { source: this.sourceId, unitId, kind, ...this.where() };
    if (!this.loggedFrameKinds.has(kind)) {
      this.loggedFrameKinds.add(kind);
      this.log.warn(
        { ...fields, code: ErrorCodes.MODBUS_BAD_FRAME, detail },
        "dropped a Modbus frame (further ones of this kind on this connection are logged at debug)",
      );
    } else if (this.log.isLevelEnabled("debug")) {
      this.log.debug({ ...fields, detail }, "dropped a Modbus frame");
    }
  }

  private openLink(events: LinkEvents): Promise<ModbusLink> {
    const t = this.opts.transport;
    if (t.kind === "tcp") {
      return MbapClient.connect(
        { host: t.host, port: t.port, timeoutMs: this.opts.timeoutMs },
        events,
      );
    }
    return RtuClient.open(
      t,
      { timeoutMs: this.opts.timeoutMs, turnaroundMs: this.opts.turnaroundMs ?? 0 },
      events,
    );
  }

  private connect(): Promise<void> {
    this.connecting ??= (async () => {
      this.connection.to("connecting");
      let link: ModbusLink | undefined;
      const events: LinkEvents = {
        badFrame: (kind, detail, unitId) => this.badFrame(kind, detail, unitId),
        closed: (reason) => {
          if (link !== undefined && this.link === link) this.lost(reason);
        },
      };
      try {
        link = await this.openLink(events);
      } catch (err) {
        this.retry(`connect failed: ${(err as Error).message}`);
        return;
      }
      if (this.connection.ending) {
        await link.close("the source is stopping");
        return;
      }
      this.link = link;
      this.loggedFrameKinds.clear();
      this.connection.to("online");
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private lost(reason: string): void {
    if (!this.connection.online) return;
    const link = this.link;
    this.link = undefined;
    // Fails the request still waiting on it, so the IoQueue behind it moves on.
    void link?.close(reason);
    this.retry(reason);
  }

  private retry(reason: string): void {
    this.connection.retry(reason, () => {
      this.counters.reconnects++;
      void this.connect();
    });
  }

  private where(): Record<string, unknown> {
    const t = this.opts.transport;
    return t.kind === "rtu"
      ? { path: t.path, baud: t.line.baud }
      : { host: t.host, port: t.port, ...(t.kind === "rtu-over-tcp" && { framing: "rtu" }) };
  }
}

/** The transport for logs and messages: host:port or the serial path. */
function describe(t: ModbusTransport): string {
  return t.kind === "rtu" ? t.path : `${t.host}:${t.port}`;
}
