import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";

/**
 * The fuzz targets' one way to run a property (fast-check), in two sizes:
 *
 * - `npm test` (CI): a fixed seed and the target's CI run count, so every run tries the same
 *   inputs and a failure is replayable;
 * - `npm run fuzz` (FUZZ_LONG=1): the long run count and a fresh seed (or FUZZ_SEED), printed
 *   before the run so any failure can be replayed with `FUZZ_SEED=<seed> npm run fuzz`.
 *
 * A failure is shrunk by fast-check, and the smallest counterexample is saved under
 * test/fixtures/fuzz/<target>/ as JSON: each target replays every saved case as a regression test
 * in `npm test` (regressionCases), so a bug found once stays found.
 */

const ROOT = path.resolve(import.meta.dirname, "../..");
export const FIXTURES = path.join(ROOT, "test", "fixtures", "fuzz");

export const LONG = process.env.FUZZ_LONG === "1";
/** The CI seed: the same inputs on every run and every machine. */
const CI_SEED = 20261203;

export interface FuzzRun {
  readonly seed: number;
  readonly numRuns: number;
}

/** This run's seed and size for a target. */
export function fuzzRun(ciRuns: number, longRuns: number): FuzzRun {
  const env = process.env.FUZZ_SEED;
  const seed =
    env !== undefined ? Number(env) : LONG ? (Date.now() ^ (process.pid << 16)) >>> 0 : CI_SEED;
  return { seed, numRuns: LONG ? longRuns : ciRuns };
}

/**
 * Runs `property` (built from `arbitrary` and `predicate`); on failure saves the shrunk
 * counterexample under test/fixtures/fuzz/<target>/ and throws fast-check's report.
 * Returns how many inputs ran.
 */
export async function fuzz<T>(
  target: string,
  arbitrary: fc.Arbitrary<T>,
  predicate: (input: T) => Promise<void> | void,
  run: FuzzRun,
): Promise<number> {
  process.stderr.write(`fuzz ${target}: seed ${run.seed}, ${run.numRuns} runs\n`);
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (input) => {
      await predicate(input);
    }),
    { seed: run.seed, numRuns: run.numRuns, endOnFailure: false },
  );
  if (details.failed) {
    const dir = path.join(FIXTURES, target);
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `seed-${run.seed}.json`);
    writeFileSync(
      file,
      `${JSON.stringify({ seed: run.seed, counterexample: details.counterexample?.[0] ?? null }, null, 2)}\n`,
    );
    throw new Error(
      `fuzz ${target} failed (saved as ${path.relative(ROOT, file)}):\n${fc.defaultReportMessage(details) ?? ""}\n${String(details.errorInstance)}`,
    );
  }
  return details.numRuns;
}

/** The counterexamples saved for a target, to replay as regression tests. */
export function regressionCases<T>(target: string): Array<{ name: string; input: T }> {
  const dir = path.join(FIXTURES, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => ({
      name: f,
      input: (JSON.parse(readFileSync(path.join(dir, f), "utf8")) as { counterexample: T })
        .counterexample,
    }));
}
