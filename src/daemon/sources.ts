import path from "node:path";
import type { Logger } from "../core/logger.js";
import type { DevicePlan } from "../mapping/types.js";
import type { SourceHealth } from "../south/driver.js";
import type { DeviceChannel, Source } from "../south/protocol.js";
import { protocolOf, type SourceConfig } from "../south/registry.js";
import type { Component } from "./component.js";

export interface SourcesOptions {
  readonly sources: Readonly<Record<string, SourceConfig>>;
  readonly devices: readonly DevicePlan[];
  readonly dataDir: string;
  readonly configFile: string;
}

/**
 * The gateway's sources, opened through the protocol table only when a device uses them (an
 * OPC UA source loads node-opcua then, not before), each started on its own: one that fails is
 * logged and the others go on, while its own state machine keeps trying.
 */
export class Sources implements Component {
  readonly name = "sources";
  private readonly opening = new Map<string, Promise<Source>>();
  private readonly opened = new Map<string, Source>();
  private readonly started = new Set<string>();
  private readonly channels = new Map<string, DeviceChannel>();

  constructor(
    private opts: SourcesOptions,
    private readonly log: Logger,
  ) {}

  /**
   * A reload: the sources whose settings changed (`changedSources`, by id) or that no device
   * uses any more are stopped, the channels of changed and removed devices dropped; every
   * other connection stays up. Call `startFor` with the new devices afterwards to open what
   * is new.
   */
  async replace(
    next: SourcesOptions,
    changed: ReadonlySet<string>,
    changedSources: ReadonlySet<string>,
  ): Promise<void> {
    const used = new Set(next.devices.map((d) => d.sourceId));
    const gone = [...this.opening.keys()].filter((id) => !used.has(id) || changedSources.has(id));
    const names = new Set(next.devices.map((d) => d.deviceName));
    for (const device of this.opts.devices) {
      if (
        changed.has(device.deviceName) ||
        !names.has(device.deviceName) ||
        gone.includes(device.sourceId)
      )
        this.channels.delete(device.deviceName);
    }
    this.opts = next;
    await Promise.all(gone.map((id) => this.close(id)));
  }

  async start(): Promise<void> {
    await this.startFor(this.opts.devices);
  }

  /** Opens and starts the sources of these devices (the one-shot `read` polls a few). */
  async startFor(devices: readonly DevicePlan[]): Promise<void> {
    const ids = [...new Set(devices.map((d) => d.sourceId))];
    await Promise.all(
      ids.map(async (id) => {
        try {
          const source = await this.open(id);
          if (this.started.has(id)) return;
          this.started.add(id);
          await source.start();
        } catch (err) {
          this.log.error({ source: id, err }, "source failed to start");
        }
      }),
    );
  }

  async stop(): Promise<void> {
    this.channels.clear();
    await Promise.all([...this.opening.keys()].map((id) => this.close(id)));
  }

  /** The device's channel, once its source is open. */
  channel(deviceName: string): DeviceChannel | undefined {
    const cached = this.channels.get(deviceName);
    if (cached) return cached;
    const device = this.opts.devices.find((d) => d.deviceName === deviceName);
    const source = device && this.opened.get(device.sourceId);
    if (!device || !source) return undefined;
    const channel = source.channel(device);
    this.channels.set(deviceName, channel);
    return channel;
  }

  /** An open source, e.g. for `read --raw`. */
  source(id: string): Source | undefined {
    return this.opened.get(id);
  }

  /** Per source: its connection state and counters. */
  status(): Record<string, SourceHealth> {
    const out: Record<string, SourceHealth> = {};
    for (const [id, s] of this.opened) out[id] = s.health();
    return out;
  }

  private async close(id: string): Promise<void> {
    const opening = this.opening.get(id);
    this.opening.delete(id);
    this.opened.delete(id);
    this.started.delete(id);
    // A source still opening is stopped once open (an OPC UA source loads its driver first).
    const source = await opening?.catch(() => undefined);
    await source
      ?.stop()
      .catch((err: unknown) => this.log.warn({ source: id, err }, "source did not stop cleanly"));
  }

  private open(id: string): Promise<Source> {
    let opening = this.opening.get(id);
    if (!opening) {
      const config = this.opts.sources[id];
      if (!config) return Promise.reject(new Error(`no source ${id}`));
      opening = protocolOf(config)
        .open(id, config, {
          dataDir: this.opts.dataDir,
          configDir: path.dirname(this.opts.configFile),
          log: this.log,
        })
        .then((source) => {
          // Closed while it opened (a stop or reload): close() stops it, nobody may use it.
          if (this.opening.get(id) === opening) this.opened.set(id, source);
          return source;
        });
      this.opening.set(id, opening);
    }
    return opening;
  }
}
