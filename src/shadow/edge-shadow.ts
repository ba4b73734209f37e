import { EventEmitter } from "node:events";
import { ErrorCodes } from "../core/errors.js";
import { isJsonObject } from "../core/json.js";
import { COMMANDS_KEY, type JsonObject, type PointValue, type Quality } from "../core/types.js";
import type { DevicePlan, PointBase, PointReading } from "../mapping/types.js";
import { getPath } from "../core/json.js";
import { setPath } from "./document.js";

interface Leaf {
  value?: PointValue;
  quality: Quality;
  /** Time of the last good reading of `value`. */
  ts?: number;
  /** What was last put into an update, and when. */
  reportedValue?: PointValue;
  reportedAt?: number;
}

/** A partial update: only the leaves that changed, nested as in `state.reported`. */
export interface ReportedUpdate {
  readonly productKey: string;
  readonly deviceName: string;
  readonly reported: JsonObject;
  /** Points whose quality changed, by point name. */
  readonly quality: Readonly<Record<string, Quality>>;
  readonly ts: number;
}

/** A command's outcome as it goes under `_commands`, for one point of one device. */
export interface CommandNote {
  readonly deviceName: string;
  readonly point: string;
  readonly outcome: JsonObject;
}

export interface LeafMetadata {
  readonly timestamp?: number;
  readonly quality: Quality["status"];
  readonly code?: string;
  readonly reason?: string;
}

export interface ShadowDocument {
  readonly state: { readonly reported: JsonObject };
  readonly metadata: { readonly reported: Readonly<Record<string, LeafMetadata>> };
}

/** The quality of a point before its first poll. */
const NOT_READ = ErrorCodes.NOT_READ;

const sameQuality = (a: Quality, b: Quality): boolean =>
  a.status === b.status && (a.status === "good" || (b.status !== "good" && a.code === b.code));

function setQuality(device: DeviceState, leaf: Leaf, quality: Quality): void {
  device.counts[leaf.quality.status]--;
  device.counts[quality.status]++;
  leaf.quality = quality;
}

/** How many of a device's points are of each quality now. */
export type QualityCounts = Record<Quality["status"], number>;

interface DeviceState {
  readonly plan: DevicePlan;
  readonly leaves: Map<string, Leaf>;
  /** Kept at every change of a leaf's quality, so that metrics never count the leaves. */
  readonly counts: QualityCounts;
  /** When readings last came in (a poll, a monitored batch or a read-back). */
  readAt?: number;
  /** Changes with anything document() or commands() show (see revision()). */
  revision: number;
  /** The last outcome per point, as under `_commands`; since this process started. */
  readonly commands: Map<string, JsonObject>;
}

/**
 * The gateway's own copy of every device's reported state. It decides what changed enough to
 * report (deadband, on-change, heartbeat) and keeps the last good value of a point that went
 * bad, marked stale, so that stale data never looks alive and never vanishes either.
 * Emits "update" with a ReportedUpdate whenever ingest finds something to report, "command"
 * with each command outcome recorded (from the cloud or the local API), and "revised" with the
 * device's name whenever its revision() moves (every ingest, even one that reports nothing).
 */
export class EdgeShadow extends EventEmitter<{
  update: [ReportedUpdate];
  command: [CommandNote];
  revised: [string];
}> {
  private readonly devices = new Map<string, DeviceState>();
  private revisions = 0;

  constructor(plans: readonly DevicePlan[]) {
    super();
    for (const plan of plans) this.devices.set(plan.deviceName, fresh(plan));
  }

  /**
   * A reload's new device list: unchanged devices keep their leaves (values, quality, what was
   * reported); changed and added ones start unread, removed ones go.
   */
  replace(plans: readonly DevicePlan[], changed: ReadonlySet<string>): void {
    const next = new Set(plans.map((p) => p.deviceName));
    for (const name of [...this.devices.keys()]) if (!next.has(name)) this.devices.delete(name);
    for (const plan of plans) {
      const kept = this.devices.get(plan.deviceName);
      if (kept && !changed.has(plan.deviceName)) {
        this.devices.set(plan.deviceName, { ...kept, plan });
        continue;
      }
      // A changed device starts unread, but keeps the outcomes of the commands it ran.
      const device = { ...fresh(plan), ...(kept && { commands: kept.commands }) };
      this.devices.set(plan.deviceName, device);
      this.revise(device);
    }
  }

  /** One counter for every device, so a device replaced by a reload never repeats a revision. */
  private revise(device: DeviceState): void {
    device.revision = ++this.revisions;
    this.emit("revised", device.plan.deviceName);
  }

  /** Per device, its source and how many of its points are good, bad and stale. */
  qualityCounts(): Array<{ deviceName: string; sourceId: string; counts: QualityCounts }> {
    return [...this.devices.values()].map((d) => ({
      deviceName: d.plan.deviceName,
      sourceId: d.plan.sourceId,
      counts: { ...d.counts },
    }));
  }

  deviceNames(): string[] {
    return [...this.devices.keys()];
  }

  /** Applies one poll's readings; returns (and emits) the partial update, if any. */
  ingest(
    deviceName: string,
    readings: readonly PointReading[],
    now = Date.now(),
  ): ReportedUpdate | undefined {
    const device = this.devices.get(deviceName);
    if (!device) throw new Error(`unknown device ${deviceName}`);
    device.readAt = now;
    const reported: JsonObject = {};
    const quality: Record<string, Quality> = {};
    let changed = false;

    for (const r of readings) {
      const leaf = device.leaves.get(r.point.name);
      if (!leaf) continue;
      if (r.quality.status === "good" && r.value !== undefined) {
        const recovered = leaf.quality.status !== "good";
        const first = leaf.quality.status === "bad" && leaf.quality.code === NOT_READ;
        leaf.value = r.value;
        leaf.ts = r.ts;
        if (recovered) {
          setQuality(device, leaf, r.quality);
          // A first value is news in itself, not a change of quality.
          if (!first) quality[r.point.name] = r.quality;
          changed = true;
        }
        if (recovered || this.due(r.point, leaf, r.value, now)) {
          leaf.reportedValue = r.value;
          leaf.reportedAt = now;
          setPath(reported, r.point.path, r.value);
          changed = true;
        }
      } else if (r.quality.status !== "good") {
        // A point with a last good value keeps it, marked stale; one never read stays bad.
        const next: Quality =
          leaf.value !== undefined
            ? { status: "stale", code: r.quality.code, reason: r.quality.reason }
            : r.quality;
        if (!sameQuality(leaf.quality, next)) {
          setQuality(device, leaf, next);
          quality[r.point.name] = next;
          changed = true;
        }
      }
    }
    // Even an unchanged reading moves the points' timestamps.
    this.revise(device);
    if (!changed) return undefined;
    const update: ReportedUpdate = {
      productKey: device.plan.productKey,
      deviceName,
      reported,
      quality,
      ts: now,
    };
    this.emit("update", update);
    return update;
  }

  /**
   * Puts back the values saved before a restart, marked stale until a poll reads them again,
   * so the gateway serves its last known state from the first moment. They count as reported
   * (the cloud had them), so an unchanged first reading sends nothing. The last command outcome
   * of each point still mapped comes back too (`_commands` is part of what was reported).
   */
  restore(deviceName: string, reported: JsonObject, now = Date.now()): void {
    const device = this.devices.get(deviceName);
    if (!device) return;
    const commands = reported[COMMANDS_KEY];
    if (isJsonObject(commands)) {
      for (const point of device.plan.points) {
        const outcome = commands[point.name];
        if (isJsonObject(outcome)) device.commands.set(point.name, outcome);
      }
    }
    for (const point of device.plan.points) {
      const value = getPath(reported, point.path);
      const leaf = device.leaves.get(point.name);
      if (!leaf || value === undefined || value === null || typeof value === "object") continue;
      leaf.value = value;
      leaf.reportedValue = value;
      leaf.reportedAt = now;
      setQuality(device, leaf, {
        status: "stale",
        code: ErrorCodes.RESTORED,
        reason: "saved before a restart; not read since",
      });
    }
    this.revise(device);
  }

  /** Whether a good value should go into the next update. */
  private due(point: PointBase, leaf: Leaf, value: PointValue, now: number): boolean {
    if (leaf.reportedAt === undefined) return true;
    if (point.heartbeatMs !== undefined && now - leaf.reportedAt >= point.heartbeatMs) return true;
    if (!point.onChange) return false;
    const last = leaf.reportedValue;
    if (
      typeof value === "number" &&
      typeof last === "number" &&
      point.deadband !== undefined &&
      point.deadband > 0
    ) {
      return Math.abs(value - last) >= point.deadband;
    }
    // Arrays (OPC UA) are new objects on every reading: compare what they hold.
    return Array.isArray(value) ? JSON.stringify(value) !== JSON.stringify(last) : value !== last;
  }

  /**
   * A number that changes whenever the device's document() or commands() would, so a reader
   * that serves them often (the local API) can keep what it made of them until then.
   */
  revision(deviceName: string): number | undefined {
    return this.devices.get(deviceName)?.revision;
  }

  /** When the device's readings last came in, if they have. */
  readAt(deviceName: string): number | undefined {
    return this.devices.get(deviceName)?.readAt;
  }

  /**
   * Keeps a command's outcome (what goes under `_commands` for its point) so local readers see
   * it as the cloud does, and emits it as "command".
   */
  recordCommand(deviceName: string, point: string, outcome: JsonObject): void {
    const device = this.devices.get(deviceName);
    if (!device) return;
    device.commands.set(point, outcome);
    this.revise(device);
    this.emit("command", { deviceName, point, outcome });
  }

  /** The last command outcome per point (the `_commands` object), restored after a restart. */
  commands(deviceName: string): JsonObject {
    return Object.fromEntries(this.devices.get(deviceName)?.commands ?? []);
  }

  /** The full reported document: last known values, stale ones included, with per-leaf metadata. */
  document(deviceName: string): ShadowDocument | undefined {
    const device = this.devices.get(deviceName);
    if (!device) return undefined;
    const reported: JsonObject = {};
    const metadata: Record<string, LeafMetadata> = {};
    for (const point of device.plan.points) {
      const leaf = device.leaves.get(point.name);
      if (!leaf) continue;
      if (leaf.value !== undefined) setPath(reported, point.path, leaf.value);
      metadata[point.name] = {
        quality: leaf.quality.status,
        ...(leaf.ts !== undefined && { timestamp: leaf.ts }),
        ...(leaf.quality.status !== "good" && {
          code: leaf.quality.code,
          reason: leaf.quality.reason,
        }),
      };
    }
    return { state: { reported }, metadata: { reported: metadata } };
  }
}

function fresh(plan: DevicePlan): DeviceState {
  return {
    plan,
    leaves: new Map(
      plan.points.map((p) => [
        p.name,
        { quality: { status: "bad", code: NOT_READ, reason: "not read yet" } },
      ]),
    ),
    counts: { good: 0, bad: plan.points.length, stale: 0 },
    commands: new Map(),
    revision: 0,
  };
}
