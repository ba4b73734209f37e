import { getHeapStatistics } from "node:v8";
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { Component } from "./component.js";

/** What the watch reads of v8.getHeapStatistics(). */
export interface HeapFigures {
  readonly used_heap_size: number;
  /** The cap: --max-old-space-size (gateway.memory.heapMb) plus V8's young generation. */
  readonly heap_size_limit: number;
}

export interface HeapWatchOptions {
  /** v8.getHeapStatistics in the daemon; a scripted source in tests. */
  readonly stats?: () => HeapFigures;
  /** How often the heap is looked at; default 5 s. */
  readonly intervalMs?: number;
  /** Used over limit above which it warns, once; default 0.85. */
  readonly warnAt?: number;
  /** Used over limit below which it says the heap is back to normal; default 0.70. */
  readonly clearAt?: number;
}

const MB = 1024 * 1024;
const mb = (bytes: number): number => Math.round(bytes / MB);
const percent = (ratio: number): number => Math.round(ratio * 100);

/**
 * Warns when the V8 heap nears its cap, before the process dies of it: once when used heap
 * goes above `warnAt` of the limit (SG_HEAP_HIGH), and once when it is back below `clearAt`.
 * The gap between the two keeps a heap hovering at the threshold from logging every check.
 */
export class HeapWatch implements Component {
  readonly name = "heap";
  private readonly stats: () => HeapFigures;
  private readonly intervalMs: number;
  private readonly warnAt: number;
  private readonly clearAt: number;
  private timer: NodeJS.Timeout | undefined;
  private high = false;
  private last: HeapFigures | undefined;
  /** Times it went above `warnAt`. */
  private warnings = 0;

  constructor(
    opts: HeapWatchOptions,
    private readonly log: Logger,
  ) {
    this.stats = opts.stats ?? getHeapStatistics;
    this.intervalMs = opts.intervalMs ?? 5000;
    this.warnAt = opts.warnAt ?? 0.85;
    this.clearAt = opts.clearAt ?? 0.7;
  }

  async start(): Promise<void> {
    if (this.timer) return;
    this.check();
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Looks at the heap once (the timer calls it; tests too). */
  check(): void {
    const s = this.stats();
    this.last = s;
    if (s.heap_size_limit <= 0) return;
    const ratio = s.used_heap_size / s.heap_size_limit;
    const fields = {
      usedMb: mb(s.used_heap_size),
      limitMb: mb(s.heap_size_limit),
      percent: percent(ratio),
    };
    if (!this.high && ratio >= this.warnAt) {
      this.high = true;
      this.warnings++;
      this.log.warn(
        { ...fields, code: ErrorCodes.HEAP_HIGH },
        `heap above ${percent(this.warnAt)}% of its cap: raise gateway.memory.heapMb, or serve fewer points`,
      );
    } else if (this.high && ratio < this.clearAt) {
      this.high = false;
      this.log.info(fields, `heap back below ${percent(this.clearAt)}% of its cap`);
    }
  }

  status(): Record<string, unknown> {
    const s = this.last;
    return {
      high: this.high,
      warnings: this.warnings,
      ...(s && { usedMb: mb(s.used_heap_size), limitMb: mb(s.heap_size_limit) }),
    };
  }
}
