/** Shared data types. `core` imports nothing else of the project. */

/** The four Modbus data tables, named as in the Modbus application protocol spec. */
export type ModbusTable = "coil" | "discreteInput" | "input" | "holding";

/** Bit tables carry one bit per address; register tables carry 16-bit words. */
export const isBitTable = (t: ModbusTable): boolean => t === "coil" || t === "discreteInput";

/** Why a sample is not good. `stale` means: a last known value kept after the source went bad. */
export type Quality =
  | { readonly status: "good" }
  | { readonly status: "bad"; readonly code: string; readonly reason: string }
  | { readonly status: "stale"; readonly code: string; readonly reason: string };

export const GOOD: Quality = Object.freeze({ status: "good" });

/** A JSON value as it appears in a shadow document. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

/**
 * The reported attribute under which each point's last command outcome goes (north/desired.ts
 * writes it; the edge shadow keeps and restores it; the local API serves it).
 */
export const COMMANDS_KEY = "_commands";

/** An engineering value after decoding: what goes into `state.reported`. */
export type PointValue = boolean | number | string | JsonValue[];

/** Every connection (south sessions, the north link) is this state machine. */
export type ConnectionState = "disconnected" | "connecting" | "online" | "backoff" | "stopping";
