import { localShadowName } from "../core/shadow-identity.js";
import type { ModbusTable } from "../core/types.js";
import type { DevicePlan, PlanCommon, PointBase, PointType, SourcePosition } from "./types.js";

/**
 * Compiling a validated mapping file into an immutable DevicePlan. Pure: the caller supplies
 * positions, and receives every problem at once with the key path it belongs to.
 */

/** The fields of a point as the schema validated them (durations already in ms). */
export interface PointFields {
  node?: string;
  samplingInterval?: number;
  register?: number;
  coil?: number;
  discreteInput?: number;
  table?: ModbusTable;
  offset?: number;
  type?: PointType;
  byteOrder?: string;
  scale?: number;
  valueOffset?: number;
  length?: number;
  bit?: number;
  enum?: Record<string, string>;
  writable?: boolean;
  min?: number;
  max?: number;
  deadband?: number;
  onChange?: boolean;
  heartbeat?: number;
  unit?: string;
}

export interface MappingFields {
  device: {
    productKey?: string | undefined;
    deviceName?: string | undefined;
    deviceSecret?: string | undefined;
    thingName?: string | undefined;
    shadowName?: string | undefined;
  };
  source: string;
  unitId: number;
  pollInterval: number;
  mode?: "subscribe" | "poll";
  defaults?: { byteOrder?: string; heartbeat?: number };
  points: Record<string, PointFields>;
}

export interface MappingProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * Enum labels by raw value, without a prototype: decoding looks values up in it, and a value
 * such as "constructor" must find no label rather than Object's.
 */
export const labels = (e: Record<string, string>): Record<string, string> =>
  Object.assign(Object.create(null) as Record<string, string>, e);

/**
 * One kind of point, as a protocol reads it: Modbus registers and bits, OPC UA nodes. The
 * protocol table (south/registry.ts) hands compileMapping the kinds it knows, so adding a
 * protocol adds a kind without touching this file.
 */
export interface MappingKind<P extends PointBase = PointBase> {
  readonly kind: string;
  /** What its points name, for messages: "register addresses", "node". */
  readonly addressing: string;
  /** Whether a point's fields are of this kind; a file's first point decides the file's kind. */
  claims(fields: PointFields): boolean;
  /** Why a point of another kind has no place in a file of this kind: [key, message]. */
  foreign(): readonly [string, string];
  /** One point's checks; `issues` collects [key, message] pairs, the point is undefined if any. */
  compilePoint(
    name: string,
    fields: PointFields,
    defaults: MappingFields["defaults"],
    issues: Array<[string, string]>,
  ): Omit<P, "position"> | undefined;
  /** The device's plan: its own keys (a Modbus unit id, an OPC UA mode) and their checks. */
  plan(
    common: PlanCommon,
    m: MappingFields,
    points: readonly P[],
    problems: MappingProblem[],
  ): DevicePlan;
  /**
   * Where a point is read, for people (the console): "40010 (holding 9), int16 AB, scale 0.1",
   * "ns=2;s=Boiler.Temperature".
   */
  describe(point: P): string;
}

/** The fields every point has, whatever carries it. */
export function pointBase(
  name: string,
  p: PointFields,
  defaults: MappingFields["defaults"],
): Omit<PointBase, "position"> {
  const heartbeatMs = p.heartbeat ?? defaults?.heartbeat;
  return {
    name,
    path: name.split("."),
    writable: p.writable ?? false,
    onChange: p.onChange ?? true,
    ...(p.min !== undefined && { min: p.min }),
    ...(p.max !== undefined && { max: p.max }),
    ...(p.deadband !== undefined && { deadband: p.deadband }),
    ...(heartbeatMs !== undefined && { heartbeatMs }),
    ...(p.unit !== undefined && { unit: p.unit }),
  };
}

export function compileMapping(
  file: string,
  m: MappingFields,
  kinds: readonly MappingKind[],
  positionOf: (path: readonly (string | number)[]) => SourcePosition | undefined = () => undefined,
): { plan: DevicePlan; problems: MappingProblem[] } {
  const found: MappingProblem[] = [];
  const points: PointBase[] = [];
  // One file, one kind of source: the first point decides, a point of another kind is wrong.
  const first = Object.values(m.points)[0];
  const kind = kinds.find((k) => first === undefined || k.claims(first)) ?? kinds[0];
  if (!kind) throw new Error("no point kinds to compile mappings with");
  for (const [name, fields] of Object.entries(m.points)) {
    const issues: Array<[string, string]> = [];
    const position = positionOf(["points", name]);
    if (!kind.claims(fields)) issues.push([...kind.foreign()]);
    else {
      const point = kind.compilePoint(name, fields, m.defaults, issues);
      if (point) points.push(position ? { ...point, position } : point);
    }
    for (const [key, message] of issues) {
      found.push({ path: key === "" ? ["points", name] : ["points", name, key], message });
    }
  }

  // A leaf and an object cannot share a path: `alarm` and `alarm.overheat` collide.
  const leaves = new Set(points.map((p) => p.name));
  for (const p of points) {
    for (let i = 1; i < p.path.length; i++) {
      const prefix = p.path.slice(0, i).join(".");
      if (leaves.has(prefix)) {
        found.push({
          path: ["points", p.name],
          message: `state.reported.${p.name} needs ${prefix} to be an object, but point ${prefix} is a value`,
        });
      }
    }
  }

  const common: PlanCommon = {
    file,
    ...deviceIdentity(m.device),
    sourceId: m.source,
    pollIntervalMs: m.pollInterval,
  };
  return { plan: kind.plan(common, m, points, found), problems: found };
}

/**
 * The shadow identity a mapping's device names (the schema has made sure it names one): an
 * Alibaba triple, or an AWS thing, known locally as the thing, or `thing.shadow` for a named
 * shadow.
 */
function deviceIdentity(
  d: MappingFields["device"],
): Pick<PlanCommon, "addressing" | "productKey" | "deviceName" | "deviceSecret"> {
  if (d.thingName !== undefined) {
    return {
      addressing: "aws",
      productKey: d.thingName,
      deviceName: localShadowName(d.thingName, d.shadowName),
    };
  }
  return {
    productKey: d.productKey ?? "",
    deviceName: d.deviceName ?? "",
    ...(d.deviceSecret !== undefined && { deviceSecret: d.deviceSecret }),
  };
}
