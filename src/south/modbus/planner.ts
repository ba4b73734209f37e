/**
 * Modbus request planner: turns the raw points of one poll into the fewest legal read requests,
 * runs them one at a time through an injected `read`, and learns from the device's exceptions
 * which addresses and which merges to avoid. Pure: all I/O goes through `read`. How points
 * become requests is in packing.ts; what the device taught, in table-memory.ts.
 */
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { ErrorCode } from "../../core/errors.js";
import { GOOD, isBitTable } from "../../core/types.js";
import type { ModbusTable, Quality } from "../../core/types.js";
import type { RawPoint, RawSample } from "../../core/samples.js";
import { type Block, type Member, pack, split, toAtoms } from "./packing.js";
import { emptyTableMemory, lowerBound, type TableMemory } from "./table-memory.js";

/** FC3/FC4 limit of the Modbus application protocol spec (PDU of 253 bytes). */
export const MAX_REGISTERS_PER_READ = 125;
/** FC1/FC2 limit of the Modbus application protocol spec. */
export const MAX_BITS_PER_READ = 2000;

const DEFAULT_MAX_GAP_REGISTERS = 8;
const DEFAULT_MAX_GAP_BITS = 64;
const ADDRESS_SPACE = 0x10000;

export interface PlannerOptions {
  /** Registers per FC3/FC4 request; clamped to 1..125. Some devices accept fewer than 125. */
  readonly maxRegisters?: number;
  /** Bits per FC1/FC2 request; clamped to 1..2000. */
  readonly maxBits?: number;
  /** Unused registers a request may read through to merge two points. */
  readonly maxGapRegisters?: number;
  /** Unused bits a request may read through to merge two points. */
  readonly maxGapBits?: number;
}

/** What goes on the wire: one contiguous read. */
export interface ReadSpan {
  readonly unitId: number;
  readonly table: ModbusTable;
  /** 0-based PDU address. */
  readonly address: number;
  readonly count: number;
}

/** A planned read and the points it serves. */
export interface ReadRequest extends ReadSpan {
  readonly points: RawPoint[];
}

/**
 * Performs one read: resolves with `count` words or bits, or throws a ShadowgateError
 * (MODBUS_EXCEPTION with `details.exceptionCode`, or a transport code such as MODBUS_TIMEOUT).
 */
export type ReadFn = (span: ReadSpan) => Promise<readonly number[]>;

export interface ExecuteOptions {
  /**
   * After the first transport failure (anything but a Modbus exception), mark every remaining
   * point bad with that error instead of reading, so a dead unit costs one timeout per poll,
   * not one per request.
   */
  readonly stopOnTransportError?: boolean;
}

const TABLE_ORDER: readonly ModbusTable[] = ["coil", "discreteInput", "input", "holding"];

/** Exception names from the Modbus application protocol spec, for messages. */
export const EXCEPTION_NAMES: Readonly<Record<number, string>> = {
  1: "illegal function",
  2: "illegal data address",
  3: "illegal data value",
  4: "server device failure",
  5: "acknowledge",
  6: "server device busy",
  8: "memory parity error",
  10: "gateway path unavailable",
  11: "gateway target device failed to respond",
};

const EXCEPTION_ILLEGAL_ADDRESS = 2;
const EXCEPTION_ILLEGAL_VALUE = 3;

interface Failure {
  readonly transport: boolean;
  readonly code: ErrorCode;
  readonly message: string;
  readonly exceptionCode: number | undefined;
}

interface Run {
  readonly unitId: number;
  readonly read: ReadFn;
  readonly now: () => number;
  readonly out: Array<RawSample | undefined>;
  readonly stopOnTransportError: boolean;
  stopped: { readonly code: ErrorCode; readonly reason: string } | undefined;
}

export class RequestPlanner {
  private readonly maxRegisters: number;
  private readonly maxBits: number;
  private readonly maxGapRegisters: number;
  private readonly maxGapBits: number;
  private readonly memory = new Map<string, TableMemory>();

  constructor(options: PlannerOptions = {}) {
    this.maxRegisters = clampInt(
      options.maxRegisters,
      MAX_REGISTERS_PER_READ,
      1,
      MAX_REGISTERS_PER_READ,
    );
    this.maxBits = clampInt(options.maxBits, MAX_BITS_PER_READ, 1, MAX_BITS_PER_READ);
    this.maxGapRegisters = clampInt(
      options.maxGapRegisters,
      DEFAULT_MAX_GAP_REGISTERS,
      0,
      ADDRESS_SPACE,
    );
    this.maxGapBits = clampInt(options.maxGapBits, DEFAULT_MAX_GAP_BITS, 0, ADDRESS_SPACE);
  }

  /**
   * The requests that would serve `points` now, table by table in ascending address order.
   * Points at addresses known to be illegal are left out. Throws a RangeError on a point that
   * could never be read (bad address, or longer than one request may be).
   */
  plan(unitId: number, points: readonly RawPoint[]): ReadRequest[] {
    return this.build(unitId, points).blocks.map((block) => ({
      unitId,
      table: block.table,
      address: block.address,
      count: block.end - block.address + 1,
      points: block.atoms.flatMap((atom) => atom.members.map((m) => m.point)),
    }));
  }

  /**
   * Plans, reads one request at a time, and returns one sample per input point, in input order.
   * Never throws for device or transport failures: they become bad quality on the points of the
   * failed request. Throws only what `plan` throws for impossible points.
   */
  async execute(
    unitId: number,
    points: readonly RawPoint[],
    read: ReadFn,
    now: () => number = Date.now,
    options: ExecuteOptions = {},
  ): Promise<RawSample[]> {
    const { blocks, illegal } = this.build(unitId, points);
    const run: Run = {
      unitId,
      read,
      now,
      out: new Array<RawSample | undefined>(points.length).fill(undefined),
      stopOnTransportError: options.stopOnTransportError === true,
      stopped: undefined,
    };
    if (illegal.length > 0) {
      const ts = now();
      for (const m of illegal) {
        const { table, address, count } = m.point;
        run.out[m.index] = {
          key: m.point.key,
          quality: bad(
            ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
            `${spanText(table, address, address + count - 1)} is a known illegal data address ` +
              `(exception 02 earlier); not read`,
          ),
          ts,
        };
      }
    }
    for (const block of blocks) await this.runBlock(run, block);
    return run.out.map((sample, i) => {
      if (sample === undefined) throw new Error(`planner: no sample for point #${i} (a bug)`);
      return sample;
    });
  }

  /** Known illegal ranges, e.g. "1/holding/100-109" (0-based, inclusive), for health reports. */
  illegalRanges(): string[] {
    const entries: Array<{ unitId: number; table: ModbusTable; first: number; last: number }> = [];
    for (const [key, mem] of this.memory) {
      const [unit, table] = key.split("/") as [string, ModbusTable];
      for (const [first, last] of mem.illegal.list()) {
        entries.push({ unitId: Number(unit), table, first, last });
      }
    }
    entries.sort(
      (a, b) =>
        a.unitId - b.unitId ||
        TABLE_ORDER.indexOf(a.table) - TABLE_ORDER.indexOf(b.table) ||
        a.first - b.first,
    );
    return entries.map((e) => `${e.unitId}/${e.table}/${e.first}-${e.last}`);
  }

  /** Drops what was learned, for one unit or for all (on reload the device may have changed). */
  forget(unitId?: number): void {
    if (unitId === undefined) {
      this.memory.clear();
      return;
    }
    for (const key of [...this.memory.keys()]) {
      if (key.startsWith(`${unitId}/`)) this.memory.delete(key);
    }
  }

  private cap(table: ModbusTable): number {
    return isBitTable(table) ? this.maxBits : this.maxRegisters;
  }

  private maxGap(table: ModbusTable): number {
    return isBitTable(table) ? this.maxGapBits : this.maxGapRegisters;
  }

  private mem(unitId: number, table: ModbusTable): TableMemory {
    const key = `${unitId}/${table}`;
    let mem = this.memory.get(key);
    if (mem === undefined) {
      mem = emptyTableMemory();
      this.memory.set(key, mem);
    }
    return mem;
  }

  private peek(unitId: number, table: ModbusTable): TableMemory | undefined {
    return this.memory.get(`${unitId}/${table}`);
  }

  private build(
    unitId: number,
    points: readonly RawPoint[],
  ): { blocks: Block[]; illegal: Member[] } {
    if (!Number.isInteger(unitId) || unitId < 0 || unitId > 255) {
      throw new RangeError(`planner: unit id ${String(unitId)} is not an integer in 0..255`);
    }
    const byTable = new Map<ModbusTable, Member[]>();
    points.forEach((point, index) => {
      this.validate(point);
      let list = byTable.get(point.table);
      if (list === undefined) {
        list = [];
        byTable.set(point.table, list);
      }
      list.push({ point, index });
    });

    const blocks: Block[] = [];
    const illegal: Member[] = [];
    for (const table of TABLE_ORDER) {
      const members = byTable.get(table);
      if (members === undefined) continue;
      const mem = this.peek(unitId, table);
      const readable: Member[] = [];
      for (const m of members) {
        const last = m.point.address + m.point.count - 1;
        if (mem?.illegal.overlaps(m.point.address, last) === true) illegal.push(m);
        else readable.push(m);
      }
      blocks.push(...pack(table, toAtoms(readable), mem, this.cap(table), this.maxGap(table)));
    }
    return { blocks, illegal };
  }

  private validate(point: RawPoint): void {
    const { key, table, address, count } = point;
    if (!TABLE_ORDER.includes(table)) {
      throw new RangeError(`planner: point "${key}" names unknown table "${String(table)}"`);
    }
    if (
      !Number.isInteger(address) ||
      !Number.isInteger(count) ||
      address < 0 ||
      count < 1 ||
      address + count > ADDRESS_SPACE
    ) {
      throw new RangeError(
        `planner: point "${key}" (${table} address ${address}, count ${count}) ` +
          `is outside the address space 0..65535`,
      );
    }
    const cap = this.cap(table);
    if (count > cap) {
      const unit = isBitTable(table) ? "bits" : "registers";
      throw new RangeError(
        `planner: point "${key}" spans ${count} ${unit} at ${table} ${address}, ` +
          `more than the ${cap} one request may read`,
      );
    }
  }

  /** Reads one block, bisecting on 02/03. Resolves true when the block's own read succeeded. */
  private async runBlock(run: Run, block: Block): Promise<boolean> {
    if (run.stopped !== undefined) {
      markBad(run, block, run.stopped.code, run.stopped.reason, run.now());
      return false;
    }
    const { table, address, end } = block;
    const count = end - address + 1;
    let data: readonly number[];
    try {
      data = await run.read({ unitId: run.unitId, table, address, count });
    } catch (err) {
      const failure = classify(err);
      const ts = run.now();
      const ex = failure.exceptionCode;
      const where = spanText(table, address, end);
      let reason: string;
      if (failure.transport) reason = failure.message;
      else if (ex === undefined) reason = `${failure.message} at ${where}`;
      else reason = `exception ${hex2(ex)} (${EXCEPTION_NAMES[ex] ?? "unknown"}) at ${where}`;

      if (
        (ex === EXCEPTION_ILLEGAL_ADDRESS || ex === EXCEPTION_ILLEGAL_VALUE) &&
        block.atoms.length > 1
      ) {
        const [left, right] = split(block);
        const leftOk = await this.runBlock(run, left);
        const rightOk = await this.runBlock(run, right);
        // Both sides proved every address they read legal, so what broke the merged read is
        // what lies between them (or, with no gap, the merge itself). When a side failed too,
        // its own failure may explain the merged one, so nothing is concluded from it here.
        if (leftOk && rightOk) this.learnBoundary(run.unitId, left, right);
        return false;
      }
      if (ex === EXCEPTION_ILLEGAL_ADDRESS) {
        this.mem(run.unitId, table).illegal.add(address, end);
        markBad(run, block, ErrorCodes.MODBUS_ILLEGAL_ADDRESS, reason, ts);
        return false;
      }
      markBad(run, block, failure.code, reason, ts);
      if (failure.transport && run.stopOnTransportError) {
        run.stopped = { code: failure.code, reason };
      }
      return false;
    }

    const ts = run.now();
    if (data.length < count) {
      // The transport should have rejected such a frame; without the data there is nothing to
      // slice, and no catalogue code fits better than a protocol-level failure of the device.
      const reason = `short response: ${data.length} of ${count} values at ${spanText(table, address, end)}`;
      markBad(run, block, ErrorCodes.MODBUS_EXCEPTION, reason, ts);
      return false;
    }
    const bits = isBitTable(table);
    for (const atom of block.atoms) {
      const offset = atom.address - address;
      const raw = data.slice(offset, offset + atom.end - atom.address + 1);
      // Transports differ: booleans-as-numbers for bits, signed int16 for words.
      const values: readonly number[] = bits
        ? raw.map((v) => (v ? 1 : 0))
        : raw.map((v) => v & 0xffff);
      for (const m of atom.members) {
        run.out[m.index] = { key: m.point.key, quality: GOOD, data: values, ts };
      }
    }
    return true;
  }

  private learnBoundary(unitId: number, left: Block, right: Block): void {
    const mem = this.mem(unitId, left.table);
    const firstRight = right.address;
    if (firstRight > left.end + 1) {
      mem.noThrough.add(left.end + 1, firstRight - 1);
      return;
    }
    // A break only separates what it should when every left atom starts before it.
    const lastLeft = left.atoms[left.atoms.length - 1];
    if (lastLeft === undefined || lastLeft.address >= firstRight) return;
    const at = lowerBound(mem.breaks, firstRight);
    if (mem.breaks[at] !== firstRight) mem.breaks.splice(at, 0, firstRight);
  }
}

function markBad(run: Run, block: Block, code: ErrorCode, reason: string, ts: number): void {
  const quality = bad(code, reason);
  for (const atom of block.atoms) {
    for (const m of atom.members) run.out[m.index] = { key: m.point.key, quality, ts };
  }
}

function classify(err: unknown): Failure {
  if (err instanceof ShadowgateError) {
    if (err.code === ErrorCodes.MODBUS_EXCEPTION) {
      const ex = err.details["exceptionCode"];
      return {
        transport: false,
        code: err.code,
        message: err.message,
        exceptionCode: typeof ex === "number" ? ex : undefined,
      };
    }
    return { transport: true, code: err.code, message: err.message, exceptionCode: undefined };
  }
  // A transport is expected to throw ShadowgateErrors only; anything else still means the
  // request got no answer, and the driver must not throw from read().
  return {
    transport: true,
    code: ErrorCodes.MODBUS_DISCONNECTED,
    message: err instanceof Error ? err.message : String(err),
    exceptionCode: undefined,
  };
}

function bad(code: ErrorCode, reason: string): Quality {
  return { status: "bad", code, reason };
}

function spanText(table: ModbusTable, first: number, last: number): string {
  return `${table} ${first}-${last}`;
}

function hex2(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, "0");
}

function clampInt(value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(min, Math.floor(value)));
}
