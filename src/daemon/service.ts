import { formatProblem, loadConfig, type LoadedConfig } from "../config/load.js";
import type { Logger } from "../core/logger.js";
import { Gateway, type ReloadPlan } from "./gateway.js";
import { watchConfig } from "./watch.js";

/** How a reload ended: applied (in place, or by rebuilding the gateway), or refused. */
export type ReloadOutcome =
  | { readonly applied: true; readonly plan: ReloadPlan | "rebuilt" }
  | { readonly applied: false; readonly problems: readonly string[]; readonly omitted: number };

/** The process events the service listens to; `process` in the daemon, an emitter in tests. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

/**
 * The running daemon around one gateway: SIGHUP reloads the config from its file (a config with
 * problems is refused and the running one stays in place), SIGTERM or SIGINT stops it. Reloads
 * run one after another, and a stop waits for the reload under way, so a signal storm never runs
 * two gateways at once.
 */
export class Service {
  private gateway: Gateway;
  private reloading: Promise<unknown> = Promise.resolve();
  /** Stops watching the config (`run --watch`); undefined when not watching. */
  private unwatch: (() => void) | undefined;

  constructor(
    private readonly configFile: string,
    private config: LoadedConfig,
    private readonly log: Logger,
  ) {
    this.gateway = this.build(config);
  }

  /**
   * Reloads whenever the config file or a mapping file changes (`run --watch`), as SIGHUP does.
   * The watched folders follow the config: a reload that names other mapping folders moves
   * the watch there.
   */
  watch(): void {
    this.unwatch?.();
    this.unwatch = watchConfig(
      this.configFile,
      this.config.gateway.mappings,
      () => void this.reload(),
      this.log,
    );
  }

  get current(): Gateway {
    return this.gateway;
  }

  start(): Promise<void> {
    return this.gateway.start();
  }

  /** Queues a reload behind any under way; resolves when this one has been applied or refused. */
  reload(): Promise<ReloadOutcome> {
    const outcome = this.reloading.then(() => this.reloadNow());
    this.reloading = outcome.catch((err: unknown) => this.log.error({ err }, "reload failed"));
    return outcome;
  }

  async stop(): Promise<void> {
    this.unwatch?.();
    this.unwatch = undefined;
    await this.reloading;
    await this.gateway.stop();
  }

  /**
   * Runs until SIGTERM or SIGINT, reloading on SIGHUP; resolves with the signal once stopped.
   */
  async run(signals: SignalSource): Promise<NodeJS.Signals> {
    const onHup = (): void => void this.reload();
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
    await this.stop();
    this.log.info("stopped");
    return signal;
  }

  private async reloadNow(): Promise<ReloadOutcome> {
    const next = await loadConfig(this.configFile);
    if (!next.ok) {
      const problems = next.problems.map((p) => formatProblem(p));
      this.log.error(
        { problems, ...(next.omitted > 0 && { moreProblems: next.omitted }) },
        "reload refused: the config has problems; the running config stays in place",
      );
      return { applied: false, problems, omitted: next.omitted };
    }
    const outcome = await this.apply(next.config);
    this.config = next.config;
    if (this.unwatch) this.watch();
    return outcome;
  }

  private async apply(config: LoadedConfig): Promise<ReloadOutcome> {
    if (this.gateway.canApply(config)) {
      const plan = await this.gateway.apply(config);
      this.log.info({ devices: config.devices.length, ...plan }, "reloaded in place");
      return { applied: true, plan };
    }
    // The data folder, the history limits or the presence of a cloud section changed: those
    // belong to the store, opened once per gateway.
    await this.gateway.stop();
    this.gateway = this.build(config);
    await this.gateway.start();
    this.log.info({ devices: config.devices.length }, "reloaded: the gateway was rebuilt");
    return { applied: true, plan: "rebuilt" };
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
