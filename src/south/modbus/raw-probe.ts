import type { PointValue } from "../../core/types.js";
import { formatAddress } from "../../mapping/address.js";
import { decodeRegisters } from "../../mapping/codec.js";
import {
  NARROW_BYTE_ORDERS,
  WIDE_BYTE_ORDERS,
  type ByteOrder,
  type CompiledPoint,
} from "../../mapping/types.js";

/**
 * `shadowgate read --raw`: a register point's words, and the value they give under every byte
 * order of the point's width, so that a field engineer can see which layout the device uses.
 */

/** The value a point's words give under every byte order of its width. */
export function rawValues(
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

export function probeText(device: string, point: CompiledPoint, words: readonly number[]): string {
  const hex = words.map((w) => `0x${w.toString(16).toUpperCase().padStart(4, "0")}`).join(" ");
  const lines = [
    `${device} ${point.name}: ${formatAddress(point.table, point.address)} (${point.table} address ${point.address}), ${point.count} register${point.count > 1 ? "s" : ""}, ${point.codec.type}`,
    `words: ${hex}  (decimal ${words.join(" ")})`,
    "",
    "byteOrder  value",
  ];
  for (const row of rawValues(point, words)) {
    const value = typeof row.value === "string" ? JSON.stringify(row.value) : String(row.value);
    lines.push(`${row.byteOrder.padEnd(9)}  ${value}${row.configured ? "   <- configured" : ""}`);
  }
  return lines.join("\n");
}
