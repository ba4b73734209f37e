/**
 * The plant around a gateway under test, in a process of its own: Modbus TCP simulators (our
 * own, from dist/), the local cloud shadow service (embedded aedes broker, shadows in memory),
 * and a gate in front of its broker that can cut the link. Both ends of a latency live here, a
 * register change and the report that reaches the cloud, or a control push and the write that
 * reaches the PLC, so they are stamped on one clock and the gateway (in the benchmark's process,
 * on the other core when pinned) shares neither event loop nor core with the plant. One plant
 * for B3 (latency), B6 (backlog drain) and B9 (command path). Driven over the Node IPC channel
 * (lib/host-server.ts): `{ id, cmd, ...args }` in, exactly one `{ id, ok, value | error }` back.
 *
 * Arrival at the cloud is seen by an in-process subscription to /shadow/update/+/+ on the
 * service's own aedes instance, registered after the service's, so it gets every request
 * packet right after the service has applied it (the service handles a request synchronously;
 * every match is checked against the service's store, `applied`). The service has no event
 * for reported updates, only "control". The first read request covering a register is seen
 * where the simulator asks whether a read touches a hole: the one place that sees which
 * registers a request covers, without changing what the simulator answers.
 *
 * Commands (times are this process's wallNow(), see lib/host-client.ts):
 * - start { slaves, points, fill: "uint16" (default) | "float32", groups, logRequests, dialect }: one
 *   simulator per PLC on 127.0.0.1 hosting unit 1, holding registers 0.. filled with `points`
 *   values (uint16: 1000 + k + 7 * slave; float32: 20 + slave + k / 100 at registers 2k, 2k+1,
 *   ABCD); the cloud service; and the gate. `groups`: how the mapping names the points
 *   (groupedName, lib/report-gen.ts), for probes and verify. `logRequests`: keep every update
 *   request for `log`. `dialect`: "alibaba" (default) or "aws": which local service and topics
 *   (AWS: the device's thing is its deviceName; AWS topics name no productKey, so the plant
 *   files them under the start's `productKey`, default a1Bench, and the callers' pk/dn keys
 *   hold in both; a push is the delta, a clear sets the point to null; `maxDocumentBytes`: the
 *   AWS service's document limit, default AWS's 8 KB). Replies { ports, mqttUrl (direct), httpUrl, gateUrl (through the gate) }.
 * - clock: wallNow().
 * - churn { perTick, tickMs, seed, points }: every tickMs, `perTick` random points among the
 *   first `points` of every PLC get a new random value (memory writes, not over the wire), as
 *   the fill's type; perTick 0 stops it. Replies how many values were changed so far.
 * - delay { ms }: every simulator's response delay (device turnaround).
 * - gate { open }: restores or cuts the link; replies the time it happened.
 *
 * B3 and B9:
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
 * - counters / resetCounters: update requests seen per device, values churned, requests
 *   served per slave, this process's cpuUsage().
 *
 * B6:
 * - probes { pk, deviceNames, first, count, everyMs, timeoutMs }: starts probing live latency:
 *   every everyMs the next device in turn gets a new value in one of its probe registers
 *   (first..first+count-1, used in turn, a register whose previous probe is still on its way
 *   is skipped), stamped, and the first update request for that device carrying the value at
 *   the register's point is its arrival; the first poll read covering the register after the
 *   write is stamped too. probesStop: stops and replies every probe { device, t0, readAt?,
 *   arrivedAt? } and how many were skipped.
 * - log { since }: the update requests seen per "pk/dn" since a time: [t, kind, leaves, bytes]
 *   with kind 0 = get, 1 = reported update, 2 = anything else (with logRequests).
 * - pollStarts { since }: per PLC, the times of the read requests starting at register 0 (the
 *   first request of each poll), from which the poll grid's phase is estimated.
 * - registers: every simulator's holding registers 0..points-1, one array per PLC.
 * - quiet: milliseconds since the last update request (of any device).
 * - verify { pk, deviceNames }: compares each device's reported state in the service's store
 *   with its simulator's registers (a uint16 fill); replies per device { device, version,
 *   leaves, mismatches, missing, examples }.
 *
 * - stop: stops the gate, the service and the simulators, replies, exits.
 */
import { Buffer } from "node:buffer";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { clearInterval, clearTimeout, setImmediate, setInterval, setTimeout } from "node:timers";
import { URL } from "node:url";
import type { ModbusTcpSimulator as ModbusSim } from "../../../src/sim/modbus/index.js";
import { seededRandom } from "../../../test/helpers/random.js";
import {
  ModbusTcpSimulator,
  SHADOW_GET_WILDCARD,
  SHADOW_UPDATE_WILDCARD,
  parseAwsTopic,
  parseShadowTopic,
  startAwsCloudService,
  startCloudService,
} from "./dist.js";
import { wallNow } from "./host-client.js";
import { serveHost, type HostMessage } from "./host-server.js";
import { groupedName, leafCount } from "./report-gen.js";

const HOST = "127.0.0.1";
const UNIT_ID = 1;

type Fill = "uint16" | "float32";
type Message = Record<string, unknown>;

interface Watcher {
  /** requests to the service, or its replies and pushes */
  kind: "update" | "get";
  /** `push`: a control (Alibaba) or delta (AWS) message from the service. */
  match: (pk: string, dn: string, msg: Message, push: boolean) => boolean;
  fire: (at: number) => void;
}

/** What `command` stamps (see the header), and the outcome's status. */
export interface CommandTimes {
  api: number;
  pushed?: number;
  control?: number;
  published?: boolean;
  write?: number;
  writeValue?: number;
  reported?: number;
  applied?: boolean;
  cleared?: number;
  outcome?: number;
  status?: unknown;
}

interface Probe {
  device: string;
  slave: number;
  address: number;
  path: string[];
  value: number;
  t0: number;
  readAt?: number;
  arrivedAt?: number;
}

const slaves: { sim: ModbusSim; port: number }[] = [];
let fill: Fill = "uint16";
let points = 0;
let groups = 1;
type Cloud =
  | { dialect: "alibaba"; c: Awaited<ReturnType<typeof startCloudService>> }
  | { dialect: "aws"; c: Awaited<ReturnType<typeof startAwsCloudService>> };
let cloud: Cloud | undefined;
/** The productKey AWS requests are filed under (see start). */
let awsProductKey = "a1Bench";

/** A stored shadow, in either dialect (AWS: the classic shadow of the thing `dn`). */
function shadowOf(pk: string, dn: string) {
  if (cloud?.dialect === "aws") return cloud.c.service.getShadow(dn);
  return cloud?.c.service.getShadow(pk, dn);
}

/** A request (update) or a service message (get) on a shadow topic, in the plant's dialect. */
function topicOf(
  topic: string,
): { pk: string; dn: string; kind: "update" | "get"; get: boolean; push: boolean } | undefined {
  if (cloud?.dialect === "aws") {
    const t = parseAwsTopic(topic);
    if (t === undefined || t.shadowName !== undefined) return undefined;
    return {
      pk: awsProductKey,
      dn: t.thingName,
      kind: t.stub === undefined ? "update" : "get",
      get: t.operation === "get" && t.stub === undefined,
      push: t.stub === "delta",
    };
  }
  const t = parseShadowTopic(topic);
  return t && { pk: t.productKey, dn: t.deviceName, kind: t.kind, get: false, push: false };
}
let gate: Server | undefined;
let gateOpen = true;
const gateSockets = new Set<Socket>();
let churnTimer: NodeJS.Timeout | undefined;
let churned = 0;

const watchers = new Set<Watcher>();
const writes = new Map<string, { at: number; value: number; count: number }>();
/**
 * Tracked reported paths ("pk/dn/path"): the value and arrival of the last update request
 * that carried each.
 */
const tracked = new Map<string, { at: number; value: unknown } | null>();
/** Update requests seen, per "pk/dn". */
let updates = new Map<string, number>();
/**
 * The change being watched: the first request that covers its register after the change (the
 * poll that sees it) is stamped, so the latency splits into the wait for a poll and the rest.
 */
let armedRead: { slave: number; address: number; readAt: number | undefined } | undefined;

/** With logRequests: "pk/dn" -> [t, kind, leaves, bytes] of every update request. */
let logRequests = false;
const requests = new Map<string, number[][]>();
let lastRequestAt = 0;
let probes: Probe[] = [];
/** Pending probes per "pk/dn". */
const pending = new Map<string, Probe[]>();
/** Pending probes per slave, for the read stamp. */
const probeBySlave = new Map<number, Probe[]>();
let probeTimer: NodeJS.Timeout | undefined;
let probeSkipped = 0;
/** Per PLC, the time of every read of register 0 (a poll's first request). */
const pollStarts: number[][] = [];

const f32 = new DataView(new ArrayBuffer(4));

/** Writes a float32 as two words, ABCD (high word first, the mapping default). */
function putFloat32(holding: Uint16Array, address: number, value: number): void {
  f32.setFloat32(0, value);
  holding[address] = f32.getUint16(0);
  holding[address + 1] = f32.getUint16(2);
}

function at(root: unknown, path: readonly string[]): unknown {
  let v = root;
  for (const k of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Message)[k];
  }
  return v;
}

function stateOf(msg: Message): Message | undefined {
  const s = msg["state"];
  return typeof s === "object" && s !== null ? (s as Message) : undefined;
}

/**
 * Resolves with the time of the first message the predicate accepts (an update request, or with
 * kind "get" a reply or push of the service), or undefined after timeoutMs.
 */
function watch(
  match: Watcher["match"],
  timeoutMs: number,
  kind: Watcher["kind"] = "update",
): { promise: Promise<number | undefined>; cancel: () => void } {
  let done: (v: number | undefined) => void = () => undefined;
  const promise = new Promise<number | undefined>((resolve) => {
    done = resolve;
  });
  const w: Watcher = {
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
 */
function appliedInStore(pk: string, dn: string, path: string[], value: unknown): Promise<boolean> {
  return new Promise((resolve) =>
    setImmediate(() => resolve(at(shadowOf(pk, dn)?.state.reported, path) === value)),
  );
}

/** Stamps the reads that cover a watched register: the armed change's, or a pending probe's. */
function stampReads(slave: number, starts: number[], address: number, n: number): void {
  if (address === 0 && starts.length < 100_000) starts.push(wallNow());
  const a = armedRead;
  if (
    a !== undefined &&
    a.readAt === undefined &&
    a.slave === slave &&
    address <= a.address &&
    a.address < address + n
  ) {
    a.readAt = wallNow();
  }
  if (probeBySlave.size === 0) return;
  const list = probeBySlave.get(slave);
  if (list === undefined) return;
  const t = wallNow();
  for (const p of list) {
    if (p.readAt === undefined && address <= p.address && p.address < address + n) p.readAt = t;
  }
}

/** Every request packet to the service (kind "update") and every reply or push ("get"). */
function onPacket(packet: { topic: string; payload: string | Buffer }, cb: () => void): void {
  const t = wallNow();
  try {
    const target = topicOf(packet.topic);
    if (target === undefined) return;
    const key = `${target.pk}/${target.dn}`;
    const isUpdate = target.kind === "update";
    if (isUpdate) {
      lastRequestAt = t;
      updates.set(key, (updates.get(key) ?? 0) + 1);
    }
    const readMessage = watchers.size > 0 || (isUpdate && (tracked.size > 0 || logRequests));
    if (!readMessage) return;
    const text =
      typeof packet.payload === "string" ? packet.payload : packet.payload.toString("utf8");
    const msg = (text === "" ? {} : JSON.parse(text)) as Message;
    if (msg["method"] === "control") target.push = true;
    for (const w of [...watchers]) {
      if (w.kind === target.kind && w.match(target.pk, target.dn, msg, target.push)) w.fire(t);
    }
    if (!isUpdate) return;
    const reported = stateOf(msg)?.["reported"];
    for (const k of tracked.keys()) {
      if (!k.startsWith(`${key}/`)) continue;
      const v = at(reported, k.slice(key.length + 1).split("."));
      if (v !== undefined) tracked.set(k, { at: t, value: v });
    }
    if (!logRequests) return;
    const kind = msg["method"] === "get" || target.get ? 0 : reported !== undefined ? 1 : 2;
    let log = requests.get(key);
    if (log === undefined) requests.set(key, (log = []));
    log.push([t, kind, kind === 1 ? leafCount(reported) : 0, Buffer.byteLength(text)]);
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
}

/** A TCP relay to the broker that can cut every connection and refuse new ones. */
function startGate(brokerPort: number): Promise<Server> {
  const server = createServer((client) => {
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
  return new Promise((resolve) => server.listen(0, HOST, () => resolve(server)));
}

async function start(msg: HostMessage) {
  const count = Number(msg["slaves"]);
  points = Number(msg["points"]);
  groups = Number(msg["groups"] ?? 1);
  fill = msg["fill"] === "float32" ? "float32" : "uint16";
  logRequests = msg["logRequests"] === true;
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new RangeError("slaves: 1..100");
  if (!Number.isInteger(points) || points < 1 || points > 30000) throw new RangeError("points");
  for (let i = 0; i < count; i++) {
    const sim = new ModbusTcpSimulator({ units: [UNIT_ID] });
    const unit = sim.unit(UNIT_ID);
    for (let k = 0; k < points; k++) {
      if (fill === "float32") putFloat32(unit.holding, 2 * k, 20 + i + k / 100);
      else unit.holding[k] = (1000 + k + 7 * i) & 0xffff;
    }
    const starts: number[] = [];
    pollStarts.push(starts);
    const touchesHole = unit.touchesHole.bind(unit);
    unit.touchesHole = (table, address, n) => {
      if (table === "holding") stampReads(i, starts, address, n);
      return touchesHole(table, address, n);
    };
    sim.on("write", (w) => {
      const written = sim.unit(w.unitId);
      const mem =
        w.table === "holding" ? written.holding : w.table === "coil" ? written.coil : undefined;
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
  awsProductKey = String(msg["productKey"] ?? awsProductKey);
  cloud =
    msg["dialect"] === "aws"
      ? {
          dialect: "aws",
          c: await startAwsCloudService({
            mqttPort: 0,
            httpPort: 0,
            ...(msg["maxDocumentBytes"] !== undefined && {
              maxDocumentBytes: Number(msg["maxDocumentBytes"]),
            }),
          }),
        }
      : { dialect: "alibaba", c: await startCloudService({ mqttPort: 0, httpPort: 0 }) };
  const broker = cloud.c.broker;
  if (broker === undefined) throw new Error("the cloud service has no embedded broker");
  const filters =
    cloud.dialect === "aws"
      ? ["$aws/things/+/shadow/+", "$aws/things/+/shadow/+/+"]
      : [SHADOW_UPDATE_WILDCARD, SHADOW_GET_WILDCARD];
  for (const filter of filters) {
    await new Promise((resolve) => broker.subscribe(filter, onPacket, () => resolve(null)));
  }
  gate = await startGate(Number(new URL(cloud.c.mqttUrl).port));
  return {
    ports: slaves.map((s) => s.port),
    mqttUrl: cloud.c.mqttUrl,
    httpUrl: cloud.c.httpUrl,
    gateUrl: `mqtt://${HOST}:${(gate.address() as AddressInfo).port}`,
  };
}

function churn(msg: HostMessage): number {
  clearInterval(churnTimer);
  churnTimer = undefined;
  const perTick = Number(msg["perTick"] ?? 0);
  const among = Number(msg["points"] ?? 0);
  if (perTick <= 0 || among <= 0) return churned;
  const random = seededRandom(Number(msg["seed"] ?? 1));
  churnTimer = setInterval(
    () => {
      for (const { sim } of slaves) {
        const holding = sim.unit(UNIT_ID).holding;
        for (let n = 0; n < perTick; n++) {
          if (fill === "float32") {
            const k = Math.floor(random() * among);
            putFloat32(holding, 2 * k, Math.round(random() * 100_000) / 100);
          } else {
            holding[Math.floor(random() * among)] = Math.floor(random() * 40_000);
          }
          churned++;
        }
      }
    },
    Number(msg["tickMs"] ?? 100),
  );
  return churned;
}

function setGate(msg: HostMessage): number {
  gateOpen = msg["open"] === true;
  if (!gateOpen) {
    for (const s of [...gateSockets]) s.destroy();
    gateSockets.clear();
  }
  return wallNow();
}

async function change(msg: HostMessage) {
  const slave = slaves[Number(msg["slave"])];
  if (slave === undefined || cloud === undefined) throw new Error("not started");
  const expect = (msg["expect"] ?? {}) as Message;
  const pk = String(expect["productKey"]);
  const dn = String(expect["deviceName"]);
  const path = String(expect["path"]).split(".");
  const value = Number(msg["value"]);
  const w = watch(
    (p, d, m) => p === pk && d === dn && at(stateOf(m)?.["reported"], path) === value,
    Number(msg["timeoutMs"] ?? 5000),
  );
  const read: { slave: number; address: number; readAt: number | undefined } = {
    slave: Number(msg["slave"]),
    address: Number(msg["address"]),
    readAt: undefined,
  };
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

async function command(msg: HostMessage) {
  const plantCloud = cloud;
  if (plantCloud === undefined) throw new Error("not started");
  const slave = Number(msg["slave"]);
  const address = Number(msg["address"]);
  const pk = String(msg["productKey"]);
  const dn = String(msg["deviceName"]);
  const name = String(msg["path"]);
  const path = name.split(".");
  const value = Number(msg["value"]);
  const timeoutMs = Number(msg["timeoutMs"] ?? 5000);
  const sim = slaves[slave]?.sim;
  if (sim === undefined) throw new Error(`no slave ${slave}`);

  const t: CommandTimes = { api: 0 };
  const pushed = watch((p, d, _m, push) => p === pk && d === dn && push, timeoutMs, "get");
  const reported = watch(
    (p, d, m) => p === pk && d === dn && at(stateOf(m)?.["reported"], path) === value,
    timeoutMs,
  );
  const cleared = watch((p, d, m) => {
    const desired = stateOf(m)?.["desired"];
    const clear = plantCloud.dialect === "aws" ? at(desired, path) === null : desired === "null";
    return p === pk && d === dn && clear;
  }, timeoutMs);
  const outcome = watch(
    (p, d, m) =>
      p === pk && d === dn && at(stateOf(m)?.["reported"], ["_commands", ...path]) !== undefined,
    timeoutMs,
  );
  const onControl = (e: { deviceName: string; productKey: string; published: boolean }) => {
    if (e.productKey !== pk || e.deviceName !== dn || t.control !== undefined) return;
    t.control = wallNow();
    t.published = e.published;
  };
  const written = new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      sim.off("write", onWrite);
      resolve();
    }, timeoutMs);
    function onWrite(w: { table: string; address: number }) {
      if (w.table !== "holding" || w.address !== address) return;
      t.write = wallNow();
      t.writeValue = sim?.unit(UNIT_ID).holding[address];
      clearTimeout(timer);
      sim?.off("write", onWrite);
      resolve();
    }
    sim.on("write", onWrite);
  });
  // AWS's service has no event of its own for the push: the delta on the wire is the start.
  if (plantCloud.dialect === "alibaba") plantCloud.c.service.on("control", onControl);
  try {
    t.api = wallNow();
    if (plantCloud.dialect === "aws") {
      const r = plantCloud.c.service.update(dn, undefined, {
        state: { desired: { [name]: value } },
      });
      if (!r.ok) throw new Error(`update refused: ${r.error.code} ${r.error.message}`);
    } else {
      const r = await plantCloud.c.service.updateDesired(
        pk,
        dn,
        { method: "update", state: { desired: { [name]: value } } },
        { delta: true },
      );
      if (!r.ok) throw new Error(`updateDesired refused: ${r.code} ${r.message}`);
    }
    await written;
    t.pushed = await pushed.promise;
    // AWS's service has no "control" event: the delta on the wire is both the push and its proof.
    if (plantCloud.dialect === "aws") t.published = t.pushed !== undefined;
    t.reported = await reported.promise;
    if (t.reported !== undefined) t.applied = await appliedInStore(pk, dn, path, value);
    t.cleared = await cleared.promise;
    t.outcome = await outcome.promise;
    t.status = at(shadowOf(pk, dn)?.state.reported, ["_commands", ...path, "status"]);
    return t;
  } finally {
    if (plantCloud.dialect === "alibaba") plantCloud.c.service.off("control", onControl);
    pushed.cancel();
    reported.cancel();
    cleared.cancel();
    outcome.cancel();
  }
}

const trackKey = (msg: HostMessage) =>
  `${String(msg["productKey"])}/${String(msg["deviceName"])}/${String(msg["path"])}`;

function shadowInfo(msg: HostMessage) {
  const doc = shadowOf(String(msg["productKey"]), String(msg["deviceName"]));
  return doc === undefined
    ? null
    : {
        version: doc.version,
        leaves: leafCount(doc.state.reported),
        hasDesired: doc.state.desired !== undefined,
      };
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

function settle(key: string, p: Probe): void {
  const list = pending.get(key);
  if (list !== undefined) list.splice(list.indexOf(p), 1);
  const bySlave = probeBySlave.get(p.slave);
  if (bySlave !== undefined) {
    bySlave.splice(bySlave.indexOf(p), 1);
    if (bySlave.length === 0) probeBySlave.delete(p.slave);
  }
}

function startProbes(msg: HostMessage): null {
  const pk = String(msg["pk"]);
  const names = msg["deviceNames"] as string[];
  const first = Number(msg["first"]);
  const count = Number(msg["count"]);
  const timeoutMs = Number(msg["timeoutMs"] ?? 60_000);
  let turn = 0;
  let value = 40_000;
  /** The next probe register per device. */
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
      const p: Probe = {
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
    Number(msg["everyMs"] ?? 50),
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

function requestLog(msg: HostMessage): Record<string, number[][]> {
  const since = Number(msg["since"] ?? 0);
  const out: Record<string, number[][]> = {};
  for (const [key, list] of requests) out[key] = list.filter((r) => (r[0] ?? 0) >= since);
  return out;
}

function verify(msg: HostMessage) {
  const pk = String(msg["pk"]);
  const names = msg["deviceNames"] as string[];
  return names.map((dn, i) => {
    const doc = shadowOf(pk, dn);
    const holding = slaves[i]?.sim.unit(UNIT_ID).holding;
    let mismatches = 0;
    let missing = 0;
    const examples: string[] = [];
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
      leaves: leafCount(doc?.state.reported ?? {}),
      mismatches,
      missing,
      examples,
    };
  });
}

async function stopAll(): Promise<void> {
  clearInterval(churnTimer);
  clearInterval(probeTimer);
  for (const w of [...watchers]) w.fire(NaN);
  for (const s of gateSockets) s.destroy();
  const g = gate;
  gate = undefined;
  if (g !== undefined) await new Promise((resolve) => g.close(() => resolve(null)));
  const c = cloud;
  cloud = undefined;
  await c?.c.close();
  await Promise.all(slaves.map((s) => s.sim.stop()));
}

serveHost(
  "plant-host.js",
  "b3-latency.ts, b6-backlog-drain.ts, b9-command-path.ts",
  {
    start,
    clock: () => wallNow(),
    churn,
    delay: (msg) => {
      for (const { sim } of slaves) sim.responseDelayMs = Number(msg["ms"] ?? 0);
      return null;
    },
    gate: setGate,
    change,
    command,
    lastWrite: (msg) =>
      writes.get(`${Number(msg["slave"])}/holding/${Number(msg["address"])}`) ?? null,
    track: (msg) => {
      tracked.set(trackKey(msg), null);
      return null;
    },
    lastReport: (msg) => tracked.get(trackKey(msg)) ?? null,
    shadowInfo,
    counters,
    resetCounters: () => {
      updates = new Map();
      churned = 0;
      for (const { sim } of slaves) sim.resetStats();
      return null;
    },
    probes: startProbes,
    probesStop: stopProbes,
    log: requestLog,
    pollStarts: (msg) =>
      pollStarts.map((list) => list.filter((t) => t >= Number(msg["since"] ?? 0))),
    registers: () =>
      slaves.map(({ sim }) => Array.from(sim.unit(UNIT_ID).holding.subarray(0, points))),
    quiet: () => wallNow() - lastRequestAt,
    verify,
  },
  stopAll,
);
