/**
 * B8 local readers and reload (issue 13).
 *
 * Readers: one simulated PLC holding a device of 500 uint16 points (registers 40001-40500),
 * polled every second by the gateway, which runs as the daemon (`shadowgate run`) in its own
 * process, and ten local applications in this process, each reading all 500 values
 * once a second for READ_SECONDS through the local API (GET /api/v1/devices/{name}/shadow),
 * each over a kept-alive connection of its own (node:http), opened before the window as the
 * baseline's are. Measured: the PLC's requests over the window, and each API read's latency,
 * the JSON parsing of the answer included.
 * Baseline, same run: the same ten applications each polling the PLC themselves, as they would
 * without a gateway: a modbus-serial client each, reading the 500 registers once a second in
 * 4 requests of 125 (the protocol's maximum). Targets: >= 90% fewer PLC requests; local read
 * p99 <= 5 ms.
 *
 * Reload: one simulated PLC behind a plant network (5 ms each way) and the local cloud service
 * behind a cellular uplink (40 ms each way), both through the fault-injecting TCP proxy; a
 * steady device polled every 100 ms and five others on the same PLC; twelve reloads in a row add a device, change another's mapping and remove the added
 * one again (the added and removed devices change the cloud identities, so the MQTT link is
 * replaced too). Each report of the steady device makes the PLC hold the next number, so every
 * poll reports. Measured: the longest time between two reports of the steady device during
 * the reloads, at the edge (the edge shadow's updates) and in the cloud (the local cloud
 * service's applied updates), and whether its sequence reached the cloud whole.
 * Target: the gap beyond the poll interval <= the poll interval (edge).
 * Baseline, same run: the same reloads applied the old way, stopping the gateway and building
 * a new one (what every reload did before; today the rebuild path of a reload that changes
 * the data folder, the history limits or the presence of a cloud section).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, get } from "node:http";
import Modbus from "modbus-serial";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  REPO_DIR,
  envInfo,
  finishBench,
  helperCommand,
  fmtLatency,
  fmtMs,
  latencyStats,
  pinCores,
  printChecks,
  runMain,
  startWatchdog,
  type Check,
  type LatencyStats,
  type PinInfo,
  type ResultRow,
} from "./lib/common.js";
import { freePort } from "../../test/helpers/ports.js";
import { until } from "../../test/helpers/until.js";
import { writeGatewayConfig } from "./lib/gateway-config.js";
import {
  ModbusTcpSimulator,
  Service,
  TcpProxy,
  loadConfig,
  silentLogger,
  startCloudService,
} from "./lib/dist.js";

const NAME = "b8-local-readers";
const CLI_MAIN = join(REPO_DIR, "dist", "cli", "main.js");
const PK = "a1Bench";
const POLL_MS = 100;
const PLANT_DELAY_MS = 5;
const UPLINK_DELAY_MS = 40;
const OTHERS = 5;
const RELOADS = 12;
/** Reports of the steady device after the last reload before a case ends. */
const SETTLE_REPORTS = 10;
const CASE_LIMIT_MS = 60_000;
const READERS = 10;
const POINTS = 500;
const READ_SECONDS = 15;
const TARGET_FEWER = 0.9;
const TARGET_READ_P99_MS = 5;
const BUDGET_MS = 4 * CASE_LIMIT_MS;

interface ReloadCase {
  /** Longest time between two reports of the steady device, at the edge. */
  edgeMaxGapMs: number;
  /** Longest time between two updates of its cloud shadow. */
  cloudMaxGapMs: number;
  reports: number;
  /** Every number of its sequence reached the cloud (the cloud's version count matches). */
  whole: boolean;
  plans: string[];
}

const mapping = (dn: string, unit: number, type = "uint16") =>
  JSON.stringify({
    version: 1,
    device: { productKey: PK, deviceName: dn },
    source: "plc",
    unitId: unit,
    pollInterval: `${POLL_MS}ms`,
    points: { value: { register: 40001, type } },
  });

async function reloadCase(rebuild: boolean): Promise<ReloadCase> {
  const units = Array.from({ length: OTHERS + 2 }, (_, i) => i + 1);
  const plc = new ModbusTcpSimulator({ units });
  const plcProxy = new TcpProxy({ targetPort: (await plc.start({ port: 0 })).port });
  const { port } = await plcProxy.start();
  plcProxy.delay = PLANT_DELAY_MS;
  const cloud = await startCloudService({ mqttPort: 0, httpPort: 0 });
  const uplink = new TcpProxy({ targetPort: Number(new URL(cloud.mqttUrl).port) });
  const uplinkPort = (await uplink.start()).port;
  uplink.delay = UPLINK_DELAY_MS;
  const dir = mkdtempSync(join(tmpdir(), "sg-b8-"));
  mkdirSync(join(dir, "mappings"));
  const configFile = join(dir, "gateway.yaml");
  const writeGateway = (maxAge: string) =>
    writeFileSync(
      configFile,
      JSON.stringify({
        version: 1,
        gateway: { name: "b8", dataDir: "./data", history: { maxAge } },
        log: { level: "warn" },
        sources: { plc: { protocol: "modbus-tcp", host: "127.0.0.1", port } },
        cloud: {
          url: `mqtt://127.0.0.1:${uplinkPort}`,
          productKey: "a1Gw",
          deviceName: "gw",
          sendWindow: "20ms",
        },
        mappings: "./mappings",
      }),
    );
  const file = (dn: string) => join(dir, "mappings", `${dn}.yaml`);
  writeGateway("7d");
  writeFileSync(file("steady"), mapping("steady", 1));
  for (let i = 0; i < OTHERS; i++) writeFileSync(file(`other-${i}`), mapping(`other-${i}`, i + 2));
  plc.unit(1).holding[0] = 1;

  const edge: number[] = [];
  const arrivals: number[] = [];
  cloud.service.on("applied", (e) => {
    if (e.deviceName === "steady") arrivals.push(performance.now());
  });
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error("B8: the generated config is invalid");
  const service = new Service(configFile, loaded.config, silentLogger());
  let latest = 0;
  // The rebuild path makes a new gateway (and edge shadow) on every reload: follow it.
  const follow = () =>
    service.current.shadow.on("update", (u) => {
      const seq = u.reported.value;
      if (u.deviceName !== "steady" || typeof seq !== "number" || seq !== latest + 1) return;
      latest = seq;
      edge.push(performance.now());
      plc.unit(1).holding[0] = seq + 1;
    });
  follow();
  await service.start();
  const plans: string[] = [];
  try {
    await until("steady reporting", () => latest >= 5, CASE_LIMIT_MS, 5);
    const from = edge.length - 1;
    const fromArrival = arrivals.length - 1;
    for (let r = 0; r < RELOADS; r++) {
      const step = r % 3;
      if (step === 0) writeFileSync(file("added"), mapping("added", OTHERS + 2));
      else if (step === 1)
        writeFileSync(file("other-0"), mapping("other-0", 2, r % 2 ? "int16" : "uint16"));
      else rmSync(file("added"));
      if (rebuild) writeGateway(r % 2 ? "7d" : "6d");
      const before = service.current;
      const outcome = await service.reload();
      if (outcome.status !== "applied")
        throw new Error(`B8: reload ${r} not applied: ${JSON.stringify(outcome)}`);
      plans.push(outcome.plan === "rebuilt" ? "rebuilt" : "in place");
      if (service.current !== before) follow();
      const at = latest;
      await until("steady reporting after the reload", () => latest >= at + 2, CASE_LIMIT_MS, 5);
    }
    const at = latest;
    await until("steady settled", () => latest >= at + SETTLE_REPORTS, CASE_LIMIT_MS, 5);
    await until(
      "the cloud has the latest",
      () => cloud.service.getShadow(PK, "steady")?.state.reported?.value === latest,
      CASE_LIMIT_MS,
      5,
    );
    const gaps = (ts: number[], start: number) =>
      ts.slice(start + 1).map((t, i) => t - (ts[start + i] ?? t));
    return {
      edgeMaxGapMs: Math.max(...gaps(edge, from)),
      cloudMaxGapMs: Math.max(...gaps(arrivals, fromArrival)),
      reports: edge.length,
      whole: edge.length === latest,
      plans,
    };
  } finally {
    await service.stop();
    await uplink.stop();
    await cloud.close();
    await plcProxy.stop();
    await plc.stop();
  }
}

interface ReadersCase {
  plcRequests: number;
  reads: number;
  latency: LatencyStats;
  /** Reads whose document held every point. */
  complete: number;
}

/** Runs `read` once a second on each of READERS loops for READ_SECONDS; each loop in step. */
async function everySecond(read: (reader: number) => Promise<void>): Promise<void> {
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: READERS }, async (_, r) => {
      // The readers are spread over the second, as independent applications would be.
      const offset = (r * 1000) / READERS;
      for (let tick = 0; tick < READ_SECONDS; tick++) {
        const due = t0 + offset + tick * 1000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        await read(r);
      }
    }),
  );
}

async function bigPlc(): Promise<{ plc: InstanceType<typeof ModbusTcpSimulator>; port: number }> {
  const plc = new ModbusTcpSimulator({ units: [1] });
  const { port } = await plc.start({ port: 0 });
  for (let i = 0; i < POINTS; i++) plc.unit(1).holding[i] = i;
  return { plc, port };
}

/** A free TCP port on 127.0.0.1, for the daemon's API (it runs in its own process). */

/**
 * The gateway as it runs on a box: `shadowgate run` in its own process (pinned to the helper
 * core when pinning is on), the readers in this one, as local applications would be.
 */
async function readersThroughApi(pin: PinInfo): Promise<ReadersCase> {
  const { plc, port } = await bigPlc();
  const apiPort = await freePort();
  const { dir } = await writeGatewayConfig("sg-b8-api", {
    sources: { plc: { protocol: "modbus-tcp", host: "127.0.0.1", port } },
    api: { listen: `127.0.0.1:${apiPort}` },
    devices: [
      {
        productKey: PK,
        deviceName: "big",
        source: "plc",
        pollInterval: "1s",
        points: Object.fromEntries(
          Array.from({ length: POINTS }, (_, i) => [`p${i}`, { register: 40001 + i }]),
        ),
      },
    ],
  });
  const configFile = join(dir, "gateway.yaml");
  const { command, args } = helperCommand(pin, [CLI_MAIN, "run", "-c", configFile]);
  const daemon = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"] });
  // Each reader an application of its own with one kept-alive connection, on node:http: on this
  // box undici's fetch adds ~1 ms a request of its own (a /healthz p50 of 2.0 ms against 1.0).
  const agents = Array.from(
    { length: READERS + 1 },
    () => new Agent({ keepAlive: true, maxSockets: 1 }),
  );
  const read = (reader: number): Promise<Record<string, unknown> | undefined> =>
    new Promise((resolve, reject) => {
      const agent = agents[reader];
      get(
        { host: "127.0.0.1", port: apiPort, path: "/api/v1/devices/big/shadow", agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            try {
              const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
                state?: { reported?: Record<string, unknown> };
              };
              resolve(res.statusCode === 200 ? body.state?.reported : undefined);
            } catch (err) {
              reject(err as Error);
            }
          });
          res.on("error", reject);
        },
      ).on("error", reject);
    });
  const latencies: number[] = [];
  let complete = 0;
  try {
    await until(
      "the daemon's first poll",
      async () => (await read(READERS).catch(() => undefined))?.p499 === POINTS - 1,
      CASE_LIMIT_MS,
      50,
    );
    // Each application connects before the window, as the baseline's Modbus clients do: one
    // on the box keeps its connection for its life, so a TCP handshake is not one of its reads.
    await Promise.all(Array.from({ length: READERS }, (_, r) => read(r)));
    const before = plc.stats().requests;
    await everySecond(async (r) => {
      const t = performance.now();
      const reported = await read(r);
      latencies.push(performance.now() - t);
      if (Object.keys(reported ?? {}).length === POINTS) complete++;
    });
    return {
      plcRequests: plc.stats().requests - before,
      reads: latencies.length,
      latency: latencyStats(latencies),
      complete,
    };
  } finally {
    for (const agent of agents) agent.destroy();
    const exited = once(daemon, "exit");
    daemon.kill("SIGTERM");
    await exited;
    await plc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function readersOnThePlc(): Promise<ReadersCase> {
  const { plc, port } = await bigPlc();
  const clients = await Promise.all(
    Array.from({ length: READERS }, async () => {
      const c = new Modbus.default();
      await c.connectTCP("127.0.0.1", { port });
      c.setID(1);
      c.setTimeout(2000);
      return c;
    }),
  );
  const latencies: number[] = [];
  let complete = 0;
  try {
    const before = plc.stats().requests;
    await everySecond(async (r) => {
      const c = clients[r];
      if (!c) return;
      const t = performance.now();
      let values = 0;
      for (let at = 0; at < POINTS; at += 125) {
        values += (await c.readHoldingRegisters(at, Math.min(125, POINTS - at))).data.length;
      }
      latencies.push(performance.now() - t);
      if (values === POINTS) complete++;
    });
    return {
      plcRequests: plc.stats().requests - before,
      reads: latencies.length,
      latency: latencyStats(latencies),
      complete,
    };
  } finally {
    for (const c of clients) await new Promise<void>((resolve) => c.close(() => resolve()));
    await plc.stop();
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const watchdog = startWatchdog(NAME, BUDGET_MS);
  const pin = pinCores();
  try {
    console.log(
      `B8 readers: ${READERS} local readers of ${POINTS} points at 1 Hz for ${READ_SECONDS} s`,
    );
    const api = await readersThroughApi(pin);
    console.log(
      `  through the API: ${api.plcRequests} PLC requests, read ${fmtLatency(api.latency)} (p50/p99/max), ${api.complete}/${api.reads} complete`,
    );
    const direct = await readersOnThePlc();
    console.log(
      `  each on the PLC: ${direct.plcRequests} PLC requests, read ${fmtLatency(direct.latency)}, ${direct.complete}/${direct.reads} complete`,
    );
    console.log(
      `B8 reload: a device polled every ${POLL_MS} ms while ${RELOADS} reloads change the others`,
    );
    const ours = await reloadCase(false);
    console.log(
      `  in place: longest gap ${fmtMs(ours.edgeMaxGapMs)} at the edge, ${fmtMs(ours.cloudMaxGapMs)} in the cloud (${ours.plans.filter((p) => p === "in place").length} in place)`,
    );
    const base = await reloadCase(true);
    console.log(
      `  rebuilt: longest gap ${fmtMs(base.edgeMaxGapMs)} at the edge, ${fmtMs(base.cloudMaxGapMs)} in the cloud (${base.plans.filter((p) => p === "rebuilt").length} rebuilt)`,
    );
    const fewer = 1 - api.plcRequests / direct.plcRequests;
    const checks: Check[] = [
      {
        name: `>= ${TARGET_FEWER * 100}% fewer PLC requests than readers polling the PLC`,
        pass: fewer >= TARGET_FEWER,
        detail: `${(fewer * 100).toFixed(1)}% fewer: ${api.plcRequests} vs ${direct.plcRequests}`,
      },
      {
        name: `local read p99 <= ${TARGET_READ_P99_MS} ms`,
        pass: api.latency.p99 <= TARGET_READ_P99_MS,
        detail: fmtMs(api.latency.p99),
      },
      {
        name: "every read held every point",
        pass: api.complete === api.reads && api.reads === READERS * READ_SECONDS,
        detail: `${api.complete}/${api.reads}`,
      },
      {
        name: `reload gap beyond the poll interval <= ${POLL_MS} ms (edge)`,
        pass: ours.edgeMaxGapMs - POLL_MS <= POLL_MS,
        detail: `longest ${fmtMs(ours.edgeMaxGapMs)}`,
      },
      {
        name: "every reload applied in place",
        pass: ours.plans.every((p) => p === "in place"),
        detail: ours.plans.join(", "),
      },
      {
        name: "the steady device's sequence unbroken",
        pass: ours.whole,
        detail: `${ours.reports} reports`,
      },
    ];
    printChecks(checks);
    const pass = checks.every((c) => c.pass);
    const row = (
      metric: string,
      o: number,
      b: number,
      target: string,
      ok: ResultRow["pass"],
    ): ResultRow => ({
      bench: "B8",
      case: `reload x${RELOADS}, ${POLL_MS} ms device`,
      metric,
      ours: fmtMs(o),
      baseline: fmtMs(b),
      ratio: `${(b / o).toFixed(1)}x`,
      target,
      pass: ok,
    });
    const readers = `${READERS} readers x ${POINTS} points, 1 Hz`;
    const rows: ResultRow[] = [
      {
        bench: "B8",
        case: readers,
        metric: `PLC requests in ${READ_SECONDS} s`,
        ours: String(api.plcRequests),
        baseline: String(direct.plcRequests),
        ratio: `${(direct.plcRequests / api.plcRequests).toFixed(1)}x`,
        target: `>= ${TARGET_FEWER * 100}% fewer`,
        pass: checks[0]?.pass ? "yes" : "no",
      },
      {
        bench: "B8",
        case: readers,
        metric: "read p50 / p99 / max",
        ours: fmtLatency(api.latency),
        baseline: fmtLatency(direct.latency),
        ratio: `${(direct.latency.p99 / api.latency.p99).toFixed(1)}x`,
        target: `p99 <= ${TARGET_READ_P99_MS} ms`,
        pass: checks[1]?.pass ? "yes" : "no",
      },
      row(
        "longest report gap, edge",
        ours.edgeMaxGapMs,
        base.edgeMaxGapMs,
        `<= ${2 * POLL_MS} ms`,
        checks[3]?.pass ? "yes" : "no",
      ),
      row("longest report gap, cloud", ours.cloudMaxGapMs, base.cloudMaxGapMs, "-", "-"),
    ];
    finishBench({
      id: "B8",
      name: NAME,
      title: "local readers and reload",
      pass,
      summary:
        `B8 local readers: ${(fewer * 100).toFixed(1)}% fewer PLC requests, read p99 ` +
        `${fmtMs(api.latency.p99)}; reload: longest report gap ${fmtMs(ours.edgeMaxGapMs)} at the edge and ` +
        `${fmtMs(ours.cloudMaxGapMs)} in the cloud over ${RELOADS} reloads (rebuilt: ` +
        `${fmtMs(base.edgeMaxGapMs)}, ${fmtMs(base.cloudMaxGapMs)}): ${pass ? "PASS" : "FAIL"}`,
      startedAt,
      env: envInfo(["mqtt", "aedes", "fastify", "modbus-serial"], pin),
      rows,
      figures: {
        readers: { readers: READERS, points: POINTS, seconds: READ_SECONDS, api, direct },
        reload: { pollMs: POLL_MS, reloads: RELOADS, ours, rebuilt: base },
        checks,
      },
    });
  } finally {
    clearTimeout(watchdog);
  }
}

runMain(NAME, main);
