import type { JsonObject } from "../core/types.js";
import type { ShadowDocument } from "../shadow/edge-shadow.js";

/** `read --json`: one object keyed by deviceName, each `state.reported`; bad points listed apart. */
export function reportedByDevice(docs: ReadonlyArray<[string, ShadowDocument]>): {
  json: Record<string, JsonObject>;
  bad: string[];
} {
  const json: Record<string, JsonObject> = {};
  const bad: string[] = [];
  for (const [name, doc] of docs) {
    json[name] = doc.state.reported;
    for (const [point, meta] of Object.entries(doc.metadata.reported)) {
      if (meta.quality !== "good")
        bad.push(`${name} ${point}: ${meta.code ?? ""} ${meta.reason ?? ""}`.trim());
    }
  }
  return { json, bad };
}
