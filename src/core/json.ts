import type { JsonObject, JsonValue } from "./types.js";

export const isJsonObject = (v: JsonValue | undefined): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Deep merge of two partial shadow documents, as the shadow services do it: objects merge,
 * everything else (arrays included) is replaced; b's leaves win.
 */
export function mergeReported(a: JsonObject, b: JsonObject): JsonObject {
  const out: JsonObject = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isJsonObject(prev) && isJsonObject(v) ? mergeReported(prev, v) : v;
  }
  return out;
}

/** mergeReported in place: `target` takes b's leaves; b's objects are copied, never shared. */
export function mergeInto(target: JsonObject, b: JsonObject): void {
  for (const [k, v] of Object.entries(b)) {
    if (isJsonObject(v)) {
      let prev = target[k];
      if (!isJsonObject(prev)) target[k] = prev = {};
      mergeInto(prev, v);
    } else target[k] = v;
  }
}

/** Values read from YAML or JSON (plain objects, arrays and scalars) compared as data. */
export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Reads the value at a nested path, or undefined. */
export function getPath(
  source: JsonValue | undefined,
  path: readonly string[],
): JsonValue | undefined {
  let node: JsonValue | undefined = source;
  for (const key of path) {
    if (typeof node !== "object" || node === null || Array.isArray(node)) return undefined;
    node = node[key];
  }
  return node;
}
