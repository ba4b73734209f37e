import { ShadowgateError } from "../../core/errors.js";
import { isBitTable, type PointValue } from "../../core/types.js";
import { encodeBit, encodeRegisters } from "../../mapping/codec.js";
import { INTEGER_TYPES, type CompiledPoint, type ModbusDevicePlan } from "../../mapping/types.js";
import type { LoadedConfig } from "../../config/load.js";
import type { UnitMemory } from "./memory.js";
import { ModbusTcpSimulator } from "./tcp-server.js";

/**
 * A Modbus slave built from mapping files (`shadowgate sim --from-config`): every mapped point
 * at its address, type and byte order, holding a value given in engineering units (encoded by
 * the gateway's own codec) or a plausible default inside its min..max. The registers and coils
 * of points the mapping does not mark writable refuse writes (exception 02), as a device's
 * read-only registers do.
 */

/** One source of a config stood in for by a simulator, serving on 127.0.0.1:port. */
export interface SourceSimulator {
  readonly source: string;
  readonly sim: ModbusTcpSimulator;
  readonly port: number;
  readonly devices: readonly ModbusDevicePlan[];
}

/**
 * The config's sources with devices that the simulators cannot stand in for yet: every one but
 * Modbus TCP (`sim --from-config` skips them, `shadowgate test` refuses them).
 */
export function unsimulated(config: LoadedConfig): Array<{ source: string; protocol: string }> {
  return Object.entries(config.gateway.sources)
    .filter(
      ([id, s]) => s.protocol !== "modbus-tcp" && config.devices.some((d) => d.sourceId === id),
    )
    .map(([source, s]) => ({ source, protocol: s.protocol }));
}

/**
 * A simulator for each Modbus TCP source of the config, its devices loaded (`values` by device
 * and point, plausible ones for the rest), then started on free ports of 127.0.0.1. Every
 * device is loaded before any simulator starts, so a value its point cannot hold
 * (SimValueError) leaves nothing running; a start that fails stops the ones before it.
 */
export async function startSourceSimulators(
  config: LoadedConfig,
  values: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {},
): Promise<SourceSimulator[]> {
  const skipped = new Set(unsimulated(config).map((u) => u.source));
  const loaded = Object.keys(config.gateway.sources)
    .filter((id) => !skipped.has(id))
    .map((source) => {
      const devices = config.devices.filter(
        (d): d is ModbusDevicePlan => d.sourceId === source && d.kind === "modbus",
      );
      const sim = new ModbusTcpSimulator({ units: [...new Set(devices.map((d) => d.unitId))] });
      for (const d of devices) loadDevice(sim.unit(d.unitId), d, values[d.deviceName]);
      return { source, sim, devices };
    })
    .filter((s) => s.devices.length > 0);
  const started: SourceSimulator[] = [];
  try {
    for (const s of loaded)
      started.push({ ...s, port: (await s.sim.start({ host: "127.0.0.1", port: 0 })).port });
  } catch (e) {
    await Promise.all(started.map((s) => s.sim.stop()));
    throw e;
  }
  return started;
}

/** A value a test engineer would take for the point's own: mid-range, a label, true. */
export function plausibleValue(point: CompiledPoint): PointValue {
  const c = point.codec;
  if (isBitTable(point.table) || c.type === "bool" || c.bit !== undefined) return true;
  if (c.type === "string") return point.name.slice(0, (c.length ?? point.count) * 2);
  const [label] = Object.values(c.enum ?? {});
  if (label !== undefined) return label;
  const step = (c.scale ?? 1) * (INTEGER_TYPES.has(c.type) ? 1 : 0.5);
  const { min, max } = point;
  const raw =
    min !== undefined && max !== undefined
      ? (min + max) / 2
      : (min ?? max ?? 10 * (c.scale ?? 1) + (c.offset ?? 0));
  // On the point's resolution, so that the codec takes it and reads it back the same.
  const value = Math.round((raw - (c.offset ?? 0)) / step) * step + (c.offset ?? 0);
  return Number(value.toPrecision(12));
}

/** A value given for a point that its type cannot hold. */
export class SimValueError extends Error {}

/**
 * Writes the device's points into the unit, `values` first (by point name), a plausible value
 * for the rest; marks the registers of read-only points so writes to them are refused.
 */
export function loadDevice(
  unit: UnitMemory,
  device: ModbusDevicePlan,
  values: Readonly<Record<string, unknown>> = {},
): void {
  for (const point of device.points) {
    const value = Object.hasOwn(values, point.name) ? values[point.name] : plausibleValue(point);
    setPoint(unit, device, point, value);
  }
  // A register one writable point uses stays writable, even when a read-only bit shares it.
  const writable = new Set(
    device.points
      .filter((p) => p.writable)
      .flatMap((p) => Array.from({ length: p.count }, (_, i) => `${p.table}:${p.address + i}`)),
  );
  for (const p of device.points) {
    if (p.writable || (p.table !== "holding" && p.table !== "coil")) continue;
    for (let a = p.address; a < p.address + p.count; a++)
      if (!writable.has(`${p.table}:${a}`)) unit.protect({ table: p.table, from: a, to: a });
  }
}

/** Writes one point's value, in engineering units, into the unit's memory. */
export function setPoint(
  unit: UnitMemory,
  device: ModbusDevicePlan,
  point: CompiledPoint,
  value: unknown,
): void {
  let data: number[];
  try {
    if (isBitTable(point.table)) data = encodeBit(value);
    else {
      // A bit of a register shares it with others: its word is merged into what is there.
      const current = unit.read(point.table, point.address, point.count);
      data = encodeRegisters(point.codec, value, current);
    }
  } catch (e) {
    if (!(e instanceof ShadowgateError)) throw e;
    throw new SimValueError(
      `${device.deviceName} ${point.name} = ${JSON.stringify(value)}: ${e.message}`,
    );
  }
  unit.write(point.table, point.address, data);
}
