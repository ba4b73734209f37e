/**
 * Reported updates of the shapes the gateway really stages, for the outbox benchmarks (B5, B6):
 * mapping points grouped under dotted names (the cloud shadow takes at most 128 top-level
 * attributes, so 1,000 points per device are 10 groups of 100), compiled by loadConfig, and
 * every poll cycle's readings fed through the real EdgeShadow, which decides what goes into
 * the update (deadbands, first values) and nests it as `state.reported` does.
 */
import type { JsonObject, PointValue } from "../../../src/core/types.js";
import type {
  CompiledPoint,
  DevicePlan,
  ModbusDevicePlan,
  PointReading,
} from "../../../src/mapping/types.js";
import { seededRandom } from "../../../test/helpers/random.js";
import { EdgeShadow } from "./dist.js";

/** The enum of the state points in the mixed layout. */
const STATES = { 0: "idle", 1: "running", 2: "fault", 3: "maintenance" };

/** The point name of point `k` of `count`, in `groups` groups: "line3.p042". */
export function groupedName(k: number, count: number, groups: number): string {
  const per = Math.ceil(count / groups);
  return `line${Math.floor(k / per)}.p${String(k % per).padStart(3, "0")}`;
}

/**
 * A realistic plant mapping: per ten points six float32 measurements (half with a deadband),
 * two uint16 counters, one coil and one enum state, on consecutive holding registers (coils on
 * their own table), named in `groups` dotted groups.
 * @returns the mapping's `points`
 */
export function mixedPoints(
  count: number,
  groups: number,
): Record<string, Record<string, unknown>> {
  const points: Record<string, Record<string, unknown>> = {};
  let register = 0;
  let coil = 0;
  for (let k = 0; k < count; k++) {
    const name = groupedName(k, count, groups);
    const kind = k % 10;
    if (kind < 6) {
      points[name] = {
        table: "holding",
        offset: register,
        type: "float32",
        ...(kind % 2 === 0 && { deadband: 0.05 }),
      };
      register += 2;
    } else if (kind < 8) {
      points[name] = { table: "holding", offset: register++, type: "uint16" };
    } else if (kind === 8) {
      points[name] = { table: "coil", offset: coil++ };
    } else {
      points[name] = { table: "holding", offset: register++, type: "uint16", enum: STATES };
    }
  }
  return points;
}

/**
 * `count` uint16 points on holding registers 0..count-1, named in `groups` dotted groups: a
 * layout whose every value a simulator holds as one register, so the cloud's final state can
 * be checked word for word.
 */
export function uint16Points(
  count: number,
  groups: number,
): Record<string, Record<string, unknown>> {
  const points: Record<string, Record<string, unknown>> = {};
  for (let k = 0; k < count; k++) {
    points[groupedName(k, count, groups)] = { table: "holding", offset: k, type: "uint16" };
  }
  return points;
}

/** A new value for a point, different enough from the last to be reported. */
function nextValue(
  p: CompiledPoint,
  last: PointValue | undefined,
  random: () => number,
): PointValue {
  if (p.table === "coil" || p.table === "discreteInput" || p.codec.bit !== undefined) {
    return last !== true;
  }
  if (p.codec.enum !== undefined) {
    const labels = Object.values(p.codec.enum);
    return labels[Math.floor(random() * labels.length)] ?? "idle";
  }
  if (p.codec.type === "float32") {
    const base = typeof last === "number" ? last : 20 + random() * 60;
    const step = (random() < 0.5 ? -1 : 1) * (0.1 + random() * 2);
    return Math.round((base + step) * 100) / 100;
  }
  return Math.floor(random() * 65536);
}

export interface Report {
  productKey: string;
  deviceName: string;
  reported: JsonObject;
  ts: number;
}

/** The Modbus devices of a loaded config (the benches' configs have no others). */
export const modbusPlans = (plans: readonly DevicePlan[]): ModbusDevicePlan[] =>
  plans.flatMap((d) => (d.kind === "modbus" ? [d as ModbusDevicePlan] : []));

/**
 * Poll cycles of a plant: every cycle, a seeded `share` of each device's points get a new
 * value; every point is read (good quality) and the readings go through an EdgeShadow of the
 * plans, whose updates are the cycle's reports (one per device that has something to say).
 * The first cycle reports every point (first values). With `readAll: false` only the points
 * that changed are fed after the first cycle: the same reports for mappings without
 * heartbeats, at a tenth of the cost.
 */
export class ReportStream {
  private readonly random: () => number;
  private readonly shadow: InstanceType<typeof EdgeShadow>;
  /** The current value of every point, per device. */
  private readonly values: Map<string, PointValue[]>;
  private cycles = 0;

  /**
   * @param opts  `initial`: the points' values before the first cycle, per device (default:
   *   drawn at random)
   */
  constructor(
    private readonly plans: readonly ModbusDevicePlan[],
    private readonly opts: {
      share: number;
      seed: number;
      startTs: number;
      stepMs: number;
      readAll?: boolean;
      initial?: ReadonlyMap<string, readonly PointValue[]>;
    },
  ) {
    this.random = seededRandom(opts.seed);
    this.shadow = new EdgeShadow(plans);
    this.values = new Map(
      plans.map((d) => {
        const given = opts.initial?.get(d.deviceName);
        return [
          d.deviceName,
          d.points.map((p, k) => given?.[k] ?? nextValue(p, undefined, this.random)),
        ];
      }),
    );
  }

  /**
   * One more cycle in which every point takes the given value (per device, by point index), so
   * the history ends where the plant is; only points whose value differs are reported.
   */
  settle(target: ReadonlyMap<string, readonly PointValue[]>): Report[] {
    const ts = this.opts.startTs + this.cycles * this.opts.stepMs;
    const out: Report[] = [];
    for (const d of this.plans) {
      const values = this.values.get(d.deviceName) ?? [];
      const want = target.get(d.deviceName) ?? [];
      const readings: PointReading[] = [];
      d.points.forEach((point, k) => {
        const v = want[k];
        if (v === undefined || v === values[k]) return;
        values[k] = v;
        readings.push({ point, value: v, quality: { status: "good" }, ts });
      });
      const u = this.shadow.ingest(d.deviceName, readings, ts);
      if (u !== undefined && Object.keys(u.reported).length > 0) {
        out.push({ productKey: d.productKey, deviceName: d.deviceName, reported: u.reported, ts });
      }
    }
    this.cycles++;
    return out;
  }

  /** @returns the reports of the next poll cycle */
  next(): Report[] {
    const ts = this.opts.startTs + this.cycles * this.opts.stepMs;
    const out: Report[] = [];
    for (const d of this.plans) {
      const values = this.values.get(d.deviceName) ?? [];
      let changed: number[] | undefined;
      if (this.cycles > 0) {
        changed = [];
        const changes = Math.round(this.opts.share * d.points.length);
        for (let n = 0; n < changes; n++) {
          const k = Math.floor(this.random() * d.points.length);
          const p = d.points[k];
          if (p !== undefined) values[k] = nextValue(p, values[k], this.random);
          changed.push(k);
        }
      }
      const read =
        changed === undefined || this.opts.readAll !== false ? d.points.map((_, k) => k) : changed;
      const readings = read.flatMap((k) => {
        const point = d.points[k];
        if (point === undefined) return [];
        return [{ point, value: values[k] ?? 0, quality: { status: "good" } as const, ts }];
      });
      const u = this.shadow.ingest(d.deviceName, readings, ts);
      if (u !== undefined && Object.keys(u.reported).length > 0) {
        out.push({ productKey: d.productKey, deviceName: d.deviceName, reported: u.reported, ts });
      }
    }
    this.cycles++;
    return out;
  }
}

/** Leaves (non-object values) of a reported update. */
export function leafCount(v: unknown): number {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return 1;
  let n = 0;
  for (const x of Object.values(v)) n += leafCount(x);
  return n;
}
