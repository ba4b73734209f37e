import { ShadowgateError } from "../../core/errors.js";
import { isBitTable, type PointValue } from "../../core/types.js";
import { encodeBit, encodeRegisters } from "../../mapping/codec.js";
import { INTEGER_TYPES, type CompiledPoint, type ModbusDevicePlan } from "../../mapping/types.js";
import type { UnitMemory } from "./memory.js";
import type { ModbusRtuSourceConfig, ModbusSourceConfig } from "../../south/modbus/schema.js";
import { openPtyPair } from "../pty.js";
import {
  SimValueError,
  type PreparedSource,
  type SimValues,
  type SourceSimulator,
} from "../source-simulator.js";
import { SerialDeviceServer } from "./device-server.js";
import type { RtuLinkOptions } from "./rtu-link.js";
import type { WriteEvent } from "./simulator.js";
import { ModbusTcpSimulator } from "./tcp-server.js";

/**
 * A Modbus slave built from mapping files (`shadowgate sim --from-config`): every mapped point
 * at its address, type and byte order, holding a value given in engineering units (encoded by
 * the gateway's own codec) or a plausible default inside its min..max. The registers and coils
 * of points the mapping does not mark writable refuse writes (exception 02), as a device's
 * read-only registers do.
 */

/**
 * The simulator for one Modbus source: its devices' units loaded (`values` by device and point,
 * plausible ones for the rest; a value a point cannot hold throws SimValueError here, before
 * anything starts), then, on start(), put on the wire: TCP on a free port of 127.0.0.1; RTU on
 * a socat pty pair, answering at the source's baud rate; RTU over TCP on a pty pair behind a
 * serial device server.
 */
export function prepareModbusSource(
  id: string,
  source: ModbusSourceConfig,
  devices: readonly ModbusDevicePlan[],
  values: SimValues,
  /** An RTU source's serial device, to serve on instead of a pty pair. */
  linePath?: string,
): PreparedSource {
  const sim = new ModbusTcpSimulator({ units: [...new Set(devices.map((d) => d.unitId))] });
  for (const d of devices) loadDevice(sim.unit(d.unitId), d, values[d.deviceName]);
  // Writes counted per point as they come, so that a simulator left running for days keeps
  // a number per point, not every write it ever served.
  const written = new Map<string, number>();
  sim.on("write", (w: WriteEvent) => {
    for (const d of devices)
      for (const p of d.points) {
        const hit = w.address < p.address + p.count && w.address + w.count > p.address;
        if (d.unitId !== w.unitId || p.table !== w.table || !hit) continue;
        const key = `${d.deviceName}.${p.name}`;
        written.set(key, (written.get(key) ?? 0) + 1);
      }
  });
  const find = (device: string, point: string) => {
    const d = devices.find((x) => x.deviceName === device);
    const p = d?.points.find((x) => x.name === point);
    if (!d || !p)
      throw new RangeError(`${source.protocol} source ${id} has no point ${device}.${point}`);
    return { d, p, unit: sim.unit(d.unitId) };
  };
  const registers = (p: CompiledPoint) => !isBitTable(p.table);
  const points = devices.reduce((n, d) => n + d.points.length, 0);
  return {
    async start() {
      const served = await serve(id, source, sim, linePath);
      return {
        source: id,
        protocol: source.protocol,
        hosts: `unit${sim.unitIds().length === 1 ? "" : "s"} ${sim.unitIds().join(", ")}, ${points} point${points === 1 ? "" : "s"}`,
        devices,
        ...served,
        set(device, point, value) {
          const { d, p, unit } = find(device, point);
          setPoint(unit, d, p, value);
        },
        words(device, point) {
          const { p, unit } = find(device, point);
          return registers(p) ? unit.read(p.table, p.address, p.count) : undefined;
        },
        setWords(device, point, words) {
          const { p, unit } = find(device, point);
          if (!registers(p)) return false;
          unit.write(p.table, p.address, [...words]);
          return true;
        },
        writes(device, point) {
          find(device, point); // throws for a point it does not host
          return written.get(`${device}.${point}`) ?? 0;
        },
      };
    },
  };
}

/** The line settings of an RTU source, which the simulator's answers are paced by. */
const lineOf = (s: ModbusRtuSourceConfig): Omit<RtuLinkOptions, "path"> => ({
  baud: s.baud,
  parity: s.parity,
  dataBits: s.dataBits,
  stopBits: s.stopBits,
});

type Served = Pick<SourceSimulator, "where" | "overrides" | "pause" | "resume" | "close">;

/** Puts the simulator on the wire the source's protocol names. */
async function serve(
  id: string,
  source: ModbusSourceConfig,
  sim: ModbusTcpSimulator,
  linePath: string | undefined,
): Promise<Served> {
  const host = "127.0.0.1";
  const tcp = (port: number) => [`sources.${id}.host=${host}`, `sources.${id}.port=${port}`];
  if (source.protocol === "modbus-tcp") {
    const { port } = await sim.start({ host, port: 0 });
    return {
      where: `${host}:${port}`,
      overrides: tcp(port),
      pause: () => sim.stop(),
      resume: async () => void (await sim.start({ host, port })),
      close: () => sim.stop(),
    };
  }
  if (source.protocol === "modbus-rtu" && linePath !== undefined) {
    // A real line: the gateway is at its far end, on its own box, at the path its config names.
    const rtu: RtuLinkOptions = { ...lineOf(source), path: linePath };
    await sim.startRtu(rtu);
    return {
      where: `${linePath} at ${source.baud} baud (wired to the gateway's ${source.path})`,
      overrides: [],
      pause: () => sim.stopRtu(),
      resume: async () => void (await sim.startRtu(rtu)),
      close: () => sim.stop(),
    };
  }
  // A serial line: the simulator on one end of a pty pair, the gateway (or a device server)
  // on the other.
  const line = await openPtyPair();
  const closers: Array<() => Promise<unknown>> = [() => line.close(), () => sim.stop()];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    // On a real line the answers take the wire time of the source's baud rate; over TCP the
    // line's speed is the device server's business, and answers go at once.
    const rtu: RtuLinkOptions =
      source.protocol === "modbus-rtu" ? { ...lineOf(source), path: line.a } : { path: line.a };
    await sim.startRtu(rtu);
    const paused = {
      pause: () => sim.stopRtu(),
      resume: async () => void (await sim.startRtu(rtu)),
    };
    if (source.protocol === "modbus-rtu")
      return {
        where: `${line.b} (a pty pair; the simulator answers on ${line.a} at ${source.baud} baud)`,
        overrides: [`sources.${id}.path=${line.b}`],
        ...paused,
        close,
      };
    const server = new SerialDeviceServer(line.b);
    closers.push(() => server.stop());
    const { port } = await server.start({ host, port: 0 });
    return {
      where: `${host}:${port} (a serial device server for the line ${line.b})`,
      overrides: tcp(port),
      ...paused,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
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
