/**
 * Hosts simulators (our own, from dist/) in a process of their own, so that the benchmarked
 * client and the simulated devices do not share an event loop (and, when pinned, not a core
 * either): Modbus TCP slaves (B1), one RTU slave on a serial line (B2), one OPC UA server (B10).
 * B10 also runs the OPC UA client it measures in a host of its own (the ua* commands,
 * lib/opcua-client.ts), so that each variant gets a fresh process and its own CPU and RSS
 * accounting. Driven over the Node IPC channel: every message is `{ id, cmd, ...args }` and gets
 * exactly one reply `{ id, ok, value | error }`. What a command needs is loaded by its first use
 * (dist/ for the Modbus simulator, node-opcua for the OPC UA ones), so a host carries only that.
 *
 * Commands:
 * - start { slaves, unitId }: one simulator per slave on 127.0.0.1, port 0, hosting `unitId`,
 *   holding registers filled with registerValue(slave, address); replies the ports.
 * - reset: zeroes every simulator's counters.
 * - stats: per slave, what its simulator served (its own counters).
 * - rtuStart { path, baud, parity, dataBits, stopBits, unitId }: one simulator hosting `unitId`
 *   on the serial line `path` (a pty end), timing-true at `baud` (answers only after request
 *   wire time + t3.5 + response wire time), holding registers filled with registerValue(0, a).
 * - rtuStats: what the RTU slave served since it started or since the last rtuStats
 *   (RtuSlaveStats); `{ reset: true }` zeroes the counters after reading them.
 * - rtuStop: closes the serial line and drops the RTU simulator.
 * - opcuaStart { variables, pkiDir, maxSubscriptions }: our OPC UA simulator on 127.0.0.1, port
 *   0, security None, its profile's dynamics off, with `variables` extra read-only Doubles
 *   ns=1;s=Bench.V<i> = i (startOpcuaSimulator's extraVariables); its PKI in `pkiDir` (kept, so
 *   the server certificate is made once per run). `maxSubscriptions` > 0 raises the server's
 *   subscription limits (node-opcua's default: 100 in all, 10 per session) to that many, in
 *   all and per session. Replies the endpoint and the limits in force (OpcuaServerInfo).
 * - opcuaTickStart { periodMs }: from now on, every periodMs, changes every extra variable at
 *   once (tickExtraVariables: Bench.V<i> = i + tick, tick = 1, 2, ...), on a fixed schedule
 *   that does not catch up: a tick late by more than a quarter period restarts the schedule
 *   from itself, so two ticks are never closer than 3/4 of a period.
 * - opcuaTick: the tick count now, with this process's CPU time (OpcuaTickInfo).
 * - opcuaTickStop: stops ticking; replies the schedule as kept (OpcuaTickStats).
 * - opcuaStop: stops ticking and closes the server.
 * - uaStart / uaWindowStart / uaWindowEnd / uaStop: the measured OPC UA client (see
 *   lib/opcua-client.ts); uaStart { plan } replies its setup, uaWindowEnd its window's figures.
 * - stop: stops every simulator (destroys connections, closes listeners) and the client,
 *   replies, exits.
 */
import { performance } from "node:perf_hooks";
import { clearTimeout, setTimeout } from "node:timers";
import { registerValue } from "./modbus-layout.js";
import { serveHost, type HostMessage } from "./host-server.js";
import type { ModbusTcpSimulator as ModbusSim } from "../../../src/sim/modbus/index.js";
import type { OpcuaSimulator as OpcuaSim } from "../../../src/sim/opcua/simulator.js";
import type * as OpcuaClient from "./opcua-client.js";

export interface SlaveStats {
  port: number;
  /** complete frames, answered or not */
  framesReceived: number;
  /** requests answered by the hosted unit (any function code) */
  served: number;
  /** exception responses among them */
  exceptions: number;
  /** requests left unanswered (unknown or silent unit) */
  unanswered: number;
  openConnections: number;
  acceptedConnections: number;
}

export interface RtuSlaveStats {
  /** frames with a good CRC, answered or not */
  framesReceived: number;
  /** requests answered by the hosted unit */
  served: number;
  exceptions: number;
  unanswered: number;
  /** frames dropped for a bad CRC */
  crcErrors: number;
  /** bytes that never made a frame before a silence */
  partialFrames: number;
}

export interface OpcuaServerInfo {
  endpoint: string;
  variables: number;
  /** in force, in all */
  maxSubscriptions: number;
  /** in force */
  maxSubscriptionsPerSession: number;
  maxNodesPerRead: number;
  /** startOpcuaSimulator, node-opcua loaded */
  startMs: number;
}

export interface OpcuaTickInfo {
  /** ticks done (the extra variables hold i + tick) */
  tick: number;
  /** performance.now() of this process */
  atMs: number;
  /** this process's CPU time so far (user + system), microseconds */
  cpuUs: number;
}

export interface OpcuaTickStats {
  ticks: number;
  periodMs: number;
  /** shortest time between two ticks' starts */
  minGapMs: number;
  maxGapMs: number;
  /** latest a tick started after its scheduled time */
  maxLateMs: number;
  /** ticks that restarted the schedule (late by > period / 4) */
  resyncs: number;
  /** longest tickExtraVariables() call */
  maxTickMs: number;
  meanTickMs: number;
}

const slaves: { sim: ModbusSim; port: number }[] = [];
let unitId = 1;
let rtu: { sim: ModbusSim; unitId: number } | undefined;

export interface Ticker {
  timer: NodeJS.Timeout | undefined;
  periodMs: number;
  /** scheduled start of the next tick (performance.now()) */
  next: number;
  /** start of the last tick, NaN before the first */
  last: number;
  minGapMs: number;
  maxGapMs: number;
  maxLateMs: number;
  resyncs: number;
  maxTickMs: number;
  sumTickMs: number;
}

let opcua: { sim: OpcuaSim; tick: number; ticker: Ticker | undefined } | undefined;
let uaClient: typeof OpcuaClient | undefined;

/** Loaded by the first Modbus command: an OPC UA host does not carry the gateway. */
const modbusSimulator = async () => (await import("./dist.js")).ModbusTcpSimulator;

async function start(msg: HostMessage): Promise<number[]> {
  const count = Number(msg.slaves);
  unitId = Number(msg.unitId ?? 1);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new RangeError("slaves: 1..100");
  const ModbusTcpSimulator = await modbusSimulator();
  for (let i = 0; i < count; i++) {
    const sim = new ModbusTcpSimulator({ units: [unitId] });
    const holding = sim.unit(unitId).holding;
    for (let a = 0; a < holding.length; a++) holding[a] = registerValue(i, a);
    const { port } = await sim.start({ host: "127.0.0.1", port: 0 });
    slaves.push({ sim, port });
  }
  return slaves.map((s) => s.port);
}

function stats(): SlaveStats[] {
  return slaves.map(({ sim, port }) => {
    const s = sim.stats();
    const exceptions = Object.values(s.exceptions[unitId] ?? {}).reduce((a, b) => a + b, 0);
    return {
      port,
      framesReceived: s.requests,
      served: sim.served(unitId),
      exceptions,
      unanswered: s.unanswered.unknownUnit + s.unanswered.silent,
      openConnections: s.connections.open,
      acceptedConnections: s.connections.accepted,
    };
  });
}

async function rtuStart(msg: Record<string, unknown>): Promise<null> {
  if (rtu !== undefined) throw new Error("an RTU slave is already running (rtuStop first)");
  const id = Number(msg["unitId"] ?? 1);
  const parity = String(msg["parity"] ?? "none");
  const dataBits = Number(msg["dataBits"] ?? 8);
  const stopBits = Number(msg["stopBits"] ?? 1);
  if (parity !== "none" && parity !== "even" && parity !== "odd") throw new RangeError("parity");
  if (dataBits !== 7 && dataBits !== 8) throw new RangeError("dataBits: 7 or 8");
  if (stopBits !== 1 && stopBits !== 2) throw new RangeError("stopBits: 1 or 2");
  const ModbusTcpSimulator = await modbusSimulator();
  const sim = new ModbusTcpSimulator({ units: [id] });
  const holding = sim.unit(id).holding;
  for (let a = 0; a < holding.length; a++) holding[a] = registerValue(0, a);
  await sim.startRtu({
    path: String(msg["path"]),
    baud: Number(msg["baud"]),
    parity,
    dataBits,
    stopBits,
  });
  rtu = { sim, unitId: id };
  return null;
}

function rtuStats(reset: boolean): RtuSlaveStats {
  if (rtu === undefined) throw new Error("no RTU slave running");
  const { sim, unitId: id } = rtu;
  const s = sim.stats();
  const out = {
    framesReceived: s.requests,
    served: sim.served(id),
    exceptions: Object.values(s.exceptions[id] ?? {}).reduce((a, b) => a + b, 0),
    unanswered: s.unanswered.unknownUnit + s.unanswered.silent,
    crcErrors: s.rtu.crcErrors,
    partialFrames: s.rtu.partialFrames,
  };
  if (reset) sim.resetStats();
  return out;
}

async function rtuStop() {
  const running = rtu;
  rtu = undefined;
  await running?.sim.stop();
}

async function opcuaStart(msg: Record<string, unknown>): Promise<OpcuaServerInfo> {
  if (opcua !== undefined) throw new Error("an OPC UA server is already running (opcuaStop first)");
  const variables = Number(msg["variables"]);
  const maxSubscriptions = Number(msg["maxSubscriptions"] ?? 0);
  if (!Number.isInteger(variables) || variables < 1 || variables > 100_000) {
    throw new RangeError("variables: 1..100000");
  }
  if (!Number.isInteger(maxSubscriptions) || maxSubscriptions < 0) {
    throw new RangeError("maxSubscriptions: a whole number");
  }
  // node-opcua prints its warnings on stdout, which is the benchmark's; errors only.
  process.env["NODEOPCUA_LOG_LEVEL"] ??= "3";
  const t0 = performance.now();
  const { startOpcuaSimulator } = await import("./dist-opcua.js");
  const sim = await startOpcuaSimulator({
    extraVariables: variables,
    dynamics: false,
    securityModes: ["None"],
    ...(typeof msg["pkiDir"] === "string" && { pkiDir: msg["pkiDir"] }),
  });
  const startMs = performance.now() - t0;
  const engine = sim.server.engine;
  const caps = engine.serverCapabilities;
  if (maxSubscriptions > 0) {
    caps.maxSubscriptions = Math.max(caps.maxSubscriptions, maxSubscriptions);
    caps.maxSubscriptionsPerSession = Math.max(caps.maxSubscriptionsPerSession, maxSubscriptions);
  }
  opcua = { sim, tick: 0, ticker: undefined };
  return {
    endpoint: sim.endpoint,
    variables,
    maxSubscriptions: caps.maxSubscriptions,
    maxSubscriptionsPerSession: caps.maxSubscriptionsPerSession,
    maxNodesPerRead: caps.operationLimits.maxNodesPerRead,
    startMs,
  };
}

function runningOpcua(): NonNullable<typeof opcua> {
  if (opcua === undefined) throw new Error("no OPC UA server running");
  return opcua;
}

function opcuaTickStart(periodMs: number): OpcuaTickInfo {
  const o = runningOpcua();
  if (o.ticker !== undefined) throw new Error("already ticking");
  if (!Number.isFinite(periodMs) || periodMs < 100 || periodMs > 60_000) {
    throw new RangeError("periodMs: 100..60000");
  }
  const t: Ticker = {
    timer: undefined,
    periodMs,
    next: performance.now() + periodMs,
    last: NaN,
    minGapMs: Infinity,
    maxGapMs: 0,
    maxLateMs: 0,
    resyncs: 0,
    maxTickMs: 0,
    sumTickMs: 0,
  };
  const fire = () => {
    const start = performance.now();
    const late = start - t.next;
    t.maxLateMs = Math.max(t.maxLateMs, late);
    if (!Number.isNaN(t.last)) {
      t.minGapMs = Math.min(t.minGapMs, start - t.last);
      t.maxGapMs = Math.max(t.maxGapMs, start - t.last);
    }
    t.last = start;
    o.sim.tickExtraVariables();
    o.tick++;
    const took = performance.now() - start;
    t.maxTickMs = Math.max(t.maxTickMs, took);
    t.sumTickMs += took;
    if (late > periodMs / 4) {
      t.resyncs++;
      t.next = start + periodMs;
    } else {
      t.next += periodMs;
    }
    t.timer = setTimeout(fire, Math.max(0, t.next - performance.now()));
  };
  t.timer = setTimeout(fire, periodMs);
  o.ticker = t;
  return opcuaTick();
}

function opcuaTick(): OpcuaTickInfo {
  const o = runningOpcua();
  const cpu = process.cpuUsage();
  return { tick: o.tick, atMs: performance.now(), cpuUs: cpu.user + cpu.system };
}

function opcuaTickStop(): OpcuaTickStats {
  const o = runningOpcua();
  const t = o.ticker;
  if (t === undefined) throw new Error("not ticking");
  clearTimeout(t.timer);
  o.ticker = undefined;
  return {
    ticks: o.tick,
    periodMs: t.periodMs,
    minGapMs: t.minGapMs,
    maxGapMs: t.maxGapMs,
    maxLateMs: t.maxLateMs,
    resyncs: t.resyncs,
    maxTickMs: t.maxTickMs,
    meanTickMs: o.tick > 0 ? t.sumTickMs / o.tick : NaN,
  };
}

async function opcuaStop() {
  const running = opcua;
  opcua = undefined;
  if (running === undefined) return;
  clearTimeout(running.ticker?.timer);
  await running.sim.close();
}

async function client(): Promise<typeof OpcuaClient> {
  uaClient ??= await import("./opcua-client.js");
  return uaClient;
}

async function stopAll() {
  await Promise.all([
    ...slaves.map((s) => s.sim.stop()),
    rtuStop(),
    opcuaStop(),
    uaClient?.stopClient(),
  ]);
}

serveHost(
  "sim-host.js",
  "b1-coalescing.ts, b2-rtu-line.ts, b10-opcua.ts",
  {
    start: (msg) => start(msg),
    reset: () => {
      for (const s of slaves) s.sim.resetStats();
      return null;
    },
    stats: () => stats(),
    rtuStart: (msg) => rtuStart(msg),
    rtuStats: (msg) => rtuStats(msg["reset"] === true),
    rtuStop: async () => {
      await rtuStop();
      return null;
    },
    opcuaStart: (msg) => opcuaStart(msg),
    opcuaTickStart: (msg) => opcuaTickStart(Number(msg["periodMs"])),
    opcuaTick: () => opcuaTick(),
    opcuaTickStop: () => opcuaTickStop(),
    opcuaStop: async () => {
      await opcuaStop();
      return null;
    },
    uaStart: async (msg) => (await client()).startClient(msg["plan"]),
    uaWindowStart: async (msg) => (await client()).windowStart(Number(msg["fromTick"])),
    uaWindowEnd: async (msg) =>
      (await client()).windowEnd(Number(msg["toTick"]), Number(msg["graceMs"])),
    uaStop: async () => {
      await uaClient?.stopClient();
      return null;
    },
  },
  stopAll,
);
