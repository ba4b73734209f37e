import type { ModbusTable } from "../core/types.js";
import { isBitTable } from "../core/types.js";
import { parseBitNumber, parseRegister, type ResolvedAddress } from "./address.js";
import { isWide, registerCount, resolveByteOrder } from "./codec.js";
import type {
  CodecSpec,
  CompiledPoint,
  DevicePlan,
  NodePoint,
  PointBase,
  PointType,
  SourcePosition,
} from "./types.js";
import { INTEGER_TYPES, NARROW_BYTE_ORDERS, NUMERIC_TYPES, WIDE_BYTE_ORDERS } from "./types.js";

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
  device: { productKey: string; deviceName: string };
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
const labels = (e: Record<string, string>): Record<string, string> =>
  Object.assign(Object.create(null) as Record<string, string>, e);

function resolveAddress(
  p: PointFields,
  problem: (key: string, message: string) => void,
): ResolvedAddress | undefined {
  const forms = [
    p.register !== undefined && "register",
    p.coil !== undefined && "coil",
    p.discreteInput !== undefined && "discreteInput",
    (p.table !== undefined || p.offset !== undefined) && "table",
  ].filter((f): f is string => typeof f === "string");
  if (forms.length === 0) {
    problem("", "needs an address: register, coil, discreteInput, or table with offset");
    return undefined;
  }
  if (forms.length > 1) {
    problem(forms[1] ?? "", `names two addresses (${forms.join(" and ")}); keep one`);
    return undefined;
  }
  let resolved: ResolvedAddress | string;
  if (p.register !== undefined) resolved = parseRegister(p.register);
  else if (p.coil !== undefined) resolved = parseBitNumber(p.coil, "coil");
  else if (p.discreteInput !== undefined)
    resolved = parseBitNumber(p.discreteInput, "discreteInput");
  else if (p.table === undefined) {
    problem(
      "offset",
      "offset is the 0-based address and goes with table (for value = raw * scale + c, use valueOffset)",
    );
    return undefined;
  } else if (p.offset === undefined) {
    problem("table", "table needs offset, the 0-based address inside it");
    return undefined;
  } else resolved = { table: p.table, address: p.offset };
  if (typeof resolved === "string") {
    problem(forms[0] ?? "", resolved);
    return undefined;
  }
  return resolved;
}

/**
 * One point's checks; `issues` collects [key, message] pairs, the point is undefined if any.
 * The simulator's profiles use it too, so both read addresses and types the same way.
 */
export function compilePoint(
  name: string,
  p: PointFields,
  defaults: MappingFields["defaults"],
  issues: Array<[string, string]>,
): Omit<CompiledPoint, "position"> | undefined {
  const problem = (key: string, message: string): void => {
    issues.push([key, message]);
  };
  if (p.samplingInterval !== undefined)
    problem(
      "samplingInterval",
      "samplingInterval is for OPC UA nodes; Modbus points follow pollInterval",
    );
  const at = resolveAddress(p, problem);
  if (at === undefined) return undefined;

  let type: PointType;
  let codec: CodecSpec;
  if (isBitTable(at.table)) {
    type = p.type ?? "bool";
    if (type !== "bool") {
      problem("type", `${type} needs registers; a ${at.table} holds one bit (use a register)`);
    }
    for (const key of ["byteOrder", "scale", "valueOffset", "length", "bit", "enum"] as const) {
      if (p[key] !== undefined)
        problem(key, `does not apply to a ${at.table}, which holds one bit`);
    }
    codec = { type: "bool", byteOrder: "AB" };
  } else {
    type = p.type ?? "uint16";
    const wide = isWide(type);
    let byteOrder = p.byteOrder ?? (wide ? defaults?.byteOrder : undefined);
    if (p.byteOrder !== undefined) {
      const allowed: readonly string[] = wide ? WIDE_BYTE_ORDERS : NARROW_BYTE_ORDERS;
      if (!allowed.includes(p.byteOrder)) {
        problem("byteOrder", `${type} takes ${allowed.join(", ")}, not ${p.byteOrder}`);
        byteOrder = undefined;
      }
      if (p.bit !== undefined)
        problem("byteOrder", "a bit is counted in the register as read; drop byteOrder");
    }
    if (p.bit !== undefined && !["uint16", "int16", "bool"].includes(type)) {
      problem("bit", `bit applies to 16-bit registers (type uint16), not ${type}`);
    }
    if (type === "string" && p.length === undefined) {
      problem("type", "a string point needs length, its size in registers");
    }
    if (p.length !== undefined && type !== "string") {
      problem("length", `length is for string points, not ${type}`);
    }
    if (p.enum !== undefined && (!INTEGER_TYPES.has(type) || p.bit !== undefined)) {
      problem("enum", `enum needs an integer type, not ${p.bit !== undefined ? "a bit" : type}`);
    }
    const scaled = p.scale !== undefined || p.valueOffset !== undefined;
    if (scaled && (!NUMERIC_TYPES.has(type) || p.bit !== undefined)) {
      problem(
        p.scale !== undefined ? "scale" : "valueOffset",
        `scaling needs a numeric type, not ${p.bit !== undefined ? "a bit" : type}`,
      );
    }
    if (scaled && p.enum !== undefined) problem("enum", "enum and scale exclude each other");
    if (p.scale === 0) problem("scale", "scale 0 would make every value the same");
    codec = {
      type,
      byteOrder: resolveByteOrder(type, byteOrder),
      ...(p.scale !== undefined && { scale: p.scale }),
      ...(p.valueOffset !== undefined && { offset: p.valueOffset }),
      ...(p.bit !== undefined && { bit: p.bit }),
      ...(p.length !== undefined && { length: p.length }),
      ...(p.enum !== undefined && { enum: labels(p.enum) }),
    };
  }

  const count = isBitTable(at.table) ? 1 : registerCount(codec);
  if (at.address + count - 1 > 65535) {
    problem(
      p.register !== undefined ? "register" : "offset",
      `occupies addresses ${at.address}-${at.address + count - 1}; the last address is 65535`,
    );
  }
  if (p.writable === true && (at.table === "input" || at.table === "discreteInput")) {
    problem(
      "writable",
      `${at.table === "input" ? "input registers" : "discrete inputs"} are read-only; writable needs a holding register or a coil`,
    );
  }
  const numeric = NUMERIC_TYPES.has(type) && p.bit === undefined && p.enum === undefined;
  for (const key of ["min", "max", "deadband"] as const) {
    if (p[key] !== undefined && !numeric) problem(key, `${key} needs a numeric point`);
  }
  if (p.min !== undefined && p.max !== undefined && p.min > p.max) {
    problem("min", `min ${p.min} is above max ${p.max}`);
  }
  if (issues.length > 0) return undefined;

  return { ...base(name, p, defaults), table: at.table, address: at.address, count, codec };
}

/** The fields every point has, whatever carries it. */
function base(
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

/** Keys that place or type a Modbus point; an OPC UA node has its own address and type. */
const MODBUS_KEYS = [
  "register",
  "coil",
  "discreteInput",
  "table",
  "offset",
  "type",
  "byteOrder",
  "length",
  "bit",
] as const;

/** An OPC UA point's checks, as compilePoint does them for Modbus. */
export function compileNodePoint(
  name: string,
  p: PointFields & { node: string },
  defaults: MappingFields["defaults"],
  issues: Array<[string, string]>,
): Omit<NodePoint, "position"> | undefined {
  for (const key of MODBUS_KEYS) {
    if (p[key] !== undefined)
      issues.push([
        key,
        key === "type"
          ? "an OPC UA node is typed by the server; drop type"
          : `${key} is a Modbus address key; an OPC UA point has node only`,
      ]);
  }
  if (p.scale === 0) issues.push(["scale", "scale 0 would make every value the same"]);
  if ((p.scale !== undefined || p.valueOffset !== undefined) && p.enum !== undefined)
    issues.push(["enum", "enum and scale exclude each other"]);
  if (p.min !== undefined && p.max !== undefined && p.min > p.max)
    issues.push(["min", `min ${p.min} is above max ${p.max}`]);
  if (issues.length > 0) return undefined;
  return {
    ...base(name, p, defaults),
    node: p.node,
    ...(p.samplingInterval !== undefined && { samplingIntervalMs: p.samplingInterval }),
    ...(p.scale !== undefined && { scale: p.scale }),
    ...(p.valueOffset !== undefined && { valueOffset: p.valueOffset }),
    ...(p.enum !== undefined && { enum: labels(p.enum) }),
  };
}

export function compileMapping(
  file: string,
  m: MappingFields,
  positionOf: (path: readonly (string | number)[]) => SourcePosition | undefined = () => undefined,
): { plan: DevicePlan; problems: MappingProblem[] } {
  const found: MappingProblem[] = [];
  const modbus: CompiledPoint[] = [];
  const nodes: NodePoint[] = [];
  // One file, one kind of source: the first point decides, a point of the other kind is wrong.
  const first = Object.values(m.points)[0];
  const opcua = first?.node !== undefined;
  for (const [name, fields] of Object.entries(m.points)) {
    const issues: Array<[string, string]> = [];
    const position = positionOf(["points", name]);
    const at = <T extends object>(point: T | undefined): T | undefined =>
      point && (position ? { ...point, position } : point);
    if (fields.node !== undefined && !opcua) {
      issues.push([
        "node",
        "this file maps Modbus points (see its first point); one source kind per file",
      ]);
    } else if (fields.node === undefined && opcua) {
      issues.push(["", "needs node: this file maps OPC UA nodes (see its first point)"]);
    } else if (fields.node !== undefined) {
      const point = at(
        compileNodePoint(name, { ...fields, node: fields.node }, m.defaults, issues),
      );
      if (point) nodes.push(point);
    } else {
      const point = at(compilePoint(name, fields, m.defaults, issues));
      if (point) modbus.push(point);
    }
    for (const [key, message] of issues) {
      found.push({ path: key === "" ? ["points", name] : ["points", name, key], message });
    }
  }
  if (m.mode !== undefined && !opcua)
    found.push({
      path: ["mode"],
      message: "mode is for OPC UA devices; Modbus devices are polled",
    });

  // A leaf and an object cannot share a path: `alarm` and `alarm.overheat` collide.
  const points: PointBase[] = [...modbus, ...nodes];
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

  const common = {
    file,
    productKey: m.device.productKey,
    deviceName: m.device.deviceName,
    sourceId: m.source,
    pollIntervalMs: m.pollInterval,
  };
  return {
    plan: opcua
      ? { ...common, protocol: "opcua", mode: m.mode ?? "subscribe", points: nodes }
      : { ...common, protocol: "modbus", unitId: m.unitId, points: modbus },
    problems: found,
  };
}
