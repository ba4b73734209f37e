/**
 * The benchmark harness behind `npm run bench` and `node scripts/bench/run.js [b1 ...]` (run.js
 * transpiles the benchmarks into build/bench/ and calls runBenchmarks with its arguments).
 *
 * Runs every b<N>-*.js beside lib/ in the transpiled folder, in order of N, or only those named
 * (by id, or by full name: b1-coalescing). A soak (b<N>-*-soak, B12: half an hour) runs only when
 * named, and has a longer limit. Each benchmark runs in a child process of its own,
 * writes results/<name>.json and prints a one-line summary; this ends with the summaries and a
 * Markdown table of every result. Exit code: 1 when a benchmark failed a target or crashed, 64
 * on an unknown benchmark name.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { clearTimeout, setTimeout } from "node:timers";
import { BENCH_DIR, RESULTS_DIR, named, type BenchResult, type EnvInfo } from "./common.js";

/** A benchmark that outlives this is killed and counted as failed. */
const BENCH_TIMEOUT_MS = 15 * 60_000;
/** The same for a soak, which takes BENCH_SOAK_S (up to 4 h) plus its set-up and drain. */
const SOAK_TIMEOUT_MS = 5 * 3_600_000;

interface Bench {
  /** "b1" */
  id: string;
  /** "b1-coalescing" */
  name: string;
  /** 1 */
  n: number;
  file: string;
  /** runs only when named */
  soak: boolean;
  timeoutMs: number;
}

function discover(): Bench[] {
  const benches: Bench[] = [];
  for (const file of readdirSync(BENCH_DIR)) {
    const m = /^(b(\d+))(-[\w-]+)?\.js$/.exec(file);
    if (m === null || m[1] === undefined || m[2] === undefined) continue;
    const soak = file.endsWith("-soak.js");
    benches.push({
      id: m[1],
      name: file.slice(0, -".js".length),
      n: Number(m[2]),
      file: join(BENCH_DIR, file),
      soak,
      timeoutMs: soak ? SOAK_TIMEOUT_MS : BENCH_TIMEOUT_MS,
    });
  }
  return benches.sort((a, b) => a.n - b.n || a.name.localeCompare(b.name));
}

function runOne(
  bench: Bench,
): Promise<{ code: number | null; signal: string | null; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bench.file], { stdio: "inherit" });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, bench.timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut });
    });
  });
}

const cell = (s: string): string => s.replace(/\|/g, "\\|");

function readResult(file: string): BenchResult | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as BenchResult;
  } catch {
    return undefined;
  }
}

/** Runs the benchmarks named in `wanted` (all when empty); resolves with the exit code. */
export async function runBenchmarks(wanted: readonly string[]): Promise<number> {
  const all = discover();
  const unknown = wanted.filter((w) => !all.some((b) => b.id === w || b.name === w));
  if (unknown.length > 0) {
    console.error(`unknown benchmark(s): ${unknown.join(", ")}`);
    console.error(`available: ${all.map((b) => b.name).join(", ") || "none"}`);
    return 64;
  }
  const selected =
    wanted.length === 0
      ? all.filter((b) => !b.soak)
      : all.filter((b) => wanted.includes(b.id) || wanted.includes(b.name));

  const table: string[] = [
    "| bench | case | metric | ours | baseline | ratio | target | ok |",
    "|---|---|---|---|---|---|---|---|",
  ];
  const summaries: string[] = [];
  let env: EnvInfo | undefined;
  let failed = 0;

  for (const bench of selected) {
    console.log(`\n== ${bench.name} ==`);
    // A bench that runs in either dialect names its result after it (BENCH_DIALECT=aws).
    const files = [named(bench.name), bench.name].map((n) => join(RESULTS_DIR, `${n}.json`));
    // A result left from an earlier run must not pass for this one.
    for (const f of files) rmSync(f, { force: true });
    const t0 = Date.now();
    const { code, signal, timedOut } = await runOne(bench);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const result = files.map(readResult).find((r) => r !== undefined);
    const ok = code === 0 && result !== undefined && result.pass;
    if (!ok) failed++;
    env ??= result?.env;
    if (result === undefined) {
      const why = timedOut
        ? `killed after ${bench.timeoutMs / 1000} s`
        : `exit ${String(code ?? signal)}`;
      summaries.push(`${bench.id.toUpperCase()} ${bench.name}: no result (${why})`);
      table.push(`| ${bench.id.toUpperCase()} | - | - | - | - | - | - | no (${cell(why)}) |`);
      continue;
    }
    summaries.push(`${result.summary} [${secs} s]`);
    for (const r of result.rows) {
      table.push(
        `| ${[r.bench, r.case, r.metric, r.ours, r.baseline, r.ratio, r.target, r.pass].map(cell).join(" | ")} |`,
      );
    }
    if (code !== 0 && result.pass) {
      table.push(`| ${result.id} | - | - | - | - | - | - | no (exit ${String(code ?? signal)}) |`);
    }
  }

  console.log("\n== summary ==");
  for (const s of summaries) console.log(s);
  console.log("");
  for (const line of table) console.log(line);
  if (env !== undefined) {
    const libs = Object.entries(env.libs)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    const pin = env.pinning.pinned ? "pinned" : `not pinned: ${env.pinning.reason}`;
    console.log(`\nNode ${env.node}, ${env.cpuModel} x${env.cpus}, ${libs}; ${pin}`);
  }
  if (selected.length === 0) console.log("(no benchmarks found)");
  return failed > 0 ? 1 : 0;
}
