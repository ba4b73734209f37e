/**
 * The fault-injection suite (issue 4): a whole plant under network faults, broker and PLC
 * restarts and SIGKILLs of the gateway, checked for the three promises the gateway makes:
 *
 * (a) the cloud shadow ends equal to the PLC's final state, point by point;
 * (b) no acknowledged report is lost: every row the gateway's SQLite history marks as sent
 *     (at or below its device's confirmed watermark) reached the cloud, i.e. the service applied
 *     an update carrying each of its values (or a later value of the same leaf, since queued
 *     reports coalesce) after the row was written;
 * (c) each of N desired changes (distinct values) is written to the PLC exactly once, and its
 *     outcome ("applied", with the value read back) reached the cloud under `_commands`.
 *
 * The plant: the PLC simulator and the cloud shadow service (embedded aedes broker, shadows in
 * a SQLite file so a restart keeps them) run in this process, each restartable on its port; the
 * gateway is the built daemon (`dist/cli/main.js run`) in a child process, so it can be
 * SIGKILLed; a TCP proxy (src/sim/tcp-proxy.ts) between the gateway and the broker cuts, resets
 * and delays the link. A "process" changes PLC registers every 50 ms (direct memory writes, which
 * the simulator does not count as writes), so reports flow all the time.
 *
 * Faults come as episodes, in an order and with timings drawn from a seeded PRNG (printed at the
 * start; FAULT_SEED=N replays a schedule): link cut, link resets, link delay, broker restart,
 * gateway SIGKILL while queueing offline, while draining the backlog after a reconnect, while a
 * desired value is being written (at the PLC's write, and at a random moment after a control
 * push), at a random moment, and a PLC restart. Desired changes are issued meanwhile over the
 * cloud's HTTP API, at most one outstanding per set point (a newer desired value for the same
 * point would legitimately replace an unexecuted one); they pause only across a PLC restart,
 * because a command that meets an unreachable PLC ends "failed" by design and is not retried.
 * The PLC stalls before it goes down, so the gateway has a poll on the wire when it does.
 *
 * Every wait is a bounded poll of state or an awaited event; nothing is asserted on time.
 */
import { randomInt } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import type { JsonObject, JsonValue } from "../../src/core/types.js";
import { AwsShadowStore, startAwsCloudService } from "../../src/sim/cloud/aws/index.js";
import { startCloudService, type AppliedEvent } from "../../src/sim/cloud/index.js";
import { ModbusTcpSimulator, type WriteEvent } from "../../src/sim/modbus/index.js";
import { TcpProxy } from "../../src/sim/tcp-proxy.js";
import { ReportCodec } from "../../src/store/report-codec.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { testLogger } from "../helpers/logs.js";
import { seededRandom } from "../helpers/random.js";
import { until } from "../helpers/until.js";

const SEED =
  process.env.FAULT_SEED !== undefined ? Number(process.env.FAULT_SEED) : randomInt(2 ** 31);
const PK = "a1Fault";
const DN = "plc-01";
/** Desired changes issued over the run; each has a value of its own. */
const COMMANDS = 60;
const SET_POINTS = ["sp0", "sp1", "sp2", "sp3"] as const;
/** Holding register of sp0; sp1.. follow. */
const SP_BASE = 10;
const valueOf = (i: number): number => 1000 + i;
/** The whole run is bounded: a stuck phase fails the test with the seed instead of hanging. */
const RUN_LIMIT_MS = 150_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const int16 = (w: number | undefined): number => ((w ?? 0) << 16) >> 16;

/** Leaves of a JSON value as dotted path -> JSON text. */
function leaves(
  value: JsonValue,
  prefix = "",
  out = new Map<string, string>(),
): Map<string, string> {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value))
      leaves(v, prefix === "" ? k : `${prefix}.${k}`, out);
  } else out.set(prefix, JSON.stringify(value));
  return out;
}

class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const prev = this.tail;
    let release = (): void => undefined;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

interface Command {
  readonly i: number;
  readonly point: (typeof SET_POINTS)[number];
  readonly value: number;
  readonly issuedAt: number;
  doneAt?: number;
}

interface Accepted {
  readonly at: number;
  readonly version: number;
  readonly leaves: Map<string, string>;
}

interface RowRecord {
  seq: number;
  device_name: string;
  ts: number;
  reported: Buffer | string;
  /** 1 when the cloud confirmed it (at or below its device's watermark). */
  sent: number;
}

/** What the run needs of the cloud, in either dialect. */
interface RunningCloud {
  readonly mqttUrl: string;
  readonly httpUrl: string;
  close(): Promise<void>;
}

interface CloudHooks {
  /** An update carrying reported values was applied, at this version. */
  accepted(version: number, reported: JsonObject): void;
  /** The service pushed desired to the device (Alibaba: a control; AWS: a delta). */
  pushed(): void;
}

interface CloudUnderTest {
  /** Started again on the same ports after a "broker restart"; shadows survive it. */
  start(mqttPort: number, httpPort: number, hooks: CloudHooks): Promise<RunningCloud>;
  shadow(): { state: { reported?: JsonObject; desired?: JsonObject } } | undefined;
  setDesired(point: string, value: number): Promise<void>;
  /** The gateway config's cloud section, but for its url. */
  readonly cloudSection: JsonObject;
  /** The mapping file's device. */
  readonly device: JsonObject;
}

function alibabaCloud(dir: string): CloudUnderTest {
  let current: Awaited<ReturnType<typeof startCloudService>> | undefined;
  return {
    async start(mqttPort, httpPort, hooks) {
      const c = await startCloudService({
        mqttPort,
        httpPort,
        dbFile: path.join(dir, "cloud.db"),
        logger: testLogger(),
      });
      c.service.on("applied", (e: AppliedEvent) => {
        if (e.deviceName !== DN || e.request.method !== "update") return;
        const reported = e.request.reported;
        if (reported === undefined || reported === "clear") return;
        hooks.accepted(e.version, reported);
      });
      c.service.on("control", (e) => {
        if (e.deviceName === DN) hooks.pushed();
      });
      current = c;
      return c;
    },
    shadow: () => current?.service.getShadow(PK, DN),
    async setDesired(point, value) {
      const res = await fetch(`${current?.httpUrl ?? ""}/shadows/${PK}/${DN}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          ShadowMessage: { method: "update", state: { desired: { [point]: value } } },
          DeltaUpdate: true,
        }),
      });
      const body = (await res.json()) as { Success?: boolean };
      if (body.Success !== true) throw new Error(`desired update refused: ${JSON.stringify(body)}`);
    },
    cloudSection: { productKey: "a1FaultGw", deviceName: "fault-gw" },
    device: { productKey: PK, deviceName: DN },
  };
}

function awsCloud(): CloudUnderTest {
  // AWS keeps shadows whatever happens to a connection: the store outlives the restarts.
  const store = new AwsShadowStore();
  let current: Awaited<ReturnType<typeof startAwsCloudService>> | undefined;
  return {
    async start(mqttPort, httpPort, hooks) {
      const c = await startAwsCloudService({
        mqttPort,
        httpPort,
        store,
        logger: testLogger(),
      });
      c.service.on("updated", (e) => {
        if (e.thingName !== DN) return;
        const { reported, desired } = e.request;
        if (reported) hooks.accepted(e.document.version, reported);
        if (desired && Object.values(desired).some((v) => v !== null)) hooks.pushed();
      });
      current = c;
      return c;
    },
    shadow: () => current?.service.getShadow(DN),
    async setDesired(point, value) {
      const res = await fetch(`${current?.httpUrl ?? ""}/things/${DN}/shadow`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ state: { desired: { [point]: value } } }),
      });
      if (res.status !== 200) throw new Error(`desired update refused: ${await res.text()}`);
    },
    cloudSection: { dialect: "aws", clientId: "fault-gw" },
    device: { thingName: DN },
  };
}

/** Everything the run starts, so afterAll can stop it whatever happened. */
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
});

describe.each(["alibaba", "aws"] as const)("fault injection (%s dialect)", (dialect) => {
  it(
    "keeps the cloud equal to the PLC, loses no acknowledged report and runs every command exactly once",
    async () => {
      const t0 = Date.now();
      const deadline = t0 + RUN_LIMIT_MS;
      const log: string[] = [];
      const note = (what: string): void => {
        log.push(`${((Date.now() - t0) / 1000).toFixed(2).padStart(7)}s ${what}`);
      };
      console.log(
        `fault-injection (${dialect}) seed ${SEED} (replay: FAULT_SEED=${SEED} npx vitest run test/integration/fault-injection.test.ts -t ${dialect})`,
      );
      const faultRng = seededRandom(SEED);
      const commandRng = seededRandom(SEED ^ 0x5bd1e995);
      const processRng = seededRandom(SEED ^ 0x27d4eb2f);
      const between = (rng: () => number, lo: number, hi: number): number =>
        Math.round(lo + rng() * (hi - lo));

      const dir = await mkdtemp(path.join(tmpdir(), "sg-fault-"));
      let keepDir = true;
      cleanups.push(async () => {
        if (!keepDir) await rm(dir, { recursive: true, force: true });
      });

      // --- the PLC ---------------------------------------------------------------------------
      const sim = new ModbusTcpSimulator({ units: [1] });
      const { port: plcPort } = await sim.start({ port: 0 });
      cleanups.push(() => sim.stop());
      const unit = sim.unit(1);
      unit.holding[1] = 100;
      const writes: Array<{ at: number; address: number; value: number }> = [];
      /** Called synchronously at a set-point write: the PLC has the value, the gateway not yet the answer. */
      let onSetPointWrite: (() => void) | undefined;
      sim.on("write", (w: WriteEvent) => {
        for (let a = w.address; a < w.address + w.count; a++) {
          const value = w.table === "holding" ? int16(unit.holding[a]) : (unit.coil[a] ?? 0);
          writes.push({ at: Date.now(), address: w.table === "holding" ? a : -1 - a, value });
        }
        if (
          w.table === "holding" &&
          w.address >= SP_BASE &&
          w.address < SP_BASE + SET_POINTS.length
        ) {
          const hook = onSetPointWrite;
          onSetPointWrite = undefined;
          hook?.();
        }
      });

      // The process: a counter that moves every tick, a level that wanders, a pump and an alarm bit.
      const physics = setInterval(() => {
        unit.holding[0] = ((unit.holding[0] ?? 0) + 1) & 0xffff;
        if (processRng() < 0.3) {
          const level = int16(unit.holding[1]) + between(processRng, -3, 3);
          unit.holding[1] = Math.max(-500, Math.min(500, level)) & 0xffff;
        }
        if (processRng() < 0.02) unit.coil[0] = unit.coil[0] ? 0 : 1;
        if (processRng() < 0.02) unit.holding[2] = ((unit.holding[2] ?? 0) ^ 0b100001) & 0xffff;
      }, 50);
      let physicsOn = true;
      const stopPhysics = (): void => {
        if (physicsOn) clearInterval(physics);
        physicsOn = false;
      };
      cleanups.push(async () => stopPhysics());

      // --- the cloud -------------------------------------------------------------------------
      const accepted: Accepted[] = [];
      const under = dialect === "aws" ? awsCloud() : alibabaCloud(dir);
      let mqttPort = 0;
      let httpPort = 0;
      let cloud: RunningCloud | undefined;
      /** Called at each desired push the service makes for the device. */
      let onControl: (() => void) | undefined;
      const hooks: CloudHooks = {
        accepted: (version, reported) =>
          accepted.push({ at: Date.now(), version, leaves: leaves(reported) }),
        pushed: () => {
          const hook = onControl;
          onControl = undefined;
          hook?.();
        },
      };
      const startCloud = async (): Promise<RunningCloud> => {
        // The ports were free a moment ago; another process could take one in between.
        for (let attempt = 1; ; attempt++) {
          try {
            return await under.start(mqttPort, httpPort, hooks);
          } catch (err) {
            if (attempt >= 5) throw err;
            await sleep(200);
          }
        }
      };
      cloud = await startCloud();
      mqttPort = Number(new URL(cloud.mqttUrl).port);
      httpPort = Number(new URL(cloud.httpUrl).port);
      cleanups.push(async () => cloud?.close());
      const cloudLock = new Mutex();
      const shadow = () => (cloud ? under.shadow() : undefined);

      // --- the link --------------------------------------------------------------------------
      const proxy = new TcpProxy({ targetPort: mqttPort });
      const { port: proxyPort } = await proxy.start();
      cleanups.push(() => proxy.stop());

      // --- the gateway -----------------------------------------------------------------------
      await mkdir(path.join(dir, "mappings"));
      const configFile = path.join(dir, "gateway.yaml");
      await writeFile(
        configFile,
        JSON.stringify({
          version: 1,
          gateway: { name: "fault-gw", dataDir: "./data" },
          log: { level: "info" },
          sources: {
            plc: {
              protocol: "modbus-tcp",
              host: "127.0.0.1",
              port: plcPort,
              timeout: "500ms",
              reconnect: { min: "100ms", max: "500ms" },
              unitBackoff: "300ms",
            },
          },
          cloud: {
            url: `mqtt://127.0.0.1:${proxyPort}`,
            ...under.cloudSection,
            sendWindow: "50ms",
            replyTimeout: "1s",
            reconnect: { min: "100ms", max: "1s" },
          },
          mappings: "./mappings",
        }),
      );
      await writeFile(
        path.join(dir, "mappings", `${DN}.yaml`),
        JSON.stringify({
          version: 1,
          device: under.device,
          source: "plc",
          unitId: 1,
          pollInterval: "100ms",
          points: {
            counter: { table: "holding", offset: 0, type: "uint16" },
            level: { table: "holding", offset: 1, type: "int16" },
            pump: { coil: 1 },
            "alarm.high": { table: "holding", offset: 2, type: "uint16", bit: 0 },
            ...Object.fromEntries(
              SET_POINTS.map((p, k) => [
                p,
                {
                  table: "holding",
                  offset: SP_BASE + k,
                  type: "int16",
                  writable: true,
                  min: 0,
                  max: 30000,
                },
              ]),
            ),
          },
        }),
      );
      const dbFile = path.join(dir, "data", "shadowgate.db");
      const gateway = new GatewayProcess({
        configFile,
        logFile: path.join(dir, "gateway.log"),
        logLevel: process.env.FAULT_LOG_LEVEL ?? "info",
      });
      cleanups.push(() => gateway.kill());
      const pendingRows = (): number => {
        try {
          const db = new Database(dbFile, { readonly: true, fileMustExist: true });
          try {
            const r = db
              .prepare(
                `SELECT count(*) AS n FROM reports r JOIN shadow_state s
                 USING (product_key, device_name) WHERE r.seq > s.acked_seq`,
              )
              .get() as { n: number };
            return r.n;
          } finally {
            db.close();
          }
        } catch {
          return -1; // not created yet, or busy: unknown
        }
      };
      const coverage: Record<string, number[]> = {};
      /** SIGKILL first (at once: the moment matters), then note what the dead gateway left queued. */
      const kill = async (why: string): Promise<void> => {
        const exited = gateway.kill();
        const pending = pendingRows();
        await exited;
        note(`SIGKILL gateway (${why}; ${pending} reports unacknowledged)`);
        coverage[why] = [...(coverage[why] ?? []), pending];
      };
      const restart = async (): Promise<void> => {
        await sleep(between(faultRng, 0, 400));
        gateway.start();
        note(`gateway started (g${gateway.generation})`);
      };

      gateway.start();
      note("gateway started (g1)");
      await until(
        "the first report in the cloud",
        () => shadow()?.state.reported?.counter !== undefined,
      );

      // --- desired changes -------------------------------------------------------------------
      const commands: Command[] = [];
      const outstanding = new Map<string, Command>();
      let paused = false;
      let issuerDone = false;
      /** Set when the run ends, however it ends, so that the issuer stops too. */
      let over = false;
      /** Marks commands whose point left desired (executed and cleared) as done. */
      const settle = (): void => {
        const desired = (shadow()?.state.desired ?? {}) as JsonObject;
        for (const [point, c] of outstanding) {
          if (!Object.hasOwn(desired, point)) {
            c.doneAt = Date.now();
            outstanding.delete(point);
          }
        }
      };
      const issuer = (async () => {
        for (let round = 0; commands.length < COMMANDS && !over && round < 20_000; round++) {
          if (Date.now() > deadline)
            throw new Error(`seed ${SEED}: commands not all issued in time`);
          await sleep(between(commandRng, 150, 800));
          if (paused) continue;
          await cloudLock.run(async () => {
            if (!cloud) return;
            settle();
            const free = SET_POINTS.filter((p) => !outstanding.has(p));
            if (free.length === 0) return;
            const point = free[Math.floor(commandRng() * free.length)] ?? SET_POINTS[0];
            const c: Command = {
              i: commands.length,
              point,
              value: valueOf(commands.length),
              issuedAt: Date.now(),
            };
            await under.setDesired(point, c.value);
            commands.push(c);
            outstanding.set(point, c);
            note(`desired ${point} = ${c.value} (#${c.i})`);
          });
        }
        issuerDone = true;
      })();
      // A failure of the issuer surfaces at the end; until then it must not go unhandled.
      issuer.catch(() => undefined);

      // --- fault episodes --------------------------------------------------------------------
      type Episode = { name: string; run: () => Promise<void> };
      /**
       * Arms a kill on an event (a set-point write, a control push) and awaits it, for at most
       * `limitMs`, or less once no command is left to come.
       */
      const awaitKill = async (
        name: string,
        arm: (fire: () => void) => void,
        limitMs: number,
      ): Promise<void> => {
        // An object, so that TypeScript does not narrow what the callback changes.
        const k: { state: "armed" | "fired" | "cancelled"; killed: Promise<void> } = {
          state: "armed",
          killed: Promise.resolve(),
        };
        arm(() => {
          if (k.state !== "armed") return;
          k.state = "fired";
          // Synchronously: at the PLC's write the gateway has not had the answer yet.
          k.killed = kill(name);
        });
        await until(
          `${name}: the kill or the end of the commands`,
          () => k.state === "fired" || (issuerDone && outstanding.size === 0),
          limitMs,
          20,
        ).catch(() => undefined);
        if (k.state !== "fired") {
          k.state = "cancelled";
          onSetPointWrite = undefined;
          onControl = undefined;
          note(`${name}: no command came; nothing killed`);
          coverage[`${name} (missed)`] = [...(coverage[`${name} (missed)`] ?? []), 0];
          return;
        }
        await k.killed;
        await restart();
      };
      const episodes: Record<string, Episode> = {
        cut: {
          name: "link cut",
          run: async () => {
            const ms = between(faultRng, 800, 2500);
            const reset = faultRng() < 0.5;
            note(`link cut for ${ms} ms (${reset ? "RST" : "FIN"})`);
            proxy.cut(ms, { reset });
            await sleep(ms);
          },
        },
        resets: {
          name: "link resets",
          run: async () => {
            const n = between(faultRng, 1, 3);
            for (let k = 0; k < n; k++) {
              note("link reset (RST)");
              proxy.reset();
              await sleep(between(faultRng, 100, 700));
            }
          },
        },
        delay: {
          name: "link delay",
          run: async () => {
            const ms = between(faultRng, 100, 700);
            const span = between(faultRng, 1000, 2500);
            note(`link delay ${ms} ms each way for ${span} ms`);
            proxy.delay = ms;
            await sleep(span);
            proxy.delay = 0;
          },
        },
        broker: {
          name: "broker restart",
          run: async () => {
            const down = between(faultRng, 200, 1500);
            await cloudLock.run(async () => {
              note(`broker and cloud service restart (down ${down} ms)`);
              const c = cloud;
              cloud = undefined;
              await c?.close();
              await sleep(down);
              cloud = await startCloud();
              note("broker and cloud service up");
            });
          },
        },
        killOffline: {
          name: "SIGKILL while queueing offline",
          run: async () => {
            note("link cut (until restored)");
            proxy.cut(undefined, { reset: faultRng() < 0.5 });
            await sleep(between(faultRng, 1000, 2500));
            await kill("offline");
            await restart();
            await sleep(between(faultRng, 300, 1200));
            proxy.restore();
            note("link restored");
          },
        },
        killDraining: {
          name: "SIGKILL while draining",
          run: async () => {
            const ms = between(faultRng, 1000, 2500);
            note(`link cut for ${ms} ms, then SIGKILL while draining`);
            proxy.cut(ms);
            await sleep(ms);
            const connected = once(proxy, "connection", { signal: AbortSignal.timeout(10_000) });
            await connected.catch(() => undefined);
            await sleep(between(faultRng, 0, 120));
            await kill("draining");
            await restart();
          },
        },
        killAtWrite: {
          name: "SIGKILL at the PLC's write",
          run: () => awaitKill("at write", (fire) => (onSetPointWrite = fire), 10_000),
        },
        killAfterControl: {
          name: "SIGKILL after a control push",
          run: () => {
            const delay = between(faultRng, 0, 40);
            return awaitKill(
              "after control",
              (fire) => (onControl = () => void sleep(delay).then(fire)),
              10_000,
            );
          },
        },
        killRandom: {
          name: "SIGKILL at a random moment",
          run: async () => {
            await sleep(between(faultRng, 0, 1000));
            await kill("random");
            await restart();
          },
        },
        plc: {
          name: "PLC restart",
          run: async () => {
            paused = true;
            await until(
              "no command outstanding before the PLC restart",
              async () => cloudLock.run(() => (settle(), outstanding.size === 0)),
              30_000,
            );
            const down = between(faultRng, 200, 1200);
            note(`PLC restart (down ${down} ms), going down while a poll waits for its answer`);
            // A PLC that stalls before it goes down: the gateway has a request on the wire.
            sim.responseDelayMs = 300;
            const requests = sim.stats().requests;
            await until("a poll on the wire", () => sim.stats().requests > requests, 5_000, 5);
            await sim.stop();
            sim.responseDelayMs = 0;
            await sleep(down);
            await sim.start({ port: plcPort });
            const served = sim.served(1);
            await until(
              "the gateway reading the restarted PLC",
              () => sim.served(1) > served + 2,
              15_000,
            );
            note("PLC up and read");
            paused = false;
          },
        },
      };
      // Every kind once, the kills at a command early (while commands still flow), plus extras.
      const kinds = Object.keys(episodes);
      const shuffled = <T>(xs: T[]): T[] => {
        const a = [...xs];
        for (let k = a.length - 1; k > 0; k--) {
          const j = Math.floor(faultRng() * (k + 1));
          [a[k], a[j]] = [a[j] as T, a[k] as T];
        }
        return a;
      };
      const early = shuffled(["killAtWrite", "killAfterControl", "killAtWrite"]);
      const rest = shuffled([
        ...kinds.filter((k) => k !== "killAtWrite" && k !== "killAfterControl"),
        ...Array.from({ length: 7 }, () => kinds[Math.floor(faultRng() * kinds.length)] ?? "cut"),
      ]);
      const plan: string[] = [];
      for (const k of rest) {
        plan.push(k);
        const e = early.shift();
        if (e !== undefined) plan.push(e);
      }
      note(`plan: ${plan.join(", ")}`);

      let failure: unknown;
      try {
        for (const k of plan) {
          if (Date.now() > deadline) throw new Error("the fault plan ran out of time");
          await sleep(between(faultRng, 300, 1500)); // calm between episodes
          const episode = episodes[k];
          if (episode) await episode.run();
        }
        proxy.restore();
        proxy.delay = 0;
        note("faults over");

        // --- the end: everything issued, executed, reported -----------------------------------
        await until(
          "every command issued",
          () => issuerDone,
          Math.max(1000, deadline - Date.now()),
          100,
        );
        await issuer;
        await until(
          "every command executed and cleared from desired",
          async () => cloudLock.run(() => (settle(), outstanding.size === 0)),
          30_000,
          100,
        );
        stopPhysics();
        note("commands done; process stopped");
        const plcState = (): JsonObject => ({
          counter: unit.holding[0] ?? 0,
          level: int16(unit.holding[1]),
          pump: unit.coil[0] === 1,
          alarm: { high: ((unit.holding[2] ?? 0) & 1) === 1 },
          ...Object.fromEntries(SET_POINTS.map((p, k) => [p, int16(unit.holding[SP_BASE + k])])),
        });
        const cloudState = (): JsonObject => {
          const r = (shadow()?.state.reported ?? {}) as JsonObject;
          return Object.fromEntries(Object.keys(plcState()).map((k) => [k, r[k] ?? null]));
        };
        await until(
          "the cloud shadow equal to the PLC",
          () => JSON.stringify(cloudState()) === JSON.stringify(plcState()),
          20_000,
          100,
        ).catch(() => undefined); // (a) below says what differs
        // (a) The cloud shadow's reported state is the PLC's final state, for every mapped point.
        expect(cloudState(), `seed ${SEED}: cloud reported vs PLC`).toEqual(plcState());

        await until("the outbox empty", () => pendingRows() === 0, 20_000, 100).catch(
          () => undefined,
        );
        expect(pendingRows(), `seed ${SEED}: reports never acknowledged`).toBe(0);
        const exit = await gateway.stop();
        note(`gateway stopped: ${JSON.stringify(exit)}`);
        expect(exit?.code, `seed ${SEED}: the daemon's exit on SIGTERM`).toBe(0);

        // (b) Every acknowledged report reached the cloud.
        const db = new Database(dbFile, { readonly: true, fileMustExist: true });
        const rows = db
          .prepare(
            `SELECT r.seq, r.device_name, r.ts, r.reported, r.seq <= s.acked_seq AS sent
             FROM reports r JOIN shadow_state s USING (product_key, device_name) ORDER BY r.seq`,
          )
          .all() as RowRecord[];
        const codec = new ReportCodec(db);
        const decoded = rows.map((r) => ({ ...r, reported: codec.decode(r.reported) }));
        db.close();
        const mine = decoded.filter((r) => r.device_name === DN);
        const acked = mine.filter((r) => r.sent === 1);
        // Per leaf, the values rows from each seq on carried: a report coalesced into a later
        // one delivers the later value, which is as good (the shadow is state, not a log).
        const byPath = new Map<string, Array<{ seq: number; value: string }>>();
        for (const r of mine) {
          for (const [p, v] of leaves(r.reported)) {
            byPath.set(p, [...(byPath.get(p) ?? []), { seq: r.seq, value: v }]);
          }
        }
        const acceptedByPath = new Map<string, Array<{ at: number; value: string }>>();
        for (const a of accepted) {
          for (const [p, v] of a.leaves) {
            acceptedByPath.set(p, [...(acceptedByPath.get(p) ?? []), { at: a.at, value: v }]);
          }
        }
        const lost: string[] = [];
        for (const r of acked) {
          for (const [p, v] of leaves(r.reported)) {
            const later = new Set(
              (byPath.get(p) ?? []).filter((x) => x.seq >= r.seq).map((x) => x.value),
            );
            later.add(v);
            const seen = (acceptedByPath.get(p) ?? []).some(
              (a) => a.at >= r.ts && later.has(a.value),
            );
            if (!seen) lost.push(`row ${r.seq} (ts ${r.ts}) ${p}=${v}`);
          }
        }
        expect(acked.length, `seed ${SEED}: acknowledged rows`).toBeGreaterThan(0);
        expect(lost, `seed ${SEED}: acknowledged reports the cloud never applied`).toEqual([]);

        // (c) Each command written exactly once, and its outcome in the cloud.
        const problems: string[] = [];
        const commanded = new Set(commands.map((c) => c.value));
        for (const c of commands) {
          const address = SP_BASE + SET_POINTS.indexOf(c.point);
          const n = writes.filter((w) => w.address === address && w.value === c.value).length;
          if (n !== 1) problems.push(`#${c.i} ${c.point}=${c.value} written ${n} times`);
          const outcome = (acceptedByPath.get(`_commands.${c.point}.value`) ?? []).some(
            (a) => a.value === JSON.stringify(c.value),
          );
          const applied = accepted.some(
            (a) =>
              a.leaves.get(`_commands.${c.point}.value`) === JSON.stringify(c.value) &&
              a.leaves.get(`_commands.${c.point}.status`) === JSON.stringify("applied"),
          );
          if (!outcome || !applied) {
            problems.push(`#${c.i} ${c.point}=${c.value}: no "applied" outcome reached the cloud`);
          }
        }
        for (const w of writes) {
          if (!commanded.has(w.value)) problems.push(`unexpected write ${w.value} at ${w.address}`);
        }
        expect(commands.length).toBe(COMMANDS);
        expect(problems, `seed ${SEED}: commands not executed exactly once`).toEqual([]);

        // The run did what it says: kills while offline with reports queued, while executing.
        expect(
          (coverage.offline ?? []).some((n) => n > 0),
          `seed ${SEED}: offline kill with a backlog`,
        ).toBe(true);
        expect(
          (coverage["at write"] ?? []).length,
          `seed ${SEED}: kills at a PLC write`,
        ).toBeGreaterThan(0);
        const resumed =
          (await readFile(path.join(dir, "gateway.log"), "utf8")).split(
            "had been applied before a restart",
          ).length - 1;
        note(
          `done: ${commands.length} commands, ${writes.length} writes, ${acked.length} acknowledged reports, ` +
            `${accepted.length} updates applied by the cloud, ${gateway.kills} kills ` +
            `(${resumed} commands found written after a restart), kills by moment ${JSON.stringify(coverage)}`,
        );
        keepDir = false;
      } catch (err) {
        failure = err;
        throw err;
      } finally {
        over = true;
        stopPhysics();
        // The whole story on a failure (or with FAULT_VERBOSE=1); the plan and totals otherwise.
        const story =
          failure === undefined && process.env.FAULT_VERBOSE !== "1"
            ? log.filter((l) => / (plan|done): /.test(l))
            : log;
        const summary = [
          `fault-injection seed ${SEED}: ${failure === undefined ? "passed" : "FAILED"} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
          ...story,
          ...(failure === undefined
            ? []
            : [`data and logs kept in ${dir}`, "gateway log tail:", gateway.tail(80)]),
        ];
        console.log(summary.join("\n"));
      }
    },
    RUN_LIMIT_MS + 30_000,
  );
});
