import {
  compileProfile,
  defaultProfile,
  loadProfile,
  type ProfileInput,
  type SimProfile,
} from "./profile.js";
import { ModbusTcpSimulator, type SimulatorOptions } from "./tcp-server.js";

export { UnitMemory, MODBUS_TABLES, type Hole, type UnitOptions } from "./memory.js";
export { ModbusException, serveRequest } from "./pdu.js";
export { ModbusTcpSimulator, type SimulatorOptions } from "./tcp-server.js";
export {
  ModbusSimulator,
  type ModbusSimulatorOptions,
  type SimulatorEvents,
  type SimulatorStats,
  type WriteEvent,
} from "./simulator.js";
export type { RtuStats } from "./transactions.js";
export { RtuLink, type RtuDrop, type RtuLinkEvents, type RtuLinkOptions } from "./rtu-link.js";
export { ProfileRuntime } from "./dynamics.js";
export {
  DEFAULT_PROFILE_YAML,
  compileProfile,
  defaultProfile,
  loadProfile,
  parseProfile,
  type ProfileInput,
  type SimDynamic,
  type SimPoint,
  type SimProfile,
  type SimUnitProfile,
} from "./profile.js";

export interface StartSimulatorOptions extends Omit<SimulatorOptions, "profile"> {
  /** A profile file path, a profile object (raw or compiled); default: the boiler profile. */
  readonly profile?: string | ProfileInput | SimProfile;
  readonly port?: number;
  readonly host?: string;
}

export interface RunningSimulator {
  readonly port: number;
  readonly sim: ModbusTcpSimulator;
  close(): Promise<void>;
}

const isCompiled = (p: ProfileInput | SimProfile): p is SimProfile =>
  "source" in p && p.units.every((u) => "points" in u && u.points instanceof Map);

/**
 * A profile file path or object (raw or compiled) as a compiled profile; undefined: the boiler.
 * Errors are ShadowgateErrors (SG_CONFIG_*).
 */
export async function resolveSimProfile(
  given: string | ProfileInput | SimProfile | undefined,
): Promise<SimProfile> {
  if (given === undefined) return defaultProfile();
  if (typeof given === "string") return loadProfile(given);
  if (isCompiled(given)) return given;
  return compileProfile(given);
}

/**
 * Loads the profile, starts the TCP simulator and its dynamics. Profile errors throw a
 * ShadowgateError (SG_CONFIG_*) before any socket is opened.
 */
export async function startSimulator(opts: StartSimulatorOptions = {}): Promise<RunningSimulator> {
  const { profile: given, port, host, ...simOptions } = opts;
  const profile = await resolveSimProfile(given);
  const sim = new ModbusTcpSimulator({ ...simOptions, profile });
  const started = await sim.start({
    ...(host !== undefined ? { host } : {}),
    ...(port !== undefined ? { port } : {}),
  });
  return { port: started.port, sim, close: () => sim.stop() };
}
