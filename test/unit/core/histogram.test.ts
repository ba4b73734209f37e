import { describe, expect, it } from "vitest";
import { DurationHistogram } from "../../../src/core/histogram.js";

describe("DurationHistogram", () => {
  it("counts each observation into the first bucket whose bound holds it, cumulatively", () => {
    const h = new DurationHistogram([0.01, 0.1, 1]);
    expect(h.snapshot()).toEqual({
      bounds: [0.01, 0.1, 1],
      cumulative: [0, 0, 0],
      sum: 0,
      count: 0,
    });
    for (const s of [0.005, 0.01, 0.05, 0.5, 2]) h.observe(s);
    const snap = h.snapshot();
    // A value equal to a bound belongs to that bound's bucket (Prometheus's `le`).
    expect(snap.cumulative).toEqual([2, 3, 4]);
    expect(snap.count).toBe(5); // 2 s is only in +Inf
    expect(snap.sum).toBeCloseTo(2.565, 10);
  });
});
