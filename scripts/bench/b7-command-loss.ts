/**
 * B7 command loss (docs/performance.md): the share of 1,000 desired changes NOT executed exactly
 * once on the simulated PLC under link flaps, random connection resets and kill -9 of the
 * executor, for the gateway (the built daemon, `dist/cli/main.js run`, as a child process)
 * against the naive baseline in the same run (lib/naive-executor.ts: QoS 0, no persistent
 * journal (it remembers what it executed in memory only), no reconciliation on reconnect).
 * Target: 0 lost, 0 executed twice.
 *
 * Topology: two lanes side by side, one per executor, each with its own PLC simulator (unit 1,
 * our simulator, in this process) and its own shadow device on one local cloud shadow service
 * (embedded aedes broker, in this process), and its own fault-injecting TCP proxy
 * (dist/sim/tcp-proxy.js, the one the fault-injection suite uses) between the executor and the
 * broker. The executors run as child processes (on the other core when pinning is on) so they
 * can be killed with SIGKILL. Both lanes get the same fault schedule at the same moments.
 *
 * Timescale: performance.md's "down 30 s every 2 min" is compressed 10x so that the run takes
 * minutes: the link is cut for 3 s every 12 s (random phase), resets come as a Poisson process
 * (mean every 4 s) while it is up, and each executor is killed with SIGKILL every 10-20 s
 * (uniform) and started again 0.5 s later. The gateway's own timers are scaled alike: MQTT
 * reconnect backoff 0.1-1 s (default 1-60 s), reply timeout 1 s, send window 50 ms, poll 100 ms.
 * The naive executor reconnects every 100 ms.
 *
 * Commands: each lane has 8 writable int16 set points (holding 10..17; 0 is a counter that moves
 * every 100 ms, so reports flow all the time). Every 250 ms the lane's issuer sets a burst of 1-4
 * desired values (seeded; a recipe of several set points, 10 a second on average), each its own
 * UpdateDeviceShadow call (what POST /shadows/{pk}/{dn} with DeltaUpdate calls) and so its own
 * control push, which carries the burst's earlier values along while they are still in desired.
 * Command i has the value 1000 + i, so every write is identifiable. A point takes a new
 * command only once the previous one has left desired (executed and cleared): a newer desired
 * value for the same point replaces an unexecuted one, which is the shadow's semantics and not a
 * loss. When no point has been free for 10 s (more than an outage plus a restart), the point
 * with the oldest command is overwritten anyway; that command counts as superseded (lost, unless
 * it was written). Same rule in both lanes.
 *
 * Counting: the simulator's "write" events (every write over the wire, with the value then in
 * memory): a command is executed exactly once when its value was written once; lost when never;
 * doubled when twice or more. For the gateway, the outcome ("applied" with the value read back)
 * reaching the cloud under `_commands` is counted too (the service's "applied" event).
 *
 * Exit 0 when the gateway issued all 1,000 and executed each exactly once (none superseded) with
 * its outcome in the cloud; 1 when not; 2 on a crash or when the run outlives its budget.
 *
 * Environment: BENCH_COMMANDS (default 1000), BENCH_SEED (default 0xb7), BENCH_PIN,
 * BENCH_LOG_LEVEL (the gateway's log level, default warn; when set, the logs are kept).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clearInterval, clearTimeout, setInterval } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import { URL } from "node:url";
import {
  BENCH_DIR,
  boundedInt,
  envInfo,
  fmtRatio,
  helperCommand,
  latencyStats,
  pinCores,
  REPO_DIR,
  runMain,
  startWatchdog,
  finishBench,
  type ResultRow,
  printChecks,
  type Check,
} from "./lib/common.js";
import { seededRandom } from "../../test/helpers/random.js";
import { DIALECT, cloudSection, named } from "./lib/dialect.js";
import {
  ModbusTcpSimulator,
  TcpProxy,
  startAwsCloudService,
  startCloudService,
} from "./lib/dist.js";
import { writeGatewayConfig } from "./lib/gateway-config.js";

const NAME = named("b7-command-loss");
const PK = "a1B7";
const COMMANDS = boundedInt(process.env["BENCH_COMMANDS"], 1000, 10, 5000);
const SEED = boundedInt(process.env["BENCH_SEED"], 0xb7, 0, 2 ** 31 - 1);
const POINTS = 8;
const SP_BASE = 10;
/** Every tick, a burst of 1-4 desired changes (a recipe): 10 a second on average. */
const ISSUE_EVERY_MS = 250;
const BURST_MAX = 4;
const OVERWRITE_AFTER_MS = 10_000;
const CYCLE_MS = 12_000;
const CUT_MS = 3_000;
const RESET_MEAN_MS = 4_000;
const KILL_MIN_MS = 10_000;
const KILL_MAX_MS = 20_000;
const RESTART_AFTER_MS = 500;
const POLL_MS = 100;
/** Issuing must be over by then (the gateway's lane needs ~COMMANDS x 100 ms). */
const ISSUE_LIMIT_MS = 60_000 + COMMANDS * 600;
/** After issuing: desired cleared and writes quiet, within these bounds. */
const DRAIN_LIMIT_MS = 60_000;
const QUIET_MS = 2_000;
const BUDGET_MS = ISSUE_LIMIT_MS + DRAIN_LIMIT_MS + 120_000;
const CLI_MAIN = join(REPO_DIR, "dist", "cli", "main.js");
const NAIVE = join(BENCH_DIR, "lib", "naive-executor.js");

const int16 = (w: number) => (w << 16) >> 16;
const pointName = (k: number) => `sp${k}`;

/** A child process that can be SIGKILLed and started again with the same command. */
class Executor {
  private readonly log: WriteStream;
  child: ChildProcess | undefined = undefined;
  private exited: Promise<void> | undefined = undefined;
  starts = 0;
  kills = 0;

  constructor(
    readonly name: string,
    private readonly cmd: { command: string; args: string[] },
    logFile: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.log = createWriteStream(logFile, { flags: "a" });
  }

  start() {
    if (this.child) return;
    this.starts++;
    const child = spawn(this.cmd.command, this.cmd.args, {
      env: this.env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    child.stderr?.pipe(this.log, { end: false });
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
  }

  /** SIGKILL, awaited. */
  async kill() {
    const child = this.child;
    if (!child) return;
    this.kills++;
    child.kill("SIGKILL");
    await this.exited;
  }

  /** SIGTERM, awaited within a bound, then SIGKILL. */
  async stop() {
    const child = this.child;
    if (!child) return;
    child.kill("SIGTERM");
    const late = sleep(10_000).then(() => "late");
    if ((await Promise.race([this.exited, late])) === "late") {
      child.kill("SIGKILL");
      await this.exited;
    }
  }
}

interface Command {
  i: number;
  /** 0-based set point index */
  point: number;
  value: number;
  issuedAt: number;
  /** overwritten by the 10 s rule while still in desired */
  superseded: boolean;
  /** when it was seen gone from desired */
  clearedAt: number | undefined;
}

interface Lane {
  name: string;
  deviceName: string;
  sim: InstanceType<typeof ModbusTcpSimulator>;
  proxy: InstanceType<typeof TcpProxy>;
  executor: Executor;
  commands: Command[];
  /** per point */
  outstanding: Map<number, Command>;
  /** value -> times written */
  writes: Map<number, number>;
  /** writes of values never commanded */
  otherWrites: number;
  /** values whose "applied" outcome reached the cloud */
  outcomes: Set<number>;
  lastWriteAt: number;
  doneIssuingAt: number;
}

/** The fault schedule, the same for both lanes: times in ms from the start. */
function faultSchedule(random: () => number, horizonMs: number) {
  const events: Array<{ at: number; kind: "cut" | "reset" | "kill" }> = [];
  const phase = 2_000 + random() * (CYCLE_MS - CUT_MS - 2_000);
  const cuts: Array<[number, number]> = [];
  for (let at = phase; at < horizonMs; at += CYCLE_MS) {
    events.push({ at, kind: "cut" });
    cuts.push([at, at + CUT_MS]);
  }
  for (let at = 0; at < horizonMs;) {
    at += -Math.log(1 - random()) * RESET_MEAN_MS;
    if (!cuts.some(([a, b]) => at >= a && at < b)) events.push({ at, kind: "reset" });
  }
  for (let at = 0; at < horizonMs;) {
    at += KILL_MIN_MS + random() * (KILL_MAX_MS - KILL_MIN_MS);
    events.push({ at, kind: "kill" });
  }
  return events.sort((a, b) => a.at - b.at);
}

/** The local cloud service of the run's dialect, as B7 uses it. */
async function startCloud() {
  const json = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (DIALECT === "aws") {
    const c = await startAwsCloudService({ mqttPort: 0, httpPort: 0 });
    return {
      mqttUrl: c.mqttUrl,
      broker: c.broker,
      close: () => c.close(),
      /** Where the gateway (a gateway subscribes `+/accepted` too) and the naive one listen. */
      pushTopic: (dn: string) => `$aws/things/${dn}/shadow/update/delta`,
      shadow: (dn: string) => c.service.getShadow(dn),
      onReported: (fn: (dn: string, reported: Record<string, unknown>) => void) =>
        c.service.on("updated", (e) => {
          if (json(e.request.reported)) fn(e.thingName, e.request.reported);
        }),
      setDesired: async (dn: string, point: string, value: number) => {
        const r = c.service.update(dn, undefined, { state: { desired: { [point]: value } } });
        if (!r.ok) throw new Error(`desired update refused: ${r.error.code} ${r.error.message}`);
      },
    };
  }
  const c = await startCloudService({ mqttPort: 0, httpPort: 0 });
  return {
    mqttUrl: c.mqttUrl,
    broker: c.broker,
    close: () => c.close(),
    pushTopic: (dn: string) => `/shadow/get/${PK}/${dn}`,
    shadow: (dn: string) => c.service.getShadow(PK, dn),
    onReported: (fn: (dn: string, reported: Record<string, unknown>) => void) =>
      c.service.on("applied", (e) => {
        if (e.request.method !== "update" || !json(e.request.reported)) return;
        fn(e.deviceName, e.request.reported);
      }),
    setDesired: async (dn: string, point: string, value: number) => {
      const r = await c.service.updateDesired(
        PK,
        dn,
        { method: "update", state: { desired: { [point]: value } } },
        { delta: true },
      );
      if (!r.ok) throw new Error(`desired update refused: ${r.code} ${r.message}`);
    },
  };
}

async function main() {
  const startedAt = new Date();
  const pin = pinCores();
  const cleanup: Array<() => Promise<unknown>> = [];
  const watchdog = startWatchdog(NAME, BUDGET_MS, () => {
    for (const lane of lanes) lane.executor.child?.kill("SIGKILL");
  });
  const lanes: Lane[] = [];
  const dir = mkdtempSync(join(tmpdir(), `${NAME}-`));
  let keepDir = false;

  try {
    const cloud = await startCloud();
    cleanup.push(() => cloud.close());
    const mqttPort = Number(new URL(cloud.mqttUrl).port);

    const lane = async (
      name: string,
      make: (simPort: number, proxyPort: number, deviceName: string) => Promise<Executor>,
    ): Promise<Lane> => {
      const sim = new ModbusTcpSimulator({ units: [1] });
      const { port: simPort } = await sim.start({ port: 0 });
      cleanup.push(() => sim.stop());
      const proxy = new TcpProxy({ targetPort: mqttPort });
      const { port: proxyPort } = await proxy.start();
      cleanup.push(() => proxy.stop());
      const deviceName = `b7-${name}`;
      const executor = await make(simPort, proxyPort, deviceName);
      cleanup.push(() => executor.stop());
      const l: Lane = {
        name,
        deviceName,
        sim,
        proxy,
        executor,
        commands: [],
        outstanding: new Map(),
        writes: new Map(),
        otherWrites: 0,
        outcomes: new Set(),
        lastWriteAt: 0,
        doneIssuingAt: 0,
      };
      const unit = sim.unit(1);
      sim.on("write", (w) => {
        if (w.table !== "holding") return;
        for (let a = w.address; a < w.address + w.count; a++) {
          if (a < SP_BASE || a >= SP_BASE + POINTS) continue;
          const value = int16(unit.holding[a] ?? 0);
          l.lastWriteAt = Date.now();
          if (value >= 1000 && value < 1000 + COMMANDS) {
            l.writes.set(value, (l.writes.get(value) ?? 0) + 1);
          } else l.otherWrites++;
        }
      });
      lanes.push(l);
      return l;
    };

    const gatewayLane = await lane("gateway", async (simPort, proxyPort, deviceName) => {
      const points: Record<string, Record<string, unknown>> = {
        counter: { table: "holding", offset: 0, type: "uint16" },
      };
      for (let k = 0; k < POINTS; k++) {
        points[pointName(k)] = {
          table: "holding",
          offset: SP_BASE + k,
          type: "int16",
          writable: true,
          min: 0,
          max: 30000,
        };
      }
      const { dir: cfgDir } = await writeGatewayConfig(`${NAME}-gw`, {
        sources: {
          plc: {
            protocol: "modbus-tcp",
            host: "127.0.0.1",
            port: simPort,
            timeout: "500ms",
            reconnect: { min: "100ms", max: "500ms" },
          },
        },
        cloud: {
          ...cloudSection(`mqtt://127.0.0.1:${proxyPort}`, "b7-gw"),
          sendWindow: "50ms",
          replyTimeout: "1s",
          reconnect: { min: "100ms", max: "1s" },
        },
        devices: [
          { productKey: PK, deviceName, source: "plc", pollInterval: `${POLL_MS}ms`, points },
        ],
      });
      cleanup.push(async () => rmSync(cfgDir, { recursive: true, force: true }));
      return new Executor(
        "gateway",
        helperCommand(pin, [CLI_MAIN, "run", "-c", join(cfgDir, "gateway.yaml")]),
        join(dir, "gateway.log"),
        { ...process.env, SHADOWGATE_LOG_LEVEL: process.env["BENCH_LOG_LEVEL"] ?? "warn" },
      );
    });
    const naiveLane = await lane("naive", async (simPort, proxyPort, deviceName) => {
      const points: Record<string, number> = {};
      for (let k = 0; k < POINTS; k++) points[pointName(k)] = SP_BASE + k;
      const config = {
        mqttUrl: `mqtt://127.0.0.1:${proxyPort}`,
        plcPort: simPort,
        productKey: PK,
        deviceName,
        points,
        dialect: DIALECT,
      };
      return new Executor(
        "naive",
        helperCommand(pin, [NAIVE, JSON.stringify(config)]),
        join(dir, "naive.log"),
        process.env,
      );
    });

    cloud.onReported((deviceName, reported) => {
      if (deviceName !== gatewayLane.deviceName) return;
      const cmds = reported["_commands"];
      if (typeof cmds !== "object" || cmds === null || Array.isArray(cmds)) return;
      for (const o of Object.values(cmds)) {
        if (typeof o !== "object" || o === null || Array.isArray(o)) continue;
        if (o["status"] === "applied" && typeof o["value"] === "number") {
          gatewayLane.outcomes.add(o["value"]);
        }
      }
    });

    // The process: a counter on every PLC, so reports flow while commands run.
    const counter = setInterval(() => {
      for (const l of lanes) {
        const h = l.sim.unit(1).holding;
        h[0] = ((h[0] ?? 0) + 1) & 0xffff;
      }
    }, POLL_MS);
    cleanup.push(async () => clearInterval(counter));

    // Both executors up and subscribed before the first command: the naive one sees a push
    // only while it listens (the gateway would catch up anyway).
    const subscribed: Set<string> = new Set();
    cloud.broker?.on("subscribe", (subs) => {
      for (const sub of subs) subscribed.add(sub.topic);
    });
    for (const l of lanes) l.executor.start();
    const upEnd = Date.now() + 30_000;
    while (!lanes.every((l) => subscribed.has(cloud.pushTopic(l.deviceName)))) {
      if (Date.now() > upEnd) throw new Error("the executors did not subscribe within 30 s");
      await sleep(50);
    }

    // --- faults and commands --------------------------------------------------------------
    const random = seededRandom(SEED);
    const schedule = faultSchedule(random, ISSUE_LIMIT_MS);
    const t0 = Date.now();
    const faults = { cuts: 0, resets: 0, kills: 0 };
    let faultsOn = true;
    const faultRunner = (async () => {
      for (const ev of schedule) {
        const wait = t0 + ev.at - Date.now();
        if (wait > 0) await sleep(wait);
        if (!faultsOn) return;
        if (ev.kind === "cut") {
          faults.cuts++;
          for (const l of lanes) l.proxy.cut(CUT_MS);
        } else if (ev.kind === "reset") {
          faults.resets++;
          for (const l of lanes) l.proxy.reset();
        } else {
          faults.kills++;
          await Promise.all(lanes.map((l) => l.executor.kill()));
          await sleep(RESTART_AFTER_MS);
          for (const l of lanes) l.executor.start();
        }
      }
    })();

    const desiredOf = (l: Lane) =>
      (cloud.shadow(l.deviceName)?.state.desired ?? {}) as Record<string, unknown>;
    const settle = (l: Lane) => {
      const desired = desiredOf(l);
      for (const [k, c] of l.outstanding) {
        if (!Object.hasOwn(desired, pointName(k))) {
          c.clearedAt = Date.now();
          l.outstanding.delete(k);
        } else if (c.superseded) l.outstanding.delete(k);
      }
    };
    /** @returns whether a command went out */
    const issueOne = async (l: Lane): Promise<boolean> => {
      if (l.commands.length >= COMMANDS) return false;
      settle(l);
      const free = [];
      for (let k = 0; k < POINTS; k++) if (!l.outstanding.has(k)) free.push(k);
      let point = free[l.commands.length % Math.max(1, free.length)];
      if (point === undefined) {
        const oldest = [...l.outstanding.values()].sort((a, b) => a.issuedAt - b.issuedAt)[0];
        if (oldest === undefined || Date.now() - oldest.issuedAt < OVERWRITE_AFTER_MS) return false;
        oldest.superseded = true;
        point = oldest.point;
      }
      const i = l.commands.length;
      const c: Command = {
        i,
        point,
        value: 1000 + i,
        issuedAt: Date.now(),
        superseded: false,
        clearedAt: undefined,
      };
      await cloud.setDesired(l.deviceName, pointName(point), c.value);
      l.commands.push(c);
      l.outstanding.set(point, c);
      if (l.commands.length >= COMMANDS) l.doneIssuingAt = Date.now();
      return true;
    };
    /** One burst: up to `n` changes to distinct points, one update (and so one push) each. */
    const issueBurst = async (l: Lane, n: number) => {
      for (let k = 0; k < n; k++) if (!(await issueOne(l))) return;
    };
    const burstRandom = seededRandom(SEED ^ 0x9e3779b9);
    const issueEnd = t0 + ISSUE_LIMIT_MS;
    let ticks = 0;
    let lastProgress = Date.now();
    while (lanes.some((l) => l.commands.length < COMMANDS) && Date.now() < issueEnd) {
      ticks++;
      const before = lanes.reduce((n, l) => n + l.commands.length, 0);
      const burst = 1 + Math.floor(burstRandom() * BURST_MAX);
      await Promise.all(lanes.map((l) => issueBurst(l, burst)));
      if (lanes.reduce((n, l) => n + l.commands.length, 0) > before) lastProgress = Date.now();
      if (ticks % 40 === 0) {
        console.log(
          `  ${((Date.now() - t0) / 1000).toFixed(0)} s: issued ${lanes.map((l) => `${l.name} ${l.commands.length}`).join(", ")}; ` +
            `${faults.cuts} cuts, ${faults.resets} resets, ${faults.kills} kills`,
        );
      }
      await sleep(ISSUE_EVERY_MS);
    }
    const issuingSeconds = (Date.now() - t0) / 1000;
    faultsOn = false;
    for (const l of lanes) {
      l.proxy.restore();
      l.executor.start();
    }
    await faultRunner;
    for (const l of lanes) l.executor.start();

    // --- drain: desired cleared (bounded), then writes quiet ---------------------------------
    const drainEnd = Date.now() + DRAIN_LIMIT_MS;
    while (Date.now() < drainEnd) {
      const empty = lanes.map((l) => Object.keys(desiredOf(l)).length === 0);
      if (empty.every(Boolean)) break;
      // The naive executor only acts on a push: nothing comes without a desired change.
      if (empty[0] && Date.now() - lastProgress > 20_000) break;
      await sleep(100);
    }
    while (Date.now() < drainEnd && lanes.some((l) => Date.now() - l.lastWriteAt < QUIET_MS)) {
      await sleep(100);
    }

    // --- count -----------------------------------------------------------------------------
    const count = (l: Lane) => {
      let once = 0;
      let lost = 0;
      let doubled = 0;
      let superseded = 0;
      let outcomes = 0;
      for (const c of l.commands) {
        const n = l.writes.get(c.value) ?? 0;
        if (n === 1) once++;
        else if (n === 0) lost++;
        else doubled++;
        if (c.superseded) superseded++;
        if (l.outcomes.has(c.value)) outcomes++;
      }
      const issued = l.commands.length;
      const notOnce = lost + doubled;
      const held = l.commands
        .filter((c) => c.clearedAt !== undefined)
        .map((c) => (c.clearedAt ?? 0) - c.issuedAt);
      return {
        issued,
        once,
        lost,
        doubled,
        notOnce,
        share: issued > 0 ? notOnce / issued : NaN,
        superseded,
        otherWrites: l.otherWrites,
        writes: [...l.writes.values()].reduce((a, b) => a + b, 0),
        outcomes,
        starts: l.executor.starts,
        kills: l.executor.kills,
        issuingSeconds: l.doneIssuingAt > 0 ? (l.doneIssuingAt - t0) / 1000 : issuingSeconds,
        /** Issue -> gone from desired, ms: how long a point stays taken (see the 10 s rule). */
        held: latencyStats(held),
      };
    };
    const ours = count(gatewayLane);
    const naive = count(naiveLane);
    for (const [name, c] of [
      ["gateway", ours],
      ["naive", naive],
    ] as const) {
      console.log(
        `  ${name.padEnd(8)} issued ${c.issued}: once ${c.once}, lost ${c.lost}, ` +
          `twice+ ${c.doubled} (${(100 * c.share).toFixed(1)}% not exactly once), superseded ${c.superseded}, ` +
          `other writes ${c.otherWrites}, outcomes ${c.outcomes}, ${c.kills} kills, ` +
          `issued in ${c.issuingSeconds.toFixed(0)} s, held p99 ${c.held.p99} ms max ${c.held.max} ms`,
      );
    }

    const checks: Check[] = [
      {
        name: `gateway: all ${COMMANDS} desired changes issued`,
        pass: ours.issued === COMMANDS,
        detail: `${ours.issued} in ${ours.issuingSeconds.toFixed(0)} s`,
      },
      {
        name: "gateway: 0 lost, 0 executed twice",
        pass: ours.lost === 0 && ours.doubled === 0 && ours.otherWrites === 0,
        detail: `${ours.lost} lost, ${ours.doubled} twice or more, ${ours.otherWrites} other writes`,
      },
      {
        name: "gateway: no command superseded (each one left desired before the next on its point)",
        pass: ours.superseded === 0,
        detail: `${ours.superseded} superseded`,
      },
      {
        name: "gateway: every outcome (applied, value read back) in the cloud under _commands",
        pass: ours.outcomes === ours.issued,
        detail: `${ours.outcomes} of ${ours.issued}`,
      },
      {
        name: "faults happened: link cuts, resets and kill -9 during the run",
        pass: faults.cuts > 0 && faults.resets > 0 && faults.kills > 0,
        detail: `${faults.cuts} cuts, ${faults.resets} resets, ${faults.kills} kills`,
      },
    ];
    const pass = checks.every((c) => c.pass);
    printChecks(checks);

    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const scenario = `cut ${CUT_MS / 1000} s / ${CYCLE_MS / 1000} s, resets ~1/${RESET_MEAN_MS / 1000} s, kill -9 every ${KILL_MIN_MS / 1000}-${KILL_MAX_MS / 1000} s (10x compressed)`;
    const rows: ResultRow[] = [
      {
        bench: "B7",
        case: scenario,
        metric: `desired changes not executed exactly once (of ${COMMANDS})`,
        ours: `${ours.notOnce} (${pct(ours.share)})`,
        baseline: `${naive.notOnce} (${pct(naive.share)}, of ${naive.issued})`,
        ratio: fmtRatio(naive.share / ours.share),
        target: "0",
        pass: ours.notOnce === 0 && ours.issued === COMMANDS ? "yes" : "no",
      },
      {
        bench: "B7",
        case: scenario,
        metric: "lost (never written) | of which superseded",
        ours: `${ours.lost} | ${ours.superseded}`,
        baseline: `${naive.lost} | ${naive.superseded}`,
        ratio: "-",
        target: "0 lost",
        pass: ours.lost === 0 ? "yes" : "no",
      },
      {
        bench: "B7",
        case: scenario,
        metric: "executed twice or more",
        ours: String(ours.doubled),
        baseline: String(naive.doubled),
        ratio: "-",
        target: "0",
        pass: ours.doubled === 0 ? "yes" : "no",
      },
      {
        bench: "B7",
        case: scenario,
        metric: "outcome in the cloud (_commands, applied with the read-back)",
        ours: `${ours.outcomes} of ${ours.issued}`,
        baseline: "- (reports none)",
        ratio: "-",
        target: "all",
        pass: ours.outcomes === ours.issued ? "yes" : "no",
      },
    ];
    const summary =
      `B7 command loss: ${COMMANDS} desired changes under ${faults.cuts} link cuts, ${faults.resets} resets and ` +
      `${faults.kills} kill -9: gateway ${ours.lost} lost, ${ours.doubled} twice (${pct(ours.share)}); ` +
      `naive ${naive.lost} lost, ${naive.doubled} twice (${pct(naive.share)}): ${pass ? "PASS" : "FAIL"}`;
    finishBench({
      id: "B7",
      name: NAME,
      title: "command loss",
      pass,
      summary,
      startedAt,
      env: envInfo(["modbus-serial", "mqtt", "aedes", "better-sqlite3"], pin),
      rows,
      figures: {
        seed: SEED,
        commands: COMMANDS,
        points: POINTS,
        issueEveryMs: ISSUE_EVERY_MS,
        overwriteAfterMs: OVERWRITE_AFTER_MS,
        timescale:
          "performance.md's down 30 s every 2 min, compressed 10x: 3 s every 12 s; gateway timers scaled alike",
        faults: {
          ...faults,
          cutMs: CUT_MS,
          cycleMs: CYCLE_MS,
          resetMeanMs: RESET_MEAN_MS,
          killEveryMs: [KILL_MIN_MS, KILL_MAX_MS],
          restartAfterMs: RESTART_AFTER_MS,
        },
        issuingSeconds,
        gateway: ours,
        naive,
        checks,
      },
    });
    if (!pass || process.env["BENCH_LOG_LEVEL"]) keepDir = true;
  } finally {
    clearTimeout(watchdog);
    for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
    if (keepDir) console.log(`  logs kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

runMain(NAME, main);
