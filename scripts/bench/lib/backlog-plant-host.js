// @ts-check
/**
 * The plant around a gateway whose uplink goes down and comes back (B6 backlog drain), in a
 * process of its own, like lib/plant-host.js (whose command set this does not change): Modbus
 * TCP simulators (one per PLC, our own, from dist/), the local cloud shadow service with its
 * embedded aedes broker, and a gate between the gateway and the broker: a TCP forwarder on
 * 127.0.0.1 that can cut the link (every connection destroyed, new ones accepted and closed at
 * once, as a dead mobile link looks to a client) and restore it. Both ends of every latency are
 * stamped here on one clock: a register write in a simulator and the update request that
 * carries the new value, seen by an in-process subscription to /shadow/update/+/+ registered
 * after the service's own (so the service has applied a request before we see it).
 * Driven over the Node IPC channel: `{ id, cmd, ...args }` in, one `{ id, ok, value | error }`.
 *
 * Commands (times are this process's wallNow(), see lib/host-client.js):
 * - start { slaves, points, groups }: one simulator per PLC on 127.0.0.1 hosting unit 1 with
 *   holding registers 0..points-1 (uint16), the cloud service, and the gate in front of its
 *   broker. Replies { ports, mqttUrl (direct), gateUrl (through the gate) }.
 * - clock: wallNow().
 * - gate { open }: restores or cuts the link; replies the time it happened.
 * - churn { perTick, tickMs, seed, registers }: every tickMs, `perTick` random registers in
 *   0..registers-1 of every simulator get a new random value (memory writes); perTick 0 stops.
 * - probes { pk, deviceNames, first, count, everyMs, timeoutMs }: starts probing live latency:
 *   every everyMs the next device in turn gets a new value in one of its probe registers
 *   (first..first+count-1, used in turn, a register whose previous probe is still on its way
 *   is skipped), stamped, and the first update request for that device carrying the value at
 *   the register's point is its arrival; the first poll read covering the register after the
 *   write is stamped too. probesStop: stops and replies every probe { device, t0, readAt?,
 *   arrivedAt? }.
 * - log { since }: the update requests seen per "pk/dn" since a time: [t, kind, leaves, bytes]
 *   with kind 0 = get, 1 = reported update, 2 = anything else.
 * - pollStarts { since }: per PLC, the times of the read requests starting at register 0 (the
 *   first request of each poll), from which the poll grid's phase is estimated.
 * - registers: every simulator's holding registers 0..points-1, one array per PLC.
 * - quiet: milliseconds since the last update request (of any device).
 * - verify { pk, deviceNames, points, groups }: compares each device's reported state in the
 *   service's store with its simulator's registers; replies per device { leaves, mismatches,
 *   missing, examples, version }.
 * - stop: stops the gate, the service and the simulators, replies, exits.
 */
import { Buffer } from "node:buffer";
import { createServer, connect } from "node:net";
import { clearInterval, setInterval } from "node:timers";
import { URL } from "node:url";
import {
  ModbusTcpSimulator,
  SHADOW_UPDATE_WILDCARD,
  parseShadowTopic,
  startCloudService,
} from "./dist.js";
import { seededRandom } from "./common.js";
import { wallNow } from "./host-client.js";
import { groupedName } from "./report-gen.js";
import { serveHost } from "./host-server.js";

const HOST = "127.0.0.1";
const UNIT_ID = 1;

/** @type {{ sim: InstanceType<typeof ModbusTcpSimulator>, port: number }[]} */
const slaves = [];
/** @type {Awaited<ReturnType<typeof startCloudService>> | undefined} */
let cloud;
/** @type {import("node:net").Server | undefined} */
let gate;
let gateOpen = true;
/** @type {Set<import("node:net").Socket>} */
const gateSockets = new Set();
let points = 0;
let groups = 1;

/** @type {Map<string, number[][]>} "pk/dn" -> [t, kind, leaves, bytes] */
const requests = new Map();
let lastRequestAt = 0;

/**
 * @typedef {object} Probe
 * @property {string} device
 * @property {number} slave
 * @property {number} address
 * @property {string[]} path
 * @property {number} value
 * @property {number} t0
 * @property {number} [readAt]
 * @property {number} [arrivedAt]
 */
/** @type {Probe[]} */
let probes = [];
/** @type {Map<string, Probe[]>} pending probes per "pk/dn" */
const pending = new Map();
/** @type {NodeJS.Timeout | undefined} */
let probeTimer;
let probeSkipped = 0;
/** @type {NodeJS.Timeout | undefined} */
let churnTimer;
let churned = 0;

/**
 * @param {unknown} v
 * @returns {number}
 */
function leaves(v) {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return 1;
  let n = 0;
  for (const x of Object.values(v)) n += leaves(x);
  return n;
}

/**
 * @param {unknown} root
 * @param {readonly string[]} path
 * @returns {unknown}
 */
function at(root, path) {
  let v = root;
  for (const k of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = /** @type {Record<string, unknown>} */ (v)[k];
  }
  return v;
}

/**
 * @param {{ slaves?: unknown, points?: unknown, groups?: unknown }} msg
 */
async function start(msg) {
  const count = Number(msg.slaves);
  points = Number(msg.points);
  groups = Number(msg.groups ?? 1);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new RangeError("slaves: 1..100");
  if (!Number.isInteger(points) || points < 1 || points > 30000) throw new RangeError("points");
  for (let i = 0; i < count; i++) {
    const sim = new ModbusTcpSimulator({ units: [UNIT_ID] });
    const unit = sim.unit(UNIT_ID);
    for (let k = 0; k < points; k++) unit.holding[k] = (1000 + k + 7 * i) & 0xffff;
    // Every read asks whether it touches a hole: the one place that sees which registers a
    // request covers. A pending probe's register read for the first time is stamped.
    const touchesHole = unit.touchesHole.bind(unit);
    /** @type {number[]} */
    const starts = [];
    pollStarts.push(starts);
    unit.touchesHole = (table, address, n) => {
      if (table === "holding" && address === 0 && starts.length < 100_000) starts.push(wallNow());
      if (table === "holding" && probeBySlave.size > 0) {
        const list = probeBySlave.get(i);
        if (list !== undefined) {
          const t = wallNow();
          for (const p of list) {
            if (p.readAt === undefined && address <= p.address && p.address < address + n) {
              p.readAt = t;
            }
          }
        }
      }
      return touchesHole(table, address, n);
    };
    const { port } = await sim.start({ host: HOST, port: 0 });
    slaves.push({ sim, port });
  }
  cloud = await startCloudService({ mqttPort: 0, httpPort: 0 });
  const broker = cloud.broker;
  if (broker === undefined) throw new Error("the cloud service has no embedded broker");
  const brokerPort = Number(new URL(cloud.mqttUrl).port);
  /** @type {(packet: { topic: string, payload: string | Buffer }, cb: () => void) => void} */
  const onPacket = (packet, cb) => {
    const t = wallNow();
    try {
      const target = parseShadowTopic(packet.topic);
      if (target === undefined || target.kind !== "update") return;
      lastRequestAt = t;
      const key = `${target.productKey}/${target.deviceName}`;
      const text =
        typeof packet.payload === "string" ? packet.payload : packet.payload.toString("utf8");
      const msg = /** @type {Record<string, unknown>} */ (JSON.parse(text));
      const state = /** @type {Record<string, unknown> | undefined} */ (msg["state"]);
      const reported = state?.["reported"];
      const kind = msg["method"] === "get" ? 0 : reported !== undefined ? 1 : 2;
      let log = requests.get(key);
      if (log === undefined) requests.set(key, (log = []));
      log.push([t, kind, kind === 1 ? leaves(reported) : 0, Buffer.byteLength(text)]);
      const waiting = pending.get(key);
      if (kind !== 1 || waiting === undefined || waiting.length === 0) return;
      for (const p of [...waiting]) {
        if (at(reported, p.path) !== p.value) continue;
        p.arrivedAt = t;
        settle(key, p);
      }
    } catch {
      // A malformed request is the service's business, not ours.
    } finally {
      cb();
    }
  };
  await new Promise((resolve) =>
    broker.subscribe(SHADOW_UPDATE_WILDCARD, onPacket, () => resolve(null)),
  );

  gate = createServer((client) => {
    if (!gateOpen) {
      client.destroy();
      return;
    }
    const upstream = connect(brokerPort, HOST);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    gateSockets.add(client);
    gateSockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      gateSockets.delete(client);
      gateSockets.delete(upstream);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const g = gate;
  await new Promise((resolve) => g.listen(0, HOST, () => resolve(null)));
  const address = /** @type {import("node:net").AddressInfo} */ (g.address());
  return {
    ports: slaves.map((s) => s.port),
    mqttUrl: cloud.mqttUrl,
    gateUrl: `mqtt://${HOST}:${address.port}`,
  };
}

/** @type {Map<number, Probe[]>} pending probes per slave, for the read stamp */
const probeBySlave = new Map();
/** @type {number[][]} per PLC, the time of every read of register 0 (a poll's first request) */
const pollStarts = [];

/**
 * @param {string} key
 * @param {Probe} p
 */
function settle(key, p) {
  const list = pending.get(key);
  if (list !== undefined) list.splice(list.indexOf(p), 1);
  const bySlave = probeBySlave.get(p.slave);
  if (bySlave !== undefined) {
    bySlave.splice(bySlave.indexOf(p), 1);
    if (bySlave.length === 0) probeBySlave.delete(p.slave);
  }
}

/**
 * @param {{ pk?: unknown, deviceNames?: unknown, first?: unknown, count?: unknown,
 *   everyMs?: unknown, timeoutMs?: unknown }} msg
 */
function startProbes(msg) {
  const pk = String(msg.pk);
  const names = /** @type {string[]} */ (msg.deviceNames);
  const first = Number(msg.first);
  const count = Number(msg.count);
  const timeoutMs = Number(msg.timeoutMs ?? 60_000);
  let turn = 0;
  let value = 40_000;
  /** @type {number[]} next probe register per device */
  const next = names.map(() => 0);
  clearInterval(probeTimer);
  probeTimer = setInterval(
    () => {
      const i = turn++ % names.length;
      const device = names[i] ?? "";
      const slave = slaves[i];
      if (slave === undefined) return;
      const key = `${pk}/${device}`;
      const k = first + ((next[i] ?? 0) % count);
      next[i] = (next[i] ?? 0) + 1;
      const waiting = pending.get(key) ?? [];
      pending.set(key, waiting);
      const t = wallNow();
      for (const p of [...waiting]) {
        if (t - p.t0 > timeoutMs) settle(key, p);
      }
      if (waiting.some((p) => p.address === k)) {
        probeSkipped++;
        return;
      }
      value = value >= 65_000 ? 40_000 : value + 1;
      /** @type {Probe} */
      const p = {
        device,
        slave: i,
        address: k,
        path: groupedName(k, points, groups).split("."),
        value,
        t0: 0,
      };
      probes.push(p);
      waiting.push(p);
      const bySlave = probeBySlave.get(i) ?? [];
      bySlave.push(p);
      probeBySlave.set(i, bySlave);
      slave.sim.unit(UNIT_ID).holding[k] = value;
      p.t0 = wallNow();
    },
    Number(msg.everyMs ?? 50),
  );
  return null;
}

function stopProbes() {
  clearInterval(probeTimer);
  probeTimer = undefined;
  const out = probes.map((p) => ({
    device: p.device,
    t0: p.t0,
    readAt: p.readAt,
    arrivedAt: p.arrivedAt,
  }));
  const skipped = probeSkipped;
  probes = [];
  pending.clear();
  probeBySlave.clear();
  probeSkipped = 0;
  return { probes: out, skipped };
}

/**
 * @param {{ perTick?: unknown, tickMs?: unknown, seed?: unknown, registers?: unknown }} msg
 */
function churn(msg) {
  clearInterval(churnTimer);
  churnTimer = undefined;
  const perTick = Number(msg.perTick ?? 0);
  const registers = Number(msg.registers ?? 0);
  if (perTick <= 0 || registers <= 0) return churned;
  const random = seededRandom(Number(msg.seed ?? 1));
  churnTimer = setInterval(
    () => {
      for (const { sim } of slaves) {
        const holding = sim.unit(UNIT_ID).holding;
        for (let n = 0; n < perTick; n++) {
          holding[Math.floor(random() * registers)] = Math.floor(random() * 40_000);
          churned++;
        }
      }
    },
    Number(msg.tickMs ?? 100),
  );
  return churned;
}

/**
 * @param {{ open?: unknown }} msg
 */
function setGate(msg) {
  gateOpen = msg.open === true;
  if (!gateOpen) {
    for (const s of [...gateSockets]) s.destroy();
    gateSockets.clear();
  }
  return wallNow();
}

/**
 * @param {{ since?: unknown }} msg
 */
function log(msg) {
  const since = Number(msg.since ?? 0);
  /** @type {Record<string, number[][]>} */
  const out = {};
  for (const [key, list] of requests) out[key] = list.filter((r) => (r[0] ?? 0) >= since);
  return out;
}

/**
 * @param {{ pk?: unknown, deviceNames?: unknown }} msg
 */
function verify(msg) {
  const pk = String(msg.pk);
  const names = /** @type {string[]} */ (msg.deviceNames);
  return names.map((dn, i) => {
    const doc = cloud?.service.getShadow(pk, dn);
    const holding = slaves[i]?.sim.unit(UNIT_ID).holding;
    let mismatches = 0;
    let missing = 0;
    /** @type {string[]} */
    const examples = [];
    for (let k = 0; k < points; k++) {
      const name = groupedName(k, points, groups);
      const v = at(doc?.state.reported, name.split("."));
      const want = holding?.[k];
      if (v === undefined) missing++;
      else if (v !== want) mismatches++;
      else continue;
      if (examples.length < 5) examples.push(`${name}: cloud ${String(v)}, PLC ${String(want)}`);
    }
    return {
      device: dn,
      version: doc?.version,
      leaves: leaves(doc?.state.reported ?? {}),
      mismatches,
      missing,
      examples,
    };
  });
}

async function stopAll() {
  clearInterval(churnTimer);
  clearInterval(probeTimer);
  for (const s of gateSockets) s.destroy();
  const g = gate;
  gate = undefined;
  if (g !== undefined) await new Promise((resolve) => g.close(() => resolve(null)));
  const c = cloud;
  cloud = undefined;
  await c?.close();
  await Promise.all(slaves.map((s) => s.sim.stop()));
}

/**
 * @param {Record<string, unknown> & { cmd?: unknown }} msg
 * @returns {Promise<unknown>}
 */
async function handle(msg) {
  switch (msg.cmd) {
    case "start":
      return start(/** @type {Parameters<typeof start>[0]} */ (msg));
    case "clock":
      return wallNow();
    case "gate":
      return setGate(/** @type {Parameters<typeof setGate>[0]} */ (msg));
    case "churn":
      return churn(/** @type {Parameters<typeof churn>[0]} */ (msg));
    case "probes":
      return startProbes(/** @type {Parameters<typeof startProbes>[0]} */ (msg));
    case "probesStop":
      return stopProbes();
    case "log":
      return log(/** @type {Parameters<typeof log>[0]} */ (msg));
    case "verify":
      return verify(/** @type {Parameters<typeof verify>[0]} */ (msg));
    case "pollStarts":
      return pollStarts.map((list) => list.filter((t) => t >= Number(msg["since"] ?? 0)));
    case "registers":
      return slaves.map(({ sim }) => Array.from(sim.unit(UNIT_ID).holding.subarray(0, points)));
    case "quiet":
      return wallNow() - lastRequestAt;
    case "stop":
      await stopAll();
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
}

serveHost("backlog-plant-host.js", "b6-backlog-drain.js", handle, stopAll);
