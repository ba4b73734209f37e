import type { Condition, OpcuaDynamic, OpcuaSimProfile, OpcuaVariableDef } from "./profile.js";
import { integerRange, valueAsNumber, type OpcuaSimValue } from "./values.js";

/** How the dynamics read and write values; writes made here are not client writes. */
export interface ValueAccess {
  get(key: string): OpcuaSimValue;
  set(key: string, value: OpcuaSimValue): void;
}

/**
 * One tick of a profile's dynamics. A tick is a fixed step, not scaled by the time elapsed, so
 * the same number of ticks from the same values always gives the same values.
 */
export class ProfileDynamics {
  private readonly defs: ReadonlyMap<string, OpcuaVariableDef>;

  constructor(
    private readonly profile: OpcuaSimProfile,
    private readonly values: ValueAccess,
  ) {
    this.defs = new Map(profile.objects.flatMap((o) => o.variables.map((v) => [v.key, v])));
  }

  step(): void {
    for (const d of this.profile.dynamics) this.run(d);
  }

  private num(key: string): number {
    return valueAsNumber(this.values.get(key));
  }

  private operand(x: number | string): number {
    return typeof x === "number" ? x : this.num(x);
  }

  private holds(c: Condition | undefined): boolean {
    if (c === undefined) return true;
    const v = this.values.get(c.key);
    const on =
      typeof v === "string" ? v !== "" : valueAsNumber(v) !== 0 && !Number.isNaN(valueAsNumber(v));
    return c.negate ? !on : on;
  }

  /** A number written to a Float, Double or 16-32 bit integer variable. */
  private writeNumber(key: string, current: number, next: number): void {
    const def = this.defs.get(key);
    if (!def) return;
    if (def.dataType === "Float" || def.dataType === "Double") {
      this.values.set(key, next);
      return;
    }
    const [lo, hi] = integerRange(def.dataType).map(Number) as [number, number];
    let n = Math.round(next);
    // A fraction of a small distance rounds back to where it was: move by one at least.
    if (n === current && next !== current) n = current + Math.sign(next - current);
    this.values.set(key, Math.min(hi, Math.max(lo, n)));
  }

  private run(d: OpcuaDynamic): void {
    switch (d.kind) {
      case "approach": {
        const goal = this.holds(d.when) ? this.operand(d.target) : d.ambient;
        if (Number.isNaN(goal)) return;
        let x = this.num(d.variable);
        if (Number.isNaN(x)) x = goal;
        let next = x + (goal - x) * d.fraction;
        if (Math.abs(goal - next) <= d.settle) next = goal;
        if (next !== x) this.writeNumber(d.variable, x, next);
        return;
      }
      case "counter": {
        const v = this.values.get(d.variable);
        const current = typeof v === "bigint" ? v : typeof v === "number" ? BigInt(v) : d.min;
        let next = current + d.step;
        if (next > d.max) next = d.min;
        else if (next < d.min) next = d.max;
        this.values.set(d.variable, typeof v === "bigint" ? next : Number(next));
        return;
      }
      case "threshold": {
        const s = this.num(d.source);
        if (Number.isNaN(s)) return;
        const above = d.above === undefined || s > this.operand(d.above);
        const below = d.below === undefined || s < this.operand(d.below);
        if (above && below && this.holds(d.when)) this.values.set(d.variable, d.value);
        else if (d.else !== undefined) this.values.set(d.variable, d.else);
        return;
      }
    }
  }
}
