import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

/** A component's own figures for status: counters it keeps, never recomputed by a scan. */
export type ComponentDetails = Readonly<Record<string, unknown>>;

/**
 * One part of the running gateway (the store, the sources, the poller, the cloud sync, later
 * the local API). The lifecycle is stated once (zigbee2mqtt's extensions, fastify's plugins):
 * the constructor only stores its arguments; `start` and `stop` are the only hooks; `status`
 * is cheap enough to be read on every API request or metrics scrape.
 */
export interface Component {
  readonly name: string;
  start(signal: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  status(): ComponentDetails;
}

export type ComponentState = "stopped" | "starting" | "running" | "failed" | "stopping";

export interface ComponentStatus {
  readonly state: ComponentState;
  /** Why it failed to start or stop, when it did. */
  readonly error?: string;
  readonly details: ComponentDetails;
}

export interface LifecycleOptions {
  /** How long one component may take to start before the daemon goes on without it. */
  readonly startTimeoutMs: number;
  /** How long one component may take to stop before the daemon goes on. */
  readonly stopTimeoutMs: number;
}

interface Entry {
  readonly component: Component;
  state: ComponentState;
  error?: string;
}

/**
 * Starts components in the order given and stops them in reverse, each within its timeout. A
 * component that fails to start is logged and isolated: the others start and the daemon runs
 * without it (a dead PLC or an unreachable broker never stops the gateway).
 */
export class Lifecycle {
  private readonly entries: Entry[];
  private abort = new AbortController();

  constructor(
    components: readonly Component[],
    private readonly opts: LifecycleOptions,
    private readonly log: Logger,
  ) {
    this.entries = components.map((component) => ({ component, state: "stopped" }));
  }

  async start(): Promise<void> {
    this.abort = new AbortController();
    for (const e of this.entries) {
      if (e.state === "running") continue;
      e.state = "starting";
      delete e.error;
      try {
        await within(e.component.start(this.abort.signal), this.opts.startTimeoutMs);
        e.state = "running";
      } catch (err) {
        e.state = "failed";
        e.error = err instanceof Error ? err.message : String(err);
        this.log.error(
          { component: e.component.name, err, code: ErrorCodes.COMPONENT_FAILED },
          "a component failed to start; the gateway runs without it",
        );
      }
    }
  }

  async stop(): Promise<void> {
    // A start still waiting (a slow connection) is told to give up.
    this.abort.abort();
    for (const e of [...this.entries].reverse()) {
      if (e.state === "stopped") continue;
      e.state = "stopping";
      try {
        await within(e.component.stop(), this.opts.stopTimeoutMs);
        e.state = "stopped";
      } catch (err) {
        e.state = "stopped";
        e.error = err instanceof Error ? err.message : String(err);
        this.log.warn(
          { component: e.component.name, err, code: ErrorCodes.SHUTDOWN_TIMEOUT },
          "a component did not stop cleanly",
        );
      }
    }
  }

  status(): Record<string, ComponentStatus> {
    const out: Record<string, ComponentStatus> = {};
    for (const e of this.entries) {
      out[e.component.name] = {
        state: e.state,
        ...(e.error !== undefined && { error: e.error }),
        details: e.component.status(),
      };
    }
    return out;
  }
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
