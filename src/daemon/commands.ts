import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { isBitTable, type PointValue } from "../core/types.js";
import { encodeBit, encodeRegisters } from "../mapping/codec.js";
import { decodePoint } from "../mapping/decode.js";
import { checkCommand } from "../mapping/guard.js";
import type { CompiledPoint, DevicePlan } from "../mapping/types.js";
import type { EdgeShadow } from "../shadow/edge-shadow.js";
import type { RawPoint, SouthDriver } from "../south/driver.js";

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

/** Read-back equality: float32 points compare at float32 precision. */
function same(a: PointValue | undefined, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number")
    return a === b || Math.fround(a) === Math.fround(b);
  return a === b;
}

/**
 * Writes one desired value to a device: guard, encode, write (ahead of queued polls), read
 * back, and feed the read value into the edge shadow so the cloud sees what the device holds.
 * Never throws: every outcome is a CommandOutcome.
 */
export class CommandExecutor {
  constructor(
    private readonly devices: ReadonlyMap<string, DevicePlan>,
    private readonly drivers: ReadonlyMap<string, SouthDriver>,
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
    const point = device?.points.find((p) => p.name === pointName);
    const fields = {
      device: deviceName,
      point: pointName,
      source: device?.sourceId,
      unitId: device?.unitId,
    };
    const guard = checkCommand(point, value);
    if (!device || !point || !guard.ok) {
      const reason = guard.ok ? "unknown device" : guard.reason;
      this.log.warn({ ...fields, code: ErrorCodes.COMMAND_REJECTED, reason }, "command rejected");
      return { status: "rejected", reason };
    }
    const driver = this.drivers.get(device.sourceId);
    if (!driver) return { status: "failed", reason: `no driver for source ${device.sourceId}` };

    if (opts.resume) {
      // The gateway died between journaling this command and its outcome: if the device holds
      // the value, the write landed, and writing again would execute the command twice.
      const [now] = await driver.read({
        unitId: device.unitId,
        points: [raw(point)],
        urgent: true,
      });
      const held = now ? decodePoint(point, now.quality, now.data) : undefined;
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
          return this.failed(fields, `cannot read the register before changing one bit: ${reason}`);
        }
        words = encodeRegisters(point.codec, value, current.data);
      } else words = encodeRegisters(point.codec, value);
    } catch (e) {
      if (!(e instanceof ShadowgateError)) throw e;
      this.log.warn(
        { ...fields, code: ErrorCodes.COMMAND_REJECTED, reason: e.message },
        "command rejected",
      );
      return { status: "rejected", reason: e.message };
    }

    try {
      await driver.write(device.unitId, raw(point), words);
    } catch (e) {
      return this.failed(fields, e instanceof Error ? e.message : String(e));
    }

    const [back] = await driver.read({ unitId: device.unitId, points: [raw(point)], urgent: true });
    const decoded = back ? decodePoint(point, back.quality, back.data) : undefined;
    if (!back || !decoded || decoded.quality.status !== "good") {
      return this.failed(fields, "written, but the read-back failed");
    }
    this.shadow.ingest(deviceName, [{ point, ts: back.ts, ...decoded }]);
    if (!same(decoded.value, value)) {
      return this.failed(
        fields,
        `wrote ${JSON.stringify(value)} but read back ${JSON.stringify(decoded.value)}`,
        decoded.value,
      );
    }
    this.log.info({ ...fields, value }, "command applied");
    return decoded.value === undefined
      ? { status: "applied" }
      : { status: "applied", value: decoded.value };
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
