// @ts-check
/**
 * The benchmark harness behind `npm run bench` (which builds dist/ first).
 *
 *   node scripts/bench/run.js            every scripts/bench/b<N>-*.js, in order of N
 *   node scripts/bench/run.js b1 b4      only those (by id, or by full name: b1-coalescing)
 *
 * Each benchmark runs in a child process of its own, writes results/<name>.json and prints a
 * one-line summary; this ends with the summaries and a Markdown table of every result. Exits 1
 * when a benchmark failed a target or crashed, 64 on an unknown benchmark name.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { clearTimeout, setTimeout } from "node:timers";
import { BENCH_DIR, RESULTS_DIR } from "./lib/common.js";

/** A benchmark that outlives this is killed and counted as failed. */
const BENCH_TIMEOUT_MS = 15 * 60_000;

/**
 * @typedef {object} Bench
 * @property {string} id    "b1"
 * @property {string} name  "b1-coalescing"
 * @property {number} n     1
 * @property {string} file
 */

/** @returns {Bench[]} */
function discover() {
  /** @type {Bench[]} */
  const benches = [];
  for (const file of readdirSync(BENCH_DIR)) {
    const m = /^(b(\d+))(-[\w-]+)?\.js$/.exec(file);
    if (m === null || m[1] === undefined || m[2] === undefined) continue;
    benches.push({
      id: m[1],
      name: file.slice(0, -".js".length),
      n: Number(m[2]),
      file: join(BENCH_DIR, file),
    });
  }
  return benches.sort((a, b) => a.n - b.n || a.name.localeCompare(b.name));
}

/**
 * @param {Bench} bench
 * @returns {Promise<{ code: number | null, signal: string | null, timedOut: boolean }>}
 */
function runOne(bench) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bench.file], { stdio: "inherit" });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, BENCH_TIMEOUT_MS);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut });
    });
  });
}

/**
 * @param {string} s
 * @returns {string}
 */
const cell = (s) => s.replace(/\|/g, "\\|");

/**
 * @param {string} file
 * @returns {import("./lib/common.js").BenchResult | undefined}
 */
function readResult(file) {
  if (!existsSync(file)) return undefined;
  try {
    return /** @type {import("./lib/common.js").BenchResult} */ (
      JSON.parse(readFileSync(file, "utf8"))
    );
  } catch {
    return undefined;
  }
}

async function main() {
  const all = discover();
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !all.some((b) => b.id === w || b.name === w));
  if (unknown.length > 0) {
    console.error(`unknown benchmark(s): ${unknown.join(", ")}`);
    console.error(`available: ${all.map((b) => b.name).join(", ") || "none"}`);
    process.exit(64);
  }
  const selected =
    wanted.length === 0 ? all : all.filter((b) => wanted.includes(b.id) || wanted.includes(b.name));

  /** @type {string[]} */
  const table = [
    "| bench | case | metric | ours | baseline | ratio | target | ok |",
    "|---|---|---|---|---|---|---|---|",
  ];
  /** @type {string[]} */
  const summaries = [];
  /** @type {import("./lib/common.js").EnvInfo | undefined} */
  let env;
  let failed = 0;

  for (const bench of selected) {
    console.log(`\n== ${bench.name} ==`);
    const resultFile = join(RESULTS_DIR, `${bench.name}.json`);
    // A result left from an earlier run must not pass for this one.
    rmSync(resultFile, { force: true });
    const t0 = Date.now();
    const { code, signal, timedOut } = await runOne(bench);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const result = readResult(resultFile);
    const ok = code === 0 && result !== undefined && result.pass;
    if (!ok) failed++;
    env ??= result?.env;
    if (result === undefined) {
      const why = timedOut
        ? `killed after ${BENCH_TIMEOUT_MS / 1000} s`
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
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(2);
});
