import type { ReloadRecord, ReloadReply } from "../api/host.js";
import type { GatewayMetrics } from "../api/metrics.js";
import type { ApiServer } from "../api/server.js";
import { formatProblem, loadConfig, type LoadedConfig } from "../config/load.js";
import { ErrorCodes } from "../core/errors.js";
import { sameJson } from "../core/json.js";
import type { Logger } from "../core/logger.js";
import { Lifecycle } from "./component.js";
import { Gateway } from "./gateway.js";
import { HeapWatch } from "./heap-watch.js";
import { GatewayMetricsSource } from "./metrics-source.js";
import { watchConfig } from "./watch.js";

/** How long the local API may take to bind or to close. */
const API_TIMEOUT_MS = 5000;

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
 * The running daemon around one gateway: SIGHUP (or `--watch`, or the API) reloads the config
 * from its file (a config with problems is refused and the running one stays in place; a good
 * one is applied in place where it can be, see Gateway.apply), SIGTERM or SIGINT stops it.
 * Reloads run one after another, and a stop waits for the reload under way, so a signal storm
 * never runs two gateways at once. It owns what outlives a reload: the local API and metrics.
 */
export class Service {
  private gateway: Gateway;
  private reloading: Promise<unknown> = Promise.resolve();
  /** Told of each gateway built after the first (the local API follows the running one). */
  private readonly watchers = new Set<(gateway: Gateway) => void>();
  /**
   * The local API, with an `api` section, once started: one per process, it outlives reloads
   * (its listen address and token are the ones read at start). Its modules (fastify,
   * prom-client) are loaded only then, so a gateway without one never holds them in its heap.
   */
  private apiServer: ApiServer | undefined;
  private apiLifecycle: Lifecycle | undefined;
  /** Set by stop: a reload asked for after it (over the API) must not start a gateway again. */
  private stopping = false;
  /** Stops watching the config (`run --watch`); undefined when not watching. */
  private unwatch: (() => void) | undefined;
  private metrics: GatewayMetrics | undefined;
  private supervisor: Supervisor | undefined;
  private signalledReloads = 0;
  /** The last reload's outcome, since the process started (the console shows it). */
  private lastReload: ReloadRecord | undefined;
  /** Warns when the heap nears gateway.memory.heapMb; it outlives reloads, as the process does. */
  private readonly heap: HeapWatch;

  /** The config the process started with: what the API server, the logger and node's flags use. */
  private readonly startedWith: LoadedConfig;

  constructor(
    private readonly configFile: string,
    private config: LoadedConfig,
    private readonly log: Logger,
  ) {
    this.startedWith = config;
    this.gateway = this.build(config);
    this.heap = new HeapWatch({}, log.child({ component: "daemon.heap" }));
  }

  get api(): ApiServer | undefined {
    return this.apiServer;
  }

  get current(): Gateway {
    return this.gateway;
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
      () => void this.reload("watch"),
      this.log,
    );
  }

  /**
   * The API first: /healthz and /readyz answer while the gateway starts. Reloads and the stop
   * queue behind the start, so a signal that comes while it runs (run() listens from before
   * it) waits for it rather than racing it.
   */
  start(): Promise<void> {
    const started = (async () => {
      this.warn(this.config);
      await this.heap.start();
      await this.openApi();
      await this.gateway.start();
    })();
    this.reloading = started.catch(() => undefined);
    return started;
  }

  /** Whether stop() has been called (a start that finishes after it reports nothing ready). */
  get stopped(): boolean {
    return this.stopping;
  }

  private async openApi(): Promise<void> {
    const api = this.config.gateway.api;
    if (!api || this.apiLifecycle) return;
    const [{ createLocalApi }, { GatewayMetrics }] = await Promise.all([
      import("./api-host.js"),
      import("../api/metrics.js"),
    ]);
    // Reads whichever gateway runs now; its counters start again at a rebuild.
    const metrics = new GatewayMetrics({
      snapshot: () => new GatewayMetricsSource(this.gateway).snapshot(),
    });
    this.metrics = metrics;
    this.apiServer = createLocalApi(
      api,
      {
        current: () => this.gateway,
        watch: (fn) => {
          this.watchers.add(fn);
          return () => this.watchers.delete(fn);
        },
        reload: () => this.reload("api"),
        lastReload: () => this.lastReload,
      },
      this.log,
      () => metrics.render(),
    );
    // Isolated as the gateway's components are: a taken port is logged, the gateway runs.
    this.apiLifecycle = new Lifecycle(
      [this.apiServer],
      { startTimeoutMs: API_TIMEOUT_MS, stopTimeoutMs: API_TIMEOUT_MS },
      this.log,
    );
    await this.apiLifecycle.start();
  }

  /**
   * Queues a reload behind any under way; resolves when this one has been applied or refused.
   * `trigger` says who asked, for the console's view of the last one.
   */
  reload(trigger: ReloadRecord["trigger"] = "signal"): Promise<ReloadReply> {
    const next = this.reloading
      .then(() => this.reloadNow())
      .catch((err: unknown): ReloadReply => {
        this.log.error({ err }, "reload failed");
        return { status: "failed", reason: err instanceof Error ? err.message : String(err) };
      })
      .then((reply) => {
        this.lastReload = { at: Date.now(), trigger, reply };
        return reply;
      });
    this.reloading = next;
    return next;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    this.unwatch = undefined;
    await this.reloading;
    await this.apiLifecycle?.stop();
    this.metrics?.stop();
    await this.gateway.stop();
    await this.heap.stop();
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
   */
  private async supervisedReload(): Promise<void> {
    this.signalledReloads++;
    if (this.signalledReloads === 1) this.supervisor?.reloading();
    const reply = await this.reload("signal");
    if (--this.signalledReloads > 0) return;
    this.supervisor?.ready(
      reply.status === "applied"
        ? `running; config reloaded at ${new Date().toISOString()}`
        : "running; the last reload was refused (see the log), the previous config stays",
    );
  }

  private async reloadNow(): Promise<ReloadReply> {
    if (this.stopping) return { status: "failed", reason: "the daemon is stopping" };
    // The command line's overrides hold for every reload, as they did at start.
    const next = await loadConfig(this.configFile, process.env, this.config.overrides);
    if (!next.ok) {
      const problems = next.problems.map((p) => formatProblem(p));
      this.log.error(
        {
          problems,
          ...(next.omitted > 0 && { moreProblems: next.omitted }),
          code: ErrorCodes.RELOAD_REFUSED,
        },
        "reload refused: the config has problems; the running config stays in place",
      );
      return { status: "refused", problems, ...(next.omitted > 0 && { omitted: next.omitted }) };
    }
    this.warn(next.config);
    const restartNeeded = restartOnly(this.startedWith, next.config);
    const applied = await this.apply(next.config);
    this.config = next.config;
    let reply = applied;
    if (restartNeeded.length > 0 && applied.status === "applied") {
      this.log.warn(
        { sections: restartNeeded, code: ErrorCodes.RELOAD_RESTART_NEEDED },
        `reload: ${restartNeeded.join(", ")} changed, which only a restart applies (systemctl restart shadowgate); the rest is applied`,
      );
      reply = { ...applied, restartNeeded };
    }
    if (this.unwatch) this.watch();
    return reply;
  }

  /** The config's warnings, each logged as `validate` prints it. */
  private warn(config: LoadedConfig): void {
    for (const w of config.warnings ?? [])
      this.log.warn({ code: w.code }, `config warning: ${formatProblem(w)}`);
  }

  private async apply(config: LoadedConfig): Promise<ReloadReply> {
    if (this.gateway.canApply(config)) {
      const plan = await this.gateway.apply(config);
      this.log.info({ devices: config.devices.length, ...plan }, "reloaded in place");
      return { status: "applied", plan };
    }
    // The data folder, the history limits or the presence of a cloud section changed: those
    // belong to the store, opened once per gateway.
    await this.gateway.stop();
    this.gateway = this.build(config);
    for (const watcher of this.watchers) watcher(this.gateway);
    await this.gateway.start();
    this.log.info({ devices: config.devices.length }, "reloaded: the gateway was rebuilt");
    return { status: "applied", plan: "rebuilt" };
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

/**
 * The settings a running daemon keeps until it restarts, where `after` differs from what the
 * process started with: the API server and the logger are one per process (they outlive
 * reloads), and the heap cap is a flag node starts with. Every reload says so until a restart.
 */
function restartOnly(before: LoadedConfig, after: LoadedConfig): string[] {
  const sections: Array<[string, (c: LoadedConfig) => unknown]> = [
    ["api", (c) => c.gateway.api],
    ["log", (c) => c.gateway.log],
    ["gateway.memory", (c) => c.gateway.gateway.memory],
  ];
  return sections.filter(([, of]) => !sameJson(of(before), of(after))).map(([name]) => name);
}
