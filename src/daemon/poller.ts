import { performance } from "node:perf_hooks";
import { DurationHistogram } from "../core/histogram.js";
import type { Logger } from "../core/logger.js";
import type { DevicePlan } from "../mapping/types.js";
import type { EdgeShadow } from "../shadow/edge-shadow.js";
import type { DeviceChannel } from "../south/protocol.js";
import type { Component } from "./component.js";
import { Scheduler, type PollGroup } from "./scheduler.js";

export interface PollerOptions {
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
  private monitors: Array<() => Promise<void>> = [];
  /** How long each device poll took, per source (for metrics; created at a source's first poll). */
  private readonly durations = new Map<string, DurationHistogram>();

  constructor(
    private readonly opts: PollerOptions,
    private readonly log: Logger,
  ) {}

  /** After the sources: whether a device is polled or monitored is its channel's to say. */
  async start(): Promise<void> {
    const polled: DevicePlan[] = [];
    for (const d of this.opts.devices) {
      const channel = this.opts.channel(d.deviceName);
      if (channel?.monitored) await this.monitor(d, channel);
      else polled.push(d);
    }
    this.scheduler = new Scheduler(
      this.groups(polled),
      this.log.child({ component: "daemon.scheduler" }),
    );
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    this.scheduler?.stop();
    this.scheduler = undefined;
    for (const stop of this.monitors.splice(0)) await stop().catch(() => undefined);
  }

  /** Polls these devices once (monitored ones too: with one Read), for `shadowgate read`. */
  async pollOnce(devices: readonly DevicePlan[]): Promise<void> {
    await Promise.all(devices.map((d) => this.poll(d)));
  }

  status(): Record<string, unknown> {
    return {
      groups: this.scheduler?.stats() ?? [],
      pollSeconds: Object.fromEntries(
        [...this.durations].map(([source, h]) => [source, h.snapshot()]),
      ),
    };
  }

  private groups(polled: readonly DevicePlan[]): PollGroup[] {
    const groups = new Map<string, DevicePlan[]>();
    for (const d of polled) {
      const id = `${d.sourceId}@${d.pollIntervalMs}ms`;
      groups.set(id, [...(groups.get(id) ?? []), d]);
    }
    return [...groups].map(([id, devices]) => ({
      id,
      intervalMs: devices[0]?.pollIntervalMs ?? 1000,
      run: async () => {
        for (const d of devices) await this.poll(d);
        // One transaction per poll cycle makes its reports durable before they are sent.
        this.opts.onCycle();
      },
    }));
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
    if (stop) this.monitors.push(stop);
  }
}
