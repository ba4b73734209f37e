import { ShadowgateError } from "../core/errors.js";
import { isBitTable, type PointValue, type Quality } from "../core/types.js";
import { decodeBit, decodeRegisters } from "./codec.js";
import type { CompiledPoint } from "./types.js";

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
