/**
 * B8 local readers and reload (issue 13).
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
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  envInfo,
  finishBench,
  fmtMs,
  pinCores,
  printChecks,
  runMain,
  startWatchdog,
  type Check,
  type ResultRow,
} from "./lib/common.js";
import { until } from "../../test/helpers/until.js";
import {
  ModbusTcpSimulator,
  Service,
  TcpProxy,
  loadConfig,
  silentLogger,
  startCloudService,
} from "./lib/dist.js";

const NAME = "b8-local-readers";
const PK = "a1Bench";
const POLL_MS = 100;
const PLANT_DELAY_MS = 5;
const UPLINK_DELAY_MS = 40;
const OTHERS = 5;
const RELOADS = 12;
/** Reports of the steady device after the last reload before a case ends. */
const SETTLE_REPORTS = 10;
const CASE_LIMIT_MS = 60_000;
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
      if (!outcome.applied)
        throw new Error(`B8: reload ${r} refused: ${outcome.problems.join("; ")}`);
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

async function main(): Promise<void> {
  const startedAt = new Date();
  const watchdog = startWatchdog(NAME, BUDGET_MS);
  const pin = pinCores();
  try {
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
    const checks: Check[] = [
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
    const rows: ResultRow[] = [
      row(
        "longest report gap, edge",
        ours.edgeMaxGapMs,
        base.edgeMaxGapMs,
        `<= ${2 * POLL_MS} ms`,
        checks[0]?.pass ? "yes" : "no",
      ),
      row("longest report gap, cloud", ours.cloudMaxGapMs, base.cloudMaxGapMs, "-", "-"),
    ];
    finishBench({
      id: "B8",
      name: NAME,
      title: "local readers and reload",
      pass,
      summary:
        `B8 reload: longest report gap ${fmtMs(ours.edgeMaxGapMs)} at the edge and ` +
        `${fmtMs(ours.cloudMaxGapMs)} in the cloud over ${RELOADS} reloads (rebuilt: ` +
        `${fmtMs(base.edgeMaxGapMs)}, ${fmtMs(base.cloudMaxGapMs)}): ${pass ? "PASS" : "FAIL"}`,
      startedAt,
      env: envInfo(["mqtt", "aedes"], pin),
      rows,
      figures: { pollMs: POLL_MS, reloads: RELOADS, ours, rebuilt: base, checks },
    });
  } finally {
    clearTimeout(watchdog);
  }
}

runMain(NAME, main);
