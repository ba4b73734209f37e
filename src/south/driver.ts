import type { ConnectionState, ModbusTable, Quality } from "../core/types.js";

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
