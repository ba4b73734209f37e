import type { PointValue } from "../../core/types.js";
import { decodeRegisters } from "../../mapping/codec.js";
import type { CodecSpec, PointType } from "../../mapping/types.js";
import type { UnitMemory } from "./memory.js";
import {
  encodePointValue,
  isBitTable,
  isBooleanPoint,
  type SimDynamic,
  type SimPoint,
  type SimProfile,
  type SimUnitProfile,
} from "./profile.js";

/** Raw ranges of the integer types; 64-bit ones stop where doubles stop being exact. */
const RAW_RANGE: Partial<Record<PointType, readonly [number, number]>> = {
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

const tidy = (x: number): number => Number.parseFloat(x.toPrecision(15));

/**
 * The nearest value an integer point can hold: the codec refuses values off the point's
 * resolution, and a lag or noise produces exactly such values.
 */
function quantize(spec: CodecSpec, v: number): number {
  const range = RAW_RANGE[spec.type];
  if (!range) return v;
  const scale = spec.scale ?? 1;
  const offset = spec.offset ?? 0;
  const raw = Math.min(range[1], Math.max(range[0], Math.round((v - offset) / scale)));
  return tidy(raw * scale + offset);
}

/** The largest engineering value an integer point holds (Infinity for floats). */
function ceilingOf(spec: CodecSpec): number {
  const range = RAW_RANGE[spec.type];
  if (!range) return Number.POSITIVE_INFINITY;
  const scale = spec.scale ?? 1;
  const offset = spec.offset ?? 0;
  return Math.max(range[0] * scale + offset, range[1] * scale + offset);
}

interface LagState {
  /** The unquantized value: a slow lag on a coarse point would otherwise never leave its step. */
  internal: number;
  /** What the point read right after our last write; anything else means someone wrote it. */
  written: number;
}

/**
 * Typed access to a profile's points and the timers that run its dynamics. Writes made here
 * go straight to memory and emit no "write" event.
 */
export class ProfileRuntime {
  readonly profile: SimProfile;
  /** The last error a dynamic threw on a timer tick (it would otherwise crash the process). */
  lastError: unknown;
  private readonly memory: (unitId: number) => UnitMemory;
  private readonly random: () => number;
  private readonly numeric = new Map<SimPoint, CodecSpec>();
  private readonly lag = new Map<SimDynamic, LagState>();
  private readonly centers = new Map<SimDynamic, number>();
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    profile: SimProfile,
    memory: (unitId: number) => UnitMemory,
    opts: { random?: (() => number) | undefined } = {},
  ) {
    this.profile = profile;
    this.memory = memory;
    this.random = opts.random ?? Math.random;
    for (const u of profile.units) {
      for (const p of u.points.values()) {
        // Dynamics compute on raw numbers: enum labels would get in the way.
        this.numeric.set(p, p.codec.enum ? { ...p.codec, enum: undefined } : p.codec);
      }
    }
    this.reset();
  }

  /** Writes every point's initial value and forgets the dynamics' state. */
  reset(): void {
    this.lag.clear();
    this.centers.clear();
    for (const u of this.profile.units) {
      for (const p of u.points.values()) {
        if (p.initial !== undefined) this.write(u.unitId, p, p.initial);
      }
    }
  }

  /** A point of a unit (default: the profile's first unit). */
  point(name: string, unitId?: number): SimPoint {
    const p = this.unitProfile(unitId).points.get(name);
    if (!p) throw new RangeError(`the profile has no point ${name}`);
    return p;
  }

  /** A point's engineering value, decoded as the gateway would (enum labels included). */
  get(name: string, unitId?: number): PointValue {
    const u = this.unitProfile(unitId);
    const p = this.point(name, u.unitId);
    const mem = this.memory(u.unitId);
    if (isBitTable(p.table)) return mem[p.table][p.address] === 1;
    return decodeRegisters(
      p.codec,
      Array.from(mem[p.table].subarray(p.address, p.address + p.count)),
    );
  }

  /** Sets a point's engineering value; throws a ShadowgateError when the codec refuses it. */
  set(name: string, value: PointValue, unitId?: number): void {
    const u = this.unitProfile(unitId);
    this.write(u.unitId, this.point(name, u.unitId), value);
  }

  /** Advances the dynamics of one unit (default: all) by `dtMs`; tests call it directly. */
  step(dtMs: number, unitId?: number): void {
    for (const u of this.profile.units) {
      if (unitId !== undefined && u.unitId !== unitId) continue;
      for (const d of u.dynamics) this.run(u, d, dtMs);
    }
  }

  get running(): boolean {
    return this.timers.length > 0;
  }

  /** One timer per unit with dynamics, stepping by the time actually elapsed. */
  start(): void {
    if (this.running) return;
    for (const u of this.profile.units) {
      if (u.dynamics.length === 0) continue;
      let last = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        try {
          this.step(now - last, u.unitId);
        } catch (err) {
          this.lastError = err;
        }
        last = now;
      }, u.tickMs);
      // The listening socket keeps a process alive; a timer alone must not.
      timer.unref();
      this.timers.push(timer);
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
  }

  private unitProfile(unitId?: number): SimUnitProfile {
    const u =
      unitId === undefined
        ? this.profile.units[0]
        : this.profile.units.find((x) => x.unitId === unitId);
    if (!u) throw new RangeError(`the profile has no unit ${unitId ?? ""}`);
    return u;
  }

  private words(mem: UnitMemory, p: SimPoint): number[] {
    const table = mem[p.table];
    return Array.from(table.subarray(p.address, p.address + p.count));
  }

  private write(unitId: number, p: SimPoint, value: PointValue): void {
    const mem = this.memory(unitId);
    mem.write(p.table, p.address, encodePointValue(p, value, this.words(mem, p)));
  }

  /** A point as a number: booleans are 0/1; NaN when it cannot be read as one. */
  private num(u: SimUnitProfile, name: string): number {
    const p = u.points.get(name);
    if (!p) return Number.NaN;
    const mem = this.memory(u.unitId);
    if (isBitTable(p.table)) return mem[p.table][p.address] ? 1 : 0;
    try {
      const v = decodeRegisters(this.numeric.get(p) ?? p.codec, this.words(mem, p));
      return typeof v === "boolean" ? (v ? 1 : 0) : Number(v);
    } catch {
      return Number.NaN;
    }
  }

  private writeNumber(u: SimUnitProfile, p: SimPoint, v: number): void {
    if (isBooleanPoint(p)) {
      this.write(u.unitId, p, v !== 0);
      return;
    }
    const spec = this.numeric.get(p) ?? p.codec;
    const mem = this.memory(u.unitId);
    mem.write(
      p.table,
      p.address,
      encodePointValue({ ...p, codec: spec }, quantize(spec, v), this.words(mem, p)),
    );
  }

  private operand(u: SimUnitProfile, x: number | string): number {
    return typeof x === "number" ? x : this.num(u, x);
  }

  private holds(u: SimUnitProfile, when: string | undefined): boolean {
    if (when === undefined) return true;
    const negate = when.startsWith("!");
    const v = this.num(u, negate ? when.slice(1) : when);
    const on = !Number.isNaN(v) && v !== 0;
    return negate ? !on : on;
  }

  private run(u: SimUnitProfile, d: SimDynamic, dtMs: number): void {
    const p = u.points.get(d.point);
    if (!p) return;
    switch (d.kind) {
      case "approach": {
        const current = this.num(u, d.point);
        const goal = this.holds(u, d.when) ? this.operand(u, d.target) : d.ambient;
        if (Number.isNaN(goal)) return;
        const state = this.lag.get(d);
        let x = state && state.written === current ? state.internal : current;
        if (Number.isNaN(x)) x = goal;
        x = goal + (x - goal) * Math.exp(-Math.max(0, dtMs) / d.tauMs);
        this.writeNumber(u, p, x);
        this.lag.set(d, { internal: x, written: this.num(u, d.point) });
        return;
      }
      case "noise": {
        let center = d.center ?? this.centers.get(d);
        if (center === undefined) {
          center = typeof p.initial === "number" ? p.initial : this.num(u, d.point);
          if (Number.isNaN(center)) return;
          this.centers.set(d, center);
        }
        this.writeNumber(u, p, center + (this.random() * 2 - 1) * d.amplitude);
        return;
      }
      case "counter": {
        const current = this.num(u, d.point);
        const next = (Number.isNaN(current) ? d.min : current) + d.step;
        const max = d.max ?? ceilingOf(this.numeric.get(p) ?? p.codec);
        this.writeNumber(u, p, next > max ? d.min : next);
        return;
      }
      case "threshold": {
        const s = this.num(u, d.source);
        if (Number.isNaN(s)) return;
        const above = d.above === undefined || s > this.operand(u, d.above);
        const below = d.below === undefined || s < this.operand(u, d.below);
        if (above && below && this.holds(u, d.when)) this.write(u.unitId, p, d.value);
        else if (d.else !== undefined) this.write(u.unitId, p, d.else);
        return;
      }
    }
  }
}
