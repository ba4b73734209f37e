import { EventEmitter } from "node:events";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { ModbusTable } from "../../core/types.js";
import { UnitMemory, type UnitOptions } from "./memory.js";
import { MAX_MBAP_LENGTH, ModbusException, exceptionResponse, serveRequest } from "./pdu.js";
import { ProfileRuntime } from "./dynamics.js";
import type { SimProfile } from "./profile.js";

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

export interface SimulatorOptions {
  /** Hosted units: ids or full options. Default: unit 1, or the profile's units. */
  readonly units?: readonly (number | UnitOptions)[];
  /**
   * A request for a unit the simulator does not host: "ignore" (default) sends nothing, like
   * a TCP gateway in front of a dead RS-485 slave; "exception" answers 0x0B.
   */
  readonly unknownUnit?: "ignore" | "exception";
  /** Delay before every response, unless the unit sets its own. */
  readonly responseDelayMs?: number;
  /** Each connection is closed right after its Nth request has been handled. */
  readonly dropAfterRequests?: number;
  /** Typed points and dynamics; its units are hosted in addition to `units`. */
  readonly profile?: SimProfile;
  /** Random source for noise dynamics (tests pass a seeded one). */
  readonly random?: () => number;
}

export interface SimulatorStats {
  readonly connections: { readonly open: number; readonly accepted: number };
  /** Complete frames received, answered or not. */
  readonly requests: number;
  /** Requests answered (normally or with an exception), per unit id, then per function code. */
  readonly served: Record<number, Record<number, number>>;
  /** Exception responses, per unit id, then per exception code. */
  readonly exceptions: Record<number, Record<number, number>>;
  /** Requests left unanswered on purpose. */
  readonly unanswered: { readonly unknownUnit: number; readonly silent: number };
}

interface Connection {
  readonly socket: Socket;
  /** Bytes of an incomplete frame carried over to the next chunk. */
  pending: Buffer | undefined;
  /** Frames waiting behind a delayed response: answers go out in request order. */
  readonly queue: Buffer[];
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
  handled: number;
  closed: boolean;
}

class UnitCounters {
  readonly served = new Float64Array(256);
  readonly exceptions = new Float64Array(256);
}

function nonZero(counts: Float64Array): Record<number, number> {
  const out: Record<number, number> = {};
  for (let i = 0; i < counts.length; i++) if (counts[i]) out[i] = counts[i]!;
  return out;
}

/**
 * A Modbus TCP slave on node:net, built for tests and benchmarks: per-connection framing that
 * copes with merged and split frames, answers in request order, and faults on demand (delay,
 * silent units, unknown units, dropped connections, holes, short request limits).
 *
 * Requests on one connection are served one after another, like a real device or an RS-485
 * gateway: with a response delay, a pipelining client waits delay x depth for its last answer.
 */
export class ModbusTcpSimulator extends EventEmitter<SimulatorEvents> {
  /** Global response delay in ms; a unit's own `responseDelayMs` wins. Settable at runtime. */
  responseDelayMs: number;
  unknownUnit: "ignore" | "exception";
  /** Settable at runtime; applies to requests handled from then on. undefined: never. */
  dropAfterRequests: number | undefined;
  /** Point-level access and the dynamics timer, when a profile was given. */
  readonly profile: ProfileRuntime | undefined;

  private readonly units = new Map<number, UnitMemory>();
  private readonly counters = new Map<number, UnitCounters>();
  private readonly connections = new Set<Connection>();
  private server: Server | undefined;
  private accepted = 0;
  private requests = 0;
  private unansweredUnknown = 0;
  private unansweredSilent = 0;

  constructor(opts: SimulatorOptions = {}) {
    super();
    const profile = opts.profile;
    this.responseDelayMs = opts.responseDelayMs ?? profile?.responseDelayMs ?? 0;
    this.unknownUnit = opts.unknownUnit ?? profile?.unknownUnit ?? "ignore";
    this.dropAfterRequests = opts.dropAfterRequests;
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

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  /** Listens (port 0: a free port) and starts the profile's dynamics. */
  async start(opts: { host?: string; port?: number } = {}): Promise<{ port: number }> {
    if (this.server) throw new Error("the simulator is already started");
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: opts.host ?? "127.0.0.1", port: opts.port ?? 0 }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      this.server = undefined;
      throw err;
    }
    this.profile?.start();
    return { port: (server.address() as AddressInfo).port };
  }

  /** Stops the dynamics, destroys every connection and closes the listener. Idempotent. */
  async stop(): Promise<void> {
    this.profile?.stop();
    const server = this.server;
    this.server = undefined;
    this.dropConnections();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Destroys every open connection now, mid-request or not. The listener stays open. */
  dropConnections(): void {
    for (const conn of [...this.connections]) this.close(conn);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  stats(): SimulatorStats {
    const served: Record<number, Record<number, number>> = {};
    const exceptions: Record<number, Record<number, number>> = {};
    for (const [unitId, c] of this.counters) {
      served[unitId] = nonZero(c.served);
      exceptions[unitId] = nonZero(c.exceptions);
    }
    return {
      connections: { open: this.connections.size, accepted: this.accepted },
      requests: this.requests,
      served,
      exceptions,
      unanswered: { unknownUnit: this.unansweredUnknown, silent: this.unansweredSilent },
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
  }

  private accept(socket: Socket): void {
    if (!this.server) {
      socket.destroy();
      return;
    }
    this.accepted++;
    socket.setNoDelay(true);
    const conn: Connection = {
      socket,
      pending: undefined,
      queue: [],
      busy: false,
      timer: undefined,
      handled: 0,
      closed: false,
    };
    this.connections.add(conn);
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    // Resets from clients that vanish are routine for a simulator; 'close' follows.
    socket.on("error", () => undefined);
    socket.on("close", () => this.close(conn));
  }

  private close(conn: Connection): void {
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = undefined;
    conn.closed = true;
    conn.queue.length = 0;
    this.connections.delete(conn);
    conn.socket.destroy();
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    const buf = conn.pending ? Buffer.concat([conn.pending, chunk]) : chunk;
    conn.pending = undefined;
    let offset = 0;
    // Corking turns the answers to a burst of merged frames into one write.
    conn.socket.cork();
    while (buf.length - offset >= 6) {
      const length = buf.readUInt16BE(offset + 4);
      if (length < 2 || length > MAX_MBAP_LENGTH) {
        // Framing is lost for good: no way to find the next header. Devices reset here too.
        this.close(conn);
        return;
      }
      const end = offset + 6 + length;
      if (end > buf.length) break;
      const frame = buf.subarray(offset, end);
      offset = end;
      this.requests++;
      if (frame.readUInt16BE(2) !== 0) continue; // not Modbus: the spec says ignore it
      if (conn.busy) conn.queue.push(frame);
      else this.handle(conn, frame);
      if (conn.closed) return;
    }
    if (offset < buf.length) conn.pending = buf.subarray(offset);
    conn.socket.uncork();
  }

  private handle(conn: Connection, frame: Buffer): void {
    const unitId = frame.readUInt8(6);
    const unit = this.units.get(unitId);
    if (!unit) {
      if (this.unknownUnit === "exception") {
        this.send(
          conn,
          unitId,
          frame,
          exceptionResponse(frame, ModbusException.GATEWAY_TARGET_FAILED),
        );
      } else {
        this.unansweredUnknown++;
      }
      this.afterRequest(conn);
      return;
    }
    if (unit.silent) {
      this.unansweredSilent++;
      this.afterRequest(conn);
      return;
    }
    const delay = unit.responseDelayMs ?? this.responseDelayMs;
    if (delay > 0) {
      conn.busy = true;
      conn.timer = setTimeout(() => {
        conn.timer = undefined;
        if (conn.closed) return;
        conn.socket.cork();
        conn.busy = false;
        // The unit may have gone silent or been removed while the request waited.
        const current = this.units.get(unitId);
        if (current && !current.silent) this.serve(conn, current, frame);
        else this.unansweredSilent++;
        this.afterRequest(conn);
        while (!conn.busy && !conn.closed && conn.queue.length > 0) {
          this.handle(conn, conn.queue.shift()!);
        }
        if (!conn.closed) conn.socket.uncork();
      }, delay);
      return;
    }
    this.serve(conn, unit, frame);
    this.afterRequest(conn);
  }

  private serve(conn: Connection, unit: UnitMemory, frame: Buffer): void {
    const unitId = unit.unitId;
    const response = serveRequest(
      unit,
      frame,
      this.listenerCount("write") > 0
        ? (table, address, count) => this.emit("write", { unitId, table, address, count })
        : undefined,
    );
    this.send(conn, unitId, frame, response);
  }

  private send(conn: Connection, unitId: number, frame: Buffer, response: Buffer): void {
    let c = this.counters.get(unitId);
    if (!c) {
      c = new UnitCounters();
      this.counters.set(unitId, c);
    }
    const fc = frame.readUInt8(7);
    c.served[fc] = (c.served[fc] ?? 0) + 1;
    const rfc = response.readUInt8(7);
    if (rfc & 0x80) {
      const code = response.readUInt8(8);
      c.exceptions[code] = (c.exceptions[code] ?? 0) + 1;
    }
    conn.socket.write(response);
  }

  private afterRequest(conn: Connection): void {
    conn.handled++;
    const limit = this.dropAfterRequests;
    if (limit !== undefined && conn.handled >= limit && !conn.closed) {
      conn.closed = true;
      conn.queue.length = 0;
      this.connections.delete(conn);
      const socket = conn.socket;
      // end() flushes the last answer before the FIN; destroy() makes sure the socket goes.
      socket.uncork();
      socket.end(() => socket.destroy());
    }
  }
}
