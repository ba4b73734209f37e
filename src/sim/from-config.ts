import type { LoadedConfig } from "../config/load.js";
import type { DevicePlan, ModbusDevicePlan, NodeDevicePlan } from "../mapping/types.js";
import type { ModbusSourceConfig } from "../south/modbus/schema.js";
import type { OpcuaSourceConfig } from "../south/opcua/schema.js";
import { protocolOf, type SourceConfig } from "../south/registry.js";
import { prepareModbusSource } from "./modbus/from-mapping.js";
import { prepareOpcuaSource } from "./opcua/from-mapping.js";
import {
  SimSourceError,
  type PreparedSource,
  type SimValues,
  type SourceSimulator,
} from "./source-simulator.js";

/**
 * Simulators for a config's sources (`shadowgate sim --from-config`, `shadowgate test`): one per
 * source with devices, built from its mappings, for every protocol the gateway speaks.
 */

export interface SimulateOptions {
  /**
   * RTU sources served on a serial device (a USB RS-485 adapter wired to the gateway's line)
   * rather than on a pty pair: source id to device path.
   */
  readonly lines?: Readonly<Record<string, string>>;
}

type Prepare = (
  id: string,
  source: SourceConfig,
  devices: readonly DevicePlan[],
  values: SimValues,
  opts: SimulateOptions,
) => PreparedSource;

/**
 * The simulator built from mappings for each protocol, by the kind the protocol table gives
 * (`protocolOf(source).kind`): the one place that knows them all. The kind fixes what the
 * source's config and its devices' plans are.
 */
const SIMULATORS: Readonly<Record<string, Prepare>> = {
  modbus: (id, source, devices, values, opts) =>
    prepareModbusSource(
      id,
      source as ModbusSourceConfig,
      devices as ModbusDevicePlan[],
      values,
      opts.lines?.[id],
    ),
  opcua: (id, source, devices, values) =>
    prepareOpcuaSource(id, source as OpcuaSourceConfig, devices as NodeDevicePlan[], values),
};

/** The simulator for a source with devices; undefined for one without. */
function prepare(
  id: string,
  source: SourceConfig,
  config: LoadedConfig,
  values: SimValues,
  opts: SimulateOptions,
): PreparedSource | undefined {
  const devices = config.devices.filter((d) => d.sourceId === id);
  if (devices.length === 0) return undefined;
  const protocol = protocolOf(source);
  const simulate = SIMULATORS[protocol.kind];
  if (!simulate) throw new SimSourceError(`${id}: no simulator for ${protocol.label} sources`);
  return simulate(id, source, devices, values, opts);
}

/**
 * A simulator for each source of the config that has devices, with `values` (by device and
 * point, in engineering units) or plausible ones, on the wire where the gateway can reach it.
 * Every source is prepared before any starts, so a value a point cannot hold (SimValueError) or
 * a point no simulator can host (SimSourceError) leaves nothing running; a start that fails
 * stops the ones before it.
 */
export async function startSourceSimulators(
  config: LoadedConfig,
  values: SimValues = {},
  opts: SimulateOptions = {},
): Promise<SourceSimulator[]> {
  const prepared = Object.entries(config.gateway.sources).flatMap(([id, source]) => {
    const p = prepare(id, source, config, values, opts);
    return p ? [p] : [];
  });
  const started: SourceSimulator[] = [];
  try {
    for (const p of prepared) started.push(await p.start());
  } catch (e) {
    await Promise.all(started.map((s) => s.close()));
    throw e;
  }
  return started;
}
