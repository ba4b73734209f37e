// @ts-check
/**
 * What every benchmark shares: the environment record (Node, CPU, library versions), core
 * pinning, the result file and small statistics. Plain ESM so benchmarks need no TS tooling.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { setTimeout } from "node:timers";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_DIR = join(BENCH_DIR, "..", "..");
export const RESULTS_DIR = join(BENCH_DIR, "results");

/**
 * One line of the Markdown table that `npm run bench` ends with.
 * @typedef {object} ResultRow
 * @property {string} bench      e.g. "B1"
 * @property {string} case       scenario, e.g. "contiguous"
 * @property {string} metric     what is measured, e.g. "requests/scan"
 * @property {string} ours
 * @property {string} baseline
 * @property {string} ratio      baseline / ours, formatted
 * @property {string} target
 * @property {"yes" | "no" | "-"} pass  "-" for figures that carry no target
 */

/**
 * What a benchmark writes to results/<name>.json.
 * @typedef {object} BenchResult
 * @property {string} id
 * @property {string} name
 * @property {string} title
 * @property {boolean} pass
 * @property {string} summary
 * @property {string} startedAt
 * @property {number} durationMs
 * @property {EnvInfo} env
 * @property {ResultRow[]} rows
 * @property {Record<string, unknown>} figures
 */

/**
 * @typedef {object} EnvInfo
 * @property {string} node
 * @property {string} v8
 * @property {string} platform
 * @property {string} cpuModel
 * @property {number} cpus
 * @property {number[]} loadavg
 * @property {Record<string, string>} libs
 * @property {PinInfo} pinning
 */

/**
 * @typedef {object} PinInfo
 * @property {boolean} pinned
 * @property {string} reason
 * @property {string | undefined} benchCore   the core this process runs on, when pinned
 * @property {string | undefined} helperCore  the core helper processes (simulators) run on
 */

/** @returns {string} */
function cpuModel() {
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const line = info.split("\n").find((l) => /^model name\s*:/.test(l));
    if (line !== undefined) return line.replace(/^model name\s*:\s*/, "").trim();
  } catch {
    // Not Linux, or /proc is hidden: os.cpus() below still has a model string.
  }
  return os.cpus()[0]?.model ?? "unknown";
}

/**
 * The installed version of a package, read from its package.json in the repo's node_modules.
 * @param {string} name
 * @returns {string}
 */
export function packageVersion(name) {
  try {
    const file = join(REPO_DIR, "node_modules", name, "package.json");
    const pkg = /** @type {{ version?: unknown }} */ (JSON.parse(readFileSync(file, "utf8")));
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "not installed";
  }
}

/** @returns {string} */
function ownVersion() {
  const pkg = /** @type {{ version?: unknown }} */ (
    JSON.parse(readFileSync(join(REPO_DIR, "package.json"), "utf8"))
  );
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

/**
 * @param {string[]} libs  npm packages whose versions the result should record
 * @param {PinInfo} pinning
 * @returns {EnvInfo}
 */
export function envInfo(libs, pinning) {
  /** @type {Record<string, string>} */
  const versions = { shadowgate: ownVersion() };
  for (const lib of libs) versions[lib] = packageVersion(lib);
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuModel: cpuModel(),
    // os.cpus(), not availableParallelism(): the latter shrinks to 1 once this process is pinned.
    cpus: os.cpus().length,
    loadavg: os.loadavg().map((l) => Math.round(l * 100) / 100),
    libs: versions,
    pinning,
  };
}

/**
 * performance.md: pin the gateway and the simulators to different cores when both are free.
 * Pins every thread of this process to core 0 and tells the caller to start helpers on core 1.
 * BENCH_PIN=0 disables it, BENCH_PIN=1 forces it even when the machine looks busy.
 * @returns {PinInfo}
 */
export function pinCores() {
  const mode = process.env["BENCH_PIN"];
  const none = (/** @type {string} */ reason) => ({
    pinned: false,
    reason,
    benchCore: undefined,
    helperCore: undefined,
  });
  if (mode === "0") return none("BENCH_PIN=0");
  if (os.platform() !== "linux") return none("not Linux");
  if (os.availableParallelism() < 2) return none("fewer than 2 cores");
  const load = os.loadavg()[0] ?? 0;
  if (mode !== "1" && load >= 0.5) {
    return none(
      `1-min load average ${load.toFixed(2)} >= 0.5: cores not free (BENCH_PIN=1 forces)`,
    );
  }
  try {
    execFileSync("taskset", ["-a", "-p", "-c", "0", String(process.pid)], { stdio: "ignore" });
  } catch {
    return none("taskset failed or is missing");
  }
  return {
    pinned: true,
    reason: "bench on core 0, helpers on core 1",
    benchCore: "0",
    helperCore: "1",
  };
}

/**
 * How to start a helper process, pinned to the helper core when pinning is on.
 * @param {PinInfo} pin
 * @param {string[]} nodeArgs  arguments after `node`
 * @returns {{ command: string, args: string[] }}
 */
export function helperCommand(pin, nodeArgs) {
  if (pin.pinned && pin.helperCore !== undefined) {
    return { command: "taskset", args: ["-c", pin.helperCore, process.execPath, ...nodeArgs] };
  }
  return { command: process.execPath, args: nodeArgs };
}

/**
 * The end of every benchmark: writes `results/<name>.json` (with the start time and the run's
 * duration), prints where and the one-line summary, and sets the exit code (1: a target missed).
 * @param {Omit<BenchResult, "startedAt" | "durationMs"> & { startedAt: Date }} result
 */
export function finishBench(result) {
  const { startedAt } = result;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${result.name}.json`);
  /** @type {BenchResult} */
  const written = {
    ...result,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
  };
  writeFileSync(file, `${JSON.stringify(written, null, 2)}\n`);
  console.log(`  results: ${file}`);
  console.log(result.summary);
  process.exitCode = result.pass ? 0 : 1;
}

/**
 * @param {readonly number[]} values
 * @returns {number}
 */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return NaN;
  const hi = sorted[n >> 1] ?? NaN;
  if (n % 2 === 1) return hi;
  return ((sorted[(n >> 1) - 1] ?? NaN) + hi) / 2;
}

/**
 * Milliseconds with a precision that suits the magnitude.
 * @param {number} ms
 * @returns {string}
 */
export function fmtMs(ms) {
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/**
 * @param {number} x
 * @returns {string}
 */
export function fmtRatio(x) {
  if (!Number.isFinite(x)) return "-";
  return x >= 10 ? `${x.toFixed(0)}x` : `${x.toFixed(2)}x`;
}

/**
 * Mulberry32: a small seeded PRNG so generated layouts are the same on every run and machine.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Nearest-rank percentile: the smallest value with at least p% of the samples at or below it
 * (so p99 of 200 samples is the 2nd largest). NaN for no samples.
 * @param {readonly number[]} values
 * @param {number} p  0 < p <= 100
 * @returns {number}
 */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? NaN;
}

/**
 * @typedef {object} LatencyStats
 * @property {number} n
 * @property {number} min
 * @property {number} p50
 * @property {number} p90
 * @property {number} p99
 * @property {number} max
 * @property {number} mean
 */

/**
 * @param {readonly number[]} values  milliseconds
 * @returns {LatencyStats}
 */
export function latencyStats(values) {
  const round = (/** @type {number} */ x) => Math.round(x * 1000) / 1000;
  return {
    n: values.length,
    min: round(values.length > 0 ? Math.min(...values) : NaN),
    p50: round(percentile(values, 50)),
    p90: round(percentile(values, 90)),
    p99: round(percentile(values, 99)),
    max: round(values.length > 0 ? Math.max(...values) : NaN),
    mean: round(values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : NaN),
  };
}

/**
 * "p50 / p99 / max" of latency stats, for a table cell.
 * @param {LatencyStats} s
 * @returns {string}
 */
export function fmtLatency(s) {
  return `${fmtMs(s.p50)} / ${fmtMs(s.p99)} / ${fmtMs(s.max)}`;
}

/**
 * An integer from the environment, clamped to [min, max]; `fallback` when unset or not one.
 * @param {string | undefined} raw
 * @param {number} fallback
 * @param {number} min
 * @param {number} max
 * @returns {number}
 */
export function boundedInt(raw, fallback, min, max) {
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isInteger(n) ? Math.min(max, Math.max(min, n)) : fallback;
}

/**
 * A benchmark still running after `budgetMs` is stuck: `cleanup` runs (kill the child
 * processes) and the process exits 2, so `npm run bench` never hangs. Clear it when done.
 * @param {string} name
 * @param {number} budgetMs
 * @param {() => void} [cleanup]
 * @returns {NodeJS.Timeout}
 */
export function startWatchdog(name, budgetMs, cleanup = () => undefined) {
  const timer = setTimeout(() => {
    console.error(`${name}: still running after ${budgetMs / 1000} s; giving up`);
    cleanup();
    process.exit(2);
  }, budgetMs);
  timer.unref();
  return timer;
}

/**
 * Runs a benchmark's main; a crash prints its stack and exits 2 (1 is for a missed target).
 * @param {string} name
 * @param {() => Promise<void>} main
 */
export function runMain(name, main) {
  main().catch((err) => {
    console.error(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(2);
  });
}
