import type { NodeRef, RawPoint, RawSample, ValueSample } from "../core/samples.js";
import type { ConnectionState, JsonValue } from "../core/types.js";

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
  /**
   * The same figures per unit id, for protocols with units behind one connection (Modbus), so
   * that metrics tell the dead slave from its neighbours. Polls are the poller's reads only,
   * not a command's.
   */
  readonly units?: Readonly<Record<string, UnitHealth>>;
  /** Failed requests by error code of the catalogue (core/errors.ts). */
  readonly errorCodes?: Readonly<Record<string, number>>;
}

export interface UnitHealth {
  readonly polls: number;
  readonly requests: number;
  readonly errors: number;
  readonly timeouts: number;
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
