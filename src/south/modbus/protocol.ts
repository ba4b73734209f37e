import path from "node:path";
import { formatAddress } from "../../mapping/address.js";
import { modbusPoints } from "../../mapping/modbus-points.js";
import type { CompiledPoint, DevicePlan, ModbusDevicePlan } from "../../mapping/types.js";
import type { ConfigProblem, Protocol } from "../protocol.js";
import { modbusChannel, probeModbus } from "./device-channel.js";
import { ModbusDriver, type ModbusDriverOptions, type ModbusTransport } from "./modbus-driver.js";
import type { ModbusSourceConfig } from "./schema.js";

/** Modbus over TCP, on an RS-485 line, and as RTU frames over TCP: one driver, three transports. */
export const modbusProtocol: Protocol<ModbusSourceConfig> = {
  kind: "modbus",
  keys: ["modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp"],
  label: "Modbus",
  points: modbusPoints,

  checkSources(sources) {
    // Two sources on one serial port would fight over it: each opens it, and frames collide.
    const found: ConfigProblem[] = [];
    const lines = new Map<string, string>();
    for (const [id, source] of sources) {
      if (source.protocol !== "modbus-rtu") continue;
      const first = lines.get(source.path);
      if (first === undefined) lines.set(source.path, id);
      else
        found.push({
          path: ["sources", id, "path"],
          message: `${source.path} is already the line of source ${first}; put every slave of one line (one unitId per mapping file) under one source`,
        });
    }
    return found;
  },

  checkDevice(device, source) {
    const found: ConfigProblem[] = [];
    for (const p of modbusPlan(device).points) {
      const bits = p.table === "coil" || p.table === "discreteInput";
      const cap = bits ? source.maxBitsPerRequest : source.maxRegistersPerRequest;
      if (p.count > cap) {
        found.push({
          path: ["points", p.name],
          message: `${p.count} registers exceed maxRegistersPerRequest ${cap} of source ${device.sourceId}; no single read can fetch it`,
        });
      }
    }
    return found;
  },

  checkDevices: overlaps,

  async open(id, config, { log }) {
    const driver = new ModbusDriver(
      id,
      modbusDriverOptions(config),
      log.child({ component: "south.modbus", source: id }),
    );
    return {
      id,
      start: () => driver.start(),
      stop: () => driver.stop(),
      health: () => driver.health(),
      channel: (device) => modbusChannel(modbusPlan(device), driver),
      probe: (device, point) => probeModbus(modbusPlan(device), point, driver),
    };
  },
};

/** The driver options for a source config (the benchmarks build drivers with it too). */
export function modbusDriverOptions(config: ModbusSourceConfig): ModbusDriverOptions {
  return {
    transport: transport(config),
    timeoutMs: config.timeout,
    ...(config.protocol === "modbus-rtu" && { turnaroundMs: config.turnaround }),
    maxRegistersPerRequest: config.maxRegistersPerRequest,
    maxBitsPerRequest: config.maxBitsPerRequest,
    maxGap: config.maxGap,
    reconnectMinMs: config.reconnect.min,
    reconnectMaxMs: config.reconnect.max,
    unitBackoffMs: config.unitBackoff,
    demoteAfter: config.demoteAfter,
  };
}

/** The plans this protocol is handed are its own: the table pairs sources and files by kind. */
function modbusPlan(device: DevicePlan): ModbusDevicePlan {
  if (device.kind !== "modbus") throw new Error(`${device.deviceName} is not a Modbus device`);
  return device as ModbusDevicePlan;
}

function transport(config: ModbusSourceConfig): ModbusTransport {
  switch (config.protocol) {
    case "modbus-tcp":
      return { kind: "tcp", host: config.host, port: config.port };
    case "modbus-rtu-over-tcp":
      return { kind: "rtu-over-tcp", host: config.host, port: config.port };
    case "modbus-rtu":
      return {
        kind: "rtu",
        path: config.path,
        line: {
          baud: config.baud,
          parity: config.parity,
          dataBits: config.dataBits,
          stopBits: config.stopBits,
        },
      };
  }
}

const describe = (p: CompiledPoint): string =>
  p.codec.type === "string"
    ? `string(${p.count})`
    : p.count > 1
      ? `${p.codec.type} ${p.codec.byteOrder}`
      : p.codec.type;

/** Two points read the same words the same way, or at least one reads single bits. */
function compatible(a: CompiledPoint, b: CompiledPoint): boolean {
  if (a.codec.bit !== undefined || b.codec.bit !== undefined) return true;
  if (a.table === "coil" || a.table === "discreteInput") return true;
  return (
    a.address === b.address &&
    a.count === b.count &&
    a.codec.type === b.codec.type &&
    a.codec.byteOrder === b.codec.byteOrder
  );
}

/** Points of every device behind one source, unit and table that read the same words differently. */
function overlaps(devices: readonly DevicePlan[]): Array<ConfigProblem & { device: DevicePlan }> {
  const found: Array<ConfigProblem & { device: DevicePlan }> = [];
  const groups = new Map<string, Array<{ point: CompiledPoint; device: ModbusDevicePlan }>>();
  for (const d of devices) {
    const device = modbusPlan(d);
    for (const point of device.points) {
      const key = `${device.sourceId}/${device.unitId}/${point.table}`;
      let list = groups.get(key);
      if (!list) groups.set(key, (list = []));
      list.push({ point, device });
    }
  }
  for (const list of groups.values()) {
    list.sort((x, y) => x.point.address - y.point.address);
    for (let i = 0; i < list.length; i++) {
      const a = list[i];
      if (!a) continue;
      for (let j = i + 1; j < list.length; j++) {
        const b = list[j];
        if (!b || b.point.address >= a.point.address + a.point.count) break;
        if (compatible(a.point, b.point)) continue;
        const file = path.relative(path.dirname(b.device.file), a.device.file);
        const where = a.point.position
          ? `${a.device.file === b.device.file ? "line " : `${file}:`}${a.point.position.line}`
          : file;
        found.push({
          device: b.device,
          path: ["points", b.point.name],
          message:
            `overlaps point ${a.point.name} (${where}) at ${formatAddress(b.point.table, b.point.address)} ` +
            `with a conflicting type: ${describe(b.point)} vs ${describe(a.point)}`,
        });
      }
    }
  }
  return found;
}
