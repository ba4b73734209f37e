import { ShadowgateError } from "../../core/errors.js";
import type { ValueSample } from "../../core/samples.js";
import { decodeNodeSample, encodeNodeValue, nodeRef } from "../../mapping/node-points.js";
import type { NodeDevicePlan, NodePoint, PointReading } from "../../mapping/types.js";
import type { NodeDriver } from "../driver.js";
import type { DeviceChannel, PointAccess } from "../protocol.js";

/**
 * One OPC UA device (one mapping file's nodes on a server): monitored items on a subscription,
 * or, with `mode: poll`, a batched Read every interval; and its points' command access.
 */
export function nodeChannel(device: NodeDevicePlan, driver: NodeDriver): DeviceChannel {
  const byName = new Map(device.points.map((p) => [p.name, p]));
  const refs = device.points.map(nodeRef);
  const decode = (samples: readonly ValueSample[]): PointReading[] => {
    const readings: PointReading[] = [];
    for (const s of samples) {
      const point = byName.get(s.key);
      if (point) readings.push({ point, ...decodeNodeSample(point, s) });
    }
    return readings;
  };
  return {
    monitored: device.mode === "subscribe",
    fields: { source: device.sourceId },
    poll: async () => decode(await driver.read(refs)),
    monitor: (onReadings) =>
      driver.monitor(
        { id: device.deviceName, publishingIntervalMs: device.pollIntervalMs, nodes: refs },
        (samples) => onReadings(decode(samples)),
      ),
    access(name) {
      const point = byName.get(name);
      return point && nodeAccess(point, driver);
    },
  };
}

function nodeAccess(point: NodePoint, driver: NodeDriver): PointAccess {
  const ref = nodeRef(point);
  return {
    async read() {
      const [s] = await driver.read([ref]);
      return s && decodeNodeSample(point, s);
    },
    async prepare(value) {
      try {
        const rawValue = encodeNodeValue(point, value);
        return { write: () => driver.write(ref, rawValue) };
      } catch (e) {
        if (!(e instanceof ShadowgateError)) throw e;
        return { rejected: e.message };
      }
    },
  };
}
