import type { DevicePlan } from "../mapping/types.js";

/**
 * A simulator standing in for one source of a gateway config (`sim --from-config`, `shadowgate
 * test`), whatever its protocol: built from the source's mappings, on the wire where the
 * gateway can reach it, and driven by point name in engineering units.
 */
export interface SourceSimulator {
  readonly source: string;
  readonly protocol: string;
  /** What it hosts, for people: "units 1, 7, 12 points", "2 objects, 5 variables". */
  readonly hosts: string;
  /** Where it serves, for people: 127.0.0.1:port, a serial line's end, an endpoint URL. */
  readonly where: string;
  /** `key=value` overrides that point the gateway's source at it. */
  readonly overrides: readonly string[];
  readonly devices: readonly DevicePlan[];
  /** Sets a point to a value in engineering units, as the device would; throws SimValueError. */
  set(device: string, point: string, value: unknown): void;
  /** The raw words at a Modbus register point's address; undefined for any other point. */
  words(device: string, point: string): readonly number[] | undefined;
  /** Puts raw words at a Modbus register point's address; false for any other point. */
  setWords(device: string, point: string, words: readonly number[]): boolean;
  /** How many times the gateway has written the point so far. */
  writes(device: string, point: string): number;
  /**
   * Off the wire, as a PLC that is switched off: connections closed and refused, or a serial
   * line with nobody answering. Its values stay.
   */
  pause(): Promise<void>;
  /** Back on the wire, where it was. */
  resume(): Promise<void>;
  close(): Promise<void>;
}

/** A source's simulator with its values loaded and checked, not yet on the wire. */
export interface PreparedSource {
  start(): Promise<SourceSimulator>;
}

/** Values by device and point name, in engineering units (`--values`, a scenario's `values`). */
export type SimValues = Readonly<Record<string, Readonly<Record<string, unknown>>>>;

/** A value given for a point that the point cannot hold. */
export class SimValueError extends Error {}

/** A point of the config that a simulator cannot stand in for (a node of namespace 0). */
export class SimSourceError extends Error {}
