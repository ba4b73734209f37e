import { EventEmitter } from "node:events";
import type { ModbusTable } from "../../core/types.js";
import { UnitMemory, type UnitOptions } from "./memory.js";
import { ModbusException, exceptionResponse, serveRequest } from "./pdu.js";
import { ProfileRuntime } from "./dynamics.js";
import type { SimProfile } from "./profile.js";
import { RtuLink, type RtuCounters, type RtuLinkOptions } from "./rtu-link.js";
import type { RtuStats, SimRequest, TransactionChannel, TransactionQueue } from "./transactions.js";

/** A write that arrived over the wire (FC5, FC6, FC15, FC16), after memory was updated. */
export interface WriteEvent {
  readonly unitId: number;
  readonly table: ModbusTable;
  readonly address: number;
  readonly count: number;
}

export interface SimulatorEvents {
  write: [WriteEvent];
}

/** What every transport of the simulator shares: units, faults, the profile. */
export interface ModbusSimulatorOptions {
  /** Hosted units: ids or full options. Default: unit 1, or the profile's units. */
  readonly units?: readonly (number | UnitOptions)[];
  /**
   * A request for a unit the simulator does not host: "ignore" (default) sends nothing, like
   * a TCP gateway in front of a dead RS-485 slave; "exception" answers 0x0B (TCP only: on a
   * serial line other slaves may own the address, so RTU never answers for them).
   */
  readonly unknownUnit?: "ignore" | "exception";
  /** Delay before every response, unless the unit sets its own. */
  readonly responseDelayMs?: number;
  /** Typed points and dynamics; its units are hosted in addition to `units`. */
  readonly profile?: SimProfile;
  /** Random source for noise dynamics (tests pass a seeded one). */
  readonly random?: () => number;
}

export interface SimulatorStats {
  /** TCP connections; zeros on a simulator without a TCP listener. */
  readonly connections: { readonly open: number; readonly accepted: number };
  /** Complete frames received, answered or not. */
  readonly requests: number;
  /** Requests answered (normally or with an exception), per unit id, then per function code. */
  readonly served: Record<number, Record<number, number>>;
  /** Exception responses, per unit id, then per exception code. */
  readonly exceptions: Record<number, Record<number, number>>;
  /** Requests left unanswered on purpose. */
  readonly unanswered: { readonly unknownUnit: number; readonly silent: number };
  readonly rtu: RtuStats;
}

const BROADCAST_WRITES = new Set([0x05, 0x06, 0x0f, 0x10]);

class UnitCounters {
  readonly served = new Float64Array(256);
  readonly exceptions = new Float64Array(256);
}

function nonZero(counts: Float64Array): Record<number, number> {
  const out: Record<number, number> = {};
  for (let i = 0; i < counts.length; i++) if (counts[i]) out[i] = counts[i]!;
  return out;
}

interface QueueState {
  readonly channel: TransactionChannel;
  readonly waiting: SimRequest[];
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
  closed: boolean;
  /** performance.now() when the line is free for the next request's first byte. */
  freeAt: number;
}

/**
 * A Modbus slave simulator independent of the transport: hosted units and their memory, the
 * profile's dynamics, faults (response delay, silent units, unknown units), counters and
 * "write" events. ModbusTcpSimulator adds the TCP listener; `startRtu()` serves the same units
 * on a serial line.
 */
export class ModbusSimulator extends EventEmitter<SimulatorEvents> {
  /** Global response delay in ms; a unit's own `responseDelayMs` wins. Settable at runtime. */
  responseDelayMs: number;
  unknownUnit: "ignore" | "exception";
  /** Point-level access and the dynamics timer, when a profile was given. */
  readonly profile: ProfileRuntime | undefined;

  private readonly units = new Map<number, UnitMemory>();
  private readonly counters = new Map<number, UnitCounters>();
  private readonly rtuCounters: RtuCounters = {
    frames: 0,
    crcErrors: 0,
    partialFrames: 0,
    broadcasts: 0,
  };
  private rtuLink: RtuLink | undefined;
  private requests = 0;
  private unansweredUnknown = 0;
  private unansweredSilent = 0;

  constructor(opts: ModbusSimulatorOptions = {}) {
    super();
    const profile = opts.profile;
    this.responseDelayMs = opts.responseDelayMs ?? profile?.responseDelayMs ?? 0;
    this.unknownUnit = opts.unknownUnit ?? profile?.unknownUnit ?? "ignore";
    for (const u of profile?.units ?? []) this.addUnit(u);
    const units = opts.units ?? (profile ? [] : [1]);
    for (const u of units) this.addUnit(typeof u === "number" ? { unitId: u } : u);
    this.profile = profile
      ? new ProfileRuntime(profile, (id) => this.unit(id), { random: opts.random })
      : undefined;
  }

  /** Hosts a unit (replacing one with the same id) and returns its memory. */
  addUnit(opts: UnitOptions): UnitMemory {
    const unit = new UnitMemory(opts);
    this.units.set(unit.unitId, unit);
    return unit;
  }

  removeUnit(unitId: number): void {
    this.units.delete(unitId);
  }

  hasUnit(unitId: number): boolean {
    return this.units.has(unitId);
  }

  unitIds(): number[] {
    return [...this.units.keys()];
  }

  /** The memory of a hosted unit; throws for an id the simulator does not host. */
  unit(unitId: number): UnitMemory {
    const unit = this.units.get(unitId);
    if (!unit) throw new RangeError(`the simulator hosts no unit ${unitId}`);
    return unit;
  }

  /** The serial link started by startRtu(), while it is open. */
  get rtu(): RtuLink | undefined {
    return this.rtuLink;
  }

  /**
   * Serves the hosted units as Modbus RTU slaves on a serial line (a real device or a pty end)
   * and starts the profile's dynamics. One link at a time.
   */
  async startRtu(opts: RtuLinkOptions): Promise<RtuLink> {
    if (this.rtuLink) throw new Error(`the simulator already serves RTU on ${this.rtuLink.path}`);
    const link = new RtuLink(opts, (channel) => this.openQueue(channel), this.rtuCounters);
    this.rtuLink = link;
    try {
      await link.open();
    } catch (err) {
      this.rtuLink = undefined;
      throw err;
    }
    this.profile?.start();
    return link;
  }

  /** Closes the serial link, if any. The dynamics keep running until stop(). Idempotent. */
  async stopRtu(): Promise<void> {
    const link = this.rtuLink;
    this.rtuLink = undefined;
    await link?.close();
  }

  /** Stops the dynamics and every transport. Idempotent. */
  async stop(): Promise<void> {
    this.profile?.stop();
    await this.stopRtu();
  }

  stats(): SimulatorStats {
    const served: Record<number, Record<number, number>> = {};
    const exceptions: Record<number, Record<number, number>> = {};
    for (const [unitId, c] of this.counters) {
      served[unitId] = nonZero(c.served);
      exceptions[unitId] = nonZero(c.exceptions);
    }
    return {
      connections: this.connectionStats(),
      requests: this.requests,
      served,
      exceptions,
      unanswered: { unknownUnit: this.unansweredUnknown, silent: this.unansweredSilent },
      rtu: { ...this.rtuCounters },
    };
  }

  /** Requests answered for a unit, for one function code or all of them. */
  served(unitId: number, functionCode?: number): number {
    const c = this.counters.get(unitId);
    if (!c) return 0;
    if (functionCode !== undefined) return c.served[functionCode] ?? 0;
    return c.served.reduce((a, b) => a + b, 0);
  }

  resetStats(): void {
    this.counters.clear();
    this.requests = 0;
    this.unansweredUnknown = 0;
    this.unansweredSilent = 0;
    this.rtuCounters.frames = 0;
    this.rtuCounters.crcErrors = 0;
    this.rtuCounters.partialFrames = 0;
    this.rtuCounters.broadcasts = 0;
  }

  protected connectionStats(): SimulatorStats["connections"] {
    return { open: 0, accepted: 0 };
  }

  /** A frame that arrived but is not a Modbus request (TCP: another protocol id). */
  protected countIgnoredFrame(): void {
    this.requests++;
  }

  /** The transaction queue of one connection or line. */
  protected openQueue(channel: TransactionChannel): TransactionQueue {
    const q: QueueState = {
      channel,
      waiting: [],
      busy: false,
      timer: undefined,
      closed: false,
      freeAt: 0,
    };
    return {
      push: (request) => {
        if (q.closed) return;
        this.requests++;
        if (q.busy) q.waiting.push(request);
        else this.begin(q, request);
      },
      close: () => {
        if (q.timer) clearTimeout(q.timer);
        q.timer = undefined;
        q.closed = true;
        q.waiting.length = 0;
      },
      get closed() {
        return q.closed;
      },
    };
  }

  private begin(q: QueueState, req: SimRequest): void {
    const { channel } = q;
    const unitId = req.adu.readUInt8(6);
    // A request occupies the line from its first byte, or from the end of the exchange before
    // it when a client sent it early (a real line carries one transaction at a time).
    const start = Math.max(req.receivedAt, q.freeAt);
    const heardAt = start + channel.requestMs(req.adu);
    if (channel.broadcast && unitId === 0) {
      this.rtuCounters.broadcasts++;
      this.at(q, heardAt, () => {
        if (BROADCAST_WRITES.has(req.adu.readUInt8(7))) {
          for (const unit of this.units.values()) if (!unit.silent) this.execute(unit, req.adu);
        }
        this.finish(q, heardAt);
      });
      return;
    }
    const unit = this.units.get(unitId);
    if (!unit) {
      if (channel.unknownUnit() === "exception") {
        this.reply(q, req.adu, exceptionResponse(req.adu, ModbusException.GATEWAY_TARGET_FAILED));
      } else {
        this.unansweredUnknown++;
      }
      this.finish(q, heardAt);
      return;
    }
    if (unit.silent) {
      this.unansweredSilent++;
      this.finish(q, heardAt);
      return;
    }
    const serveAt = heardAt + (unit.responseDelayMs ?? this.responseDelayMs);
    this.at(q, serveAt, () => {
      // The unit may have gone silent or been removed while the request waited.
      const current = this.units.get(unitId);
      if (!current || current.silent) {
        this.unansweredSilent++;
        this.finish(q, serveAt);
        return;
      }
      const response = this.execute(current, req.adu);
      const sentAt = serveAt + channel.responseMs(response);
      this.at(q, sentAt, () => {
        this.reply(q, req.adu, response);
        this.finish(q, sentAt);
      });
    });
  }

  /**
   * Runs `fn` at `time` (performance.now() clock): at once when it has passed, else from a
   * timer, holding the queue meanwhile. Never early: timers round to whole milliseconds.
   */
  private at(q: QueueState, time: number, fn: () => void): void {
    const wait = time - performance.now();
    if (wait <= 0) {
      fn();
      return;
    }
    q.busy = true;
    const fire = (): void => {
      q.timer = undefined;
      if (q.closed) return;
      // A timer can fire a little early: wait again, still holding the queue (re-entering at()
      // here once the time had just passed ran fn with the queue left busy for good).
      const left = time - performance.now();
      if (left > 0) {
        q.timer = setTimeout(fire, Math.ceil(left));
        return;
      }
      q.channel.cork?.();
      q.busy = false;
      fn();
      while (!q.busy && !q.closed && q.waiting.length > 0) this.begin(q, q.waiting.shift()!);
      if (!q.closed) q.channel.uncork?.();
    };
    q.timer = setTimeout(fire, Math.ceil(wait));
  }

  private finish(q: QueueState, lineFreeAt: number): void {
    q.freeAt = Math.max(lineFreeAt, performance.now());
    q.channel.afterRequest?.();
  }

  /** Serves a request against a unit's memory (writes land, "write" events fire). */
  private execute(unit: UnitMemory, adu: Buffer): Buffer {
    const unitId = unit.unitId;
    return serveRequest(
      unit,
      adu,
      this.listenerCount("write") > 0
        ? (table, address, count) => this.emit("write", { unitId, table, address, count })
        : undefined,
    );
  }

  private reply(q: QueueState, request: Buffer, response: Buffer): void {
    const unitId = request.readUInt8(6);
    let c = this.counters.get(unitId);
    if (!c) {
      c = new UnitCounters();
      this.counters.set(unitId, c);
    }
    const fc = request.readUInt8(7);
    c.served[fc] = (c.served[fc] ?? 0) + 1;
    const rfc = response.readUInt8(7);
    if (rfc & 0x80) {
      const code = response.readUInt8(8);
      c.exceptions[code] = (c.exceptions[code] ?? 0) + 1;
    }
    q.channel.send(response);
  }
}
