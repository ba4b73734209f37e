import type { CodecSpec, PointBase } from "./types.js";

/**
 * The command guard: whether a desired value may be written to a point at all. Pure. The codec
 * then refuses what the type cannot hold (range, resolution, NaN); this adds what only the
 * mapping knows: the point exists, is writable, and the value lies within min..max.
 */
export function checkCommand(
  point: PointBase | undefined,
  value: unknown,
): { ok: true } | { ok: false; reason: string } {
  if (point === undefined) return { ok: false, reason: "not a mapped point" };
  if (!point.writable)
    return { ok: false, reason: `${point.name} is read-only (writable is not set)` };
  const shown = JSON.stringify(value) ?? String(value);
  if (!("codec" in point)) {
    // An OPC UA node: the server's DataType decides the rest when the driver converts it.
    if (typeof value === "string" && "enum" in point && point.enum !== undefined)
      return { ok: true };
    return typeof value === "number" ? inRange(point, value, shown) : { ok: true };
  }
  const codec = (point as PointBase & { codec: CodecSpec }).codec;
  const { type, bit, enum: labels } = codec;
  if (type === "bool" || bit !== undefined) {
    return typeof value === "boolean"
      ? { ok: true }
      : { ok: false, reason: `${point.name} takes true or false, not ${shown}` };
  }
  if (type === "string") {
    return typeof value === "string"
      ? { ok: true }
      : { ok: false, reason: `${point.name} takes a string, not ${shown}` };
  }
  if (typeof value === "string" && labels !== undefined) return { ok: true }; // the codec checks the label
  const wide = type === "int64" || type === "uint64";
  if (typeof value !== "number" && !(wide && typeof value === "string")) {
    return { ok: false, reason: `${point.name} takes a number, not ${shown}` };
  }
  return inRange(point, Number(value), shown);
}

function inRange(
  point: PointBase,
  n: number,
  shown: string,
): { ok: true } | { ok: false; reason: string } {
  if (point.min !== undefined && n < point.min) {
    return { ok: false, reason: `${shown} is below the minimum ${point.min} of ${point.name}` };
  }
  if (point.max !== undefined && n > point.max) {
    return { ok: false, reason: `${shown} is above the maximum ${point.max} of ${point.name}` };
  }
  return { ok: true };
}
