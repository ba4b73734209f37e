import { formatProblem, loadConfig, type LoadedConfig } from "../config/load.js";
import type { Logger } from "../core/logger.js";
import { Gateway } from "./gateway.js";

/** The process events the service listens to; `process` in the daemon, an emitter in tests. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

/**
 * Who supervises the daemon (systemd, through daemon/systemd.ts): told when a signal starts a
 * reload or the stop, and when the service is ready again after a reload.
 */
export interface Supervisor {
  ready(status: string): void;
  reloading(): void;
  stopping(): void;
}

/**
 * The running daemon around one gateway: SIGHUP reloads the config from its file (a config with
 * problems is refused and the running one stays in place), SIGTERM or SIGINT stops it. Reloads
 * run one after another, and a stop waits for the reload under way, so a signal storm never runs
 * two gateways at once.
 */
export class Service {
  private gateway: Gateway;
  private reloading: Promise<void> = Promise.resolve();
  private supervisor: Supervisor | undefined;
  private signalledReloads = 0;

  constructor(
    private readonly configFile: string,
    config: LoadedConfig,
    private readonly log: Logger,
  ) {
    this.gateway = this.build(config);
  }

  get current(): Gateway {
    return this.gateway;
  }

  start(): Promise<void> {
    return this.gateway.start();
  }

  /** Queues a reload behind any under way; resolves when this one has been applied or refused. */
  reload(): Promise<void> {
    this.reloading = this.reloading
      .then(() => this.reloadNow())
      .catch((err: unknown) => this.log.error({ err }, "reload failed"));
    return this.reloading;
  }

  async stop(): Promise<void> {
    await this.reloading;
    await this.gateway.stop();
  }

  /**
   * Runs until SIGTERM or SIGINT, reloading on SIGHUP; resolves with the signal once stopped.
   */
  async run(signals: SignalSource): Promise<NodeJS.Signals> {
    const onHup = (): void => void this.supervisedReload();
    signals.on("SIGHUP", onHup);
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      const stopOn = (s: NodeJS.Signals) => {
        const listener = (): void => {
          signals.off("SIGTERM", onTerm);
          signals.off("SIGINT", onInt);
          resolve(s);
        };
        return listener;
      };
      const onTerm = stopOn("SIGTERM");
      const onInt = stopOn("SIGINT");
      signals.on("SIGTERM", onTerm);
      signals.on("SIGINT", onInt);
    });
    signals.off("SIGHUP", onHup);
    this.log.info({ signal }, "stopping");
    this.supervisor?.stopping();
    await this.stop();
    this.log.info("stopped");
    return signal;
  }

  // --- Supervision (systemd): kept apart from the reload logic above and below. ---

  /** Tells `supervisor` of the reloads and the stop that signals start. */
  supervise(supervisor: Supervisor): void {
    this.supervisor = supervisor;
  }

  /**
   * A SIGHUP's reload, told to the supervisor: RELOADING when it is queued, READY once every
   * signalled reload has been applied or refused (a storm of SIGHUPs is one reloading period).
   * Whether it applied shows in the gateway: a reload that applied built a new one.
   */
  private async supervisedReload(): Promise<void> {
    const before = this.gateway;
    this.signalledReloads++;
    if (this.signalledReloads === 1) this.supervisor?.reloading();
    await this.reload();
    if (--this.signalledReloads > 0) return;
    this.supervisor?.ready(
      this.gateway === before
        ? "running; the last reload was refused (see the log), the previous config stays"
        : `running; config reloaded at ${new Date().toISOString()}`,
    );
  }

  private async reloadNow(): Promise<void> {
    const next = await loadConfig(this.configFile);
    if (!next.ok) {
      this.log.error(
        {
          problems: next.problems.map((p) => formatProblem(p)),
          ...(next.omitted > 0 && { moreProblems: next.omitted }),
        },
        "reload refused: the config has problems; the running config stays in place",
      );
      return;
    }
    await this.gateway.stop();
    this.gateway = this.build(next.config);
    await this.gateway.start();
    this.log.info({ devices: next.config.devices.length }, "reloaded");
  }

  private build(config: LoadedConfig): Gateway {
    const gateway = new Gateway(config, this.log);
    gateway.shadow.on("update", (u) =>
      this.log.debug(
        { device: u.deviceName, reported: u.reported, quality: u.quality },
        "reported update",
      ),
    );
    return gateway;
  }
}
