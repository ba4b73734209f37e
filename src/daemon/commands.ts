import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { isBitTable, type PointValue, type Quality } from "../core/types.js";
import { encodeBit, encodeRegisters } from "../mapping/codec.js";
import { decodeNodeSample, decodePoint, encodeNodeValue, nodeRef } from "../mapping/decode.js";
import { checkCommand } from "../mapping/guard.js";
import type {
  CompiledPoint,
  DevicePlan,
  ModbusDevicePlan,
  NodePoint,
  PointBase,
} from "../mapping/types.js";
import type { EdgeShadow } from "../shadow/edge-shadow.js";
import type { NodeDriver, SouthDriver } from "../south/driver.js";
import type { RawPoint } from "../core/samples.js";

/** The gateway's drivers by source id: Modbus ones, and those that name typed nodes (OPC UA). */
export interface Drivers {
  readonly modbus: ReadonlyMap<string, SouthDriver>;
  readonly nodes: ReadonlyMap<string, NodeDriver>;
}

export type CommandStatus = "applied" | "rejected" | "failed";

export interface CommandOutcome {
  readonly status: CommandStatus;
  readonly reason?: string;
  /** The value read back after the write. */
  readonly value?: PointValue;
}

const raw = (p: CompiledPoint): RawPoint => ({
  key: p.name,
  table: p.table,
  address: p.address,
  count: p.count,
});

/** Read-back equality: float32 points compare at float32 precision, arrays by content. */
function same(a: PointValue | undefined, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number")
    return a === b || Math.fround(a) === Math.fround(b);
  if (Array.isArray(a)) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
}

interface Decoded {
  readonly value?: PointValue;
  readonly quality: Quality;
  readonly ts: number;
}

/** How a command reaches one point, whatever carries it. */
interface PointAccess {
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

function modbusAccess(
  device: ModbusDevicePlan,
  point: CompiledPoint,
  driver: SouthDriver,
): PointAccess {
  const read = async (): Promise<Decoded | undefined> => {
    const [s] = await driver.read({ unitId: device.unitId, points: [raw(point)], urgent: true });
    return s && { ts: s.ts, ...decodePoint(point, s.quality, s.data) };
  };
  return {
    read,
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

/**
 * Writes one desired value to a device: guard, encode, write (ahead of queued polls), read
 * back, and feed the read value into the edge shadow so the cloud sees what the device holds.
 * Never throws: every outcome is a CommandOutcome.
 */
export class CommandExecutor {
  constructor(
    private readonly devices: ReadonlyMap<string, DevicePlan>,
    private readonly drivers: Drivers,
    private readonly shadow: EdgeShadow,
    private readonly log: Logger,
  ) {}

  async execute(
    deviceName: string,
    pointName: string,
    value: unknown,
    opts: { resume?: boolean } = {},
  ): Promise<CommandOutcome> {
    const device = this.devices.get(deviceName);
    const point: PointBase | undefined = device?.points.find((p) => p.name === pointName);
    const fields = {
      device: deviceName,
      point: pointName,
      source: device?.sourceId,
      ...(device?.protocol === "modbus" && { unitId: device.unitId }),
    };
    const guard = checkCommand(point, value);
    if (!device || !point || !guard.ok) {
      const reason = guard.ok ? "unknown device" : guard.reason;
      this.log.warn({ ...fields, code: ErrorCodes.COMMAND_REJECTED, reason }, "command rejected");
      return { status: "rejected", reason };
    }
    const access = this.access(device, pointName);
    if (!access) return { status: "failed", reason: `no driver for source ${device.sourceId}` };

    if (opts.resume) {
      // The gateway died between journaling this command and its outcome: if the device holds
      // the value, the write landed, and writing again would execute the command twice.
      const held = await access.read();
      if (held?.quality.status === "good" && same(held.value, value)) {
        this.log.info(
          { ...fields, value },
          "command had been applied before a restart; not written again",
        );
        return held.value === undefined
          ? { status: "applied" }
          : { status: "applied", value: held.value };
      }
    }

    const prepared = await access.prepare(value);
    if ("rejected" in prepared) {
      this.log.warn(
        { ...fields, code: ErrorCodes.COMMAND_REJECTED, reason: prepared.rejected },
        "command rejected",
      );
      return { status: "rejected", reason: prepared.rejected };
    }
    if ("failed" in prepared) return this.failed(fields, prepared.failed);
    try {
      await prepared.write();
    } catch (e) {
      return this.failed(fields, e instanceof Error ? e.message : String(e));
    }

    const back = await access.read();
    if (!back || back.quality.status !== "good") {
      return this.failed(fields, "written, but the read-back failed");
    }
    this.shadow.ingest(deviceName, [{ point, ...back }]);
    if (!same(back.value, value)) {
      return this.failed(
        fields,
        `wrote ${JSON.stringify(value)} but read back ${JSON.stringify(back.value)}`,
        back.value,
      );
    }
    this.log.info({ ...fields, value }, "command applied");
    return back.value === undefined
      ? { status: "applied" }
      : { status: "applied", value: back.value };
  }

  private access(device: DevicePlan, pointName: string): PointAccess | undefined {
    if (device.protocol === "modbus") {
      const driver = this.drivers.modbus.get(device.sourceId);
      const point = device.points.find((p) => p.name === pointName);
      return driver && point && modbusAccess(device, point, driver);
    }
    const driver = this.drivers.nodes.get(device.sourceId);
    const point = device.points.find((p) => p.name === pointName);
    return driver && point && nodeAccess(point, driver);
  }

  private failed(
    fields: Record<string, unknown>,
    reason: string,
    value?: PointValue,
  ): CommandOutcome {
    this.log.warn({ ...fields, code: ErrorCodes.COMMAND_FAILED, reason }, "command failed");
    return value === undefined ? { status: "failed", reason } : { status: "failed", reason, value };
  }
}
