/**
 * The OPC UA client B10 measures, one variant per process: lib/sim-host.ts runs it (the ua*
 * commands) in a fresh host per variant, so each variant's CPU time, RSS and event loop are its
 * own. Only this module and what a variant loads live in that process: node-opcua, and for ours
 * the driver (dist/south/opcua); not the rest of the gateway.
 *
 * The server (lib/sim-host.ts opcuaTickStart) sets Bench.V<i> = i + tick for every i at once,
 * once per tick. So every value received names its item's tick exactly (value - i), and a
 * change is lost when an item never receives one of the ticks counted.
 *
 * Variants:
 * - ours: the gateway's driver (createOpcuaDriver with the schema's defaults for an opcua source,
 *   security None, anonymous): ONE NodeDriver.monitor over all items, publishing interval
 *   `publishingMs`, every NodeRef with samplingIntervalMs `samplingMs`.
 * - perItem: node-opcua directly, one ClientSubscription per item (createSubscription2 with the
 *   driver's keep-alive and lifetime arithmetic, then one monitored item on it with the same
 *   sampling interval and queue size as ours), `concurrency` creations in flight, stopped after
 *   `setupCapMs` or at the first run of 20 refusals in a row: what it managed is reported.
 * - read: the same driver, no subscription: driver.read() of all items every `readEveryMs`, on a
 *   fixed schedule (a Read that overruns its slot starts the next one at once, never two at once).
 * - readPause: the same, but each Read starts `readEveryMs` after the previous one ended, as a
 *   poller that sleeps between Reads does: its period is readEveryMs plus the Read's time.
 *
 * Counting: from uaWindowStart(fromTick) until uaWindowEnd(toTick) plus a grace period (for
 * what is still in flight), one bit per (item, tick > fromTick); at the end, the distinct
 * (item, tick) pairs with tick in (fromTick, toTick] are the changes received. An (item, tick)
 * received again is a repeat (for a Read, an unchanged value read again: normal; for a
 * subscription, a change delivered twice). CPU time
 * (process.cpuUsage), event-loop delay (monitorEventLoopDelay at 10 ms resolution, reported as
 * the delay beyond those 10 ms: its histogram holds whole timer periods) and values
 * received are taken over the window itself, from uaWindowStart to uaWindowEnd; RSS (VmRSS,
 * /proc/self/status) once a second over it, VmHWM at its end.
 */
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, performance, type IntervalHistogram } from "node:perf_hooks";
import { clearInterval, clearTimeout, setInterval, setTimeout } from "node:timers";
import type { ValueSample } from "../../../src/core/samples.js";
import type { ClientSubscription } from "node-opcua";

export type Variant = "ours" | "perItem" | "read" | "readPause";

export interface ClientPlan {
  variant: Variant;
  endpoint: string;
  items: number;
  publishingMs: number;
  samplingMs: number;
  /** read: the Read period */
  readEveryMs: number;
  /** perItem: no new subscription after this long */
  setupCapMs: number;
  /** perItem: creations in flight */
  concurrency: number;
  /** ticks a window can count (bounds the per-item tick bitmap) */
  maxTicks: number;
  /** the client PKI, shared by every variant of a run */
  pkiDir: string;
}

export interface Memory {
  rssMB: number;
  hwmMB: number;
}

export interface ClientSetup {
  variant: Variant;
  /** items whose changes are expected (perItem: those created) */
  monitored: number;
  /** connect + subscriptions and items (or the first Read) */
  setupMs: number;
  /** before node-opcua was loaded */
  before: Memory;
  /** after the setup */
  connected: Memory;
  detail: Record<string, unknown>;
}

export interface WindowResult {
  windowMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  /** of one core over the window */
  cpuShare: number;
  loopMs: { p50: number; p99: number; max: number };
  /** the largest VmRSS sampled in the window */
  rssMaxMB: number;
  /** VmHWM at the window's end */
  hwmMB: number;
  /** values received in the window (notifications, Read results) */
  values: number;
  valuesPerSec: number;
  /** ticks counted: toTick - fromTick */
  ticks: number;
  monitored: number;
  /** monitored x ticks */
  expected: number;
  /** distinct (item, tick) pairs received in range */
  received: number;
  /** expected - received */
  lost: number;
  itemsWithLoss: number;
  /** an (item, tick) after fromTick received again */
  repeats: number;
  /** values that name no tick of their item */
  wrong: number;
  /** values whose tick lies beyond what the window can count */
  overflow: number;
  /** samples or notifications with bad quality */
  bad: number;
  detail: Record<string, unknown>;
}

/** StatusCode InfoType DataValue + Overflow: the monitored item's queue dropped values. */
const OVERFLOW = 0x480;
/** A run of this many refusals in a row ends perItem's setup: the server has said no. */
const MAX_REFUSALS_IN_A_ROW = 20;
/** Bounds the Read loop beside its time (far above what a window holds). */
const MAX_READS = 100_000;
const CLOSE_MS = 10_000;
/** monitorEventLoopDelay's timer period; its histogram holds whole periods, this included. */
const LOOP_RESOLUTION_MS = 10;

export function memory(): Memory {
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s*(\\d+)\\s*kB`, "m").exec(status);
    return m?.[1] === undefined ? NaN : Number(m[1]);
  };
  return { rssMB: kb("VmRSS") / 1024, hwmMB: kb("VmHWM") / 1024 };
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return (Promise.race([p, timeout]) as Promise<T>).finally(() => clearTimeout(timer));
}

const nodeId = (i: number) => `ns=1;s=Bench.V${i}`;

/**
 * The counting shared by the variants: one bit per (item, tick) after fromTick, so that a change
 * is counted once however often it arrives, in whatever order, and only if its tick is in range.
 */
class Counter {
  readonly items: number;
  readonly maxTicks: number;
  private readonly seen: Uint8Array;
  /** Counting is off while fromTick is Infinity. */
  fromTick: number;
  windowOpen: boolean;
  values: number;
  repeats: number;
  wrong: number;
  bad: number;
  overflow: number;

  /** @param maxTicks  ticks after fromTick that can be told apart (the rest: overflow) */
  constructor(items: number, maxTicks: number) {
    this.items = items;
    this.maxTicks = maxTicks;
    this.seen = new Uint8Array(items * maxTicks);
    this.fromTick = Infinity;
    this.windowOpen = false;
    this.values = 0;
    this.repeats = 0;
    this.wrong = 0;
    this.bad = 0;
    this.overflow = 0;
  }

  start(fromTick: number) {
    this.fromTick = fromTick;
    this.seen.fill(0);
    this.values = 0;
    this.repeats = 0;
    this.wrong = 0;
    this.bad = 0;
    this.overflow = 0;
    this.windowOpen = true;
  }

  value(i: number, value: unknown) {
    if (this.windowOpen) this.values++;
    if (this.fromTick === Infinity) return;
    const tick = typeof value === "number" ? value - i : NaN;
    if (!Number.isInteger(tick) || tick < 0 || !(i >= 0 && i < this.items)) {
      this.wrong++;
      return;
    }
    const offset = tick - this.fromTick - 1;
    if (offset < 0) return;
    if (offset >= this.maxTicks) {
      this.overflow++;
      return;
    }
    const at = i * this.maxTicks + offset;
    if (this.seen[at] === 1) this.repeats++;
    else this.seen[at] = 1;
  }

  badSample() {
    if (this.windowOpen) this.bad++;
  }

  /**
   * Distinct changes received among the first `ticks` after fromTick, and the items that miss
   * one or more (among those flagged in `active`, if given).
   */
  tally(
    ticks: number,
    active: Uint8Array | undefined,
  ): { received: number; itemsWithLoss: number } {
    let received = 0;
    let itemsWithLoss = 0;
    const n = Math.min(ticks, this.maxTicks);
    for (let i = 0; i < this.items; i++) {
      if (active !== undefined && active[i] !== 1) continue;
      let got = 0;
      const base = i * this.maxTicks;
      for (let k = 0; k < n; k++) got += this.seen[base + k] ?? 0;
      received += got;
      if (got < ticks) itemsWithLoss++;
    }
    return { received, itemsWithLoss };
  }
}

export interface Running {
  plan: ClientPlan;
  counter: Counter;
  monitored: number;
  /** perItem: the items that have a subscription */
  active: Uint8Array | undefined;
  /** the variant's own figures, at the window's end */
  detail: () => Record<string, unknown>;
  close: () => Promise<void>;
  window: Window | undefined;
}

export interface Window {
  t0: number;
  cpu0: NodeJS.CpuUsage;
  loop: IntervalHistogram;
  rssTimer: NodeJS.Timeout;
  rssMaxMB: number;
  detail0: Record<string, unknown> | undefined;
}

let running: Running | undefined;

function checkPlan(raw: unknown): ClientPlan {
  const p = raw as ClientPlan;
  if (!["ours", "perItem", "read", "readPause"].includes(p.variant)) {
    throw new RangeError("plan.variant");
  }
  for (const k of [
    "items",
    "publishingMs",
    "samplingMs",
    "readEveryMs",
    "setupCapMs",
    "concurrency",
    "maxTicks",
  ] as const) {
    if (!Number.isInteger(p[k]) || p[k] < 1) throw new RangeError(`plan.${k}: a positive integer`);
  }
  if (typeof p.endpoint !== "string" || typeof p.pkiDir !== "string") {
    throw new RangeError("plan.endpoint, plan.pkiDir: strings");
  }
  return p;
}

/**
 * Connects and sets up the variant (monitored items, subscriptions, or the Read loop).
 * @param raw  a ClientPlan
 */
export async function startClient(raw: unknown): Promise<ClientSetup> {
  if (running !== undefined) throw new Error("a client is already running (uaStop first)");
  const plan = checkPlan(raw);
  const before = memory();
  const t0 = performance.now();
  const counter = new Counter(plan.items, plan.maxTicks);
  const r =
    plan.variant === "perItem"
      ? await startPerItem(plan, counter)
      : await startDriver(plan, counter, plan.variant);
  running = r;
  return {
    variant: plan.variant,
    monitored: r.monitored,
    setupMs: performance.now() - t0,
    before,
    connected: memory(),
    detail: r.detail(),
  };
}

/** ours and read: the gateway's driver. */
async function startDriver(
  plan: ClientPlan,
  counter: Counter,
  variant: "ours" | "read" | "readPause",
): Promise<Running> {
  const { createOpcuaDriver, silentLogger, opcuaSource } = await import("./dist-opcua.js");
  const config = opcuaSource.parse({ protocol: "opcua", endpoint: plan.endpoint });
  // The driver keeps its PKI in <dataDir>/pki/opcua: under the plan's client PKI folder.
  const driver = await createOpcuaDriver("b10", config, {
    dataDir: plan.pkiDir,
    configDir: plan.pkiDir,
    log: silentLogger(),
  });
  const stats = () => (driver as { stats?: () => Record<string, unknown> }).stats?.() ?? {};
  await driver.start();
  if (driver.health().state !== "online") {
    await driver.stop();
    throw new Error(`the driver did not get online: ${JSON.stringify(driver.health())}`);
  }
  const nodes = Array.from({ length: plan.items }, (_, i) => ({
    key: String(i),
    node: nodeId(i),
    samplingIntervalMs: plan.samplingMs,
  }));
  const take = (samples: ValueSample[]) => {
    for (const s of samples) {
      if (s.quality.status !== "good") counter.badSample();
      else counter.value(Number(s.key), s.value);
    }
  };
  const detail = () => ({ config, health: driver.health(), driverStats: stats() });

  if (variant === "ours") {
    const stop = await driver.monitor(
      { id: "b10", publishingIntervalMs: plan.publishingMs, nodes },
      take,
    );
    return {
      plan,
      counter,
      monitored: plan.items,
      active: undefined,
      detail,
      close: async () => {
        await bounded(stop(), CLOSE_MS, "stop monitor").catch(() => undefined);
        await bounded(driver.stop(), CLOSE_MS, "driver stop").catch(() => undefined);
      },
      window: undefined,
    };
  }

  // read, readPause: one Read of everything per slot; the first one here, untimed (resolves
  // the nodes).
  take(await driver.read(nodes));
  const readMs: number[] = [];
  let reads = 0;
  let overruns = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let next = performance.now() + plan.readEveryMs;
  const slot = () => {
    if (stopped || reads >= MAX_READS) return;
    const a = performance.now();
    inFlight = driver.read(nodes).then((samples) => {
      const b = performance.now();
      reads++;
      if (readMs.length < MAX_READS) readMs.push(b - a);
      take(samples);
      if (variant === "readPause") {
        next = b + plan.readEveryMs;
      } else {
        next += plan.readEveryMs;
        if (next < b) {
          overruns++;
          next = b;
        }
      }
      if (!stopped) timer = setTimeout(slot, next - b);
    });
  };
  timer = setTimeout(slot, plan.readEveryMs);
  return {
    plan,
    counter,
    monitored: plan.items,
    active: undefined,
    detail: () => ({
      ...detail(),
      reads,
      overruns,
      readMs: summarize(readMs),
    }),
    close: async () => {
      stopped = true;
      clearTimeout(timer);
      await bounded(inFlight, CLOSE_MS, "the last Read").catch(() => undefined);
      await bounded(driver.stop(), CLOSE_MS, "driver stop").catch(() => undefined);
    },
    window: undefined,
  };
}

/** @param xs  ms */
function summarize(xs: readonly number[]): { n: number; mean: number; max: number } {
  const n = xs.length;
  return {
    n,
    mean: n > 0 ? xs.reduce((a, b) => a + b, 0) / n : NaN,
    max: n > 0 ? Math.max(...xs) : NaN,
  };
}

/** perItem: node-opcua directly, one subscription per item. */
async function startPerItem(plan: ClientPlan, counter: Counter): Promise<Running> {
  process.env["NODEOPCUA_LOG_LEVEL"] ??= "3";
  const ua = await import("node-opcua");
  const certificates = new ua.OPCUACertificateManager({
    rootFolder: plan.pkiDir,
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
  });
  await certificates.initialize();
  const client = ua.OPCUAClient.create({
    applicationName: "b10-per-item",
    endpointMustExist: false,
    securityMode: ua.MessageSecurityMode.None,
    securityPolicy: ua.SecurityPolicy.None,
    clientCertificateManager: certificates,
    connectionStrategy: { maxRetry: 0, initialDelay: 1000, maxDelay: 1000 },
    defaultTransactionTimeout: 10_000,
    requestedSessionTimeout: 60_000,
    keepSessionAlive: true,
  });
  await bounded(client.connect(plan.endpoint), 20_000, "connect");
  const session = await bounded(client.createSession(), 20_000, "createSession");
  let lostSession = "";
  client.on("connection_lost", () => (lostSession ||= "connection lost"));
  session.on("session_closed", () => (lostSession ||= "session closed"));

  // What the driver asks for its one subscription (createSubscription in opcua-driver.ts).
  const keepAlive = Math.max(1, Math.round(10_000 / plan.publishingMs));
  const lifetime = Math.max(3 * keepAlive, Math.ceil(60_000 / plan.publishingMs));
  const queueSize = Math.ceil(plan.publishingMs / plan.samplingMs) + 1;
  const active = new Uint8Array(plan.items);
  const subscriptions: ClientSubscription[] = [];
  let created = 0;
  let refused = 0;
  let inARow = 0;
  let firstRefusal: string | undefined;
  let nextIndex = 0;
  let subscriptionErrors = 0;
  /** Notifications in the window flagged Overflow: the server's item queue dropped a value. */
  let overflowFlags = 0;
  const t0 = performance.now();
  let cappedAtMs: number | undefined;
  const worker = async () => {
    while (nextIndex < plan.items && inARow < MAX_REFUSALS_IN_A_ROW && lostSession === "") {
      if (performance.now() - t0 >= plan.setupCapMs) {
        cappedAtMs ??= performance.now() - t0;
        return;
      }
      const i = nextIndex++;
      try {
        const subscription = await session.createSubscription2({
          requestedPublishingInterval: plan.publishingMs,
          requestedMaxKeepAliveCount: keepAlive,
          requestedLifetimeCount: lifetime,
          maxNotificationsPerPublish: 0,
          publishingEnabled: true,
          priority: 1,
        });
        subscriptions.push(subscription);
        subscription.on("internal_error", () => subscriptionErrors++);
        const item = await subscription.monitor(
          { nodeId: nodeId(i), attributeId: ua.AttributeIds.Value },
          { samplingInterval: plan.samplingMs, queueSize, discardOldest: true },
          ua.TimestampsToReturn.Both,
        );
        if (item.statusCode.isNotGood()) throw new Error(item.statusCode.name);
        item.on("changed", (dv) => {
          const status = dv.statusCode.value;
          // Severity bad; Good with the Overflow info bit still carries its value.
          if ((status & 0x80000000) !== 0) counter.badSample();
          else counter.value(i, dv.value.value);
          if ((status & OVERFLOW) === OVERFLOW && counter.windowOpen) overflowFlags++;
        });
        active[i] = 1;
        created++;
        inARow = 0;
      } catch (err) {
        refused++;
        inARow++;
        firstRefusal ??= err instanceof Error ? err.message.split("\n")[0] : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
  const createMs = performance.now() - t0;
  if (lostSession !== "") throw new Error(`perItem: ${lostSession} during setup`);
  const engine = (session as { publishEngine?: Record<string, unknown> }).publishEngine;
  return {
    plan,
    counter,
    monitored: created,
    active,
    detail: () => ({
      created,
      refused,
      firstRefusal,
      createMs,
      cappedAtMs,
      stoppedAfterRefusals: inARow >= MAX_REFUSALS_IN_A_ROW,
      concurrency: plan.concurrency,
      queueSize,
      lostSession: lostSession || undefined,
      subscriptionErrors,
      overflowFlags,
      pendingPublishRequests: engine?.["nbPendingPublishRequests"],
      maxPublishRequestsAcceptedByServer: engine?.["nbMaxPublishRequestsAcceptedByServer"],
    }),
    close: async () => {
      await bounded(session.close(true), CLOSE_MS, "close session").catch(() => undefined);
      await bounded(client.disconnect(), CLOSE_MS, "disconnect").catch(() => undefined);
    },
    window: undefined,
  };
}

/** Opens the window: counting of ticks > fromTick, CPU, loop delay and RSS from now. */
export function windowStart(fromTick: number): null {
  const r = running;
  if (r === undefined) throw new Error("no client running");
  if (!Number.isInteger(fromTick) || fromTick < 0) throw new RangeError("fromTick");
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  const w: Window = {
    t0: performance.now(),
    cpu0: process.cpuUsage(),
    loop,
    rssTimer: setInterval(() => {
      w.rssMaxMB = Math.max(w.rssMaxMB, memory().rssMB);
    }, 1000),
    rssMaxMB: memory().rssMB,
    detail0: r.detail(),
  };
  r.counter.start(fromTick);
  loop.enable();
  r.window = w;
  return null;
}

/**
 * Closes the window now (CPU, loop delay, values/s); keeps counting ticks <= toTick for
 * `graceMs` more (what was sampled before the end and is still on its way), then replies.
 */
export async function windowEnd(toTick: number, graceMs: number): Promise<WindowResult> {
  const r = running;
  const w = r?.window;
  if (r === undefined || w === undefined) throw new Error("no window open");
  const windowMs = performance.now() - w.t0;
  const cpu = process.cpuUsage(w.cpu0);
  w.loop.disable();
  clearInterval(w.rssTimer);
  const rssMaxMB = Math.max(w.rssMaxMB, memory().rssMB);
  const c = r.counter;
  c.windowOpen = false;
  const values = c.values;
  const bad = c.bad;
  if (!Number.isInteger(toTick) || toTick < c.fromTick || toTick - c.fromTick > c.maxTicks) {
    throw new RangeError(`toTick: ${c.fromTick}..${c.fromTick + c.maxTicks}`);
  }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(graceMs, 30_000))));
  r.window = undefined;
  const ticks = toTick - c.fromTick;
  const expected = r.monitored * ticks;
  const { received, itemsWithLoss } = c.tally(ticks, r.active);
  return {
    windowMs,
    cpuUserMs: cpu.user / 1000,
    cpuSystemMs: cpu.system / 1000,
    cpuShare: (cpu.user + cpu.system) / 1000 / windowMs,
    loopMs: {
      p50: beyond(w.loop.percentile(50)),
      p99: beyond(w.loop.percentile(99)),
      max: beyond(w.loop.max),
    },
    rssMaxMB,
    hwmMB: memory().hwmMB,
    values,
    valuesPerSec: (values / windowMs) * 1000,
    ticks,
    monitored: r.monitored,
    expected,
    received,
    lost: expected - received,
    itemsWithLoss,
    repeats: c.repeats,
    wrong: c.wrong,
    overflow: c.overflow,
    bad,
    detail: { atStart: w.detail0, atEnd: r.detail() },
  };
}

/** A loop-delay histogram value (ns, a whole timer period) as the delay beyond the period, ms. */
const beyond = (ns: number): number => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);

/** Disconnects the client (bounded); the host exits after. */
export async function stopClient() {
  const r = running;
  running = undefined;
  if (r === undefined) return;
  if (r.window !== undefined) {
    clearInterval(r.window.rssTimer);
    r.window.loop.disable();
  }
  await r.close();
}
