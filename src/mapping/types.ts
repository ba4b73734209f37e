import type { ModbusTable } from "../core/types.js";

export const POINT_TYPES = [
  "bool",
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
  "float32",
  "float64",
  "string",
] as const;
export type PointType = (typeof POINT_TYPES)[number];

export const INTEGER_TYPES: ReadonlySet<PointType> = new Set([
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
]);
export const NUMERIC_TYPES: ReadonlySet<PointType> = new Set([
  ...INTEGER_TYPES,
  "float32",
  "float64",
]);

/** 32-bit layouts (64-bit forms follow, see architecture.md) and the two 16-bit ones. */
export const WIDE_BYTE_ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"] as const;
export const NARROW_BYTE_ORDERS = ["AB", "BA"] as const;
export type WideByteOrder = (typeof WIDE_BYTE_ORDERS)[number];
export type NarrowByteOrder = (typeof NARROW_BYTE_ORDERS)[number];
export type ByteOrder = WideByteOrder | NarrowByteOrder;

/**
 * Everything the codec needs to turn raw words or bits into an engineering value and back.
 * Validation guarantees the combinations are legal before a CodecSpec is built.
 */
export interface CodecSpec {
  readonly type: PointType;
  /** Resolved: ABCD for 32/64-bit types, AB for 16-bit types and strings unless set. */
  readonly byteOrder: ByteOrder;
  /** value = raw * scale + offset. Absent means 1 and 0. */
  readonly scale?: number;
  readonly offset?: number;
  /** Bit number (0 = least significant) inside a 16-bit register; the value is then a boolean. */
  readonly bit?: number;
  /** Registers for a string. */
  readonly length?: number;
  /** Raw integer -> label. */
  readonly enum?: Readonly<Record<string, string>>;
}

/** Where a point came from, for messages that name the file and line. */
export interface SourcePosition {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

/** One point of a compiled mapping: immutable, with its address resolved to the 0-based PDU form. */
export interface CompiledPoint {
  /** The name as written, e.g. `alarm.overheat`. */
  readonly name: string;
  /** The path below `state.reported`, e.g. ["alarm", "overheat"]. */
  readonly path: readonly string[];
  readonly table: ModbusTable;
  /** 0-based PDU address. */
  readonly address: number;
  /** Words (register tables) or bits (bit tables) occupied. */
  readonly count: number;
  readonly codec: CodecSpec;
  readonly writable: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly deadband?: number;
  /** Report on every change (default); false reports only on heartbeat. */
  readonly onChange: boolean;
  /** Maximum silence in ms: the point is re-reported at least this often. */
  readonly heartbeatMs?: number;
  readonly unit?: string;
  readonly position?: SourcePosition;
}

/** One mapping file compiled: one shadow device. */
export interface DevicePlan {
  readonly file: string;
  readonly productKey: string;
  readonly deviceName: string;
  readonly sourceId: string;
  readonly unitId: number;
  readonly pollIntervalMs: number;
  readonly points: readonly CompiledPoint[];
}
