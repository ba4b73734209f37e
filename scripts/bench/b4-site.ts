/**
 * B4 scale (docs/performance.md, issue 14 item 3): the gateway's CPU share of one core, RSS peak
 * and steady, event-loop delay p99 and shadow freshness at a site of 100 PLCs x 100 float32
 * points changing every second, polled every second (10k points/s, 100 shadows), uncapped and
 * under a 64 MB heap cap; and two small cases: 1 device of 100 points, and 1k points at 100 ms.
 * Baseline in the same run: a naive poller (lib/naive-site-poller.ts) reading the same 100
 * devices with modbus-serial and publishing each one's values as one JSON message a second.
 *
 * Topology, every part a process of its own:
 *   - the site: 20 pymodbus Modbus TCP servers x 5 unit ids in one Python process
 *     (lib/pymodbus-site.py, Debian's pymodbus under PYENV_VERSION=system python3); each unit
 *     holds 100 float32 (200 holding registers) and the Python side changes every value every
 *     second (every 100 ms in the 1k @ 100 ms case), until told to freeze;
 *   - mosquitto on 127.0.0.1, a free port, a throw-away config (test/helpers/mosquitto.ts);
 *   - the local cloud shadow service, `shadowgate cloud --broker <mosquitto>`;
 *   - the gateway, `node [--max-old-space-size=64 --max-semi-space-size=4] dist/cli/main.js run`
 *     (capped as the service unit caps it), with its
 *     API on a free port (for /metrics), or the naive poller: the measured process.
 * With pinning on (lib/common.ts: both cores free), this process and the measured one run on
 * core 0, the Python site and the cloud service on core 1 (mosquitto inherits core 0).
 *
 * Measured per case, over a window after a warm-up: CPU = utime + stime from /proc/<pid>/stat
 * over the window, as a share of one core; RSS = VmRSS from /proc/<pid>/status every 500 ms,
 * "steady" the median of the window's last third, "peak" VmHWM at the window's end (the
 * process's high-water mark since it started); event-loop delay: the gateway's own
 * shadowgate_event_loop_delay_p99_seconds, scraped from GET /metrics every 5 s (each scrape
 * covers the time since the previous one); the figure is the worst 5 s p99 of the window (an
 * upper bound of the window's p99), with the median beside it. Freshness (site cases): the
 * Python side freezes and prints the values its registers hold; the time from the freeze until
 * every one of the 100 cloud shadows (GET /shadows/{pk}/{dn}?format=json on the cloud service)
 * equals its PLC at float32 precision. Survived: the process still running at the end.
 *
 * Targets (issue 14): <= 15% of one core, RSS <= 96 MB peak, event-loop p99 < 20 ms, every shadow
 * fresh within 3 s; the same under the 64 MB cap with CPU within +20% of uncapped; 1 device of
 * 100 points <= 60 MB RSS (peak). Exit 1 when one is missed.
 *
 * Environment: BENCH_WARMUP_S (default 20), BENCH_MEASURE_S (default 60; the small cases measure
 * half as long), BENCH_PIN, BENCH_LOG_LEVEL (the gateway's log level, default warn; its stderr
 * goes to a log file, kept when a target is missed), BENCH_GATEWAY_NODE_ARGS (extra node options
 * for the gateway, space-separated, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearInterval, setInterval } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import {
  BENCH_DIR,
  boundedInt,
  envInfo,
  finishBench,
  fmtMb,
  fmtOptMs,
  median,
  printChecks,
  runMain,
  type Check,
  type ResultRow,
  yesNo,
} from "./lib/common.js";
import { SEMI_SPACE_MB } from "./lib/dist.js";
import {
  CLI_MAIN,
  CLK_TCK,
  PK,
  POINTS,
  SERVERS,
  UNITS,
  cloudState,
  cpuTicks,
  deviceName,
  freePort,
  freshness,
  onSite,
  plcName,
  scrape,
  siteDevices,
  sitePoints,
  statusKb,
  stopChild,
  track,
  writeSiteMappings,
  type Device,
  type SiteRun,
} from "./lib/site.js";

const NAME = "b4-site";
const WARMUP_S = boundedInt(process.env["BENCH_WARMUP_S"], 20, 3, 600);
const MEASURE_S = boundedInt(process.env["BENCH_MEASURE_S"], 60, 5, 1800);
const SMALL_MEASURE_S = Math.max(5, Math.round(MEASURE_S / 2));
const HEAP_CAP_MB = 64;
const SCRAPE_MS = 5000;
const RSS_SAMPLE_MS = 500;
const TARGET_CPU = 15;
const TARGET_RSS_MB = 96;
const TARGET_LOOP_MS = 20;
const TARGET_FRESH_MS = 3000;
const TARGET_CAP_CPU_RATIO = 1.2;
const TARGET_SMALL_RSS_MB = 60;
const NAIVE = join(BENCH_DIR, "lib", "naive-site-poller.js");
/** 5 cases, each a warm-up and a window, plus start-up, freshness and stops. */
const BUDGET_MS = (5 * (WARMUP_S + MEASURE_S) + 180) * 1000;

// --- the site ------------------------------------------------------------------------------

// --- measuring a process -------------------------------------------------------------------

interface Measured {
  cpuPct: number;
  rssPeakMb: number;
  rssSteadyMb: number;
  rssMaxSampledMb: number;
  /** worst and median 5 s event-loop delay p99, ms (gateway only) */
  loopP99WorstMs: number | undefined;
  loopP99MedianMs: number | undefined;
  loopMaxMs: number | undefined;
  heapUsedMb: number | undefined;
  survived: boolean;
  windowS: number;
}

/**
 * Warm-up (from the process's start), then the window: CPU from /proc, RSS every 500 ms, and
 * (with an API port) the event-loop delay every 5 s.
 */
async function measure(
  child: ChildProcess,
  startedAt: number,
  windowS: number,
  apiPort: number | undefined,
): Promise<Measured> {
  const pid = child.pid!;
  const alive = () => child.exitCode === null && child.signalCode === null;
  const warmEnd = startedAt + WARMUP_S * 1000;
  if (Date.now() < warmEnd) await sleep(warmEnd - Date.now());
  if (!alive()) throw new Error(`B4: the measured process died during the warm-up`);
  if (apiPort !== undefined) await scrape(apiPort); // resets the loop-delay histogram
  const rss: number[] = [];
  const p99s: number[] = [];
  let loopMax = 0;
  let heapUsed: number | undefined = undefined;
  const rssTimer = setInterval(() => {
    if (alive()) rss.push(statusKb(pid, "VmRSS") / 1024);
  }, RSS_SAMPLE_MS);
  const scrapeTimer =
    apiPort === undefined
      ? undefined
      : setInterval(() => {
          scrape(apiPort)
            .then((m) => {
              const p99 = m["shadowgate_event_loop_delay_p99_seconds"];
              const max = m["shadowgate_event_loop_delay_max_seconds"];
              if (p99 !== undefined) p99s.push(p99 * 1000);
              if (max !== undefined) loopMax = Math.max(loopMax, max * 1000);
              heapUsed = m["shadowgate_nodejs_heap_used_bytes"];
            })
            .catch(() => undefined);
        }, SCRAPE_MS);
  const t0 = performance.now();
  const cpu0 = cpuTicks(pid);
  let cpu1 = cpu0;
  let t1 = t0;
  let hwm = NaN;
  const end = t0 + windowS * 1000;
  while (performance.now() < end && alive()) {
    await sleep(Math.min(1000, end - performance.now()));
    if (alive()) {
      try {
        cpu1 = cpuTicks(pid);
        hwm = statusKb(pid, "VmHWM") / 1024;
        t1 = performance.now();
      } catch {
        // exited between the check and the read
      }
    }
  }
  clearInterval(rssTimer);
  if (scrapeTimer !== undefined) clearInterval(scrapeTimer);
  await sleep(100);
  const lastThird = rss.slice(Math.floor((rss.length * 2) / 3));
  const elapsed = (t1 - t0) / 1000;
  return {
    cpuPct: elapsed > 0 ? (100 * (cpu1 - cpu0)) / CLK_TCK / elapsed : NaN,
    rssPeakMb: hwm,
    rssSteadyMb: median(lastThird),
    rssMaxSampledMb: rss.length > 0 ? Math.max(...rss) : NaN,
    loopP99WorstMs: p99s.length > 0 ? Math.max(...p99s) : undefined,
    loopP99MedianMs: p99s.length > 0 ? median(p99s) : undefined,
    loopMaxMs: apiPort === undefined ? undefined : loopMax,
    heapUsedMb: heapUsed === undefined ? undefined : heapUsed / 2 ** 20,
    survived: alive(),
    windowS: elapsed,
  };
}

// --- the cloud -------------------------------------------------------------------------------

// --- the cases -------------------------------------------------------------------------------

interface GatewayCase {
  label: string;
  devices: Device[];
  pollMs: number;
  heapCapMb: number | undefined;
  windowS: number;
  freshness: boolean;
}

interface GatewayResult extends Measured {
  label: string;
  points: number;
  pollMs: number;
  heapCapMb: number | undefined;
  freshAllMs: number | undefined;
  freshMedianMs: number | undefined;
  stale: string[];
  mismatch: string | undefined;
  log: string;
}

async function runGateway(c: GatewayCase, ctx: SiteRun): Promise<GatewayResult> {
  const dir = mkdtempSync(join(tmpdir(), `${NAME}-gw-`));
  mkdirSync(join(dir, "mappings"));
  mkdirSync(join(dir, "data"));
  const apiPort = await freePort();
  const usedServers = [...new Set(c.devices.map((d) => d.s))];
  writeFileSync(
    join(dir, "gateway.yaml"),
    JSON.stringify({
      version: 1,
      gateway: {
        name: "b4",
        dataDir: "./data",
        ...(c.heapCapMb !== undefined && { memory: { heapMb: c.heapCapMb } }),
      },
      log: { level: process.env["BENCH_LOG_LEVEL"] ?? "warn" },
      sources: Object.fromEntries(
        usedServers.map((s) => [
          plcName(s),
          { protocol: "modbus-tcp", host: "127.0.0.1", port: ctx.ports[s] },
        ]),
      ),
      cloud: { url: ctx.mqttUrl, productKey: "a1B4Gw", deviceName: "b4-gw" },
      api: { listen: `127.0.0.1:${apiPort}` },
      mappings: "./mappings",
    }),
  );
  writeSiteMappings(dir, c.devices, sitePoints(), `${c.pollMs}ms`);
  const log = join(ctx.logDir, `gateway-${c.label.replace(/[^\w]+/g, "_")}.log`);
  const nodeArgs = [
    // Capped as the service unit caps it (src/cli/systemd-unit.ts): the young generation is
    // set beside the old one, without which V8 thrashes in full collections under a small cap.
    ...(c.heapCapMb !== undefined
      ? [`--max-old-space-size=${c.heapCapMb}`, `--max-semi-space-size=${SEMI_SPACE_MB}`]
      : []),
    ...(process.env["BENCH_GATEWAY_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== ""),
    CLI_MAIN,
    "run",
    "-c",
    join(dir, "gateway.yaml"),
  ];
  // On this process's core (core 0 when pinned): the measured process.
  const startedAt = Date.now();
  const child = track(spawn(process.execPath, nodeArgs, { stdio: ["ignore", "ignore", "pipe"] }));
  child.stderr?.pipe(createWriteStream(log));
  try {
    // Every device's first report in the cloud before the warm-up ends.
    const syncEnd = startedAt + Math.max(WARMUP_S, 30) * 1000;
    for (const d of c.devices) {
      while (
        (await cloudState(ctx.cloudUrl, deviceName(d.s, d.u)).catch(() => undefined))?.["p99"] ===
        undefined
      ) {
        if (Date.now() > syncEnd)
          throw new Error(`B4 ${c.label}: ${deviceName(d.s, d.u)} never reached the cloud`);
        if (child.exitCode !== null)
          throw new Error(`B4 ${c.label}: the gateway exited (${child.exitCode}); see ${log}`);
        await sleep(200);
      }
    }
    const m = await measure(child, startedAt, c.windowS, apiPort);
    let fresh: Awaited<ReturnType<typeof freshness>> | undefined = undefined;
    if (c.freshness && m.survived) {
      const frozenAt = performance.now();
      const frozen = await ctx.site.freeze();
      fresh = await freshness(ctx.cloudUrl, c.devices, frozen, frozenAt);
      ctx.site.send("thaw");
    }
    return {
      ...m,
      label: c.label,
      points: c.devices.length * POINTS,
      pollMs: c.pollMs,
      heapCapMb: c.heapCapMb,
      freshAllMs: fresh?.allMs,
      freshMedianMs: fresh?.medianMs,
      stale: fresh?.stale ?? [],
      mismatch: fresh?.mismatch,
      log,
    };
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runNaive(
  ctx: { ports: number[]; mqttUrl: string },
  windowS: number,
): Promise<Measured> {
  const config = {
    mqttUrl: ctx.mqttUrl,
    ports: ctx.ports,
    units: UNITS,
    points: POINTS,
    pollMs: 1000,
    productKey: PK,
  };
  const startedAt = Date.now();
  const child = track(
    spawn(process.execPath, [NAIVE, JSON.stringify(config)], {
      stdio: ["pipe", "ignore", "inherit"],
    }),
  );
  try {
    return await measure(child, startedAt, windowS, undefined);
  } finally {
    child.stdin?.end();
    await stopChild(child, 5000);
  }
}

// --- main ------------------------------------------------------------------------------------

const pct = (x: number) => `${x.toFixed(1)}%`;

async function main() {
  const startedAt = new Date();
  const intro =
    `${SERVERS} pymodbus servers x ${UNITS} units x ${POINTS} float32; warm-up ${WARMUP_S} s, window ${MEASURE_S} s ` +
    `(small cases ${SMALL_MEASURE_S} s)`;
  await onSite(NAME, BUDGET_MS, intro, async (ctx) => {
    const { pin, site } = ctx;
    const all = siteDevices();
    const report = (r: GatewayResult) =>
      console.log(
        `  ${r.label}: CPU ${pct(r.cpuPct)}, RSS peak ${fmtMb(r.rssPeakMb)} steady ${fmtMb(r.rssSteadyMb)}, ` +
          `loop p99 worst ${fmtOptMs(r.loopP99WorstMs)} median ${fmtOptMs(r.loopP99MedianMs)} max ${fmtOptMs(r.loopMaxMs)}, ` +
          `heap used ${r.heapUsedMb?.toFixed(1) ?? "-"} MB, fresh ${fmtOptMs(r.freshAllMs)}` +
          `${r.stale.length > 0 ? ` (${r.stale.length} stale; ${r.mismatch})` : ""}, ${r.survived ? "survived" : "DIED"}`,
      );

    const site1 = await runGateway(
      {
        label: "site",
        devices: all,
        pollMs: 1000,
        heapCapMb: undefined,
        windowS: MEASURE_S,
        freshness: true,
      },
      ctx,
    );
    report(site1);
    const siteCap = await runGateway(
      {
        label: "site, 64 MB heap cap",
        devices: all,
        pollMs: 1000,
        heapCapMb: HEAP_CAP_MB,
        windowS: MEASURE_S,
        freshness: true,
      },
      ctx,
    );
    report(siteCap);
    const naive = await runNaive(ctx, MEASURE_S);
    console.log(
      `  naive poller: CPU ${pct(naive.cpuPct)}, RSS peak ${fmtMb(naive.rssPeakMb)} steady ${fmtMb(naive.rssSteadyMb)}, ${naive.survived ? "survived" : "DIED"}`,
    );
    const small = await runGateway(
      {
        label: "1 device x 100",
        devices: [{ s: 0, u: 1 }],
        pollMs: 1000,
        heapCapMb: undefined,
        windowS: SMALL_MEASURE_S,
        freshness: false,
      },
      ctx,
    );
    report(small);
    site.send("period 0.1");
    const fast = await runGateway(
      {
        label: "1k @ 100 ms",
        devices: Array.from({ length: 10 }, (_, i) => ({ s: i, u: 1 })),
        pollMs: 100,
        heapCapMb: undefined,
        windowS: SMALL_MEASURE_S,
        freshness: false,
      },
      ctx,
    );
    site.send("period 1");
    report(fast);

    const siteTargets = (r: GatewayResult) => ({
      cpu: r.cpuPct <= TARGET_CPU,
      rss: r.rssPeakMb <= TARGET_RSS_MB,
      loop: r.loopP99WorstMs !== undefined && r.loopP99WorstMs < TARGET_LOOP_MS,
      fresh: r.freshAllMs !== undefined && r.freshAllMs <= TARGET_FRESH_MS,
      survived: r.survived,
    });
    const capRatio = siteCap.cpuPct / site1.cpuPct;
    /** The same targets for the site, uncapped and capped. */
    const caseChecks = (label: string, r: GatewayResult): Check[] => {
      const t = siteTargets(r);
      return [
        { name: `${label}: CPU <= ${TARGET_CPU}% of one core`, pass: t.cpu, detail: pct(r.cpuPct) },
        {
          name: `${label}: RSS peak <= ${TARGET_RSS_MB} MB`,
          pass: t.rss,
          detail: fmtMb(r.rssPeakMb),
        },
        {
          name: `${label}: event-loop p99 < ${TARGET_LOOP_MS} ms`,
          pass: t.loop,
          detail: `worst 5 s p99 ${fmtOptMs(r.loopP99WorstMs)}`,
        },
        {
          name: `${label}: every shadow fresh within ${TARGET_FRESH_MS / 1000} s`,
          pass: t.fresh,
          detail: fmtOptMs(r.freshAllMs),
        },
        { name: `${label}: the gateway survived`, pass: t.survived, detail: yesNo(r.survived) },
      ];
    };
    const checks: Check[] = [
      ...caseChecks("site", site1),
      ...caseChecks("capped", siteCap),
      {
        name: `capped: CPU within +20% of uncapped`,
        pass: capRatio <= TARGET_CAP_CPU_RATIO,
        detail: `${((capRatio - 1) * 100).toFixed(0)}%`,
      },
      {
        name: `1 device x 100 points: RSS peak <= ${TARGET_SMALL_RSS_MB} MB`,
        pass: small.rssPeakMb <= TARGET_SMALL_RSS_MB,
        detail: fmtMb(small.rssPeakMb),
      },
      {
        name: "small cases: the gateway survived",
        pass: small.survived && fast.survived,
        detail: `${small.survived}, ${fast.survived}`,
      },
    ];
    printChecks(checks);
    const pass = checks.every((c) => c.pass);

    const siteCase = `${SERVERS * UNITS} PLCs x ${POINTS} float32 @ 1 s (10k points/s)`;
    const rowsOf = (r: GatewayResult, caseName: string, capped: boolean): ResultRow[] => {
      const t = siteTargets(r);
      return [
        {
          bench: "B4",
          case: caseName,
          metric: "CPU, % of one core",
          ours: pct(r.cpuPct),
          baseline: pct(naive.cpuPct),
          ratio: `${(r.cpuPct / naive.cpuPct).toFixed(1)}x the naive`,
          target: capped
            ? `<= ${TARGET_CPU}%, <= +20% of uncapped (${((capRatio - 1) * 100).toFixed(0)}%)`
            : `<= ${TARGET_CPU}%`,
          pass: yesNo(t.cpu && (!capped || capRatio <= TARGET_CAP_CPU_RATIO)),
        },
        {
          bench: "B4",
          case: caseName,
          metric: "RSS peak / steady",
          ours: `${fmtMb(r.rssPeakMb)} / ${fmtMb(r.rssSteadyMb)}`,
          baseline: `${fmtMb(naive.rssPeakMb)} / ${fmtMb(naive.rssSteadyMb)}`,
          ratio: "-",
          target: `peak <= ${TARGET_RSS_MB} MB`,
          pass: yesNo(t.rss),
        },
        {
          bench: "B4",
          case: caseName,
          metric: "event-loop p99, worst / median 5 s (max)",
          ours: `${fmtOptMs(r.loopP99WorstMs)} / ${fmtOptMs(r.loopP99MedianMs)} (${fmtOptMs(r.loopMaxMs)})`,
          baseline: "-",
          ratio: "-",
          target: `< ${TARGET_LOOP_MS} ms`,
          pass: yesNo(t.loop),
        },
        {
          bench: "B4",
          case: caseName,
          metric: "freeze -> all 100 shadows equal (median device)",
          ours: `${fmtOptMs(r.freshAllMs)} (${fmtOptMs(r.freshMedianMs)})${r.survived ? "" : ", gateway died"}`,
          baseline: "-",
          ratio: "-",
          target: `<= ${TARGET_FRESH_MS / 1000} s, survives`,
          pass: yesNo(t.fresh && t.survived),
        },
      ];
    };
    const smallRow = (r: GatewayResult, target: string, ok: "yes" | "no" | "-"): ResultRow => ({
      bench: "B4",
      case: r.label,
      metric: "CPU; RSS peak / steady; loop p99 worst",
      ours: `${pct(r.cpuPct)}; ${fmtMb(r.rssPeakMb)} / ${fmtMb(r.rssSteadyMb)}; ${fmtOptMs(r.loopP99WorstMs)}`,
      baseline: "-",
      ratio: "-",
      target,
      pass: ok,
    });
    const rows: ResultRow[] = [
      ...rowsOf(site1, siteCase, false),
      ...rowsOf(siteCap, `${siteCase}, heap cap ${HEAP_CAP_MB} MB (as the unit)`, true),
      smallRow(
        small,
        `RSS <= ${TARGET_SMALL_RSS_MB} MB`,
        yesNo(small.rssPeakMb <= TARGET_SMALL_RSS_MB && small.survived),
      ),
      smallRow(fast, "- (values change every 100 ms)", "-"),
    ];
    const summary =
      `B4 site: ${SERVERS * UNITS} PLCs x ${POINTS} points @ 1 s: CPU ${pct(site1.cpuPct)} (capped ${pct(siteCap.cpuPct)}; naive ${pct(naive.cpuPct)}), ` +
      `RSS peak ${fmtMb(site1.rssPeakMb)} (capped ${fmtMb(siteCap.rssPeakMb)}; naive ${fmtMb(naive.rssPeakMb)}), loop p99 ${fmtOptMs(site1.loopP99WorstMs)}, ` +
      `fresh ${fmtOptMs(site1.freshAllMs)} (capped ${fmtOptMs(siteCap.freshAllMs)}); 1x100 RSS ${fmtMb(small.rssPeakMb)}: ${pass ? "PASS" : "FAIL"}`;
    finishBench({
      id: "B4",
      name: NAME,
      title: "site scale",
      pass,
      summary,
      startedAt,
      env: envInfo(["modbus-serial", "mqtt", "better-sqlite3"], pin),
      rows,
      figures: {
        servers: SERVERS,
        units: UNITS,
        points: POINTS,
        warmupS: WARMUP_S,
        measureS: MEASURE_S,
        smallMeasureS: SMALL_MEASURE_S,
        clkTck: CLK_TCK,
        loopDelay:
          "gateway's shadowgate_event_loop_delay_p99_seconds, scraped every 5 s; worst and median of the window's scrapes",
        site: site1,
        siteCapped: siteCap,
        capCpuRatio: capRatio,
        naive,
        small,
        fast,
        checks,
      },
    });
    return pass;
  });
}

runMain(NAME, main);
