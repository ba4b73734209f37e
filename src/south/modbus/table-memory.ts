/**
 * What the request planner learned of one (unit, table) from the device's exceptions: which
 * addresses are illegal, which gaps must not be read through, where a request must not span.
 */

/** Sorted, disjoint, non-adjacent inclusive ranges. */
export class RangeSet {
  private items: Array<readonly [number, number]> = [];

  add(first: number, last: number): void {
    let lo = first;
    let hi = last;
    const kept: Array<readonly [number, number]> = [];
    let placed = false;
    for (const item of this.items) {
      const [a, b] = item;
      if (b < lo - 1) {
        kept.push(item);
      } else if (a > hi + 1) {
        if (!placed) {
          kept.push([lo, hi]);
          placed = true;
        }
        kept.push(item);
      } else {
        lo = Math.min(lo, a);
        hi = Math.max(hi, b);
      }
    }
    if (!placed) kept.push([lo, hi]);
    this.items = kept;
  }

  overlaps(first: number, last: number): boolean {
    // First range that ends at or after `first`; it overlaps when it starts by `last`.
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const item = this.items[mid];
      if (item !== undefined && item[1] < first) lo = mid + 1;
      else hi = mid;
    }
    const hit = this.items[lo];
    return hit !== undefined && hit[0] <= last;
  }

  list(): ReadonlyArray<readonly [number, number]> {
    return this.items;
  }
}

/** What one (unit, table) taught us. */
export interface TableMemory {
  /** Single points that answered exception 02 on their own: never read, never read through. */
  readonly illegal: RangeSet;
  /** Gaps whose read-through made a merged request fail while both sides read fine alone. */
  readonly noThrough: RangeSet;
  /**
   * Addresses b where a request starting before b failed although its part before b and its
   * part from b on read fine alone (no gap between them: the device dislikes the size or the
   * block boundary). No request may hold a point starting before b and one starting at or
   * after b. Sorted, unique.
   */
  readonly breaks: number[];
}

export function emptyTableMemory(): TableMemory {
  return { illegal: new RangeSet(), noThrough: new RangeSet(), breaks: [] };
}

/** Index of the first element >= value in a sorted array. */
export function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] ?? Infinity) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
