/**
 * Durations counted into fixed buckets, for metrics. The component that times something owns
 * one and reads it out in its status(): observing is a loop over a dozen bounds and three
 * increments (no allocation, cheap enough for every poll), and a scrape reads the counts
 * without touching the hot path. The metrics registry renders the snapshot as a Prometheus
 * histogram.
 */

/** Upper bounds in seconds: 1 ms to 10 s, which covers a Modbus poll and a command's round trip. */
export const DURATION_BOUNDS_S: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

/** A histogram's counts at one moment, as Prometheus states them. */
export interface HistogramSnapshot {
  /** Upper bounds in seconds, ascending; +Inf is implied. */
  readonly bounds: readonly number[];
  /** Observations at or below each bound (cumulative), one per bound. */
  readonly cumulative: readonly number[];
  /** The sum of all observations, in seconds. */
  readonly sum: number;
  /** Every observation, the +Inf bucket. */
  readonly count: number;
}

export class DurationHistogram {
  /** Per bucket, not cumulative: the last one is above the highest bound. */
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(private readonly bounds: readonly number[] = DURATION_BOUNDS_S) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < this.bounds.length && seconds > (this.bounds[i] ?? Infinity)) i++;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += seconds;
    this.count++;
  }

  snapshot(): HistogramSnapshot {
    let acc = 0;
    const cumulative = this.bounds.map((_, i) => (acc += this.counts[i] ?? 0));
    return { bounds: this.bounds, cumulative, sum: this.sum, count: this.count };
  }
}
