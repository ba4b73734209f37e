import { Backoff } from "./backoff.js";
import type { Logger } from "./logger.js";
import type { ConnectionState } from "./types.js";

export interface ConnectionOptions {
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** What every transition's log line names: the source, host and port, or the broker URL. */
  readonly fields: () => Record<string, unknown>;
  /** Called after each transition (the OPC UA driver re-emits it as an event). */
  readonly onChange?: (state: ConnectionState) => void;
  readonly random?: () => number;
}

/**
 * The one state machine every connection runs (architecture.md): disconnected -> connecting ->
 * online -> backoff -> connecting ... -> stopping -> disconnected, each transition logged once
 * (a warning when it goes to backoff), and reconnection after a jittered exponential delay.
 * What connecting means (a socket, a serial port, an OPC UA session, an MQTT client) stays with
 * its owner: the Modbus driver, the OPC UA driver and the MQTT link.
 */
export class ConnectionMachine {
  private current: ConnectionState = "disconnected";
  private readonly backoff: Backoff;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: ConnectionOptions,
    private readonly log: Logger,
  ) {
    this.backoff = new Backoff(opts.reconnectMinMs, opts.reconnectMaxMs, opts.random);
  }

  get state(): ConnectionState {
    return this.current;
  }

  get online(): boolean {
    return this.current === "online";
  }

  /** Stopping or stopped: no reconnection may start. */
  get ending(): boolean {
    return this.current === "stopping";
  }

  to(next: ConnectionState, extra: Record<string, unknown> = {}): void {
    if (next === this.current) return;
    const from = this.current;
    this.current = next;
    const fields = { ...this.opts.fields(), from, to: next, ...extra };
    if (next === "backoff") this.log.warn(fields, "connection state");
    else this.log.info(fields, "connection state");
    this.opts.onChange?.(next);
  }

  /**
   * The connection is lost or could not be made: backoff, then `reconnect` after the next
   * delay. Nothing while stopping.
   */
  retry(reason: string, reconnect: () => void): void {
    if (this.ending) return;
    const delay = this.backoff.next();
    this.to("backoff", { reason, retryInMs: delay });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.ending) reconnect();
    }, delay);
  }

  /** The connection proved itself: the next loss starts the backoff from its shortest delay. */
  proven(): void {
    this.backoff.reset();
  }

  /** Going down on purpose: a pending reconnect is cancelled. */
  stopping(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.to("stopping");
  }

  stopped(): void {
    this.to("disconnected");
  }
}
