import type { ConnectionState, JsonValue, ModbusTable, Quality } from "../core/types.js";

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

export interface PollRequest {
  readonly unitId: number;
  readonly points: readonly RawPoint[];
  /** A command's own reads (bit read-modify-write, read-back) go ahead of queued polls. */
  readonly urgent?: boolean;
}

export interface SourceHealth {
  readonly sourceId: string;
  readonly state: ConnectionState;
  readonly requests: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly reconnects: number;
  /** Answers that could not be used: bad CRC, wrong length, wrong unit (serial lines). */
  readonly badFrames: number;
  /** Addresses that answered illegal data address, per unit and table, e.g. "1/holding/100-109". */
  readonly illegal: readonly string[];
}

/**
 * The south driver contract. A driver knows nothing of mappings, shadows or MQTT: it moves raw
 * words and bits and reports quality. It never throws from `read`: a failed request becomes bad
 * quality on the points it carried.
 */
export interface SouthDriver {
  readonly sourceId: string;
  start(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  read(req: PollRequest): Promise<RawSample[]>;
  /** Writes words (FC6/FC16) or bits (FC5/FC15); throws a ShadowgateError on failure. */
  write(unitId: number, point: RawPoint, data: readonly number[]): Promise<void>;
  health(): SourceHealth;
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

/** A set of nodes monitored together on one subscription (one poll group's worth). */
export interface MonitorGroup {
  readonly id: string;
  readonly publishingIntervalMs: number;
  readonly nodes: readonly NodeRef[];
}

/**
 * The contract of drivers whose devices name typed variables (OPC UA) instead of register
 * addresses. Like SouthDriver, `read` and the sample callback never throw: failures are bad
 * quality. `monitor` keeps its items across reconnects: after a session comes back, changes are
 * delivered again only if the value (or its status) differs from what was last delivered, so a
 * replay is never reported as a new change.
 */
export interface NodeDriver {
  readonly sourceId: string;
  start(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  /** One batched Read of the current values. */
  read(nodes: readonly NodeRef[]): Promise<ValueSample[]>;
  /** Monitored items for the group; `onSamples` gets every change. Returns a function that stops it. */
  monitor(
    group: MonitorGroup,
    onSamples: (samples: ValueSample[]) => void,
  ): Promise<() => Promise<void>>;
  /** Writes with the node's own DataType; throws a ShadowgateError saying the status code on failure. */
  write(node: NodeRef, value: JsonValue): Promise<void>;
  health(): SourceHealth;
}
