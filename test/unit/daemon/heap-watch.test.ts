import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ErrorCodes } from "../../../src/core/errors.js";
import { HeapWatch, type HeapFigures } from "../../../src/daemon/heap-watch.js";
import { captureLogger } from "../../helpers/cloud.js";

const MB = 1024 * 1024;

/** A heap whose use the test sets, under a 48 MB cap. */
function scripted(): { stats: () => HeapFigures; set: (usedMb: number) => void } {
  let used = 0;
  return {
    stats: () => ({ used_heap_size: used * MB, heap_size_limit: 48 * MB }),
    set: (usedMb) => void (used = usedMb),
  };
}

describe("HeapWatch", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("warns once above 85% of the cap and says when it is back below 70%", async () => {
    const heap = scripted();
    const { logger, records } = captureLogger();
    const watch = new HeapWatch({ stats: heap.stats, intervalMs: 1000 }, logger);
    heap.set(30); // 62%
    await watch.start();
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toEqual([]);

    heap.set(42); // 87.5%
    await vi.advanceTimersByTimeAsync(1000);
    heap.set(46); // still high: no second warning
    await vi.advanceTimersByTimeAsync(3000);
    heap.set(36); // 75%: between the thresholds, still high
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      level: 40,
      code: ErrorCodes.HEAP_HIGH,
      usedMb: 42,
      limitMb: 48,
      percent: 88,
    });
    expect(watch.status()).toMatchObject({ high: true, warnings: 1 });

    heap.set(33); // 69%
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toHaveLength(2);
    expect(records[1]).toMatchObject({ level: 30, usedMb: 33, percent: 69 });
    expect(records[1]?.msg).toMatch(/back below 70%/);

    heap.set(44); // high again: a new warning
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toHaveLength(3);
    expect(records[2]).toMatchObject({ code: ErrorCodes.HEAP_HIGH });
    expect(watch.status()).toMatchObject({ high: true, warnings: 2 });

    await watch.stop();
    heap.set(10);
    await vi.advanceTimersByTimeAsync(5000);
    expect(records).toHaveLength(3);
  });

  it("warns once when the collector takes a quarter of the time, though the heap is half full", async () => {
    const heap = scripted();
    heap.set(24); // 50%: the ratio alone would not warn
    let gc = 0;
    const { logger, records } = captureLogger();
    const watch = new HeapWatch(
      { stats: heap.stats, intervalMs: 1000, gcMs: () => gc, now: () => Date.now() },
      logger,
    );
    await watch.start();
    gc += 50; // 5% of the next second
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toEqual([]);

    gc += 400; // 40%: thrashing
    await vi.advanceTimersByTimeAsync(1000);
    gc += 300; // 30%: still, no second warning
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 40, code: ErrorCodes.HEAP_HIGH, gcPercent: 40 });
    expect(records[0]?.msg).toMatch(/garbage collector .* raise gateway\.memory\.heapMb/);
    expect(watch.status()).toMatchObject({ high: false, gcHigh: true, warnings: 1, gcPercent: 30 });

    gc += 150; // 15%: between the thresholds, still high
    await vi.advanceTimersByTimeAsync(1000);
    gc += 20; // 2%
    await vi.advanceTimersByTimeAsync(1000);
    expect(records).toHaveLength(2);
    expect(records[1]).toMatchObject({ level: 30, gcPercent: 2 });
    expect(records[1]?.msg).toMatch(/back below 10% of the time/);
    await watch.stop();
  });

  it("reads v8's own figures by default", () => {
    const { logger } = captureLogger();
    const watch = new HeapWatch({}, logger);
    watch.check();
    const s = watch.status() as { usedMb: number; limitMb: number; high: boolean };
    expect(s.limitMb).toBeGreaterThan(0);
    expect(s.usedMb).toBeGreaterThan(0);
    expect(s.usedMb).toBeLessThan(s.limitMb);
  });
});
