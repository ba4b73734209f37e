import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

export interface PollGroup {
  /** e.g. "plc1@1000ms" */
  readonly id: string;
  readonly intervalMs: number;
  run(): Promise<void>;
}

interface GroupState {
  readonly group: PollGroup;
  timer?: NodeJS.Timeout;
  /** The poll under way, if any. */
  running: Promise<void> | undefined;
  /** Removed: its timer is cleared and no tick fires again. */
  removed: boolean;
  polls: number;
  overruns: number;
  lastOverrunLog: number;
}

export interface SchedulerStats {
  readonly id: string;
  readonly polls: number;
  readonly overruns: number;
}

/** How often a persisting overrun is logged again. */
const OVERRUN_LOG_EVERY_MS = 60_000;

/**
 * Fires each poll group on its own fixed-rate grid, the groups phase-shifted against each other. A poll still running when its next tick
 * comes is an overrun: counted and logged, and that tick is skipped, never stacked, so a slow
 * device cannot build a backlog of reads.
 */
export class Scheduler {
  private states: GroupState[];
  private stopped = true;

  constructor(
    groups: readonly PollGroup[],
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.states = groups.map((group) => newState(group));
  }

  start(): void {
    this.stopped = false;
    const t0 = this.now();
    // Groups are spread over their interval (group i of n starts i/n of it later), so ten
    // devices polled every second do not all answer, decode and report in the same
    // millisecond, holding up a command that arrives just then.
    this.states.forEach((s, i) => {
      const phase = Math.floor((i * s.group.intervalMs) / this.states.length);
      if (phase === 0) this.fire(s, t0, 0);
      else s.timer = setTimeout(() => this.fire(s, t0 + phase, 0), phase);
    });
  }

  /** No tick fires after this; resolves once the polls under way have ended (and reported). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.states) clearTimeout(s.timer);
    await Promise.all(this.states.map((s) => s.running));
  }

  /**
   * A group added while running (a reload) polls at once and then on its own grid: its devices
   * are new or changed, so they have waited long enough.
   */
  add(group: PollGroup): void {
    const s = newState(group);
    this.states.push(s);
    if (!this.stopped) this.fire(s, this.now(), 0);
  }

  /** Takes a group off the grid; resolves once its poll under way (if any) has ended. */
  async remove(id: string): Promise<void> {
    const s = this.states.find((x) => x.group.id === id);
    if (!s) return;
    s.removed = true;
    clearTimeout(s.timer);
    this.states = this.states.filter((x) => x !== s);
    await s.running;
  }

  stats(): SchedulerStats[] {
    return this.states.map((s) => ({ id: s.group.id, polls: s.polls, overruns: s.overruns }));
  }

  private fire(s: GroupState, t0: number, tick: number): void {
    if (this.stopped || s.removed) return;
    if (s.running) {
      s.overruns++;
      const now = this.now();
      if (now - s.lastOverrunLog >= OVERRUN_LOG_EVERY_MS) {
        s.lastOverrunLog = now;
        this.log.warn(
          {
            group: s.group.id,
            intervalMs: s.group.intervalMs,
            overruns: s.overruns,
            code: ErrorCodes.POLL_OVERRUN,
          },
          "poll took longer than its interval; tick skipped",
        );
      }
    } else {
      s.polls++;
      s.running = s.group
        .run()
        .catch((err: unknown) => this.log.error({ group: s.group.id, err }, "poll failed"))
        .finally(() => {
          s.running = undefined;
        });
    }
    // Next tick on the grid t0 + k * interval, skipping ticks already past.
    const now = this.now();
    let next = tick + 1;
    const due = (k: number): number => t0 + k * s.group.intervalMs;
    if (due(next) <= now) next = Math.floor((now - t0) / s.group.intervalMs) + 1;
    s.timer = setTimeout(() => this.fire(s, t0, next), Math.max(0, due(next) - now));
  }
}

function newState(group: PollGroup): GroupState {
  return {
    group,
    running: undefined,
    removed: false,
    polls: 0,
    overruns: 0,
    lastOverrunLog: -Infinity,
  };
}
