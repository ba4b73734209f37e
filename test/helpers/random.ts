/**
 * Mulberry32: a small seeded PRNG, uniform in [0, 1). The one the tests and the benchmarks
 * share, so a fault schedule, a generated register layout or a random command sequence is the
 * same on every run and every machine and can be replayed from its seed.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
