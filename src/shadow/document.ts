import type { JsonObject, JsonValue } from "../core/types.js";

/** Sets `value` at a nested path, creating objects on the way. */
export function setPath(target: JsonObject, path: readonly string[], value: JsonValue): void {
  let node = target;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string;
    const next = node[key];
    if (typeof next === "object" && next !== null && !Array.isArray(next)) {
      node = next;
    } else {
      const created: JsonObject = {};
      node[key] = created;
      node = created;
    }
  }
  const leaf = path[path.length - 1];
  if (leaf !== undefined) node[leaf] = value;
}
