// @ts-check
/**
 * The plant around a gateway under test, in a process of its own: Modbus TCP simulators (our
 * own, from dist/) and the local cloud shadow service (embedded aedes broker, shadows in
 * memory). Both ends of a latency live here, a register change and the report that reaches the
 * cloud, or a control push and the write that reaches the PLC, so they are stamped on one clock
 * and the gateway (in the benchmark's process, on the other core when pinned) shares neither
 * event loop nor core with the plant. Driven over the Node IPC channel like lib/sim-host.js:
 * `{ id, cmd, ...args }` in, exactly one `{ id, ok, value | error }` back.
 *
 * Arrival at the cloud is seen by an in-process subscription to /shadow/update/+/+ on the
 * service's own aedes instance, registered after the service's, so it gets every request
 * packet right after the service has applied it (the service handles a request synchronously;
 * every match is checked against the service's store, `applied`). The service has no event
 * for reported updates, only "control".
 *
 * Commands (times are this process's wallNow(), see lib/host-client.js):
 * - start { slaves, fill: "uint16" | "float32", points }: one simulator per slave on 127.0.0.1
 *   hosting unit 1, holding registers 0.. filled with `points` values; and the cloud service.
 *   Replies { ports, mqttUrl, httpUrl }.
 * - clock: wallNow().
 * - churn { perTick, tickMs, seed }: every tickMs, `perTick` random float32 points of every
 *   slave get a new value (memory writes, not over the wire); perTick 0 stops it.
 * - delay { ms }: every simulator's response delay (device turnaround).
 * - change { slave, address, value, expect: { productKey, deviceName, path }, timeoutMs }: sets
 *   holding[address] and waits for an update request carrying `path` = value. Replies
 *   { ms, afterReadMs, applied } or { timedOut: true }; afterReadMs runs from the first read
 *   request covering the register after the change (the poll that saw it) to the arrival.
 * - command { slave, address, productKey, deviceName, path, value, timeoutMs }: sets desired
 *   { path: value } through ShadowService.updateDesired (what POST /shadows/{pk}/{dn} with
 *   DeltaUpdate calls) and stamps the API call, the control push as the broker hands it to
 *   subscribers (`pushed`, an in-process subscription to /shadow/get/+/+), the service's
 *   "control" event (emitted only once aedes calls back, which can be after the gateway has
 *   already written), the simulator's "write" event, the first update carrying the read-back,
 *   the desired clear and the outcome.
 * - lastWrite { slave, address }: { at, value, count } of the last write over the wire there.
 * - track { productKey, deviceName, path } / lastReport { same }: from then on, the value and
 *   arrival of the last update request carrying that reported path ({ at, value } or null).
 * - shadowInfo { productKey, deviceName }: { version, leaves, hasDesired } of the stored shadow.
 * - counters / resetCounters: update requests seen per device, points churned, requests
 *   served per slave, this process's cpuUsage().
 * - stop: stops the service and the simulators, replies, exits.
 */
import { clearInterval, clearTimeout, setImmediate, setInterval, setTimeout } from "node:timers";
import {
  ModbusTcpSimulator,
  SHADOW_GET_WILDCARD,
  SHADOW_UPDATE_WILDCARD,
  parseShadowTopic,
  startCloudService,
} from "./dist.js";
import { seededRandom } from "./common.js";
import { wallNow } from "./host-client.js";
import { serveHost } from "./host-server.js";

const HOST = "127.0.0.1";
const UNIT_ID = 1;

/** @typedef {import("../../../src/core/types.js").JsonObject} JsonObject */
/** @typedef {import("../../../src/core/types.js").JsonValue} JsonValue */

/**
 * @typedef {object} Watcher
 * @property {"update" | "get"} kind  requests to the service, or its replies and pushes
 * @property {(pk: string, dn: string, msg: Record<string, unknown>) => boolean} match
 * @property {(at: number) => void} fire
 */

/** @type {{ sim: InstanceType<typeof ModbusTcpSimulator>, port: number }[]} */
const slaves = [];
/** @type {Awaited<ReturnType<typeof startCloudService>> | undefined} */
let cloud;
/** @type {Set<Watcher>} */
const watchers = new Set();
/** @type {Map<string, { at: number, value: number, count: number }>} */
const writes = new Map();
/**
 * Tracked reported paths ("pk/dn/path"): the value and arrival of the last update request
 * that carried each.
 * @type {Map<string, { at: number, value: unknown } | null>}
 */
const tracked = new Map();
/** @type {Map<string, number>} update requests seen, per "pk/dn" */
let updates = new Map();
/**
 * The change being watched: the first request that covers its register after the change (the
 * poll that sees it) is stamped, so the latency splits into the wait for a poll and the rest.
 * @type {{ slave: number, address: number, readAt: number | undefined } | undefined}
 */
let armedRead;
/** @type {NodeJS.Timeout | undefined} */
let churnTimer;
let churned = 0;

const f32 = new DataView(new ArrayBuffer(4));

/**
 * Writes a float32 as two words, ABCD (high word first, the mapping default).
 * @param {Uint16Array} holding
 * @param {number} address
 * @param {number} value
 */
function putFloat32(holding, address, value) {
  f32.setFloat32(0, value);
  holding[address] = f32.getUint16(0);
  holding[address + 1] = f32.getUint16(2);
}

/**
 * @param {unknown} root
 * @param {string} path  dotted
 * @returns {unknown}
 */
function at(root, path) {
  let v = root;
  for (const k of path.split(".")) {
    if (typeof v !== "object" || v === null) return undefined;
    v = /** @type {Record<string, unknown>} */ (v)[k];
  }
  return v;
}

/**
 * @param {Record<string, unknown>} msg
 * @returns {Record<string, unknown> | undefined}
 */
function stateOf(msg) {
  const s = msg["state"];
  return typeof s === "object" && s !== null
    ? /** @type {Record<string, unknown>} */ (s)
    : undefined;
}

/**
 * Resolves with the time of the first message the predicate accepts (an update request, or with
 * kind "get" a reply or push of the service), or undefined after timeoutMs.
 * @param {(pk: string, dn: string, msg: Record<string, unknown>) => boolean} match
 * @param {number} timeoutMs
 * @param {"update" | "get"} [kind]
 * @returns {{ promise: Promise<number | undefined>, cancel: () => void }}
 */
function watch(match, timeoutMs, kind = "update") {
  /** @type {(v: number | undefined) => void} */
  let done = () => undefined;
  const promise = /** @type {Promise<number | undefined>} */ (
    new Promise((resolve) => {
      done = resolve;
    })
  );
  /** @type {Watcher} */
  const w = {
    kind,
    match,
    fire: (t) => {
      clearTimeout(timer);
      watchers.delete(w);
      done(t);
    },
  };
  const timer = setTimeout(() => {
    watchers.delete(w);
    done(undefined);
  }, timeoutMs);
  watchers.add(w);
  return {
    promise,
    cancel: () => {
      clearTimeout(timer);
      watchers.delete(w);
      done(undefined);
    },
  };
}

/**
 * Whether the service's store holds `value` at reported.`path` (checked after the service had
 * its turn with the packet).
 * @param {string} pk
 * @param {string} dn
 * @param {string} path
 * @param {unknown} value
 * @returns {Promise<boolean>}
 */
function appliedInStore(pk, dn, path, value) {
  return new Promise((resolve) =>
    setImmediate(() =>
      resolve(at(cloud?.service.getShadow(pk, dn)?.state.reported, path) === value),
    ),
  );
}

/**
 * @param {{ slaves?: unknown, fill?: unknown, points?: unknown }} msg
 */
async function start(msg) {
  const count = Number(msg.slaves);
  const points = Number(msg.points);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new RangeError("slaves: 1..100");
  if (!Number.isInteger(points) || points < 1 || points > 30000) throw new RangeError("points");
  for (let i = 0; i < count; i++) {
    const sim = new ModbusTcpSimulator({ units: [UNIT_ID] });
    const holding = sim.unit(UNIT_ID).holding;
    for (let k = 0; k < points; k++) {
      if (msg.fill === "float32") putFloat32(holding, 2 * k, 20 + i + k / 100);
      else holding[k] = (1000 + k + 7 * i) & 0xffff;
    }
    // The request path asks every read whether it touches a hole: the one place that sees
    // which registers a request covers, without changing what the simulator answers.
    const unit = sim.unit(UNIT_ID);
    const touchesHole = unit.touchesHole.bind(unit);
    unit.touchesHole = (table, address, n) => {
      const a = armedRead;
      if (
        a !== undefined &&
        a.readAt === undefined &&
        a.slave === i &&
        table === "holding" &&
        address <= a.address &&
        a.address < address + n
      ) {
        a.readAt = wallNow();
      }
      return touchesHole(table, address, n);
    };
    sim.on("write", (w) => {
      const unit = sim.unit(w.unitId);
      const mem = w.table === "holding" ? unit.holding : w.table === "coil" ? unit.coil : undefined;
      const key = `${i}/${w.table}/${w.address}`;
      const prev = writes.get(key);
      writes.set(key, {
        at: wallNow(),
        value: mem?.[w.address] ?? NaN,
        count: (prev?.count ?? 0) + 1,
      });
    });
    const { port } = await sim.start({ host: HOST, port: 0 });
    slaves.push({ sim, port });
  }
  cloud = await startCloudService({ mqttPort: 0, httpPort: 0 });
  const broker = cloud.broker;
  if (broker === undefined) throw new Error("the cloud service has no embedded broker");
  /** @type {(packet: { topic: string, payload: string | Buffer }, cb: () => void) => void} */
  const onPacket = (packet, cb) => {
    const t = wallNow();
    try {
      const target = parseShadowTopic(packet.topic);
      if (target === undefined) return;
      const key = `${target.productKey}/${target.deviceName}`;
      const isUpdate = target.kind === "update";
      if (isUpdate) updates.set(key, (updates.get(key) ?? 0) + 1);
      if (watchers.size === 0 && (!isUpdate || tracked.size === 0)) return;
      const msg = /** @type {Record<string, unknown>} */ (
        JSON.parse(
          typeof packet.payload === "string" ? packet.payload : packet.payload.toString("utf8"),
        )
      );
      for (const w of [...watchers]) {
        if (w.kind === target.kind && w.match(target.productKey, target.deviceName, msg)) w.fire(t);
      }
      if (!isUpdate) return;
      for (const k of tracked.keys()) {
        if (!k.startsWith(`${key}/`)) continue;
        const v = at(stateOf(msg)?.["reported"], k.slice(key.length + 1));
        if (v !== undefined) tracked.set(k, { at: t, value: v });
      }
    } catch {
      // A malformed request is the service's business, not ours.
    } finally {
      cb();
    }
  };
  for (const filter of [SHADOW_UPDATE_WILDCARD, SHADOW_GET_WILDCARD]) {
    await new Promise((resolve) => broker.subscribe(filter, onPacket, () => resolve(null)));
  }
  return { ports: slaves.map((s) => s.port), mqttUrl: cloud.mqttUrl, httpUrl: cloud.httpUrl };
}

/**
 * @param {{ perTick?: unknown, tickMs?: unknown, seed?: unknown, points?: unknown }} msg
 */
function churn(msg) {
  clearInterval(churnTimer);
  churnTimer = undefined;
  const perTick = Number(msg.perTick ?? 0);
  const points = Number(msg.points ?? 0);
  if (perTick <= 0 || points <= 0) return null;
  const random = seededRandom(Number(msg.seed ?? 1));
  churnTimer = setInterval(
    () => {
      for (const { sim } of slaves) {
        const holding = sim.unit(UNIT_ID).holding;
        for (let n = 0; n < perTick; n++) {
          const k = Math.floor(random() * points);
          putFloat32(holding, 2 * k, Math.round(random() * 100_000) / 100);
          churned++;
        }
      }
    },
    Number(msg.tickMs ?? 100),
  );
  return null;
}

/**
 * @param {{ slave?: unknown, address?: unknown, value?: unknown, timeoutMs?: unknown,
 *   expect?: { productKey?: unknown, deviceName?: unknown, path?: unknown } }} msg
 */
async function change(msg) {
  const slave = slaves[Number(msg.slave)];
  if (slave === undefined || cloud === undefined) throw new Error("not started");
  const pk = String(msg.expect?.productKey);
  const dn = String(msg.expect?.deviceName);
  const path = String(msg.expect?.path);
  const value = Number(msg.value);
  const w = watch(
    (p, d, m) => p === pk && d === dn && at(stateOf(m)?.["reported"], path) === value,
    Number(msg.timeoutMs ?? 5000),
  );
  /** @type {{ slave: number, address: number, readAt: number | undefined }} */
  const read = { slave: Number(msg.slave), address: Number(msg.address), readAt: undefined };
  slave.sim.unit(UNIT_ID).holding[read.address] = value;
  const t0 = wallNow();
  armedRead = read;
  const t1 = await w.promise;
  armedRead = undefined;
  if (t1 === undefined) return { timedOut: true };
  return {
    ms: t1 - t0,
    afterReadMs: read.readAt === undefined ? undefined : t1 - read.readAt,
    applied: await appliedInStore(pk, dn, path, value),
  };
}

/**
 * @param {{ slave?: unknown, address?: unknown, productKey?: unknown, deviceName?: unknown,
 *   path?: unknown, value?: unknown, timeoutMs?: unknown }} msg
 */
async function command(msg) {
  const service = cloud?.service;
  if (service === undefined) throw new Error("not started");
  const slave = Number(msg.slave);
  const address = Number(msg.address);
  const pk = String(msg.productKey);
  const dn = String(msg.deviceName);
  const path = String(msg.path);
  const value = Number(msg.value);
  const timeoutMs = Number(msg.timeoutMs ?? 5000);
  const sim = slaves[slave]?.sim;
  if (sim === undefined) throw new Error(`no slave ${slave}`);

  /** @type {{ api: number, pushed?: number, control?: number, published?: boolean, write?: number,
   *   writeValue?: number, reported?: number, applied?: boolean, cleared?: number,
   *   outcome?: number, status?: unknown }} */
  const t = { api: 0 };
  const pushed = watch(
    (p, d, m) => p === pk && d === dn && m["method"] === "control",
    timeoutMs,
    "get",
  );
  const reported = watch(
    (p, d, m) => p === pk && d === dn && at(stateOf(m)?.["reported"], path) === value,
    timeoutMs,
  );
  const cleared = watch(
    (p, d, m) => p === pk && d === dn && stateOf(m)?.["desired"] === "null",
    timeoutMs,
  );
  const outcome = watch(
    (p, d, m) =>
      p === pk && d === dn && at(stateOf(m)?.["reported"], `_commands.${path}`) !== undefined,
    timeoutMs,
  );
  /** @type {(e: { deviceName: string, productKey: string, published: boolean }) => void} */
  const onControl = (e) => {
    if (e.productKey !== pk || e.deviceName !== dn || t.control !== undefined) return;
    t.control = wallNow();
    t.published = e.published;
  };
  /** @type {Promise<void>} */
  const written = new Promise((resolve) => {
    const timer = setTimeout(() => {
      sim.off("write", onWrite);
      resolve();
    }, timeoutMs);
    /** @param {{ table: string, address: number }} w */
    function onWrite(w) {
      if (w.table !== "holding" || w.address !== address) return;
      t.write = wallNow();
      t.writeValue = sim?.unit(UNIT_ID).holding[address];
      clearTimeout(timer);
      sim?.off("write", onWrite);
      resolve();
    }
    sim.on("write", onWrite);
  });
  service.on("control", onControl);
  try {
    t.api = wallNow();
    const r = await service.updateDesired(
      pk,
      dn,
      { method: "update", state: { desired: { [path]: value } } },
      { delta: true },
    );
    if (!r.ok) throw new Error(`updateDesired refused: ${r.code} ${r.message}`);
    await written;
    t.pushed = await pushed.promise;
    t.reported = await reported.promise;
    if (t.reported !== undefined) t.applied = await appliedInStore(pk, dn, path, value);
    t.cleared = await cleared.promise;
    t.outcome = await outcome.promise;
    const doc = service.getShadow(pk, dn);
    t.status = at(doc?.state.reported, `_commands.${path}.status`);
    return t;
  } finally {
    service.off("control", onControl);
    pushed.cancel();
    reported.cancel();
    cleared.cancel();
    outcome.cancel();
  }
}

/** @param {unknown} root @returns {number} */
function leaves(root) {
  if (typeof root !== "object" || root === null) return root === undefined ? 0 : 1;
  return Object.values(root).reduce((n, v) => n + leaves(v), 0);
}

function counters() {
  return {
    updates: Object.fromEntries(updates),
    churned,
    cpu: process.cpuUsage(),
    slaves: slaves.map(({ sim, port }) => ({
      port,
      served: sim.served(UNIT_ID),
      openConnections: sim.stats().connections.open,
    })),
  };
}

async function stopAll() {
  clearInterval(churnTimer);
  for (const w of [...watchers]) w.fire(NaN);
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
    case "churn":
      return churn(/** @type {Parameters<typeof churn>[0]} */ (msg));
    case "delay":
      for (const { sim } of slaves) sim.responseDelayMs = Number(msg["ms"] ?? 0);
      return null;
    case "change":
      return change(/** @type {Parameters<typeof change>[0]} */ (msg));
    case "command":
      return command(/** @type {Parameters<typeof command>[0]} */ (msg));
    case "track":
      tracked.set(
        `${String(msg["productKey"])}/${String(msg["deviceName"])}/${String(msg["path"])}`,
        null,
      );
      return null;
    case "lastReport":
      return (
        tracked.get(
          `${String(msg["productKey"])}/${String(msg["deviceName"])}/${String(msg["path"])}`,
        ) ?? null
      );
    case "lastWrite":
      return writes.get(`${Number(msg["slave"])}/holding/${Number(msg["address"])}`) ?? null;
    case "shadowInfo": {
      const doc = cloud?.service.getShadow(String(msg["productKey"]), String(msg["deviceName"]));
      return doc === undefined
        ? null
        : {
            version: doc.version,
            leaves: leaves(doc.state.reported),
            hasDesired: doc.state.desired !== undefined,
          };
    }
    case "counters":
      return counters();
    case "resetCounters":
      updates = new Map();
      churned = 0;
      for (const { sim } of slaves) sim.resetStats();
      return null;
    case "stop":
      await stopAll();
      return null;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
}

serveHost("plant-host.js", "b3-latency.js", handle, stopAll);
