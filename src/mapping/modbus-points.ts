import { ShadowgateError } from "../core/errors.js";
import { isBitTable, type PointValue, type Quality } from "../core/types.js";
import { formatAddress, parseBitNumber, parseRegister, type ResolvedAddress } from "./address.js";
import { decodeBit, decodeRegisters, isWide, registerCount, resolveByteOrder } from "./codec.js";
import {
  labels,
  pointBase,
  type MappingFields,
  type MappingKind,
  type PointFields,
} from "./compile.js";
import type { CodecSpec, CompiledPoint, ModbusDevicePlan, PointType } from "./types.js";
import { INTEGER_TYPES, NARROW_BYTE_ORDERS, NUMERIC_TYPES, WIDE_BYTE_ORDERS } from "./types.js";

/** Modbus points: registers and bits, decoded by the codec (type, byte order, scale, bit). */

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
export function compileModbusPoint(
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

  return { ...pointBase(name, p, defaults), table: at.table, address: at.address, count, codec };
}

/** Keys that place or type a Modbus point; an OPC UA node has its own address and type. */
export const MODBUS_KEYS = [
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

export const modbusPoints: MappingKind<CompiledPoint> = {
  kind: "modbus",
  addressing: "register addresses",
  claims: (fields) => fields.node === undefined,
  foreign: () => [
    "node",
    "this file maps Modbus points (see its first point); one source kind per file",
  ],
  compilePoint: compileModbusPoint,
  plan(common, m: MappingFields, points, problems): ModbusDevicePlan {
    if (m.mode !== undefined)
      problems.push({
        path: ["mode"],
        message: "mode is for OPC UA devices; Modbus devices are polled",
      });
    return { ...common, kind: "modbus", unitId: m.unitId, points };
  },
  describe(point) {
    const at = `${formatAddress(point.table, point.address)} (${point.table} ${point.address})`;
    if (isBitTable(point.table)) return at;
    const c = point.codec;
    return [
      at,
      `${c.type}${c.type === "string" ? `[${c.length ?? point.count}]` : ""} ${c.byteOrder}`,
      ...(c.bit !== undefined ? [`bit ${c.bit}`] : []),
      ...(c.scale !== undefined ? [`scale ${c.scale}`] : []),
      ...(c.offset !== undefined ? [`offset ${c.offset}`] : []),
    ].join(", ");
  },
};

/** Raw words or bits of one point -> its engineering value, or a bad quality saying why not. */
export function decodePoint(
  point: CompiledPoint,
  quality: Quality,
  data: readonly number[] | undefined,
): { value?: PointValue; quality: Quality } {
  if (quality.status !== "good" || data === undefined) return { quality };
  try {
    const value = isBitTable(point.table) ? decodeBit(data) : decodeRegisters(point.codec, data);
    return { value, quality };
  } catch (e) {
    if (!(e instanceof ShadowgateError)) throw e;
    return { quality: { status: "bad", code: e.code, reason: e.message } };
  }
}
