/**
 * What every benchmark shares: the environment record (Node, CPU, library versions), core
 * pinning, the result file and small statistics.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { setTimeout } from "node:timers";

/**
 * The repository: the nearest folder above this file with a package.json. Found rather than
 * counted in "..", because this file runs from its transpiled copy under build/bench/ (see
 * scripts/bench/run.ts), one folder deeper than its source.
 */
function repoDir(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${import.meta.dirname}`);
  }
}

export const REPO_DIR = repoDir();
/** Where the benchmarks run from: the transpiled scripts/bench, holding the b<N>-*.js files. */
export const BENCH_DIR = dirname(import.meta.dirname);
/** Results stay beside the sources (scripts/bench/results, git-ignored), not in build/. */
export const RESULTS_DIR = join(REPO_DIR, "scripts", "bench", "results");

/** One line of the Markdown table that `npm run bench` ends with. */
export interface ResultRow {
  /** e.g. "B1" */
  bench: string;
  /** scenario, e.g. "contiguous" */
  case: string;
  /** what is measured, e.g. "requests/scan" */
  metric: string;
  ours: string;
  baseline: string;
  /** baseline / ours, formatted */
  ratio: string;
  target: string;
  /** "-" for figures that carry no target */
  pass: "yes" | "no" | "-";
}

/** What a benchmark writes to results/<name>.json. */
export interface BenchResult {
  id: string;
  name: string;
  title: string;
  pass: boolean;
  summary: string;
  startedAt: string;
  durationMs: number;
  env: EnvInfo;
  rows: ResultRow[];
  figures: Record<string, unknown>;
}

export interface EnvInfo {
  node: string;
  v8: string;
  platform: string;
  cpuModel: string;
  cpus: number;
  loadavg: number[];
  libs: Record<string, string>;
  pinning: PinInfo;
}

export interface PinInfo {
  pinned: boolean;
  reason: string;
  /** the core this process runs on, when pinned */
  benchCore: string | undefined;
  /** the core helper processes (simulators) run on */
  helperCore: string | undefined;
}

function cpuModel(): string {
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const line = info.split("\n").find((l) => /^model name\s*:/.test(l));
    if (line !== undefined) return line.replace(/^model name\s*:\s*/, "").trim();
  } catch {
    // Not Linux, or /proc is hidden: os.cpus() below still has a model string.
  }
  return os.cpus()[0]?.model ?? "unknown";
}

/** The installed version of a package, read from its package.json in the repo's node_modules. */
export function packageVersion(name: string): string {
  try {
    const file = join(REPO_DIR, "node_modules", name, "package.json");
    const pkg = JSON.parse(readFileSync(file, "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "not installed";
  }
}

function ownVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO_DIR, "package.json"), "utf8")) as {
    version?: unknown;
  };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

/** @param libs  npm packages whose versions the result should record */
export function envInfo(libs: string[], pinning: PinInfo): EnvInfo {
  const versions: Record<string, string> = { shadowgate: ownVersion() };
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
 */
export function pinCores(): PinInfo {
  const mode = process.env["BENCH_PIN"];
  const none = (reason: string) => ({
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
 * @param nodeArgs  arguments after `node`
 */
export function helperCommand(
  pin: PinInfo,
  nodeArgs: string[],
): { command: string; args: string[] } {
  if (pin.pinned && pin.helperCore !== undefined) {
    return { command: "taskset", args: ["-c", pin.helperCore, process.execPath, ...nodeArgs] };
  }
  return { command: process.execPath, args: nodeArgs };
}

/** A condition a benchmark checks besides its targets; printed, and kept in its figures. */
export interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

/** Prints every check, "[ok]" or "[FAIL]", with its detail. */
export function printChecks(checks: readonly Check[]): void {
  for (const c of checks) console.log(`  [${c.pass ? "ok" : "FAIL"}] ${c.name} (${c.detail})`);
}

/**
 * The end of every benchmark: writes `results/<name>.json` (with the start time and the run's
 * duration), prints where and the one-line summary, and sets the exit code (1: a target missed).
 */
export function finishBench(
  result: Omit<BenchResult, "startedAt" | "durationMs"> & { startedAt: Date },
) {
  const { startedAt } = result;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${result.name}.json`);
  const written: BenchResult = {
    ...result,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
  };
  writeFileSync(file, `${JSON.stringify(written, null, 2)}\n`);
  console.log(`  results: ${file}`);
  console.log(result.summary);
  process.exitCode = result.pass ? 0 : 1;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return NaN;
  const hi = sorted[n >> 1] ?? NaN;
  if (n % 2 === 1) return hi;
  return ((sorted[(n >> 1) - 1] ?? NaN) + hi) / 2;
}

/** Milliseconds with a precision that suits the magnitude. */
export function fmtMs(ms: number): string {
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/** Milliseconds as fmtMs does, "-" for none or not a number. */
export function fmtOptMs(ms: number | undefined): string {
  return ms === undefined || !Number.isFinite(ms) ? "-" : fmtMs(ms);
}

/** Megabytes with one decimal: "121.5 MB". */
export function fmtMb(mb: number): string {
  return `${mb.toFixed(1)} MB`;
}

/** A check's outcome as a result row's `pass`. */
export function yesNo(ok: boolean): "yes" | "no" {
  return ok ? "yes" : "no";
}

export function fmtRatio(x: number): string {
  if (!Number.isFinite(x)) return "-";
  return x >= 10 ? `${x.toFixed(0)}x` : `${x.toFixed(2)}x`;
}

/**
 * Nearest-rank percentile: the smallest value with at least p% of the samples at or below it
 * (so p99 of 200 samples is the 2nd largest). NaN for no samples.
 * @param p  0 < p <= 100
 */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? NaN;
}

export interface LatencyStats {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** @param values  milliseconds */
export function latencyStats(values: readonly number[]): LatencyStats {
  const round = (x: number) => Math.round(x * 1000) / 1000;
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

/** "p50 / p99 / max" of latency stats, for a table cell. */
export function fmtLatency(s: LatencyStats): string {
  return `${fmtMs(s.p50)} / ${fmtMs(s.p99)} / ${fmtMs(s.max)}`;
}

/** An integer from the environment, clamped to [min, max]; `fallback` when unset or not one. */
export function boundedInt(
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isInteger(n) ? Math.min(max, Math.max(min, n)) : fallback;
}

/**
 * A benchmark still running after `budgetMs` is stuck: `cleanup` runs (kill the child
 * processes) and the process exits 2, so `npm run bench` never hangs. Clear it when done.
 */
export function startWatchdog(
  name: string,
  budgetMs: number,
  cleanup: () => void = () => undefined,
): NodeJS.Timeout {
  const timer = setTimeout(() => {
    console.error(`${name}: still running after ${budgetMs / 1000} s; giving up`);
    cleanup();
    process.exit(2);
  }, budgetMs);
  timer.unref();
  return timer;
}

/** Runs a benchmark's main; a crash prints its stack and exits 2 (1 is for a missed target). */
export function runMain(name: string, main: () => Promise<void>) {
  main().catch((err) => {
    console.error(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(2);
  });
}

/**
 * The cloud dialect a benchmark runs in: BENCH_DIALECT=aws for AWS IoT's shadow (the local AWS
 * service, things named as the devices), Alibaba's otherwise. B3, B7 and B9 run in either
 * (lib/dialect.ts); their results carry the dialect in their name (b3-latency-aws), so that
 * both stay side by side.
 */
export const DIALECT: "alibaba" | "aws" =
  process.env["BENCH_DIALECT"] === "aws" ? "aws" : "alibaba";

/** A benchmark's name with the dialect, when it is not the default. */
export const named = (name: string): string => (DIALECT === "aws" ? `${name}-aws` : name);
