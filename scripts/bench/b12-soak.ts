/**
 * B12 soak (docs/performance.md, issue 14 item 4): the B4 site (lib/site.ts: 100 pymodbus PLCs x
 * 100 float32 points changing every second, polled every second, synced to the local cloud
 * service through mosquitto) for BENCH_SOAK_S (default 30 min), while
 *   - the uplink is cut every 2 min for 20 s (a TCP proxy between the gateway and mosquitto,
 *     dist/sim/tcp-proxy.js, the fault-injection suite's);
 *   - a PLC restarts every 5 min: one pymodbus server (5 unit ids), in turn, goes away for 5 s
 *     and comes back on its port with its registers kept;
 *   - a desired value is set every 10 s (the cloud service's UpdateDeviceShadow, DeltaUpdate),
 *     on each device in turn: its set point (holding register 200, uint16), value i + 1 for the
 *     i-th command, so each write on the wire names its command.
 * The gateway is the built daemon (`dist/cli/main.js run`) in a process of its own, capped as the
 * service unit caps it by default (--max-old-space-size=128 --max-semi-space-size=4).
 *
 * Measured: RSS (VmRSS every 5 s) and its slope after the warm-up (least squares, MB/h); the
 * event-loop delay p99 (the gateway's /metrics every 5 s: worst and median 5 s p99); MQTT
 * reconnects and PLC reconnects (/metrics); SG_INTERNAL lines in the gateway's log (an escaped
 * exception or an unhandled rejection, src/daemon/last-resort.ts); whether the gateway survived.
 * At the end the faults stop and the site freezes; then, bounded: every command's value written
 * and desired cleared, every shadow equal to its PLC, no report left unconfirmed in the outbox.
 * Lost reports: unconfirmed rows at the end, plus shadows that never caught up. Commands not
 * executed exactly once: values never written (lost) or written twice or more (doubled), from
 * the site's record of every write to a set point.
 *
 * Targets (issue 14): RSS growth < 1 MB/h after warm-up, 0 lost, 0 doubled, no unhandled
 * rejection. Exit 1 when one is missed, 2 on a crash. `npm run bench` leaves it out (a soak runs
 * only when named: `node scripts/bench/run.js b12`).
 *
 * Environment: BENCH_SOAK_S (default 1800), BENCH_WARMUP_S (default a third of the soak, at most
 * 600), BENCH_CUT_EVERY_S (120), BENCH_CUT_S (20), BENCH_RESTART_EVERY_S (300),
 * BENCH_DESIRED_EVERY_S (10), BENCH_HEAP_MB (128; 0 runs uncapped), BENCH_LOG_LEVEL (warn),
 * BENCH_PIN.
 */
import { spawn } from "node:child_process";
import {
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearInterval, setInterval } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import {
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
import { SEMI_SPACE_MB, TcpProxy } from "./lib/dist.js";
import {
  CLI_MAIN,
  cloudState,
  PK,
  POINTS,
  SERVERS,
  UNITS,
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
} from "./lib/site.js";

const NAME = "b12-soak";
const SOAK_S = boundedInt(process.env["BENCH_SOAK_S"], 1800, 60, 4 * 3600);
const WARMUP_S = boundedInt(
  process.env["BENCH_WARMUP_S"],
  Math.min(600, Math.round(SOAK_S / 3)),
  10,
  SOAK_S - 30,
);
const CUT_EVERY_S = boundedInt(process.env["BENCH_CUT_EVERY_S"], 120, 10, 3600);
const CUT_S = boundedInt(process.env["BENCH_CUT_S"], 20, 1, 600);
const RESTART_EVERY_S = boundedInt(process.env["BENCH_RESTART_EVERY_S"], 300, 10, 3600);
const RESTART_DOWN_S = 5;
const DESIRED_EVERY_S = boundedInt(process.env["BENCH_DESIRED_EVERY_S"], 10, 1, 600);
const HEAP_MB = boundedInt(process.env["BENCH_HEAP_MB"], 128, 0, 4096);
const SAMPLE_MS = 5000;
/** After the soak: commands, shadows and the outbox must settle within this. */
const DRAIN_MS = 180_000;
const TARGET_SLOPE_MB_H = 1;
/** The set point: holding register 2 * POINTS (lib/pymodbus-site.py). */
const SET_POINT = 2 * POINTS;
const BUDGET_MS = (SOAK_S + 600) * 1000 + DRAIN_MS;

/**
 * Least-squares slope of (t seconds, y) in y per hour, and twice its standard error: RSS moves
 * with each collection (a sawtooth of a few MB), so a short window cannot tell a slow leak from
 * that, and the error says how far the window can.
 */
function slopePerHour(samples: ReadonlyArray<{ t: number; y: number }>): {
  slope: number;
  twoSigma: number;
} {
  const n = samples.length;
  if (n < 3) return { slope: NaN, twoSigma: NaN };
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const my = samples.reduce((a, s) => a + s.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const s of samples) {
    sxy += (s.t - mt) * (s.y - my);
    sxx += (s.t - mt) ** 2;
  }
  if (sxx === 0) return { slope: NaN, twoSigma: NaN };
  const b = sxy / sxx;
  const residuals = samples.reduce((a, s) => a + (s.y - my - b * (s.t - mt)) ** 2, 0);
  return { slope: b * 3600, twoSigma: 2 * Math.sqrt(residuals / (n - 2) / sxx) * 3600 };
}

/** A counter from /metrics summed over its labels (the scrape keeps unlabelled series only). */
async function counterSum(apiPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${apiPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z0-9_]+)(\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
    if (m?.[1] === name) sum += Number(m[3]);
  }
  return sum;
}

async function setDesired(cloudUrl: string, dn: string, value: number): Promise<void> {
  const res = await fetch(`${cloudUrl}/shadows/${PK}/${dn}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      ShadowMessage: { method: "update", state: { desired: { sp: value } } },
      DeltaUpdate: true,
    }),
  });
  if (!res.ok) throw new Error(`B12: desired ${dn}.sp=${value} refused: ${await res.text()}`);
}

/** Polls `cond` every 500 ms until it holds or `limitMs` passes; returns whether it held. */
async function settle(limitMs: number, cond: () => Promise<boolean>): Promise<boolean> {
  const end = Date.now() + limitMs;
  for (;;) {
    if (await cond().catch(() => false)) return true;
    if (Date.now() > end) return false;
    await sleep(500);
  }
}

interface Command {
  device: Device;
  value: number;
  at: number;
}

async function main() {
  const startedAt = new Date();
  const intro =
    `${SOAK_S} s soak (warm-up ${WARMUP_S} s) of ${SERVERS} pymodbus servers x ${UNITS} units x ${POINTS} float32; ` +
    `cut ${CUT_S} s every ${CUT_EVERY_S} s, PLC restart every ${RESTART_EVERY_S} s, desired every ${DESIRED_EVERY_S} s; ` +
    `heap cap ${HEAP_MB || "none"}`;
  await onSite(
    NAME,
    BUDGET_MS,
    intro,
    async ({ pin, logDir, site, ports, mqttUrl, cloudUrl, cleanup }) => {
      const cloud = { url: cloudUrl };
      const uplink = new TcpProxy({ targetPort: Number(new URL(mqttUrl).port) });
      const { port: uplinkPort } = await uplink.start();
      cleanup.push(() => uplink.stop());

      // --- the gateway ---------------------------------------------------------------------------
      const devices = siteDevices();
      const dir = mkdtempSync(join(tmpdir(), `${NAME}-gw-`));
      cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
      mkdirSync(join(dir, "mappings"));
      const apiPort = await freePort();
      writeFileSync(
        join(dir, "gateway.yaml"),
        JSON.stringify({
          version: 1,
          gateway: {
            name: "b12",
            dataDir: "./data",
            ...(HEAP_MB > 0 && { memory: { heapMb: HEAP_MB } }),
          },
          log: { level: process.env["BENCH_LOG_LEVEL"] ?? "warn" },
          sources: Object.fromEntries(
            ports.map((port, s) => [
              plcName(s),
              { protocol: "modbus-tcp", host: "127.0.0.1", port },
            ]),
          ),
          cloud: {
            url: `mqtt://127.0.0.1:${uplinkPort}`,
            productKey: "a1B12Gw",
            deviceName: "b12-gw",
          },
          api: { listen: `127.0.0.1:${apiPort}` },
          mappings: "./mappings",
        }),
      );
      writeSiteMappings(
        dir,
        devices,
        {
          ...sitePoints(),
          sp: { table: "holding", offset: SET_POINT, type: "uint16", writable: true },
        },
        "1s",
      );
      const log = join(logDir, "gateway.log");
      const nodeArgs = [
        ...(HEAP_MB > 0
          ? [`--max-old-space-size=${HEAP_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`]
          : []),
        CLI_MAIN,
        "run",
        "-c",
        join(dir, "gateway.yaml"),
      ];
      const gateway = track(
        spawn(process.execPath, nodeArgs, { stdio: ["ignore", "ignore", "pipe"] }),
      );
      gateway.stderr?.pipe(createWriteStream(log));
      cleanup.push(() => stopChild(gateway));
      const alive = () => gateway.exitCode === null && gateway.signalCode === null;
      const t0 = Date.now();
      const upAt = await settle(60_000, async () => {
        for (const d of devices) {
          if ((await cloudState(cloud.url, deviceName(d.s, d.u))) === undefined) return false;
        }
        return true;
      });
      if (!upAt) throw new Error(`B12: not every device reached the cloud in 60 s; see ${log}`);
      console.log(
        `  every shadow in the cloud ${((Date.now() - t0) / 1000).toFixed(1)} s after start`,
      );

      // --- the soak ------------------------------------------------------------------------------
      const rss: Array<{ t: number; y: number }> = [];
      /** V8's used heap at each scrape: a rising RSS over a flat heap is native memory. */
      const heap: Array<{ t: number; y: number }> = [];
      const p99s: number[] = [];
      const warmP99s: number[] = [];
      let loopMax = 0;
      const commands: Command[] = [];
      const faults = { cuts: 0, restarts: 0, desiredRefused: 0 };
      const soakStart = Date.now();
      const soakEnd = soakStart + SOAK_S * 1000;
      const elapsedS = () => (Date.now() - soakStart) / 1000;
      await scrape(apiPort); // resets the loop-delay histogram
      const sampler = setInterval(() => {
        if (!alive()) return;
        rss.push({ t: elapsedS(), y: statusKb(gateway.pid!, "VmRSS") / 1024 });
        scrape(apiPort)
          .then((m) => {
            const p99 = m["shadowgate_event_loop_delay_p99_seconds"];
            const max = m["shadowgate_event_loop_delay_max_seconds"];
            const used = m["shadowgate_nodejs_heap_used_bytes"];
            if (used !== undefined) heap.push({ t: elapsedS(), y: used / 2 ** 20 });
            if (p99 !== undefined) (elapsedS() >= WARMUP_S ? p99s : warmP99s).push(p99 * 1000);
            if (max !== undefined) loopMax = Math.max(loopMax, max * 1000);
          })
          .catch(() => undefined);
      }, SAMPLE_MS);
      const cutter = setInterval(() => {
        faults.cuts++;
        uplink.cut(CUT_S * 1000);
      }, CUT_EVERY_S * 1000);
      let nextServer = 0;
      const restarter = setInterval(() => {
        faults.restarts++;
        site.send(`restart ${nextServer} ${RESTART_DOWN_S}`);
        nextServer = (nextServer + 1) % SERVERS;
      }, RESTART_EVERY_S * 1000);
      const issuer = setInterval(() => {
        const device = devices[commands.length % devices.length];
        if (device === undefined) return;
        const c: Command = { device, value: commands.length + 1, at: elapsedS() };
        commands.push(c);
        setDesired(cloud.url, deviceName(device.s, device.u), c.value).catch(() => {
          faults.desiredRefused++;
        });
      }, DESIRED_EVERY_S * 1000);
      let lastReport = Date.now();
      while (Date.now() < soakEnd && alive()) {
        await sleep(Math.min(1000, soakEnd - Date.now()));
        if (Date.now() - lastReport >= 60_000) {
          lastReport = Date.now();
          const last = rss.at(-1);
          console.log(
            `  ${Math.round(elapsedS())} s: RSS ${last ? fmtMb(last.y) : "-"}, ${commands.length} commands, ` +
              `${faults.cuts} cuts, ${faults.restarts} restarts`,
          );
        }
      }
      clearInterval(cutter);
      clearInterval(restarter);
      clearInterval(issuer);
      clearInterval(sampler);
      uplink.restore();
      const survived = alive();
      const steady = rss.filter((s) => s.t >= WARMUP_S);
      const { slope, twoSigma } = slopePerHour(steady);
      const heapSlope = slopePerHour(heap.filter((s) => s.t >= WARMUP_S));
      const mqttReconnects = survived
        ? await counterSum(apiPort, "shadowgate_mqtt_reconnects_total").catch(() => NaN)
        : NaN;
      const plcReconnects = survived
        ? await counterSum(apiPort, "shadowgate_source_reconnects_total").catch(() => NaN)
        : NaN;

      // --- the drain -----------------------------------------------------------------------------
      const drainStart = Date.now();
      const lastOf = new Map<string, Command>();
      for (const c of commands) lastOf.set(deviceName(c.device.s, c.device.u), c);
      const desiredCleared = await settle(DRAIN_MS, async () => {
        for (const dn of lastOf.keys()) {
          if (Object.keys((await cloudState(cloud.url, dn, "desired")) ?? {}).length > 0)
            return false;
        }
        return true;
      });
      const frozenAt = performance.now();
      const frozen = await site.freeze();
      const fresh = await freshness(cloud.url, devices, frozen, frozenAt);
      const outboxEmpty =
        survived &&
        (await settle(Math.max(10_000, DRAIN_MS - (Date.now() - drainStart)), async () => {
          const m = await scrape(apiPort);
          return m["shadowgate_outbox_pending_reports"] === 0;
        }));
      const pending = survived
        ? ((await scrape(apiPort).catch((): Record<string, number> => ({})))[
            "shadowgate_outbox_pending_reports"
          ] ?? NaN)
        : NaN;
      site.send("writes");
      const writesLine = await site.nextLine(10_000, "writes");
      if (!writesLine.startsWith("writes "))
        throw new Error(`B12: site said ${writesLine.slice(0, 80)}`);
      const writes = JSON.parse(writesLine.slice("writes ".length)) as Record<string, number[]>;
      let lost = 0;
      let doubled = 0;
      for (const c of commands) {
        const n = (writes[`${c.device.s}.${c.device.u}`] ?? []).filter((v) => v === c.value).length;
        if (n === 0) lost++;
        else if (n > 1) doubled++;
      }
      const internal = readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l.includes('"SG_INTERNAL"')).length;
      const lostReports = (Number.isFinite(pending) ? pending : 0) + fresh.stale.length;

      // --- results -------------------------------------------------------------------------------
      const rssFirst = steady[0]?.y ?? NaN;
      const rssLast = steady.at(-1)?.y ?? NaN;
      const rssMax = rss.length > 0 ? Math.max(...rss.map((s) => s.y)) : NaN;
      const p99Worst = p99s.length > 0 ? Math.max(...p99s) : NaN;
      const p99Median = median(p99s);
      console.log(
        `  RSS after warm-up ${fmtMb(rssFirst)} -> ${fmtMb(rssLast)} (max ${fmtMb(rssMax)}), slope ${slope.toFixed(2)} +- ${twoSigma.toFixed(2)} MB/h; ` +
          `heap slope ${heapSlope.slope.toFixed(2)} +- ${heapSlope.twoSigma.toFixed(2)} MB/h; loop p99 worst ${fmtOptMs(p99Worst)} median ${fmtOptMs(p99Median)} max ${fmtOptMs(loopMax)}; ` +
          `reconnects MQTT ${mqttReconnects} PLC ${plcReconnects}; ${commands.length} commands: ${lost} lost, ${doubled} doubled; ` +
          `desired cleared ${desiredCleared}; shadows fresh ${fmtOptMs(fresh.allMs)}${fresh.stale.length > 0 ? ` (${fresh.stale.length} stale: ${fresh.mismatch})` : ""}; ` +
          `outbox pending ${pending}; SG_INTERNAL ${internal}; ${survived ? "survived" : "DIED"}`,
      );
      const checks: Check[] = [
        {
          name: "the gateway survived the soak",
          pass: survived,
          detail: survived ? "yes" : "died",
        },
        {
          name: `RSS growth after warm-up < ${TARGET_SLOPE_MB_H} MB/h`,
          pass: slope < TARGET_SLOPE_MB_H,
          detail: `${slope.toFixed(2)} +- ${twoSigma.toFixed(2)} MB/h (2 sigma) over ${steady.length} samples, ${fmtMb(rssFirst)} -> ${fmtMb(rssLast)}`,
        },
        {
          name: "0 lost reports (none left unconfirmed, every shadow equal to its PLC)",
          pass: lostReports === 0 && outboxEmpty,
          detail: `${pending} pending, ${fresh.stale.length} stale shadows`,
        },
        {
          name: "every command executed exactly once",
          pass: lost === 0 && doubled === 0 && desiredCleared,
          detail: `${commands.length} commands: ${lost} lost, ${doubled} doubled`,
        },
        {
          name: "no escaped exception or unhandled rejection",
          pass: internal === 0,
          detail: `${internal} SG_INTERNAL`,
        },
      ];
      printChecks(checks);
      const pass = checks.every((c) => c.pass);
      const caseName = `${SERVERS * UNITS} PLCs x ${POINTS} points @ 1 s, ${Math.round(SOAK_S / 60)} min`;
      const row = (
        metric: string,
        ours: string,
        target = "-",
        ok: ResultRow["pass"] = "-",
      ): ResultRow => ({
        bench: "B12",
        case: caseName,
        metric,
        ours,
        baseline: "-",
        ratio: "-",
        target,
        pass: ok,
      });
      const rows: ResultRow[] = [
        row(
          "RSS slope after warm-up (first -> last, max)",
          `${slope.toFixed(2)} +- ${twoSigma.toFixed(2)} MB/h (${fmtMb(rssFirst)} -> ${fmtMb(rssLast)}, ${fmtMb(rssMax)})`,
          `< ${TARGET_SLOPE_MB_H} MB/h`,
          yesNo(slope < TARGET_SLOPE_MB_H),
        ),
        row(
          "event-loop p99, worst / median 5 s after warm-up",
          `${fmtOptMs(p99Worst)} / ${fmtOptMs(p99Median)}`,
        ),
        row(
          `reconnects MQTT / PLC (${faults.cuts} cuts, ${faults.restarts} restarts, ${site.restarted} back)`,
          `${mqttReconnects} / ${plcReconnects}`,
        ),
        row(
          "lost reports; commands lost / doubled",
          `${lostReports}; ${lost} / ${doubled} of ${commands.length}`,
          "0; 0 / 0",
          yesNo(lostReports === 0 && outboxEmpty && lost === 0 && doubled === 0),
        ),
      ];
      finishBench({
        id: "B12",
        name: NAME,
        title: "soak",
        pass,
        summary:
          `B12 soak ${Math.round(SOAK_S / 60)} min: RSS slope ${slope.toFixed(2)} +- ${twoSigma.toFixed(2)} MB/h (${fmtMb(rssFirst)} -> ${fmtMb(rssLast)}), ` +
          `loop p99 ${fmtOptMs(p99Worst)}, reconnects ${mqttReconnects}/${plcReconnects}, ` +
          `${lostReports} lost reports, commands ${lost} lost ${doubled} doubled of ${commands.length}, ` +
          `${internal} SG_INTERNAL: ${pass ? "PASS" : "FAIL"}`,
        startedAt,
        env: envInfo(["mqtt", "better-sqlite3"], pin),
        rows,
        figures: {
          soakS: SOAK_S,
          slopeMbPerHour: slope,
          slopeTwoSigma: twoSigma,
          heapSlope,
          heap,
          warmupS: WARMUP_S,
          heapMb: HEAP_MB,
          faults,
          rss,
          p99s,
          warmP99s,
          loopMaxMs: loopMax,
          freshness: fresh,
          commands: commands.length,
          checks,
        },
      });
      return pass;
    },
  );
}

runMain(NAME, main);
