import { ShadowgateError } from "../../core/errors.js";
import type { RawPoint } from "../../core/samples.js";
import { isBitTable } from "../../core/types.js";
import { encodeBit, encodeRegisters } from "../../mapping/codec.js";
import { decodePoint } from "../../mapping/modbus-points.js";
import type { CompiledPoint, ModbusDevicePlan, PointReading } from "../../mapping/types.js";
import type { DeviceChannel, PointAccess, Probe } from "../protocol.js";
import type { ModbusDriver } from "./modbus-driver.js";
import { probeText, rawValues } from "./raw-probe.js";

const raw = (p: CompiledPoint): RawPoint => ({
  key: p.name,
  table: p.table,
  address: p.address,
  count: p.count,
});

/** One Modbus device (a unit id behind a source): its polls and its points' command access. */
export function modbusChannel(device: ModbusDevicePlan, driver: ModbusDriver): DeviceChannel {
  const byName = new Map(device.points.map((p) => [p.name, p]));
  const request = device.points.map(raw);
  return {
    monitored: false,
    fields: { source: device.sourceId, unitId: device.unitId },
    async poll() {
      const samples = await driver.read({ unitId: device.unitId, points: request });
      const readings: PointReading[] = [];
      for (const s of samples) {
        const point = byName.get(s.key);
        if (point) readings.push({ point, ts: s.ts, ...decodePoint(point, s.quality, s.data) });
      }
      return readings;
    },
    monitor() {
      return Promise.reject(new Error("Modbus devices are polled, not monitored"));
    },
    access(name) {
      const point = byName.get(name);
      return point && modbusAccess(device, point, driver);
    },
  };
}

function modbusAccess(
  device: ModbusDevicePlan,
  point: CompiledPoint,
  driver: ModbusDriver,
): PointAccess {
  return {
    async read() {
      const [s] = await driver.read({ unitId: device.unitId, points: [raw(point)], urgent: true });
      return s && { ts: s.ts, ...decodePoint(point, s.quality, s.data) };
    },
    async prepare(value) {
      let words: number[];
      try {
        if (isBitTable(point.table)) words = encodeBit(value);
        else if (point.codec.bit !== undefined) {
          // One bit of a register: read the register so the other bits survive the write.
          const [current] = await driver.read({
            unitId: device.unitId,
            points: [raw(point)],
            urgent: true,
          });
          if (!current?.data) {
            const reason =
              current?.quality.status === "good"
                ? "no data"
                : (current?.quality.reason ?? "no answer");
            return { failed: `cannot read the register before changing one bit: ${reason}` };
          }
          words = encodeRegisters(point.codec, value, current.data);
        } else words = encodeRegisters(point.codec, value);
      } catch (e) {
        if (!(e instanceof ShadowgateError)) throw e;
        return { rejected: e.message };
      }
      return { write: () => driver.write(device.unitId, raw(point), words) };
    },
  };
}

/** `read --raw`: the point's words and its value under every byte order of its width. */
export async function probeModbus(
  device: ModbusDevicePlan,
  name: string,
  driver: ModbusDriver,
): Promise<Probe> {
  const point = device.points.find((p) => p.name === name);
  if (!point) return { ok: false, usage: true, message: `no point named ${name}` };
  if (isBitTable(point.table)) {
    return {
      ok: false,
      usage: true,
      message: `${name} is a ${point.table}: one bit, no byte order to compare`,
    };
  }
  const [sample] = await driver.read({ unitId: device.unitId, points: [raw(point)] });
  if (!sample?.data || sample.quality.status !== "good") {
    const reason = sample && sample.quality.status !== "good" ? sample.quality.reason : "no answer";
    return { ok: false, usage: false, message: `${device.deviceName} ${name}: ${reason}` };
  }
  return {
    ok: true,
    text: probeText(device.deviceName, point, sample.data),
    json: {
      device: device.deviceName,
      point: name,
      words: [...sample.data],
      values: rawValues(point, sample.data),
    },
  };
}
