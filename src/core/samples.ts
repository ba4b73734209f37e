import type { JsonValue, ModbusTable, Quality } from "./types.js";

/**
 * What south drivers read and the mapping engine decodes: raw register footprints and samples,
 * OPC UA node references and typed samples. Here rather than in south/ so that the mapping
 * engine, which is pure, needs nothing of the drivers.
 */

/** One thing to read: a point's raw footprint in a Modbus table. `key` is the caller's handle. */
export interface RawPoint {
  readonly key: string;
  readonly table: ModbusTable;
  /** 0-based PDU address. */
  readonly address: number;
  /** Words for register tables, bits for bit tables. */
  readonly count: number;
}

/** What a south driver hands back for one RawPoint. */
export interface RawSample {
  readonly key: string;
  readonly quality: Quality;
  /** Words (0..65535) or bits (0/1); present when quality is good. */
  readonly data?: readonly number[];
  /** Milliseconds since the epoch, when the response arrived. */
  readonly ts: number;
}

/** One OPC UA node to read or monitor. `key` is the caller's handle. */
export interface NodeRef {
  readonly key: string;
  /** A NodeId string (ns=2;s=Boiler.Temperature, ns=3;i=1001, nsu=<uri>;s=...) or a browse
   * path from the Objects folder (/2:Boiler/2:Temperature), resolved once per session. */
  readonly node: string;
  /** Sampling interval asked of the server; default: the subscription's publishing interval. */
  readonly samplingIntervalMs?: number;
  /** Absolute deadband the server applies before it notifies (numbers only). */
  readonly deadband?: number;
}

/** What an OPC UA driver hands back for one NodeRef: a typed value, not raw words. */
export interface ValueSample {
  readonly key: string;
  readonly quality: Quality;
  /**
   * Present when quality is good (and uncertain): numbers, booleans, strings; DateTime as an ISO
   * string; arrays of those; 64-bit integers as decimal strings beyond 2^53.
   */
  readonly value?: JsonValue;
  /** The server's source timestamp (ms since the epoch), when it sent one. */
  readonly sourceTs?: number;
  /** When the gateway received it. */
  readonly ts: number;
}
