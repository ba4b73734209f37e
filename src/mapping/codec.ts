import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import type { PointValue } from "../core/types.js";
import type { ByteOrder, CodecSpec, PointType } from "./types.js";

/**
 * Words <-> engineering values. Pure functions. The byte-order rules are the contract in
 * architecture.md: a value's bytes are A (most significant) .. H; ABCD keeps them in order,
 * CDAB reverses the order of the 16-bit words, BADC swaps the bytes inside each word, DCBA does
 * both. The same two flags give the 64-bit forms and the 16-bit AB/BA.
 */

const WIDTH: Record<PointType, number> = {
  bool: 1,
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
  float32: 2,
  int64: 4,
  uint64: 4,
  float64: 4,
  string: 0,
};

export const isWide = (type: PointType): boolean => WIDTH[type] > 1;

/** The byte order a point uses when its file names none. */
export function resolveByteOrder(type: PointType, byteOrder?: string): ByteOrder {
  if (byteOrder !== undefined) return byteOrder as ByteOrder;
  return isWide(type) ? "ABCD" : "AB";
}

export function registerCount(spec: CodecSpec): number {
  return spec.type === "string" ? (spec.length ?? 1) : WIDTH[spec.type];
}

const swapsBytes = (o: ByteOrder): boolean => o === "BADC" || o === "DCBA" || o === "BA";
const reversesWords = (o: ByteOrder): boolean => o === "CDAB" || o === "DCBA";

/** Big-endian bytes (A first) -> register words in the given order. */
function bytesToWords(bytes: Uint8Array, order: ByteOrder): number[] {
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 2) {
    const hi = bytes[i] ?? 0;
    const lo = bytes[i + 1] ?? 0;
    words.push(swapsBytes(order) ? (lo << 8) | hi : (hi << 8) | lo);
  }
  return reversesWords(order) ? words.reverse() : words;
}

/** Register words in the given order -> big-endian bytes (A first). Inverse of bytesToWords. */
function wordsToBytes(words: readonly number[], order: ByteOrder): Uint8Array {
  const ordered = reversesWords(order) ? [...words].reverse() : words;
  const bytes = new Uint8Array(ordered.length * 2);
  ordered.forEach((w, i) => {
    const hi = (w >> 8) & 0xff;
    const lo = w & 0xff;
    bytes[2 * i] = swapsBytes(order) ? lo : hi;
    bytes[2 * i + 1] = swapsBytes(order) ? hi : lo;
  });
  return bytes;
}

/**
 * The shortest decimal that reads back as the same float32, so 0.1f reports as 0.1 rather than
 * 0.10000000149011612, and encoding it again gives the very same bits.
 */
function shortestFloat32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const candidate = Number.parseFloat(x.toPrecision(p));
    if (Math.fround(candidate) === x) return candidate;
  }
  return x;
}

/** Trims binary noise from scaled values (0.1 * 3 = 0.30000000000000004 -> 0.3). */
const tidy = (x: number): number => Number.parseFloat(x.toPrecision(15));

const hasScale = (spec: CodecSpec): boolean =>
  (spec.scale !== undefined && spec.scale !== 1) ||
  (spec.offset !== undefined && spec.offset !== 0);

function notFinite(spec: CodecSpec, raw: number): ShadowgateError {
  return new ShadowgateError(
    ErrorCodes.CODEC_NOT_FINITE,
    `${spec.type} reads ${raw}, which JSON cannot carry; the point is reported bad`,
    { type: spec.type },
  );
}

function decodeInteger(spec: CodecSpec, view: DataView): number | bigint {
  switch (spec.type) {
    case "int16":
      return view.getInt16(0);
    case "uint16":
      return view.getUint16(0);
    case "int32":
      return view.getInt32(0);
    case "uint32":
      return view.getUint32(0);
    case "int64":
      return view.getBigInt64(0);
    case "uint64":
      return view.getBigUint64(0);
    default:
      throw new Error(`not an integer type: ${spec.type}`);
  }
}

/** Words read from a register table -> the engineering value. Throws on NaN and Infinity. */
export function decodeRegisters(spec: CodecSpec, words: readonly number[]): PointValue {
  const count = registerCount(spec);
  if (words.length < count) {
    throw new ShadowgateError(
      ErrorCodes.CODEC_TYPE,
      `${spec.type} needs ${count} registers, got ${words.length}`,
    );
  }
  const own = words.slice(0, count);
  if (spec.bit !== undefined) return (((own[0] ?? 0) >> spec.bit) & 1) === 1;
  if (spec.type === "bool") return (own[0] ?? 0) !== 0;

  const bytes = wordsToBytes(own, spec.byteOrder);
  if (spec.type === "string") {
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return text.replace(/[\0 ]+$/, "");
  }

  const view = new DataView(bytes.buffer);
  let raw: number | bigint;
  if (spec.type === "float32" || spec.type === "float64") {
    const f = spec.type === "float32" ? view.getFloat32(0) : view.getFloat64(0);
    if (!Number.isFinite(f)) throw notFinite(spec, f);
    raw = spec.type === "float32" ? shortestFloat32(f) : f;
  } else {
    raw = decodeInteger(spec, view);
  }

  if (spec.enum !== undefined) {
    const label = spec.enum[raw.toString()];
    if (label !== undefined) return label;
  }
  if (hasScale(spec)) {
    const scaled = Number(raw) * (spec.scale ?? 1) + (spec.offset ?? 0);
    if (!Number.isFinite(scaled)) throw notFinite(spec, scaled);
    return tidy(scaled);
  }
  if (typeof raw === "bigint") {
    // JSON numbers are exact only up to 2^53 - 1; beyond it a decimal string keeps every digit.
    return raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(raw)
      : raw.toString();
  }
  return raw;
}

const INT_RANGE: Partial<Record<PointType, [bigint, bigint]>> = {
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

function typeError(spec: CodecSpec, value: unknown, expected: string): ShadowgateError {
  return new ShadowgateError(
    ErrorCodes.CODEC_TYPE,
    `${spec.type} point takes ${expected}, got ${JSON.stringify(value) ?? String(value)}`,
    { type: spec.type },
  );
}

function rangeError(spec: CodecSpec, value: unknown, why: string): ShadowgateError {
  return new ShadowgateError(ErrorCodes.CODEC_RANGE, `${JSON.stringify(value)} ${why}`, {
    type: spec.type,
  });
}

/** An enum label (or one of its raw numbers) -> the raw number. */
function fromEnum(spec: CodecSpec, value: unknown): number | string | undefined {
  if (spec.enum === undefined) return undefined;
  const entries = Object.entries(spec.enum);
  if (typeof value === "string") {
    const hit = entries.find(([, label]) => label === value);
    if (hit === undefined) {
      throw rangeError(spec, value, `is not one of ${entries.map(([, l]) => l).join(", ")}`);
    }
    return hit[0];
  }
  return undefined;
}

/** The raw integer for a value, inverting scale and offset; refuses what the type cannot hold. */
function toRawInteger(spec: CodecSpec, value: unknown): bigint {
  const range = INT_RANGE[spec.type];
  if (range === undefined) throw new Error(`not an integer type: ${spec.type}`);
  let raw: bigint;
  const label = fromEnum(spec, value);
  if (label !== undefined) {
    raw = BigInt(label);
  } else if (
    typeof value === "string" &&
    (spec.type === "int64" || spec.type === "uint64") &&
    /^-?\d+$/.test(value) &&
    !hasScale(spec)
  ) {
    raw = BigInt(value); // 64-bit values beyond 2^53 travel as decimal strings
  } else if (typeof value === "bigint") {
    raw = value;
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new ShadowgateError(ErrorCodes.CODEC_NOT_FINITE, `${value} cannot be written`, {
        type: spec.type,
      });
    }
    const exact = (value - (spec.offset ?? 0)) / (spec.scale ?? 1);
    const rounded = Math.round(exact);
    // Scaled points accept only values on their resolution: a silently rounded set point is a
    // different set point. The tolerance absorbs binary noise in the division.
    if (Math.abs(exact - rounded) > 1e-6 * Math.max(1, Math.abs(exact))) {
      const step = spec.scale ?? 1;
      throw rangeError(
        spec,
        value,
        hasScale(spec)
          ? `is not a multiple of the point's resolution ${step}`
          : "is not a whole number",
      );
    }
    if (!Number.isSafeInteger(rounded)) throw rangeError(spec, value, "is out of range");
    raw = BigInt(rounded);
  } else {
    throw typeError(spec, value, spec.enum ? "a number or an enum label" : "a number");
  }
  if (raw < range[0] || raw > range[1]) {
    throw rangeError(spec, value, `is out of range for ${spec.type} (raw ${raw})`);
  }
  return raw;
}

/**
 * An engineering value -> the words to write. The exact inverse of decodeRegisters. `current`
 * is the register's present content, needed to change one bit without touching the others.
 */
export function encodeRegisters(
  spec: CodecSpec,
  value: unknown,
  current?: readonly number[],
): number[] {
  if (spec.bit !== undefined) {
    if (typeof value !== "boolean") throw typeError(spec, value, "true or false");
    const word = current?.[0];
    if (word === undefined) {
      throw new ShadowgateError(
        ErrorCodes.CODEC_TYPE,
        "writing one bit of a register needs the register's current value",
      );
    }
    return [value ? word | (1 << spec.bit) : word & ~(1 << spec.bit) & 0xffff];
  }
  if (spec.type === "bool") {
    if (typeof value !== "boolean") throw typeError(spec, value, "true or false");
    return [value ? 1 : 0];
  }

  const count = registerCount(spec);
  const bytes = new Uint8Array(count * 2);
  const view = new DataView(bytes.buffer);

  if (spec.type === "string") {
    if (typeof value !== "string") throw typeError(spec, value, "a string");
    if (value.length > count * 2) {
      throw rangeError(spec, value, `is longer than ${count * 2} characters (${count} registers)`);
    }
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if (c > 0xff) throw typeError(spec, value, "Latin-1 characters only");
      bytes[i] = c;
    }
    return bytesToWords(bytes, spec.byteOrder);
  }

  if (spec.type === "float32" || spec.type === "float64") {
    if (typeof value !== "number") throw typeError(spec, value, "a number");
    if (!Number.isFinite(value)) {
      throw new ShadowgateError(ErrorCodes.CODEC_NOT_FINITE, `${value} cannot be written`, {
        type: spec.type,
      });
    }
    const raw = (value - (spec.offset ?? 0)) / (spec.scale ?? 1);
    if (spec.type === "float32") {
      if (!Number.isFinite(Math.fround(raw))) {
        throw rangeError(spec, value, "is beyond the float32 range (about 3.4e38)");
      }
      view.setFloat32(0, raw);
    } else {
      view.setFloat64(0, raw);
    }
    return bytesToWords(bytes, spec.byteOrder);
  }

  const raw = toRawInteger(spec, value);
  switch (spec.type) {
    case "int16":
      view.setInt16(0, Number(raw));
      break;
    case "uint16":
      view.setUint16(0, Number(raw));
      break;
    case "int32":
      view.setInt32(0, Number(raw));
      break;
    case "uint32":
      view.setUint32(0, Number(raw));
      break;
    case "int64":
      view.setBigInt64(0, raw);
      break;
    case "uint64":
      view.setBigUint64(0, raw);
      break;
  }
  return bytesToWords(bytes, spec.byteOrder);
}

/** A bit-table point (coil, discrete input) -> boolean. */
export const decodeBit = (bits: readonly number[]): boolean => (bits[0] ?? 0) !== 0;

export function encodeBit(value: unknown): number[] {
  if (typeof value !== "boolean") {
    throw new ShadowgateError(
      ErrorCodes.CODEC_TYPE,
      `a coil takes true or false, got ${JSON.stringify(value)}`,
    );
  }
  return [value ? 1 : 0];
}
