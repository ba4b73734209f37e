import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import { isBitTable, type JsonValue, type PointValue, type Quality } from "../core/types.js";
import type { NodeRef, ValueSample } from "../core/samples.js";
import { decodeBit, decodeRegisters } from "./codec.js";
import type { CompiledPoint, NodePoint } from "./types.js";

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

/** What an OPC UA driver is asked for, for one point. The deadband goes to the server in raw units. */
export function nodeRef(point: NodePoint): NodeRef {
  return {
    key: point.name,
    node: point.node,
    ...(point.samplingIntervalMs !== undefined && { samplingIntervalMs: point.samplingIntervalMs }),
    ...(point.deadband !== undefined && {
      deadband: point.deadband / Math.abs(point.scale ?? 1),
    }),
  };
}

/**
 * A typed OPC UA value -> the point's value: scaled, or its enum label. The server's source
 * timestamp, when it sent one, is the reading's time.
 */
export function decodeNodeSample(
  point: NodePoint,
  s: ValueSample,
): { value?: PointValue; quality: Quality; ts: number } {
  const ts = s.sourceTs ?? s.ts;
  if (s.quality.status !== "good" || s.value === undefined || s.value === null)
    return { quality: s.quality, ts };
  const v = s.value;
  if (typeof v === "number") {
    // As for Modbus points: a raw value without a label is reported as the number.
    if (point.enum !== undefined)
      return { value: point.enum[String(v)] ?? v, quality: s.quality, ts };
    return { value: v * (point.scale ?? 1) + (point.valueOffset ?? 0), quality: s.quality, ts };
  }
  if (typeof v === "object" && !Array.isArray(v))
    return {
      quality: {
        status: "bad",
        code: ErrorCodes.CODEC_TYPE,
        reason: `${point.name} holds a structure; map its fields as nodes of their own`,
      },
      ts,
    };
  return { value: v, quality: s.quality, ts };
}

/** The inverse of decodeNodeSample for a write: unscaled, or the enum label's number. */
export function encodeNodeValue(point: NodePoint, value: unknown): JsonValue {
  if (point.enum !== undefined && typeof value === "string") {
    const hit = Object.entries(point.enum).find(([, label]) => label === value);
    if (!hit)
      throw new ShadowgateError(
        ErrorCodes.CODEC_RANGE,
        `${JSON.stringify(value)} is not one of ${Object.values(point.enum).join(", ")}`,
      );
    return Number(hit[0]);
  }
  if (typeof value === "number") {
    // 12 significant digits undo the float noise of the division (21.3 / 0.1 is 212.99999999999997),
    // so that an integer node takes a value that lands on its resolution; one that does not
    // (21.37 at 0.1) stays fractional and the driver refuses it.
    return Number(((value - (point.valueOffset ?? 0)) / (point.scale ?? 1)).toPrecision(12));
  }
  return value as JsonValue;
}
