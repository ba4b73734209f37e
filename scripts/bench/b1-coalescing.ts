/**
 * B1 coalescing (docs/performance.md): requests per scan and scan time for 1,000 contiguous and
 * 1,000 gapped uint16 points on each of 10 simulated Modbus TCP slaves, through our real driver
 * (ModbusDriver with the gateway config schema's defaults: maxGap 8, 125 registers per request),
 * against a naive modbus-serial poller doing one FC3 request per point, in the same run.
 *
 * Topology: 10 instances of our simulator, each its own Modbus TCP server on its own loopback
 * port hosting unit 1, each polled by its own driver (one source per slave, as 10 PLCs would be
 * configured) and all 10 scanned in parallel, as the gateway polls its devices. One simulator
 * hosting unit ids 1..10 would instead be a Modbus TCP gateway with 10 RS-485 slaves behind one
 * connection, where every request waits for the one before: a different thing to measure.
 *
 * Requests are counted by the simulators (their own counters), not by the driver. The
 * simulators run in a child process (lib/sim-host.ts), pinned to another core when both cores
 * look free, so scan times do not include the simulators' work on our event loop.
 *
 * Layouts (0-based holding register addresses, every point a uint16):
 * - contiguous: registers 0..999 on every slave; lower bound ceil(1000/125) = 8 requests/slave.
 * - gapped: each point followed by 0..20 unused registers, uniform, from a seeded PRNG
 *   (mulberry32, seed 0xB1 + slave index), so each slave has its own layout, the same on
 *   every run. Reference: the greedy "fill gaps up to 8 registers, cap 125" request count.
 *
 * Targets: contiguous == 8 requests on every slave; gapped <= the reference on every slave;
 * >= 50x fewer requests than naive on the contiguous layout. The gapped layout has one point
 * every ~11 registers, so no planner can reach 50x there (even reading through every gap gives
 * ~11 points per 125-register request); its ratio and that ceiling are reported, not gated.
 * Every point must also read good with the value the simulator holds, and every socket must
 * be closed at the end. Exit 0 when all hold, 1 when one fails, 2 on a crash or timeout.
 *
 * Environment: BENCH_REPEATS (default 5) timed scans after the first, BENCH_PIN (see
 * lib/common.ts).
 */
import { performance } from "node:perf_hooks";
import { clearTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import Modbus from "modbus-serial";
import {
  boundedInt,
  envInfo,
  fmtMs,
  fmtRatio,
  median,
  pinCores,
  runMain,
  startWatchdog,
  finishBench,
  type ResultRow,
  printChecks,
  type Check,
} from "./lib/common.js";
import { ModbusDriver, silentLogger } from "./lib/dist.js";
import { HostClient } from "./lib/host-client.js";
import {
  MAX_REGISTERS_PER_READ,
  contiguousLayout,
  fillGapsRequests,
  gappedLayout,
  registerValue,
  span,
} from "./lib/modbus-layout.js";
import { modbusDriverOptions, modbusSourceConfig } from "./lib/modbus-options.js";
import type { SlaveStats } from "./lib/sim-host.js";

const NAME = "b1-coalescing";
const SLAVES = 10;
const POINTS = 1000;
const UNIT_ID = 1;
const HOST = "127.0.0.1";
const GAP_MAX = 20;
const SEED = 0xb1;
const REFERENCE_MAX_GAP = 8;
const NAIVE_TIMEOUT_MS = 1000;
const REPEATS = boundedInt(process.env["BENCH_REPEATS"], 5, 0, 50);
/** The whole benchmark, sockets and all; a stuck one exits 2 instead of hanging `npm run bench`. */
const BUDGET_MS = 180_000;

/** One timed scan of all slaves. */
interface Scan {
  /** wall time from the first request to the last answer */
  ms: number;
  /** requests each slave's simulator answered during the scan */
  served: number[];
  /** frames the simulators received during the scan */
  frames: number;
  unanswered: number;
  exceptions: number;
  /** points that did not read good */
  bad: number;
  /** points that read a value other than the simulator's */
  wrong: number;
  /** the driver's own request counter, per slave */
  ownCount: number[] | undefined;
}

/** What the simulators served, per slave (lib/sim-host.ts "stats"). */
async function slaveStats(host: HostClient): Promise<SlaveStats[]> {
  return (await host.call("stats")) as SlaveStats[];
}

async function timedScan(
  host: HostClient,
  scanOnce: () => Promise<{ bad: number; wrong: number; ownCount?: number[] }>,
): Promise<Scan> {
  await host.call("reset");
  const t0 = performance.now();
  const { bad, wrong, ownCount } = await scanOnce();
  const ms = performance.now() - t0;
  const stats = await slaveStats(host);
  return {
    ms,
    served: stats.map((s) => s.served),
    frames: stats.reduce((a, s) => a + s.framesReceived, 0),
    unanswered: stats.reduce((a, s) => a + s.unanswered, 0),
    exceptions: stats.reduce((a, s) => a + s.exceptions, 0),
    bad,
    wrong,
    ownCount,
  };
}

/** A client under test, connected: `scan` reads every point of every slave once. */
interface Poller {
  scan: () => Promise<{ bad: number; wrong: number; ownCount?: number[] }>;
  close: () => Promise<void>;
}

/**
 * Ours: one driver per slave; one scan = one driver.read() per slave with all its points, the
 * slaves in parallel, as the gateway polls its devices.
 */
async function openOurs(ports: number[], layouts: number[][]): Promise<Poller> {
  const log = silentLogger();
  const drivers = ports.map(
    (port, i) =>
      new ModbusDriver(
        `slave${i + 1}`,
        // The gateway config schema fills in every default, maxGap 8 included.
        modbusDriverOptions(modbusSourceConfig({ protocol: "modbus-tcp", host: HOST, port })),
        log.child({ component: "south.modbus", source: `slave${i + 1}` }),
      ),
  );
  const close = async () => {
    await Promise.all(drivers.map((d) => d.stop()));
  };
  try {
    await Promise.all(drivers.map((d) => d.start()));
    const down = drivers.filter((d) => d.health().state !== "online");
    if (down.length > 0) throw new Error(`${down.length} driver(s) could not connect`);
  } catch (err) {
    await close();
    throw err;
  }
  const requests = layouts.map((addresses) => ({
    unitId: UNIT_ID,
    points: addresses.map((address) => ({
      key: `hr${address}`,
      table: "holding" as const,
      address,
      count: 1,
    })),
  }));
  const scan = async () => {
    const before = drivers.map((d) => d.health().requests);
    const results = await Promise.all(drivers.map((d, i) => d.read(requests[i] ?? fail())));
    let bad = 0;
    let wrong = 0;
    results.forEach((samples, slave) => {
      const points = requests[slave]?.points ?? fail();
      samples.forEach((sample, k) => {
        const point = points[k] ?? fail();
        if (sample.key !== point.key || sample.quality.status !== "good") bad++;
        else if (sample.data?.[0] !== registerValue(slave, point.address)) wrong++;
      });
    });
    const ownCount = drivers.map((d, i) => d.health().requests - (before[i] ?? 0));
    return { bad, wrong, ownCount };
  };
  return { scan, close };
}

/**
 * The baseline: one modbus-serial client per slave, one FC3 request per point, awaited one after
 * another on each slave, the slaves in parallel.
 */
async function openNaive(ports: number[], layouts: number[][]): Promise<Poller> {
  const clients: InstanceType<typeof Modbus.default>[] = [];
  const close = async () => {
    await Promise.all(
      clients.map((c) => new Promise((resolve) => (c.isOpen ? c.close(resolve) : resolve(null)))),
    );
  };
  try {
    for (const port of ports) {
      const c = new Modbus.default();
      clients.push(c);
      c.setTimeout(NAIVE_TIMEOUT_MS);
      await c.connectTCP(HOST, { port });
      c.setID(UNIT_ID);
    }
  } catch (err) {
    await close();
    throw err;
  }
  const scan = async () => {
    const wrongs = await Promise.all(
      clients.map(async (c, slave) => {
        let wrong = 0;
        for (const address of layouts[slave] ?? fail()) {
          const { data } = await c.readHoldingRegisters(address, 1);
          if (data[0] !== registerValue(slave, address)) wrong++;
        }
        return wrong;
      }),
    );
    return { bad: 0, wrong: wrongs.reduce((a, b) => a + b, 0) };
  };
  return { scan, close };
}

/**
 * The first (cold) scan of each, then REPEATS more, ours and naive taking turns so that both
 * see the same machine: on a shared 2-core box the load changes within seconds.
 */
async function runScenario(
  host: HostClient,
  ports: number[],
  layouts: number[][],
): Promise<{ ours: Scan[]; naive: Scan[] }> {
  const ours = await openOurs(ports, layouts);
  try {
    const naive = await openNaive(ports, layouts);
    try {
      const scans: { ours: Scan[]; naive: Scan[] } = { ours: [], naive: [] };
      for (let r = 0; r <= REPEATS; r++) {
        scans.ours.push(await timedScan(host, ours.scan));
        scans.naive.push(await timedScan(host, naive.scan));
      }
      return scans;
    } finally {
      await naive.close();
    }
  } finally {
    await ours.close();
  }
}

function fail(): never {
  throw new Error("b1: index out of range (a bug in the benchmark)");
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

function times(scans: readonly Scan[]): { cold: number; median: number } {
  const [first, ...rest] = scans;
  const cold = first?.ms ?? NaN;
  return { cold, median: rest.length > 0 ? median(rest.map((s) => s.ms)) : cold };
}

/** @returns every scan served the same number of requests on every slave */
function stable(scans: readonly Scan[]): boolean {
  const first = scans[0]?.served.join(",");
  return scans.every((s) => s.served.join(",") === first);
}

async function main() {
  const startedAt = new Date();
  const pin = pinCores();
  const host = HostClient.spawn("sim-host", pin);
  const watchdog = startWatchdog(NAME, BUDGET_MS, () => host.kill());

  try {
    const ports = (await host.call("start", { slaves: SLAVES, unitId: UNIT_ID })) as number[];
    const lowerBound = Math.ceil(POINTS / MAX_REGISTERS_PER_READ);
    const scenarios = [
      {
        name: "contiguous",
        layouts: Array.from({ length: SLAVES }, () => contiguousLayout(POINTS)),
      },
      {
        name: "gapped",
        layouts: Array.from({ length: SLAVES }, (_, i) => gappedLayout(POINTS, SEED + i, GAP_MAX)),
      },
    ];

    const rows: ResultRow[] = [];
    const figures: Record<string, unknown> = {
      slaves: SLAVES,
      pointsPerSlave: POINTS,
      topology: "10 simulator instances, one port and one driver each, unit id 1, in parallel",
      gapPattern: `uniform 0..${GAP_MAX} unused registers after each point, mulberry32 seed ${SEED} + slave index`,
      driverConfig: modbusSourceConfig({ protocol: "modbus-tcp", host: HOST, port: 502 }),
      repeats: REPEATS,
      scenarios: {},
    };
    const checks: Check[] = [];
    const summaryParts = [];

    for (const { name, layouts } of scenarios) {
      const { ours, naive } = await runScenario(host, ports, layouts);
      const cold = ours[0] ?? fail();
      const naiveCold = naive[0] ?? fail();
      const oursTotal = sum(cold.served);
      const naiveTotal = sum(naiveCold.served);
      const ratio = naiveTotal / oursTotal;
      const t = times(ours);
      const tn = times(naive);
      const reference = layouts.map((l) => fillGapsRequests(l, REFERENCE_MAX_GAP));
      const fillAll = layouts.map((l) => fillGapsRequests(l, MAX_REGISTERS_PER_READ));
      const ceilingRatio = naiveTotal / sum(fillAll);

      const clean = [...ours, ...naive].every(
        (s) => s.bad === 0 && s.wrong === 0 && s.unanswered === 0 && s.exceptions === 0,
      );
      checks.push({
        name: `${name}: every point good with the simulator's value, no exception, no loss`,
        pass: clean,
        detail: [...ours, ...naive].map((s) => `${s.bad}/${s.wrong}/${s.unanswered}`).join(" "),
      });
      checks.push({
        name: `${name}: naive served one request per point`,
        pass: naive.every((s) => s.served.every((n, i) => n === layouts[i]?.length)),
        detail: naiveCold.served.join(","),
      });
      checks.push({
        name: `${name}: driver's own request count equals the simulators' count`,
        pass: ours.every((s) => s.ownCount?.join(",") === s.served.join(",")),
        detail: `${cold.ownCount?.join(",")} vs ${cold.served.join(",")}`,
      });
      checks.push({
        name: `${name}: same request count on every scan`,
        pass: stable(ours),
        detail: ours.map((s) => sum(s.served)).join(","),
      });

      const fig: Record<string, unknown> = {
        requestsPerSlave: cold.served,
        requestsTotal: oursTotal,
        naiveRequestsTotal: naiveTotal,
        ratio,
        scanMs: { ours: ours.map((s) => s.ms), naive: naive.map((s) => s.ms) },
        scanMsCold: { ours: t.cold, naive: tn.cold },
        scanMsMedian: { ours: t.median, naive: tn.median },
        registersSpannedPerSlave: layouts.map(span),
      };
      let target;
      let pass;
      if (name === "contiguous") {
        const exact = ours.every((s) => s.served.every((n) => n === lowerBound));
        pass = exact && ratio >= 50;
        target = `${lowerBound}/slave (= ceil(${POINTS}/${MAX_REGISTERS_PER_READ})); >= 50x`;
        checks.push({
          name: `contiguous: exactly ${lowerBound} requests on every slave`,
          pass: exact,
          detail: cold.served.join(","),
        });
        checks.push({
          name: "contiguous: >= 50x fewer requests than naive",
          pass: ratio >= 50,
          detail: fmtRatio(ratio),
        });
        fig["lowerBoundPerSlave"] = lowerBound;
      } else {
        const within = ours.every((s) => s.served.every((n, i) => n <= (reference[i] ?? -1)));
        pass = within;
        target = `<= ${sum(reference)} (fill gaps <= ${REFERENCE_MAX_GAP}); 50x n/a: ceiling ${fmtRatio(ceilingRatio)}`;
        checks.push({
          name: `gapped: no more requests than fill-gaps-up-to-${REFERENCE_MAX_GAP} on every slave`,
          pass: within,
          detail: `${cold.served.join(",")} vs ${reference.join(",")}`,
        });
        fig["fillGapsReferencePerSlave"] = reference;
        fig["fillGapsReferenceTotal"] = sum(reference);
        fig["fillAllGapsPerSlave"] = fillAll;
        fig["ceilingRatio"] = ceilingRatio;
      }
      (figures["scenarios"] as Record<string, unknown>)[name] = fig;

      rows.push({
        bench: "B1",
        case: name,
        metric: `requests/scan, ${SLAVES} slaves`,
        ours: String(oursTotal),
        baseline: String(naiveTotal),
        ratio: fmtRatio(ratio),
        target,
        pass: pass ? "yes" : "no",
      });
      rows.push({
        bench: "B1",
        case: name,
        metric: `scan time, cold / median of ${REPEATS}`,
        ours: `${fmtMs(t.cold)} / ${fmtMs(t.median)}`,
        baseline: `${fmtMs(tn.cold)} / ${fmtMs(tn.median)}`,
        ratio: fmtRatio(tn.median / t.median),
        target: "-",
        pass: "-",
      });
      const refText = name === "gapped" ? ` (ref ${sum(reference)})` : "";
      summaryParts.push(
        `${name} ${oursTotal} req${refText} vs naive ${naiveTotal} (${fmtRatio(ratio)}), ` +
          `${fmtMs(t.median)} vs ${fmtMs(tn.median)}`,
      );
      console.log(
        `  ${name.padEnd(10)} requests/slave ${cold.served.join(",")}` +
          (name === "gapped"
            ? `; fill-gaps-${REFERENCE_MAX_GAP} reference ${reference.join(",")}`
            : "") +
          `; naive ${naiveCold.served.join(",")}`,
      );
    }

    // Every socket closed: the simulators see no open connection once the clients are gone.
    let open = -1;
    for (let i = 0; i < 50 && open !== 0; i++) {
      open = sum((await slaveStats(host)).map((s) => s.openConnections));
      if (open !== 0) await sleep(20);
    }
    checks.push({
      name: "every client socket closed at the end",
      pass: open === 0,
      detail: `${open} open`,
    });
    await host.close();

    printChecks(checks);
    const pass = checks.every((c) => c.pass);
    const summary = `B1 coalescing: ${summaryParts.join("; ")}: ${pass ? "PASS" : "FAIL"}`;
    figures["checks"] = checks;
    finishBench({
      id: "B1",
      name: NAME,
      title: "coalescing",
      pass,
      summary,
      startedAt,
      env: envInfo(["modbus-serial"], pin),
      rows,
      figures,
    });
  } finally {
    clearTimeout(watchdog);
    host.kill();
  }
}

runMain(NAME, main);
