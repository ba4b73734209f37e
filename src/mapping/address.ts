import type { ModbusTable } from "../core/types.js";

export interface ResolvedAddress {
  readonly table: ModbusTable;
  /** 0-based PDU address. */
  readonly address: number;
}

/**
 * Modicon register numbers: 4xxxx / 4xxxxx are holding registers, 3xxxx / 3xxxxx input
 * registers, both 1-based (40001 and 400001 are PDU address 0). The 5-digit form reaches
 * 9999 registers, the 6-digit form 65536. Returns an error message when the number is not one.
 */
export function parseRegister(n: number): ResolvedAddress | string {
  if (!Number.isInteger(n)) return `register ${n} is not a whole number`;
  const forms: Array<[number, number, ModbusTable]> = [
    [40001, 49999, "holding"],
    [30001, 39999, "input"],
    [400001, 465536, "holding"],
    [300001, 365536, "input"],
  ];
  for (const [first, last, table] of forms) {
    if (n >= first && n <= last) return { table, address: n - first };
  }
  return (
    `register ${n} is not a Modicon number (40001-49999 or 400001-465536 for holding, ` +
    `30001-39999 or 300001-365536 for input); use table + offset for 0-based PDU addresses`
  );
}

/** `coil: N` and `discreteInput: N` are 1-based like Modicon numbering (coil 1 is address 0). */
export function parseBitNumber(
  n: number,
  table: "coil" | "discreteInput",
): ResolvedAddress | string {
  if (!Number.isInteger(n) || n < 1 || n > 65536) return `${table} ${n} must be 1-65536 (1-based)`;
  return { table, address: n - 1 };
}

/** Human form of an address, as the field engineer wrote it (for messages). */
export function formatAddress(table: ModbusTable, address: number): string {
  switch (table) {
    case "holding":
      return address < 9999 ? `${40001 + address}` : `${400001 + address}`;
    case "input":
      return address < 9999 ? `${30001 + address}` : `${300001 + address}`;
    case "coil":
      return `coil ${address + 1}`;
    case "discreteInput":
      return `discreteInput ${address + 1}`;
  }
}
