import { PerformanceObserver } from "node:perf_hooks";
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
  /**
   * Milliseconds spent in garbage collection since some fixed moment (a PerformanceObserver of
   * "gc" entries in the daemon; scripted in tests).
   */
  readonly gcMs?: () => number;
  /** Share of the time in the collector, between two checks, above which it warns; 0.25. */
  readonly gcWarnAt?: number;
  /** The share below which the collector is said to be back to normal; default 0.10. */
  readonly gcClearAt?: number;
  /** A monotonic clock in ms; performance.now by default. */
  readonly now?: () => number;
}

/** A figure watched with two thresholds: it rises at `warnAt`, and falls back below `clearAt`. */
class Level {
  high = false;
  constructor(
    private readonly warnAt: number,
    private readonly clearAt: number,
  ) {}

  /** "rose" or "fell" when `value` crossed a threshold; undefined otherwise. */
  cross(value: number): "rose" | "fell" | undefined {
    if (!this.high && value >= this.warnAt) {
      this.high = true;
      return "rose";
    }
    if (this.high && value < this.clearAt) {
      this.high = false;
      return "fell";
    }
    return undefined;
  }
}

const MB = 1024 * 1024;
const mb = (bytes: number): number => Math.round(bytes / MB);
const percent = (ratio: number): number => Math.round(ratio * 100);

/**
 * Warns when the V8 heap nears its cap, before the process dies of it: once when used heap
 * goes above `warnAt` of the limit (SG_HEAP_HIGH), and once when it is back below `clearAt`.
 * The gap between the two keeps a heap hovering at the threshold from logging every check.
 *
 * A heap too small for its load shows first as time in the collector, not as a full heap: under
 * a 64 MB cap without a young-generation setting, B4 found V8 running ~22 full collections a
 * second (half the CPU) with used heap near half the cap, where the ratio alone never warns. So
 * the share of time spent collecting between two checks is watched too, with its own pair of
 * thresholds (SG_HEAP_HIGH with `gcPercent`).
 */
export class HeapWatch implements Component {
  readonly name = "heap";
  private readonly stats: () => HeapFigures;
  private readonly intervalMs: number;
  private readonly warnAt: number;
  private readonly clearAt: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly heapLevel: Level;
  private readonly gcMs: () => number;
  private readonly gcClearAt: number;
  private readonly gcLevel: Level;
  private readonly now: () => number;
  private gcObserver: PerformanceObserver | undefined;
  private gcTotal = 0;
  private gcLast: { at: number; ms: number } | undefined;
  private lastGcShare: number | undefined;
  private last: HeapFigures | undefined;
  /** Warnings logged: the heap or the collector rose past its threshold. */
  private warnings = 0;

  constructor(
    opts: HeapWatchOptions,
    private readonly log: Logger,
  ) {
    this.stats = opts.stats ?? getHeapStatistics;
    this.intervalMs = opts.intervalMs ?? 5000;
    this.warnAt = opts.warnAt ?? 0.85;
    this.clearAt = opts.clearAt ?? 0.7;
    this.gcMs = opts.gcMs ?? (() => this.gcTotal);
    this.gcClearAt = opts.gcClearAt ?? 0.1;
    this.heapLevel = new Level(this.warnAt, this.clearAt);
    this.gcLevel = new Level(opts.gcWarnAt ?? 0.25, this.gcClearAt);
    this.now = opts.now ?? (() => performance.now());
  }

  async start(): Promise<void> {
    if (this.timer) return;
    if (this.gcObserver === undefined) {
      this.gcObserver = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) this.gcTotal += e.duration;
      });
      this.gcObserver.observe({ entryTypes: ["gc"] });
    }
    this.check();
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.gcObserver?.disconnect();
    this.gcObserver = undefined;
  }

  /** Looks at the heap once (the timer calls it; tests too). */
  check(): void {
    this.checkCollector();
    const s = this.stats();
    this.last = s;
    if (s.heap_size_limit <= 0) return;
    const ratio = s.used_heap_size / s.heap_size_limit;
    const fields = {
      usedMb: mb(s.used_heap_size),
      limitMb: mb(s.heap_size_limit),
      percent: percent(ratio),
    };
    this.tell(
      this.heapLevel.cross(ratio),
      fields,
      `heap above ${percent(this.warnAt)}% of its cap: raise gateway.memory.heapMb, or serve fewer points`,
      `heap back below ${percent(this.clearAt)}% of its cap`,
    );
  }

  status(): Record<string, unknown> {
    const s = this.last;
    return {
      high: this.heapLevel.high,
      gcHigh: this.gcLevel.high,
      warnings: this.warnings,
      ...(s && { usedMb: mb(s.used_heap_size), limitMb: mb(s.heap_size_limit) }),
      ...(this.lastGcShare !== undefined && { gcPercent: percent(this.lastGcShare) }),
    };
  }

  /** The share of wall time the collector took since the last check. */
  private checkCollector(): void {
    const now = { at: this.now(), ms: this.gcMs() };
    const prev = this.gcLast;
    this.gcLast = now;
    if (prev === undefined || now.at <= prev.at) return;
    const share = (now.ms - prev.ms) / (now.at - prev.at);
    this.lastGcShare = share;
    const fields = { gcPercent: percent(share), seconds: Math.round((now.at - prev.at) / 1000) };
    this.tell(
      this.gcLevel.cross(share),
      fields,
      "the garbage collector takes a large share of the time: the heap is too small for this load; raise gateway.memory.heapMb, or serve fewer points",
      `garbage collection back below ${percent(this.gcClearAt)}% of the time`,
    );
  }

  /** A warning (SG_HEAP_HIGH) when a level rose, an info line when it fell back. */
  private tell(
    crossed: "rose" | "fell" | undefined,
    fields: Record<string, unknown>,
    rose: string,
    fell: string,
  ): void {
    if (crossed === "rose") {
      this.warnings++;
      this.log.warn({ ...fields, code: ErrorCodes.HEAP_HIGH }, rose);
    } else if (crossed === "fell") this.log.info(fields, fell);
  }
}
