import { execFile } from "node:child_process";
import type { Logger } from "../core/logger.js";
import type { Supervisor } from "./service.js";

/**
 * sd_notify for a Node daemon, without a native addon.
 *
 * systemd's notification socket ($NOTIFY_SOCKET) is an AF_UNIX datagram socket, and Node has no
 * unix datagram sockets (dgram is UDP only, net is stream only: connecting a stream socket to it
 * fails with EPROTOTYPE). The `sd-notify` npm package is a native addon that needs libsystemd-dev
 * to build on the box. So each message is handed to `systemd-notify VAR=VALUE...`, the tool
 * that ships with systemd itself (so it is on every box that has a NOTIFY_SOCKET), run from
 * this process.
 *
 * The known problem with systemd-notify is attribution: systemd finds the unit of a message by
 * the sender's PID, and a helper that exits at once may be gone before PID 1 reads the message,
 * which is then dropped. Since systemd 246 systemd-notify waits (unless --no-block) until the
 * manager has processed the message (sd_notify_barrier: it sends BARRIER=1 with a pipe and
 * waits for the manager to close it), so the sender is alive while it is attributed. The unit
 * needs NotifyAccess=all, since the sender is a child of the main process, not the main process
 * (`shadowgate install` writes it so). Messages are sent one at a time in order, so READY=1
 * never overtakes STATUS or a STOPPING=1 an earlier READY=1.
 *
 * Cost: one short process per message, i.e. a few at start and stop and one per watchdog ping
 * (every WatchdogSec/2, 15 s with the installed unit).
 */

/** The environment systemd hands to a service (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID). */
export type SystemdEnv = Readonly<Record<string, string | undefined>>;

export interface SystemdNotifierOptions {
  /** The systemd-notify binary; default `systemd-notify` on PATH. */
  readonly command?: string;
  /** This process's PID, to check WATCHDOG_PID against. */
  readonly pid?: number;
  /** How long one message may take (systemd-notify's own barrier waits 5 s). */
  readonly timeoutMs?: number;
}

export class SystemdNotifier implements Supervisor {
  private queue: Promise<void> = Promise.resolve();
  private watchdog: NodeJS.Timeout | undefined;
  private pinging = false;
  private warned = false;
  /** Messages systemd-notify sent and failed to send (for tests and status). */
  sent = 0;
  failed = 0;

  private constructor(
    private readonly env: SystemdEnv,
    private readonly log: Logger,
    private readonly opts: SystemdNotifierOptions,
  ) {}

  /** A notifier when the process runs under systemd with Type=notify, else undefined. */
  static fromEnv(
    env: SystemdEnv,
    log: Logger,
    opts: SystemdNotifierOptions = {},
  ): SystemdNotifier | undefined {
    const socket = env.NOTIFY_SOCKET;
    if (socket === undefined || socket === "") return undefined;
    return new SystemdNotifier(env, log.child({ component: "daemon.systemd" }), opts);
  }

  /** The watchdog interval in ms (half of WATCHDOG_USEC), or undefined when none is asked. */
  static watchdogIntervalMs(env: SystemdEnv, pid: number): number | undefined {
    const usec = Number(env.WATCHDOG_USEC);
    if (!Number.isFinite(usec) || usec <= 0) return undefined;
    // WATCHDOG_PID names the process the watchdog is for; a child that inherited it is not it.
    if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== String(pid)) return undefined;
    return Math.max(1, Math.floor(usec / 2000));
  }

  ready(status: string): void {
    void this.send({ READY: "1", STATUS: status });
  }

  reloading(): void {
    void this.send({ RELOADING: "1", STATUS: "reloading the config" });
  }

  stopping(): void {
    this.stopWatchdog();
    void this.send({ STOPPING: "1", STATUS: "stopping" });
  }

  status(text: string): void {
    void this.send({ STATUS: text });
  }

  /**
   * Pings WATCHDOG=1 at half of WATCHDOG_USEC while the event loop turns: a gateway whose loop
   * is stuck (a busy loop, a blocked call) misses pings and systemd restarts it. The timer is
   * unref'd, so it never keeps the process alive by itself.
   */
  startWatchdog(): void {
    const ms = SystemdNotifier.watchdogIntervalMs(this.env, this.opts.pid ?? process.pid);
    if (ms === undefined || this.watchdog) return;
    this.log.debug({ intervalMs: ms }, "systemd watchdog on");
    this.watchdog = setInterval(() => {
      // A ping still in flight (systemd-notify waiting for the manager) is not doubled.
      if (this.pinging) return;
      this.pinging = true;
      void this.send({ WATCHDOG: "1" }).finally(() => (this.pinging = false));
    }, ms);
    this.watchdog.unref();
  }

  stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** Resolves when every message queued so far has been handed over (or failed). */
  async close(): Promise<void> {
    this.stopWatchdog();
    await this.queue;
  }

  /** Queues one message; resolves once it was sent or failed (a failure is logged, once). */
  send(fields: Readonly<Record<string, string>>): Promise<void> {
    // One line per variable: a newline inside a value would start another variable.
    const args = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/[\r\n]+/g, " ")}`);
    this.queue = this.queue.then(() => this.exec(args));
    return this.queue;
  }

  private exec(args: string[]): Promise<void> {
    return new Promise((resolve) => {
      execFile(
        this.opts.command ?? "systemd-notify",
        args,
        { env: { ...process.env, ...this.env }, timeout: this.opts.timeoutMs ?? 10_000 },
        (err, _stdout, stderr) => {
          if (err) {
            this.failed++;
            // Once: a box without systemd-notify would otherwise log every watchdog ping.
            if (!this.warned) {
              this.warned = true;
              this.log.warn(
                { err, stderr: stderr.trim(), message: args.join(" ") },
                "systemd-notify failed; systemd may not see the gateway's state (is systemd-notify installed, and the unit's NotifyAccess=all?)",
              );
            }
          } else {
            this.sent++;
          }
          resolve();
        },
      );
    });
  }
}
