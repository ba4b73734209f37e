import type { Logger } from "../core/logger.js";
import type { JsonObject, PointValue, Quality } from "../core/types.js";
import type { MappingKind } from "../mapping/compile.js";
import type { DevicePlan, PointReading } from "../mapping/types.js";
import type { SourceHealth } from "./driver.js";

/**
 * What one protocol (one folder under src/south) gives the rest of the gateway. The daemon,
 * the config checks and the CLI ask the protocol table (registry.ts) and never look inside a
 * protocol's sources or points: adding a protocol is a folder and one entry in the table.
 */
export interface Protocol<Config extends { readonly protocol: string } = SourceConfigBase> {
  /** The kind of mapping files it reads ("modbus", "opcua"), as DevicePlan.kind names it. */
  readonly kind: string;
  /** Its `protocol` keys in the gateway config's sources (modbus-tcp, modbus-rtu, ...). */
  readonly keys: readonly string[];
  /** A name for people, in messages: "Modbus", "OPC UA". */
  readonly label: string;
  /** Its points: how mapping files are compiled for it. */
  readonly points: MappingKind;
  /** Checks over all its sources at once (two sources on one serial port). */
  checkSources?(sources: ReadonlyArray<readonly [string, Config]>): ConfigProblem[];
  /** Checks of one device against its source (a point larger than one request may carry). */
  checkDevice?(device: DevicePlan, source: Config): ConfigProblem[];
  /** Checks across its devices (two points reading the same registers as different types). */
  checkDevices?(devices: readonly DevicePlan[]): Array<ConfigProblem & { device: DevicePlan }>;
  /** The source at run time. May load large libraries (node-opcua) only now. */
  open(id: string, config: Config, context: SourceContext): Promise<Source>;
}

/** What every source config has: the key that picks its protocol. */
export interface SourceConfigBase {
  readonly protocol: string;
}

/** A problem at a key path: of the gateway config for source checks, of a mapping file else. */
export interface ConfigProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

export interface SourceContext {
  /** The data directory (the OPC UA client keeps its PKI there). */
  readonly dataDir: string;
  /** The gateway config's folder: files the source names are relative to it. */
  readonly configDir: string;
  readonly log: Logger;
}

/** A source at run time: one connection's lifecycle, and a channel for each of its devices. */
export interface Source {
  readonly id: string;
  /** Resolves after the first connection attempt, whatever its outcome: a down PLC is not fatal. */
  start(): Promise<void>;
  stop(): Promise<void>;
  health(): SourceHealth;
  channel(device: DevicePlan): DeviceChannel;
  /**
   * `shadowgate read --raw`: one point's raw data and what it decodes to under each layout, for
   * protocols that have raw data (Modbus registers); absent where the server types values.
   */
  probe?(device: DevicePlan, point: string): Promise<Probe>;
}

export type Probe =
  | { readonly ok: true; readonly text: string; readonly json: JsonObject }
  /** `usage`: the point cannot be probed (a bit); else the device did not answer. */
  | { readonly ok: false; readonly usage: boolean; readonly message: string };

/**
 * One device's way to its points. `monitored` devices deliver changes through `monitor` (OPC UA
 * subscriptions); the others are polled through `poll` on the scheduler's grid.
 */
export interface DeviceChannel {
  readonly monitored: boolean;
  /** What log lines about the device name besides it: its source, a Modbus unit id. */
  readonly fields: Readonly<Record<string, unknown>>;
  /** Reads every point once; never throws (a failed read is bad quality). */
  poll(): Promise<PointReading[]>;
  /** Delivers every change until the returned function is called. Monitored devices only. */
  monitor(onReadings: (readings: PointReading[]) => void): Promise<() => Promise<void>>;
  /** How a command reaches one point; undefined for a point the device does not have. */
  access(point: string): PointAccess | undefined;
}

/** A point's value read for a command: decoded, with its quality. */
export interface Decoded {
  readonly value?: PointValue;
  readonly quality: Quality;
  readonly ts: number;
}

/** How a command reaches one point, whatever carries it. */
export interface PointAccess {
  /** The point's current value, read ahead of queued polls. */
  read(): Promise<Decoded | undefined>;
  /**
   * The value in the device's terms, ready to write: `rejected` when the point cannot hold it
   * (the codec's range and resolution checks), `failed` when preparing needed the device.
   */
  prepare(
    value: unknown,
  ): Promise<{ write: () => Promise<void> } | { rejected: string } | { failed: string }>;
}
