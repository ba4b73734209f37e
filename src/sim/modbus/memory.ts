import type { ModbusTable } from "../../core/types.js";

export const MODBUS_TABLES: readonly ModbusTable[] = ["coil", "discreteInput", "input", "holding"];

export type RegisterTable = "holding" | "input";
export type BitTable = "coil" | "discreteInput";

/** An address range of one table that answers exception 02. 0-based PDU addresses, inclusive. */
export interface Hole {
  readonly table: ModbusTable;
  readonly from: number;
  readonly to: number;
}

export interface UnitOptions {
  readonly unitId: number;
  readonly holes?: readonly Hole[];
  /** Some devices refuse long reads; above this quantity FC3/FC4/FC16 answer exception 03. */
  readonly maxRegistersPerRequest?: number;
  /** Overrides the simulator's global response delay for this unit. */
  readonly responseDelayMs?: number;
  readonly silent?: boolean;
}

/** The spec's own ceiling for FC3/FC4; FC16 is capped at 123 separately. */
export const MAX_READ_REGISTERS = 125;

const checkAddress = (address: number, count: number): void => {
  if (!Number.isInteger(address) || !Number.isInteger(count) || address < 0 || count < 0) {
    throw new RangeError(`bad address ${address} / count ${count}`);
  }
  if (address + count > 65536) {
    throw new RangeError(`address ${address} + ${count} runs past 65535`);
  }
};

/**
 * One simulated slave: the four tables, its holes and its faults. The tables are public typed
 * arrays so tests and dynamics can poke words directly (`unit.holding[9] = 600`); such direct
 * writes emit no "write" event, which is reserved for writes that arrive over the wire.
 */
export class UnitMemory {
  readonly unitId: number;
  readonly holding = new Uint16Array(65536);
  readonly input = new Uint16Array(65536);
  readonly coil = new Uint8Array(65536);
  readonly discreteInput = new Uint8Array(65536);
  /** Toggle at runtime: a silent unit swallows requests, like a dead RS-485 slave. */
  silent: boolean;
  /** undefined: use the simulator's global delay. */
  responseDelayMs: number | undefined;
  private maxRegisters: number;
  // Flat [from, to, from, to, ...] per table: the request path scans these on every request,
  // and an empty array (the usual case) costs one length check.
  private readonly holeRanges: Record<ModbusTable, number[]> = {
    coil: [],
    discreteInput: [],
    input: [],
    holding: [],
  };

  private readonly readOnlyRanges: Record<ModbusTable, number[]> = {
    coil: [],
    discreteInput: [],
    input: [],
    holding: [],
  };

  constructor(opts: UnitOptions) {
    if (!Number.isInteger(opts.unitId) || opts.unitId < 0 || opts.unitId > 255) {
      throw new RangeError(`unit id ${opts.unitId} must be 0-255`);
    }
    this.unitId = opts.unitId;
    this.silent = opts.silent ?? false;
    this.responseDelayMs = opts.responseDelayMs;
    this.maxRegisters = MAX_READ_REGISTERS;
    if (opts.maxRegistersPerRequest !== undefined) {
      this.maxRegistersPerRequest = opts.maxRegistersPerRequest;
    }
    for (const h of opts.holes ?? []) this.addHole(h);
  }

  get maxRegistersPerRequest(): number {
    return this.maxRegisters;
  }

  set maxRegistersPerRequest(n: number) {
    if (!Number.isInteger(n) || n < 1 || n > MAX_READ_REGISTERS) {
      throw new RangeError(`maxRegistersPerRequest ${n} must be 1-${MAX_READ_REGISTERS}`);
    }
    this.maxRegisters = n;
  }

  addHole(hole: Hole): void {
    const { table, from, to } = hole;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 65535 || from > to) {
      throw new RangeError(`hole ${table} ${from}-${to} must satisfy 0 <= from <= to <= 65535`);
    }
    this.holeRanges[table].push(from, to);
  }

  clearHoles(table?: ModbusTable): void {
    for (const t of table ? [table] : MODBUS_TABLES) this.holeRanges[t].length = 0;
  }

  holes(): Hole[] {
    const out: Hole[] = [];
    for (const table of MODBUS_TABLES) {
      const r = this.holeRanges[table];
      for (let i = 0; i + 1 < r.length; i += 2) out.push({ table, from: r[i]!, to: r[i + 1]! });
    }
    return out;
  }

  /** Marks a range as read-only: writes to it answer exception 02; reads go on. */
  protect(range: Hole): void {
    this.readOnlyRanges[range.table].push(range.from, range.to);
  }

  /** True when [address, address + count) cannot be written: a hole or a read-only range. */
  refusesWrite(table: ModbusTable, address: number, count: number): boolean {
    return (
      this.touchesHole(table, address, count) ||
      overlaps(this.readOnlyRanges[table], address, count)
    );
  }

  /** True when [address, address + count) touches a hole of the table. */
  touchesHole(table: ModbusTable, address: number, count: number): boolean {
    return overlaps(this.holeRanges[table], address, count);
  }

  /** Raw words of a register table, or 0/1 bits of a bit table. */
  read(table: ModbusTable, address: number, count: number): number[] {
    checkAddress(address, count);
    return Array.from(this[table].subarray(address, address + count));
  }

  /** Raw words (masked to 16 bits) or bits (any truthy value is 1). */
  write(table: ModbusTable, address: number, values: readonly (number | boolean)[]): void {
    checkAddress(address, values.length);
    const target = this[table];
    const bits = table === "coil" || table === "discreteInput";
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      target[address + i] = bits ? (v ? 1 : 0) : Number(v) & 0xffff;
    }
  }
}

/** True when [address, address + count) overlaps one of `ranges` (from, to pairs, inclusive). */
function overlaps(ranges: readonly number[], address: number, count: number): boolean {
  const last = address + count - 1;
  for (let i = 0; i + 1 < ranges.length; i += 2)
    if (ranges[i]! <= last && ranges[i + 1]! >= address) return true;
  return false;
}
