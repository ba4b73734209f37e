/**
 * The values an OPC UA simulator variable holds, as plain JavaScript: no node-opcua here, so
 * that profiles can be checked without loading it.
 *
 * | DataType                           | JavaScript value                      |
 * | ---------------------------------- | ------------------------------------- |
 * | Boolean                            | boolean                               |
 * | Int16, UInt16, Int32, UInt32       | integer number                        |
 * | Float, Double                      | number (Float is rounded to float32)  |
 * | Int64, UInt64                      | bigint (numbers and decimal strings accepted) |
 * | String                             | string                                |
 * | DateTime                           | Date (ISO strings accepted)           |
 * | arrays (`array: true`)             | readonly number[] of a numeric type   |
 */
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";

export const OPCUA_DATA_TYPES = [
  "Boolean",
  "Int16",
  "UInt16",
  "Int32",
  "UInt32",
  "Int64",
  "UInt64",
  "Float",
  "Double",
  "String",
  "DateTime",
] as const;

export type OpcuaDataType = (typeof OPCUA_DATA_TYPES)[number];

/** A variable's value: see the table at the top of this module. */
export type OpcuaSimValue = boolean | number | bigint | string | Date | readonly number[];

/** What a value is checked against. */
export interface OpcuaValueType {
  readonly dataType: OpcuaDataType;
  readonly array: boolean;
}

const INT_RANGE: Partial<Record<OpcuaDataType, readonly [number, number]>> = {
  Int16: [-32768, 32767],
  UInt16: [0, 65535],
  Int32: [-2147483648, 2147483647],
  UInt32: [0, 4294967295],
};

const BIG_RANGE: Partial<Record<OpcuaDataType, readonly [bigint, bigint]>> = {
  Int64: [-(2n ** 63n), 2n ** 63n - 1n],
  UInt64: [0n, 2n ** 64n - 1n],
};

/** Types an `array: true` variable may have (64-bit integers travel as word pairs: not here). */
export const ARRAY_DATA_TYPES: ReadonlySet<OpcuaDataType> = new Set([
  "Int16",
  "UInt16",
  "Int32",
  "UInt32",
  "Float",
  "Double",
]);

export const isInt64Type = (t: OpcuaDataType): t is "Int64" | "UInt64" => t in BIG_RANGE;

/** Integer types up to 32 bits, Float and Double: the ones computed with as plain numbers. */
export const isNumberType = (t: OpcuaDataType): boolean =>
  t === "Float" || t === "Double" || t in INT_RANGE;

export const isIntegerType = (t: OpcuaDataType): boolean => t in INT_RANGE || t in BIG_RANGE;

/** The smallest and largest value of an integer type, as bigints. */
export function integerRange(t: OpcuaDataType): readonly [bigint, bigint] {
  const big = BIG_RANGE[t];
  if (big) return big;
  const small = INT_RANGE[t];
  if (!small) throw new RangeError(`${t} is not an integer type`);
  return [BigInt(small[0]), BigInt(small[1])];
}

const describe = (v: unknown): string =>
  typeof v === "bigint"
    ? `${v}n`
    : v instanceof Date
      ? v.toISOString()
      : (JSON.stringify(v) ?? String(v));

const typeError = (t: string, v: unknown): ShadowgateError =>
  new ShadowgateError(ErrorCodes.CODEC_TYPE, `a ${t} value was expected, got ${describe(v)}`);

const rangeError = (t: string, v: unknown): ShadowgateError =>
  new ShadowgateError(ErrorCodes.CODEC_RANGE, `${describe(v)} is out of the ${t} range`);

function coerceScalar(t: OpcuaDataType, v: unknown): Exclude<OpcuaSimValue, readonly number[]> {
  switch (t) {
    case "Boolean":
      if (typeof v !== "boolean") throw typeError(t, v);
      return v;
    case "Float":
    case "Double":
      if (typeof v !== "number") throw typeError(t, v);
      return t === "Float" ? Math.fround(v) : v;
    case "String":
      if (typeof v !== "string") throw typeError(t, v);
      return v;
    case "DateTime": {
      const d =
        v instanceof Date ? new Date(v.getTime()) : typeof v === "string" ? new Date(v) : null;
      if (!d || Number.isNaN(d.getTime())) throw typeError("DateTime (ISO 8601)", v);
      return d;
    }
    case "Int64":
    case "UInt64": {
      let b: bigint;
      if (typeof v === "bigint") b = v;
      else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
      else if (typeof v === "string" && /^-?\d+$/.test(v.trim())) b = BigInt(v.trim());
      else throw typeError(`${t} (an integer, a bigint or a decimal string)`, v);
      const [min, max] = integerRange(t);
      if (b < min || b > max) throw rangeError(t, v);
      return b;
    }
    default: {
      const range = INT_RANGE[t];
      const n = typeof v === "bigint" ? Number(v) : v;
      if (!range || typeof n !== "number" || !Number.isInteger(n)) throw typeError(t, v);
      if (n < range[0] || n > range[1]) throw rangeError(t, v);
      return n;
    }
  }
}

/**
 * The value normalized for its type (Float rounded, 64-bit integers as bigints, dates copied,
 * arrays copied and frozen). Throws a ShadowgateError (SG_CODEC_TYPE or SG_CODEC_RANGE).
 */
export function coerceValue(t: OpcuaValueType, v: unknown): OpcuaSimValue {
  if (!t.array) {
    if (Array.isArray(v) || ArrayBuffer.isView(v)) throw typeError(t.dataType, v);
    return coerceScalar(t.dataType, v);
  }
  if (!Array.isArray(v) && !(ArrayBuffer.isView(v) && !(v instanceof DataView))) {
    throw typeError(`${t.dataType} array`, v);
  }
  const items = Array.from(v as ArrayLike<unknown>, (x) => coerceScalar(t.dataType, x));
  return Object.freeze(items as number[]);
}

/** The value a variable declared without one starts with. */
export function defaultValue(t: OpcuaValueType): OpcuaSimValue {
  if (t.array) return Object.freeze([] as number[]);
  switch (t.dataType) {
    case "Boolean":
      return false;
    case "String":
      return "";
    case "DateTime":
      return new Date(0);
    case "Int64":
    case "UInt64":
      return 0n;
    default:
      return 0;
  }
}

/** A value as a number for comparisons: booleans 0/1, bigints rounded; NaN otherwise. */
export function valueAsNumber(v: OpcuaSimValue): number {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "bigint") return Number(v);
  return Number.NaN;
}

export function sameValue(a: OpcuaSimValue, b: OpcuaSimValue): boolean {
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => Object.is(x, b[i]));
  }
  return Object.is(a, b);
}

/** A copy the caller may keep: dates are mutable. */
export const copyValue = (v: OpcuaSimValue): OpcuaSimValue =>
  v instanceof Date ? new Date(v.getTime()) : v;
