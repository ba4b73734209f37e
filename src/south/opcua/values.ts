/**
 * OPC UA values <-> JSON. Reading: a Variant becomes the JSON a shadow can carry. Writing: a JSON
 * value becomes a Variant of the node's own DataType, or a ShadowgateError saying why it cannot.
 */
import {
  type DataValue,
  DataType,
  resolveNodeId,
  type StatusCode,
  type Variant,
  VariantArrayType,
  type VariantOptions,
} from "node-opcua";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import { GOOD, type JsonValue, type Quality } from "../../core/types.js";

/** OPC UA's null DateTime (1601-01-01T00:00:00Z) and anything before it. */
const MIN_DATE_MS = Date.UTC(1601, 0, 1);
const FLOAT_MAX = 3.4028234663852886e38;
const INT_RANGES: Partial<Record<DataType, readonly [number, number]>> = {
  [DataType.SByte]: [-128, 127],
  [DataType.Byte]: [0, 255],
  [DataType.Int16]: [-32768, 32767],
  [DataType.UInt16]: [0, 65535],
  [DataType.Int32]: [-2147483648, 2147483647],
  [DataType.UInt32]: [0, 4294967295],
};
const INT64_RANGE = [-(2n ** 63n), 2n ** 63n - 1n] as const;
const UINT64_RANGE = [0n, 2n ** 64n - 1n] as const;

/** A value JSON cannot carry (NaN, Infinity). */
export class NotFiniteError extends Error {}

/** Severity bits of a StatusCode: 0 good, 1 uncertain, 2 (and 3) bad. */
export function severity(status: StatusCode): "good" | "uncertain" | "bad" {
  const s = status.value >>> 30;
  return s === 0 ? "good" : s === 1 ? "uncertain" : "bad";
}

/** A status code's name without the info bits node-opcua appends ("BadNotWritable"). */
export function statusName(status: StatusCode): string {
  return status.name.split("#")[0] ?? status.name;
}

export interface Converted {
  readonly quality: Quality;
  readonly value?: JsonValue;
  readonly sourceTs?: number;
  /**
   * What makes two notifications the same: the status code and the value as JSON. A replayed
   * notification has the signature of what was last delivered and is dropped.
   */
  readonly signature: string;
}

/**
 * A DataValue as the gateway reports it. Good and Uncertain values are both reported good with
 * their value (the core Quality type has no "uncertain"; see samples.ts). Bad ones carry the
 * status code's name as the reason.
 */
export function convertDataValue(dv: DataValue): Converted {
  const status = dv.statusCode;
  const src = dv.sourceTimestamp?.getTime();
  const sourceTs = src !== undefined && Number.isFinite(src) && src > MIN_DATE_MS ? src : undefined;
  const ts = sourceTs !== undefined ? { sourceTs } : {};
  if (severity(status) === "bad") {
    const name = statusName(status);
    return {
      quality: { status: "bad", code: ErrorCodes.OPCUA_BAD, reason: name },
      ...ts,
      signature: `${status.value}`,
    };
  }
  try {
    const value = variantToJson(dv.value);
    return {
      quality: GOOD,
      value,
      ...ts,
      signature: `${status.value}|${JSON.stringify(value)}`,
    };
  } catch (err) {
    const notFinite = err instanceof NotFiniteError;
    const reason = notFinite
      ? `the value is ${(err as Error).message}, which JSON cannot carry`
      : `cannot convert the value: ${(err as Error).message}`;
    return {
      quality: {
        status: "bad",
        code: notFinite ? ErrorCodes.CODEC_NOT_FINITE : ErrorCodes.OPCUA_BAD,
        reason,
      },
      ...ts,
      signature: `${status.value}|!${reason}`,
    };
  }
}

/** A Variant as JSON: typed arrays become plain arrays, matrices nested arrays. */
export function variantToJson(v: Variant | null | undefined): JsonValue {
  if (!v || v.dataType === DataType.Null) return null;
  if (v.arrayType === VariantArrayType.Scalar) return scalarToJson(v.dataType, v.value);
  const items: unknown[] = v.value == null ? [] : Array.from(v.value as ArrayLike<unknown>);
  const flat = items.map((x) => scalarToJson(v.dataType, x));
  const dims = v.dimensions;
  if (v.arrayType === VariantArrayType.Matrix && dims && dims.length > 1)
    return reshape(flat, dims);
  return flat;
}

function reshape(flat: JsonValue[], dims: readonly number[]): JsonValue[] {
  const [first, ...rest] = dims;
  if (first === undefined || rest.length === 0) return flat;
  const size = rest.reduce((a, b) => a * b, 1);
  const out: JsonValue[] = [];
  for (let i = 0; i < first; i++) out.push(reshape(flat.slice(i * size, (i + 1) * size), rest));
  return out;
}

function scalarToJson(type: DataType, x: unknown): JsonValue {
  if (x === null || x === undefined) return null;
  switch (type) {
    case DataType.Boolean:
      return Boolean(x);
    case DataType.SByte:
    case DataType.Byte:
    case DataType.Int16:
    case DataType.UInt16:
    case DataType.Int32:
    case DataType.UInt32:
      return Number(x);
    case DataType.Float:
    case DataType.Double: {
      const n = Number(x);
      if (!Number.isFinite(n)) throw new NotFiniteError(String(n));
      return n;
    }
    case DataType.Int64:
    case DataType.UInt64:
      return int64ToJson(x, type === DataType.Int64);
    case DataType.String:
    case DataType.XmlElement:
      return String(x);
    case DataType.DateTime: {
      const t = x instanceof Date ? x.getTime() : NaN;
      return Number.isFinite(t) && t > MIN_DATE_MS ? new Date(t).toISOString() : null;
    }
    case DataType.ByteString:
      return Buffer.isBuffer(x) ? x.toString("base64") : null;
    case DataType.LocalizedText:
      return (x as { text?: string | null }).text ?? null;
    case DataType.QualifiedName: {
      const q = x as { namespaceIndex?: number; name?: string | null };
      if (q.name == null) return null;
      return q.namespaceIndex ? `${q.namespaceIndex}:${q.name}` : q.name;
    }
    case DataType.StatusCode:
      return statusName(x as StatusCode);
    case DataType.Variant:
      return variantToJson(x as Variant);
    case DataType.Guid:
    case DataType.NodeId:
    case DataType.ExpandedNodeId:
      return String(x);
    default:
      return plainJson(x);
  }
}

/** node-opcua's Int64/UInt64: [high, low] 32-bit words. Exact numbers up to 2^53, strings beyond. */
function int64ToJson(x: unknown, signed: boolean): JsonValue {
  let big: bigint;
  if (Array.isArray(x)) {
    const [high = 0, low = 0] = x as number[];
    big = (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
    if (signed) big = BigInt.asIntN(64, big);
  } else if (typeof x === "bigint") big = x;
  else big = BigInt(Math.trunc(Number(x)));
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : big.toString();
}

/** Structures and the rest: their own JSON form, made JSON-safe. */
function plainJson(x: unknown, depth = 0): JsonValue {
  if (depth > 32) return null;
  if (x === null || x === undefined) return null;
  switch (typeof x) {
    case "boolean":
    case "string":
      return x;
    case "number":
      if (!Number.isFinite(x)) throw new NotFiniteError(String(x));
      return x;
    case "bigint":
      return Number.isSafeInteger(Number(x)) ? Number(x) : x.toString();
    case "object":
      break;
    default:
      return null;
  }
  if (x instanceof Date) return Number.isFinite(x.getTime()) ? x.toISOString() : null;
  if (Buffer.isBuffer(x)) return x.toString("base64");
  if (ArrayBuffer.isView(x)) return Array.from(x as unknown as ArrayLike<number>);
  if (Array.isArray(x)) return x.map((e) => plainJson(e, depth + 1));
  const withJson = x as { toJSON?: () => unknown };
  const source =
    typeof withJson.toJSON === "function" ? withJson.toJSON() : (x as Record<string, unknown>);
  if (source !== x) return plainJson(source, depth + 1);
  const out: { [k: string]: JsonValue } = {};
  for (const [k, v] of Object.entries(source as Record<string, unknown>)) {
    if (typeof v === "function" || k.startsWith("_")) continue;
    out[k] = plainJson(v, depth + 1);
  }
  return out;
}

/** What a write needs to know of a node, read once per session. */
export interface NodeType {
  /** The built-in type values are written as; undefined: abstract (BaseDataType), inferred. */
  readonly dataType: DataType | undefined;
  /** -1 scalar, >= 1 that many dimensions, 0 / -2 / -3 either. */
  readonly valueRank: number;
}

/**
 * The JSON value as a Variant of the node's type. Refuses, with a ShadowgateError, what the type
 * cannot hold: the wrong kind (CODEC_TYPE), out of range or not an integer (CODEC_RANGE), NaN and
 * Infinity (CODEC_NOT_FINITE).
 */
export function jsonToVariant(type: NodeType, value: JsonValue): VariantOptions {
  const { valueRank } = type;
  const isArray = Array.isArray(value);
  if (valueRank === -1 && isArray) {
    throw new ShadowgateError(ErrorCodes.CODEC_TYPE, "the node holds a scalar, got an array");
  }
  if (valueRank >= 1 && !isArray) {
    throw new ShadowgateError(
      ErrorCodes.CODEC_TYPE,
      `the node holds an array, got ${describe(value)}`,
    );
  }
  if (valueRank > 1) {
    throw new ShadowgateError(
      ErrorCodes.CODEC_TYPE,
      `writing ${valueRank}-dimensional arrays is not supported`,
    );
  }
  const dataType = type.dataType ?? inferType(isArray ? (value as JsonValue[])[0] : value);
  if (isArray) {
    const items = (value as JsonValue[]).map((e, i) => {
      if (Array.isArray(e)) {
        throw new ShadowgateError(ErrorCodes.CODEC_TYPE, `element ${i}: nested arrays`);
      }
      try {
        return scalarFromJson(dataType, e);
      } catch (err) {
        if (err instanceof ShadowgateError) {
          throw new ShadowgateError(err.code, `element ${i}: ${err.message}`, err.details);
        }
        throw err;
      }
    });
    return { dataType, arrayType: VariantArrayType.Array, value: items };
  }
  return { dataType, arrayType: VariantArrayType.Scalar, value: scalarFromJson(dataType, value) };
}

function inferType(value: JsonValue | undefined): DataType {
  if (typeof value === "boolean") return DataType.Boolean;
  if (typeof value === "number") return DataType.Double;
  if (typeof value === "string") return DataType.String;
  throw new ShadowgateError(
    ErrorCodes.CODEC_TYPE,
    `the node's DataType is abstract and ${describe(value)} does not say which type to write`,
  );
}

function describe(value: JsonValue | undefined): string {
  return value === undefined ? "nothing" : (JSON.stringify(value) ?? String(value));
}

function wrongKind(type: DataType, expected: string, value: JsonValue): ShadowgateError {
  return new ShadowgateError(
    ErrorCodes.CODEC_TYPE,
    `${DataType[type]} takes ${expected}, got ${describe(value)}`,
    { dataType: DataType[type] },
  );
}

function outOfRange(type: DataType, value: JsonValue, why: string): ShadowgateError {
  return new ShadowgateError(ErrorCodes.CODEC_RANGE, `${describe(value)} ${why}`, {
    dataType: DataType[type],
  });
}

function finite(type: DataType, value: JsonValue): number {
  if (typeof value !== "number") throw wrongKind(type, "a number", value);
  if (!Number.isFinite(value)) {
    throw new ShadowgateError(ErrorCodes.CODEC_NOT_FINITE, `${value} cannot be written`, {
      dataType: DataType[type],
    });
  }
  return value;
}

function scalarFromJson(type: DataType, value: JsonValue): unknown {
  switch (type) {
    case DataType.Boolean:
      if (typeof value !== "boolean") throw wrongKind(type, "true or false", value);
      return value;
    case DataType.SByte:
    case DataType.Byte:
    case DataType.Int16:
    case DataType.UInt16:
    case DataType.Int32:
    case DataType.UInt32: {
      const n = finite(type, value);
      const [min, max] = INT_RANGES[type] ?? [0, 0];
      if (!Number.isInteger(n))
        throw outOfRange(type, value, `is not an integer (${DataType[type]})`);
      if (n < min || n > max) {
        throw outOfRange(type, value, `is out of range for ${DataType[type]} (${min}..${max})`);
      }
      return n;
    }
    case DataType.Int64:
    case DataType.UInt64:
      return int64FromJson(type, value);
    case DataType.Float: {
      const n = finite(type, value);
      if (Math.abs(n) > FLOAT_MAX) throw outOfRange(type, value, "is out of range for Float");
      return n;
    }
    case DataType.Double:
      return finite(type, value);
    case DataType.String:
    case DataType.XmlElement:
      if (typeof value !== "string") throw wrongKind(type, "a string", value);
      return value;
    case DataType.LocalizedText:
      if (typeof value !== "string") throw wrongKind(type, "a string", value);
      return { text: value };
    case DataType.DateTime: {
      const t =
        typeof value === "number" ? value : typeof value === "string" ? Date.parse(value) : NaN;
      if (typeof value !== "number" && typeof value !== "string") {
        throw wrongKind(type, "an ISO 8601 string or milliseconds since the epoch", value);
      }
      if (!Number.isFinite(t)) throw outOfRange(type, value, "is not a valid date");
      return new Date(t);
    }
    case DataType.ByteString:
      if (typeof value !== "string") throw wrongKind(type, "a base64 string", value);
      return Buffer.from(value, "base64");
    case DataType.Guid:
      if (
        typeof value !== "string" ||
        !/^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$/i.test(value)
      ) {
        throw wrongKind(type, "a GUID string", value);
      }
      return value;
    case DataType.NodeId:
      if (typeof value !== "string") throw wrongKind(type, "a NodeId string", value);
      try {
        return resolveNodeId(value);
      } catch {
        throw wrongKind(type, "a NodeId string", value);
      }
    default:
      throw new ShadowgateError(
        ErrorCodes.CODEC_TYPE,
        `writing ${DataType[type] ?? `DataType ${type}`} values is not supported`,
        { dataType: DataType[type] },
      );
  }
}

/** Int64/UInt64 from a safe-integer number or a decimal string, as node-opcua's [high, low]. */
function int64FromJson(type: DataType, value: JsonValue): [number, number] {
  let big: bigint;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new ShadowgateError(ErrorCodes.CODEC_NOT_FINITE, `${value} cannot be written`);
    }
    if (!Number.isInteger(value)) {
      throw outOfRange(type, value, `is not an integer (${DataType[type]})`);
    }
    if (!Number.isSafeInteger(value)) {
      throw outOfRange(type, value, "is not exact as a JSON number; write it as a decimal string");
    }
    big = BigInt(value);
  } else if (typeof value === "string" && /^-?\d+$/.test(value.trim())) {
    big = BigInt(value.trim());
  } else {
    throw wrongKind(type, "an integer or a decimal string", value);
  }
  const [min, max] = type === DataType.Int64 ? INT64_RANGE : UINT64_RANGE;
  if (big < min || big > max) {
    throw outOfRange(type, value, `is out of range for ${DataType[type]} (${min}..${max})`);
  }
  const bits = BigInt.asUintN(64, big);
  return [Number(bits >> 32n), Number(bits & 0xffffffffn)];
}
