import { performance } from "node:perf_hooks";
import { DurationHistogram } from "../core/histogram.js";
import type { Logger } from "../core/logger.js";
import type { DevicePlan } from "../mapping/types.js";
import type { EdgeShadow } from "../shadow/edge-shadow.js";
import type { DeviceChannel } from "../south/protocol.js";
import type { Component } from "./component.js";
import { Scheduler, type PollGroup } from "./scheduler.js";

export interface PollerOptions {
  /** The devices as first configured; a reload hands over the next list (adopt). */
  readonly devices: readonly DevicePlan[];
  /** The device's channel, once its source is open. */
  readonly channel: (deviceName: string) => DeviceChannel | undefined;
  readonly shadow: EdgeShadow;
  /** After each poll cycle or monitored batch: its reports are made durable and sent. */
  readonly onCycle: () => void;
}

/**
 * The uplink's first half: devices polled on the scheduler's grid (one group per source and
 * interval, so devices polled alike share one timer) and monitored devices delivering their
 * changes; every reading goes into the edge shadow.
 */
export class Poller implements Component {
  readonly name = "poller";
  private scheduler: Scheduler | undefined;
  /** Monitored devices' stop functions, by deviceName. */
  private readonly monitors = new Map<string, () => Promise<void>>();
  /** The devices of each poll group, by group id. */
  private polled = new Map<string, readonly DevicePlan[]>();
  private devices: readonly DevicePlan[];
  /** How long each device poll took, per source (for metrics; created at a source's first poll). */
  private readonly durations = new Map<string, DurationHistogram>();

  constructor(
    private readonly opts: PollerOptions,
    private readonly log: Logger,
  ) {
    this.devices = opts.devices;
  }

  /** After the sources: whether a device is polled or monitored is its channel's to say. */
  async start(): Promise<void> {
    this.polled = await this.split(this.devices);
    this.scheduler = new Scheduler(
      [...this.polled].map(([id, devices]) => this.group(id, devices)),
      this.log.child({ component: "daemon.scheduler" }),
    );
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    const scheduler = this.scheduler;
    this.scheduler = undefined;
    await scheduler?.stop();
    const monitors = [...this.monitors.values()];
    this.monitors.clear();
    for (const stop of monitors) await stop().catch(() => undefined);
  }

  /**
   * A reload's half of the poller, in two steps around the sources: `release` takes the
   * changed and removed devices off the grid (and waits for their polls under way), `adopt`
   * puts the changed and added ones on it. A group whose devices are all unchanged keeps its
   * timer and grid, so an untouched device is polled on time throughout; a group that loses
   * or gains a device is replaced by one that polls at once.
   */
  async release(next: readonly DevicePlan[], changed: ReadonlySet<string>): Promise<void> {
    const keep = new Set(next.map((d) => d.deviceName).filter((n) => !changed.has(n)));
    const wanted = groupIds(next);
    for (const [id, devices] of [...this.polled]) {
      const same =
        devices.every((d) => keep.has(d.deviceName)) && wanted.get(id)?.length === devices.length;
      if (same) continue;
      this.polled.delete(id);
      await this.scheduler?.remove(id);
    }
    for (const [name, stop] of [...this.monitors]) {
      if (keep.has(name)) continue;
      this.monitors.delete(name);
      await stop().catch(() => undefined);
    }
  }

  /**
   * Second step of a reload: the devices of `next` that are neither polled nor monitored now
   * (and that `ready` accepts) are started. `ready` must accept or refuse a whole source.
   */
  async adopt(
    next: readonly DevicePlan[],
    ready: (d: DevicePlan) => boolean = () => true,
  ): Promise<void> {
    this.devices = next;
    if (!this.scheduler) return;
    const grouped = new Set([...this.polled.values()].flat().map((d) => d.deviceName));
    // `release` took off every group that loses or gains a device, so the devices waiting
    // here make whole groups: the new and changed ones with their unchanged companions.
    const waiting = next.filter(
      (d) => ready(d) && !grouped.has(d.deviceName) && !this.monitors.has(d.deviceName),
    );
    for (const [id, devices] of await this.split(waiting)) {
      this.polled.set(id, devices);
      this.scheduler.add(this.group(id, devices));
    }
  }

  /** Polls these devices once (monitored ones too: with one Read), for `shadowgate read`. */
  async pollOnce(devices: readonly DevicePlan[]): Promise<void> {
    await Promise.all(devices.map((d) => this.poll(d)));
  }

  /**
   * Ticks the device's poll group skipped because its previous poll still ran (shared by the
   * devices polled alike); undefined for a monitored device or one not on the grid.
   */
  overruns(device: DevicePlan): number | undefined {
    const id = groupId(device);
    return this.scheduler?.stats().find((g) => g.id === id)?.overruns;
  }

  status(): Record<string, unknown> {
    return {
      groups: this.scheduler?.stats() ?? [],
      pollSeconds: Object.fromEntries(
        [...this.durations].map(([source, h]) => [source, h.snapshot()]),
      ),
    };
  }

  /** Starts monitoring the monitored ones; returns the polled ones by group id. */
  private async split(devices: readonly DevicePlan[]): Promise<Map<string, DevicePlan[]>> {
    const polled: DevicePlan[] = [];
    for (const d of devices) {
      const channel = this.opts.channel(d.deviceName);
      if (channel?.monitored) await this.monitor(d, channel);
      else polled.push(d);
    }
    return groupIds(polled);
  }

  private group(id: string, devices: readonly DevicePlan[]): PollGroup {
    return {
      id,
      intervalMs: devices[0]?.pollIntervalMs ?? 1000,
      run: async () => {
        for (const d of devices) await this.poll(d);
        // One transaction per poll cycle makes its reports durable before they are sent.
        this.opts.onCycle();
      },
    };
  }

  private async poll(device: DevicePlan): Promise<void> {
    const channel = this.opts.channel(device.deviceName);
    if (!channel) return;
    const t0 = performance.now();
    const readings = await channel.poll();
    let h = this.durations.get(device.sourceId);
    if (!h) this.durations.set(device.sourceId, (h = new DurationHistogram()));
    h.observe((performance.now() - t0) / 1000);
    this.opts.shadow.ingest(device.deviceName, readings);
  }

  /** Each batch of changes is one reported update, durable before it may be sent. */
  private async monitor(device: DevicePlan, channel: DeviceChannel): Promise<void> {
    const stop = await channel
      .monitor((readings) => {
        this.opts.shadow.ingest(device.deviceName, readings);
        this.opts.onCycle();
      })
      .catch((err: unknown) => {
        this.log.error(
          { ...channel.fields, device: device.deviceName, err },
          "cannot monitor the device's nodes",
        );
        return undefined;
      });
    if (stop) this.monitors.set(device.deviceName, stop);
  }
}

/** Devices polled alike share one timer: one group per source and interval. */
const groupId = (d: DevicePlan): string => `${d.sourceId}@${d.pollIntervalMs}ms`;

function groupIds(devices: readonly DevicePlan[]): Map<string, DevicePlan[]> {
  const groups = new Map<string, DevicePlan[]>();
  for (const d of devices) groups.set(groupId(d), [...(groups.get(groupId(d)) ?? []), d]);
  return groups;
}
