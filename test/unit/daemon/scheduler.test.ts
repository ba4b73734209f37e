import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { testLogger } from "../../helpers/logs.js";
import { Scheduler } from "../../../src/daemon/scheduler.js";

describe("Scheduler", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("fires each group on its own fixed-rate grid, spread over the interval", async () => {
    const fast: number[] = [];
    const slow: number[] = [];
    const s = new Scheduler(
      [
        { id: "a@100ms", intervalMs: 100, run: async () => void fast.push(Date.now()) },
        { id: "b@250ms", intervalMs: 250, run: async () => void slow.push(Date.now()) },
      ],
      testLogger(),
    );
    s.start();
    await vi.advanceTimersByTimeAsync(500);
    await s.stop();
    expect(fast).toEqual([0, 100, 200, 300, 400, 500]);
    // The second of two groups starts half its interval later.
    expect(slow).toEqual([125, 375]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(fast).toHaveLength(6);
  });

  it("counts an overrun and skips the tick instead of stacking polls", async () => {
    let concurrent = 0;
    let maxConcurrent = 0;
    const starts: number[] = [];
    const s = new Scheduler(
      [
        {
          id: "slow@100ms",
          intervalMs: 100,
          run: async () => {
            starts.push(Date.now());
            concurrent++;
            maxConcurrent = Math.max(maxConcurrent, concurrent);
            await new Promise((r) => setTimeout(r, 250));
            concurrent--;
          },
        },
      ],
      testLogger(),
    );
    s.start();
    await vi.advanceTimersByTimeAsync(1000);
    // The stop waits for the poll under way (started at 900, 250 ms long).
    const stopped = s.stop();
    await vi.advanceTimersByTimeAsync(250);
    await stopped;
    expect(concurrent).toBe(0);
    expect(maxConcurrent).toBe(1);
    // Polls start at 0, 300, 600, 900: the ticks at 100, 200, 400, 500, 700, 800, 1000 found one running.
    expect(starts).toEqual([0, 300, 600, 900]);
    expect(s.stats()).toEqual([{ id: "slow@100ms", polls: 4, overruns: 7 }]);
  });

  it("keeps going after a poll throws", async () => {
    let calls = 0;
    const s = new Scheduler(
      [
        {
          id: "x",
          intervalMs: 100,
          run: async () => {
            calls++;
            throw new Error("boom");
          },
        },
      ],
      testLogger(),
    );
    s.start();
    await vi.advanceTimersByTimeAsync(300);
    await s.stop();
    expect(calls).toBe(4);
  });
});
