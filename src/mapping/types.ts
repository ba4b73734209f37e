import type { ModbusTable, PointValue, Quality } from "../core/types.js";

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

/** What every point has, whatever carries it: all the shadow and the sync engine need. */
export interface PointBase {
  /** The name as written, e.g. `alarm.overheat`. */
  readonly name: string;
  /** The path below `state.reported`, e.g. ["alarm", "overheat"]. */
  readonly path: readonly string[];
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

/** One Modbus point of a compiled mapping: immutable, its address in the 0-based PDU form. */
export interface CompiledPoint extends PointBase {
  readonly table: ModbusTable;
  /** 0-based PDU address. */
  readonly address: number;
  /** Words (register tables) or bits (bit tables) occupied. */
  readonly count: number;
  readonly codec: CodecSpec;
}

/** One OPC UA point: a variable the server types itself, so no codec beyond scaling. */
export interface NodePoint extends PointBase {
  /** NodeId (ns=2;s=Boiler.Temperature) or browse path from Objects (/2:Boiler/2:Temperature). */
  readonly node: string;
  readonly samplingIntervalMs?: number;
  /** value = raw * scale + valueOffset, for numbers. */
  readonly scale?: number;
  readonly valueOffset?: number;
  /** Raw integer -> label. */
  readonly enum?: Readonly<Record<string, string>>;
}

/** What every device plan has, whatever its points are. */
export interface PlanCommon {
  readonly file: string;
  /**
   * How the mapping names its cloud shadow: an Alibaba triple (absent), or an AWS thing.
   * The identity below is the same pair either way: AWS's productKey is the thing name and its
   * deviceName the local name (the thing's, or `thing.shadow` for a named shadow).
   */
  readonly addressing?: "aws";
  readonly productKey: string;
  /** The device's name in the gateway (logs, API, CLI, store): unique. */
  readonly deviceName: string;
  /** An Alibaba sub-device's own secret, when its mapping file gives it (never logged). */
  readonly deviceSecret?: string;
  readonly sourceId: string;
  /** Modbus: the poll interval; OPC UA: the publishing interval (or the poll interval). */
  readonly pollIntervalMs: number;
}

/**
 * One mapping file compiled: one shadow device. `kind` names the protocol table's entry that
 * reads its points ("modbus", "opcua"); only that protocol looks inside its points.
 */
export interface DevicePlan extends PlanCommon {
  readonly kind: string;
  readonly points: readonly PointBase[];
}

/** One mapping file of Modbus points compiled. */
export interface ModbusDevicePlan extends DevicePlan {
  readonly kind: "modbus";
  readonly unitId: number;
  readonly points: readonly CompiledPoint[];
}

/** One mapping file of OPC UA points compiled. */
export interface NodeDevicePlan extends DevicePlan {
  readonly kind: "opcua";
  /** Monitored items on a subscription (default), or a batched Read every interval. */
  readonly mode: "subscribe" | "poll";
  readonly points: readonly NodePoint[];
}

/** One decoded reading of one point, as the poller hands it over. */
export interface PointReading {
  readonly point: PointBase;
  /** Present when quality is good. */
  readonly value?: PointValue;
  readonly quality: Quality;
  readonly ts: number;
}
