import type { JsonObject, PointValue } from "../core/types.js";
import { decodeRegisters } from "../mapping/codec.js";
import {
  WIDE_BYTE_ORDERS,
  NARROW_BYTE_ORDERS,
  type ByteOrder,
  type CompiledPoint,
} from "../mapping/types.js";
import { formatAddress } from "../mapping/address.js";
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

/** The value a point's words give under every byte order of its width. */
export function allByteOrders(
  point: CompiledPoint,
  words: readonly number[],
): Array<{ byteOrder: ByteOrder; value: PointValue | string; configured: boolean }> {
  const wide = point.count > 1 && point.codec.type !== "string";
  const orders: readonly ByteOrder[] = wide ? WIDE_BYTE_ORDERS : NARROW_BYTE_ORDERS;
  return orders.map((byteOrder) => {
    let value: PointValue | string;
    try {
      value = decodeRegisters({ ...point.codec, byteOrder }, words);
    } catch (e) {
      value = `(${(e as Error).message})`;
    }
    return { byteOrder, value, configured: byteOrder === point.codec.byteOrder };
  });
}

export function formatRaw(device: string, point: CompiledPoint, words: readonly number[]): string {
  const hex = words.map((w) => `0x${w.toString(16).toUpperCase().padStart(4, "0")}`).join(" ");
  const lines = [
    `${device} ${point.name}: ${formatAddress(point.table, point.address)} (${point.table} address ${point.address}), ${point.count} register${point.count > 1 ? "s" : ""}, ${point.codec.type}`,
    `words: ${hex}  (decimal ${words.join(" ")})`,
    "",
    "byteOrder  value",
  ];
  for (const row of allByteOrders(point, words)) {
    const value = typeof row.value === "string" ? JSON.stringify(row.value) : String(row.value);
    lines.push(`${row.byteOrder.padEnd(9)}  ${value}${row.configured ? "   <- configured" : ""}`);
  }
  return lines.join("\n");
}
