import { performance } from "node:perf_hooks";
import { ErrorCodes } from "../core/errors.js";
import { DurationHistogram, type HistogramSnapshot } from "../core/histogram.js";
import type { Logger } from "../core/logger.js";
import type { PointValue } from "../core/types.js";
import { checkCommand } from "../mapping/guard.js";
import type { DevicePlan, PointBase } from "../mapping/types.js";
import type { EdgeShadow } from "../shadow/edge-shadow.js";
import type { DeviceChannel } from "../south/protocol.js";

/** Reads of a resumed command's point before giving up: 100 ms doubling, 6.3 s in all. */
const RESUME_READS = 6;
const RESUME_READ_WAIT_MS = 100;

export type CommandStatus = "applied" | "rejected" | "failed";

export interface CommandOutcome {
  readonly status: CommandStatus;
  readonly reason?: string;
  /** The value read back after the write. */
  readonly value?: PointValue;
}

/** Read-back equality: float32 points compare at float32 precision, arrays by content. */
function same(a: PointValue | undefined, b: unknown): boolean {
  if (typeof a === "number" && typeof b === "number")
    return a === b || Math.fround(a) === Math.fround(b);
  if (Array.isArray(a)) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
}

/**
 * Writes one desired value to a device: guard, encode, write (ahead of queued polls), read
 * back, and feed the read value into the edge shadow so the cloud sees what the device holds.
 * Never throws: every outcome is a CommandOutcome.
 */
export class CommandExecutor {
  /** How long commands took from guard to outcome, per outcome: their counts are the commands. */
  private readonly durations: Record<CommandStatus, DurationHistogram> = {
    applied: new DurationHistogram(),
    rejected: new DurationHistogram(),
    failed: new DurationHistogram(),
  };

  constructor(
    /** By deviceName; a reload hands over the next map. */
    public devices: ReadonlyMap<string, DevicePlan>,
    /** The device's channel, once its source is open. */
    private readonly channel: (deviceName: string) => DeviceChannel | undefined,
    private readonly shadow: EdgeShadow,
    private readonly log: Logger,
  ) {}

  async execute(
    deviceName: string,
    pointName: string,
    value: unknown,
    opts: { resume?: boolean } = {},
  ): Promise<CommandOutcome> {
    const t0 = performance.now();
    const outcome = await this.run(deviceName, pointName, value, opts);
    this.durations[outcome.status].observe((performance.now() - t0) / 1000);
    return outcome;
  }

  /** Every command executed since start, per outcome, with how long it took. */
  stats(): Record<CommandStatus, HistogramSnapshot> {
    return {
      applied: this.durations.applied.snapshot(),
      rejected: this.durations.rejected.snapshot(),
      failed: this.durations.failed.snapshot(),
    };
  }

  private async run(
    deviceName: string,
    pointName: string,
    value: unknown,
    opts: { resume?: boolean },
  ): Promise<CommandOutcome> {
    const device = this.devices.get(deviceName);
    const point: PointBase | undefined = device?.points.find((p) => p.name === pointName);
    const channel = this.channel(deviceName);
    const fields = {
      source: device?.sourceId,
      ...channel?.fields,
      device: deviceName,
      point: pointName,
    };
    const guard = checkCommand(point, value);
    if (!device || !point || !guard.ok) {
      const reason = guard.ok ? "unknown device" : guard.reason;
      this.log.warn({ ...fields, code: ErrorCodes.COMMAND_REJECTED, reason }, "command rejected");
      return { status: "rejected", reason };
    }
    const access = channel?.access(pointName);
    if (!access) return { status: "failed", reason: `source ${device.sourceId} is not open` };

    if (opts.resume) {
      // The gateway died between journaling this command and its outcome: if the device holds
      // the value, the write landed, and writing again would execute the command twice. Right
      // after a restart the device's connection may still be opening, so the check waits for a
      // good reading; without one it cannot tell, and a second execution is the worse outcome.
      let held = await access.read();
      for (let i = 0; i < RESUME_READS && held?.quality.status !== "good"; i++) {
        await new Promise((resolve) => setTimeout(resolve, RESUME_READ_WAIT_MS * 2 ** i));
        held = await access.read();
      }
      if (held?.quality.status !== "good") {
        return this.failed(
          fields,
          "cannot read the device to tell whether the write before the restart landed; not written again",
        );
      }
      if (same(held.value, value)) {
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

  private failed(
    fields: Record<string, unknown>,
    reason: string,
    value?: PointValue,
  ): CommandOutcome {
    this.log.warn({ ...fields, code: ErrorCodes.COMMAND_FAILED, reason }, "command failed");
    return value === undefined ? { status: "failed", reason } : { status: "failed", reason, value };
  }
}
