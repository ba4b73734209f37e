import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { LoadedConfig, Problem } from "../../config/load.js";
import { getPath } from "../../core/json.js";
import { awsShadowOf } from "../../core/shadow-identity.js";
import { COMMANDS_KEY, type JsonObject, type JsonValue } from "../../core/types.js";
import type { DevicePlan } from "../../mapping/types.js";
import { startAwsCloudService } from "../../sim/cloud/aws/index.js";
import { startCloudService } from "../../sim/cloud/index.js";
import { startSourceSimulators } from "../../sim/from-config.js";
import { GatewayChild } from "./gateway-child.js";
import type { SourceSimulator } from "../../sim/source-simulator.js";
import { TcpProxy } from "../../sim/tcp-proxy.js";
import { setPath } from "../../shadow/document.js";
import { splitName, type Scenario, type Step } from "./schema.js";

/** One step's outcome, for the summary and the JUnit report. */
export interface StepResult {
  readonly index: number;
  readonly line: number;
  readonly what: string;
  readonly ok: boolean;
  /** Why it failed: the expected and the actual value. */
  readonly failure?: string;
  readonly ms: number;
}

/** The gateway's log, in the scenario's folder. */
const GATEWAY_LOG = "gateway.log";

/** How often a check looks again while it waits for its condition. */
const CHECK_EVERY_MS = 50;

/** The plant a scenario runs in: simulators, the local cloud behind a cuttable link, the gateway. */
interface Plant {
  readonly config: LoadedConfig;
  /** The gateway's data folder and log (`gateway.log`), for whoever reads a failure. */
  readonly folder: string;
  /** The daemon, as a child process (a restart or kill step stops it and starts it again). */
  readonly gateway: GatewayChild;
  /** Each source's simulator, on the wire where the gateway reaches it. */
  readonly sources: Map<string, SourceSimulator>;
  readonly proxy: TcpProxy;
  cloudReported(device: DevicePlan): JsonObject | undefined;
  setDesired(device: DevicePlan, point: string, value: JsonValue): Promise<void>;
  close(): Promise<void>;
}

/**
 * Why the config cannot run in a scenario (no cloud to sync with), as problems at the config
 * file; empty when it can.
 */
export function unsupported(config: LoadedConfig): Problem[] {
  const problems: Problem[] = [];
  const at = (keyPath: string, message: string): void =>
    void problems.push({
      code: "SG_CONFIG_CROSS",
      position: { file: config.configFile, line: 1, col: 1 },
      keyPath,
      message,
    });
  if (!config.gateway.cloud) at("cloud", "shadowgate test needs a cloud section to sync with");
  return problems;
}

async function startPlant(
  configFile: string,
  base: LoadedConfig,
  values: Scenario["values"],
): Promise<Plant> {
  const closers: Array<() => Promise<unknown>> = [];
  const close = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const overrides: string[] = [];
    const sources = new Map<string, SourceSimulator>();
    for (const s of await startSourceSimulators(base, values)) {
      closers.push(() => s.close());
      sources.set(s.source, s);
      overrides.push(...s.overrides);
    }
    const aws = base.gateway.cloud?.dialect === "aws";
    const cloud = aws ? await awsCloud() : await alibabaCloud();
    closers.push(() => cloud.close());
    const brokerPort = Number(new URL(cloud.mqttUrl).port);
    const proxy = new TcpProxy({ targetPort: brokerPort });
    const { port: proxyPort } = await proxy.start();
    closers.push(() => proxy.stop());
    overrides.push(`cloud.url=mqtt://127.0.0.1:${proxyPort}`);
    // The scenario's gateway keeps its journal, outbox and log apart from any real one.
    const folder = await mkdtemp(path.join(tmpdir(), "shadowgate-test-"));
    overrides.push(`gateway.dataDir=${path.join(folder, "data")}`);
    // The local service speaks plain MQTT: the thing's certificates are for AWS itself.
    if (aws) overrides.push("cloud.tls=");
    // The user's own overrides first, as the command line gave them; the plant's win.
    const all = [...(base.overrides ?? []).map((o) => o.text.trim()), ...overrides];
    const gateway = new GatewayChild(
      configFile,
      all,
      path.join(folder, GATEWAY_LOG),
      base.gateway.api?.token,
    );
    closers.push(() => gateway.stop());
    await gateway.start();
    return {
      config: base,
      folder,
      gateway,
      sources,
      proxy,
      cloudReported: (d) => cloud.reported(d),
      setDesired(d, point, value) {
        const desired: JsonObject = {};
        setPath(desired, point.split("."), value);
        return cloud.setDesired(d, desired);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The local cloud service of the config's dialect, as the runner uses it. */
interface LocalCloud {
  readonly mqttUrl: string;
  reported(d: DevicePlan): JsonObject | undefined;
  /** Sets desired values as an application would (the cloud pushes them to the gateway). */
  setDesired(d: DevicePlan, desired: JsonObject): Promise<void>;
  close(): Promise<void>;
}

async function alibabaCloud(): Promise<LocalCloud> {
  const cloud = await startCloudService({ mqttPort: 0, httpPort: 0 });
  return {
    mqttUrl: cloud.mqttUrl,
    reported: (d) =>
      cloud.service.getShadow(d.productKey, d.deviceName)?.state.reported as JsonObject | undefined,
    async setDesired(d, desired) {
      const r = await cloud.service.updateDesired(
        d.productKey,
        d.deviceName,
        { method: "update", state: { desired } },
        { delta: true },
      );
      if (!r.ok) throw new Error(`the cloud refused the desired value: ${r.message}`);
    },
    close: () => cloud.close(),
  };
}

async function awsCloud(): Promise<LocalCloud> {
  const cloud = await startAwsCloudService({ mqttPort: 0, httpPort: 0 });
  return {
    mqttUrl: cloud.mqttUrl,
    // A named shadow's device is known locally as `thing.shadow`: the service wants the two.
    reported: (d) => {
      const { thingName, shadowName } = awsShadowOf(d);
      return cloud.service.getShadow(thingName, shadowName)?.state.reported;
    },
    async setDesired(d, desired) {
      const { thingName, shadowName } = awsShadowOf(d);
      const r = cloud.service.update(thingName, shadowName, { state: { desired } });
      if (!r.ok) throw new Error(`the cloud refused the desired value: ${r.error.message}`);
    },
    close: () => cloud.close(),
  };
}

const matches = (actual: unknown, expected: unknown, tolerance = 0): boolean =>
  typeof actual === "number" && typeof expected === "number"
    ? Math.abs(actual - expected) <= tolerance
    : actual === expected;

/** Waits until `read` gives a value that `ok` takes, at most `within` ms; gives the last read. */
async function until<T>(
  read: () => T | Promise<T>,
  ok: (v: T) => boolean,
  within: number,
): Promise<{ held: boolean; last: T }> {
  const end = Date.now() + within;
  for (;;) {
    const v = await read();
    if (ok(v)) return { held: true, last: v };
    if (Date.now() >= end) return { held: false, last: v };
    await sleep(CHECK_EVERY_MS);
  }
}

export function describeStep(s: Step): string {
  if ("plc" in s)
    return `plc: set ${s.plc.set} to ${s.plc.words ? `words ${s.plc.words.join(" ")}` : JSON.stringify(s.plc.to)}`;
  if ("desired" in s) return `desired: set ${s.desired.set} to ${JSON.stringify(s.desired.to)}`;
  if ("wait" in s) return `wait ${s.wait} ms`;
  if ("uplink" in s) return `uplink ${s.uplink}`;
  if ("gateway" in s) return `gateway ${s.gateway}`;
  if ("source" in s)
    return "stop" in s.source ? `source ${s.source.stop} stops` : `source ${s.source.start} starts`;
  const e = s.expect;
  if (e.register !== undefined)
    return `expect register ${e.register} = ${(e.words ?? []).join(" ")}`;
  if (e.written !== undefined) return `expect ${e.written} written ${e.times ?? 0} time(s)`;
  if (e.quality !== undefined) return `expect ${e.quality} quality ${e.is ?? ""}`;
  if (e.command !== undefined) return `expect command ${e.command} ${e.outcome ?? ""}`.trim();
  const where = e.edge !== undefined ? `edge ${e.edge}` : `cloud ${e.cloud ?? ""}`;
  return `expect ${where} = ${JSON.stringify(e.equals)}${e.tolerance ? ` ± ${e.tolerance}` : ""}`;
}

/**
 * Runs the scenario's steps in order against a plant built from its config; a failed check is
 * reported and the next step runs. `progress` is told of each step as it ends. The gateway's
 * folder (its log and data) is removed when every check held, unless `keep`.
 */
export async function runScenario(
  configFile: string,
  config: LoadedConfig,
  scenario: Scenario,
  lines: readonly number[],
  progress: (r: StepResult) => void,
  keep = false,
): Promise<{ results: StepResult[]; folder: string }> {
  const plant = await startPlant(configFile, config, scenario.values);
  const results: StepResult[] = [];
  // Names were checked against the config before the plant started (checkNames).
  const split = (name: string): [DevicePlan, string] => {
    const { plan, point } = splitName(plant.config.devices, name);
    return [plan as DevicePlan, point];
  };
  const simOf = (d: DevicePlan): SourceSimulator | undefined => plant.sources.get(d.sourceId);
  try {
    for (const [index, s] of scenario.steps.entries()) {
      const t0 = Date.now();
      let failure: string | undefined;
      try {
        failure = await runStep(s);
      } catch (e) {
        failure = (e as Error).message;
      }
      const r: StepResult = {
        index,
        line: lines[index] ?? 0,
        what: describeStep(s),
        ok: failure === undefined,
        ...(failure !== undefined && { failure }),
        ms: Date.now() - t0,
      };
      results.push(r);
      progress(r);
    }
  } finally {
    await plant.close();
  }
  const { folder } = plant;
  // Kept when a check failed: the gateway's log and data are what explains it.
  if (!keep && results.every((r) => r.ok)) await rm(folder, { recursive: true, force: true });
  return { results, folder };

  async function runStep(s: Step): Promise<string | undefined> {
    if ("plc" in s) {
      const [d, point] = split(s.plc.set);
      const sim = simOf(d);
      if (!sim) return `${s.plc.set}: not in a simulated device`;
      if (s.plc.words === undefined) sim.set(d.deviceName, point, s.plc.to);
      else if (!sim.setWords(d.deviceName, point, s.plc.words))
        return `${s.plc.set}: words are for Modbus register points`;
      return undefined;
    }
    if ("desired" in s) {
      const [d, point] = split(s.desired.set);
      await plant.setDesired(d, point, s.desired.to);
      return undefined;
    }
    if ("wait" in s) {
      await sleep(s.wait);
      return undefined;
    }
    if ("uplink" in s) {
      if (s.uplink === "cut") plant.proxy.cut();
      else plant.proxy.restore();
      return undefined;
    }
    if ("gateway" in s) {
      // The same data folder: the journal and the outbox carry over, as on a real restart.
      if (s.gateway === "kill") await plant.gateway.kill();
      else await plant.gateway.stop();
      await plant.gateway.start();
      return undefined;
    }
    if ("source" in s) {
      const id = "stop" in s.source ? s.source.stop : s.source.start;
      const source = plant.sources.get(id);
      if (!source) return `no simulated source ${id}`;
      // The memory stays: a PLC that comes back holds what it held.
      if ("stop" in s.source) await source.pause();
      else await source.resume();
      return undefined;
    }
    const e = s.expect;
    if (e.quality !== undefined) {
      const [d, point] = split(e.quality);
      const state = async () =>
        (await plant.gateway.shadow(d.deviceName))?.metadata.reported[point];
      const { held, last } = await until(state, (v) => v?.quality === e.is, e.within);
      return held
        ? undefined
        : `expected quality ${e.is}, got ${last?.quality ?? "none"}${last?.reason ? ` (${last.reason})` : ""} within ${e.within} ms`;
    }
    if (e.register !== undefined || e.written !== undefined) {
      const [d, point] = split(e.register ?? e.written ?? "");
      const sim = simOf(d);
      if (!sim) return `${d.deviceName}.${point}: not in a simulated device`;
      if (e.register !== undefined) {
        const words = e.words ?? [];
        if (sim.words(d.deviceName, point) === undefined)
          return `${e.register}: registers are for Modbus register points`;
        const { held, last } = await until(
          () => sim.words(d.deviceName, point),
          (v) => JSON.stringify(v) === JSON.stringify(words),
          e.within,
        );
        return held
          ? undefined
          : `expected the words ${words.join(" ")}, the PLC holds ${(last as number[]).join(" ")}`;
      }
      // Counted at the end of `within`: a write that comes late is a write all the same.
      await sleep(e.within);
      const seen = sim.writes(d.deviceName, point);
      return seen === e.times
        ? undefined
        : `expected ${e.times} write(s) to ${point}, the PLC saw ${seen}`;
    }
    if (e.command !== undefined) {
      const [d, point] = split(e.command);
      const { held, last } = await until(
        async () =>
          getPath((await plant.gateway.shadow(d.deviceName))?.state.reported, [
            COMMANDS_KEY,
            point,
            "status",
          ]),
        (v) => v === e.outcome,
        e.within,
      );
      return held
        ? undefined
        : `expected the command's outcome ${e.outcome}, got ${last === undefined ? "no command" : String(last)} within ${e.within} ms`;
    }
    const name = e.edge ?? e.cloud ?? "";
    const [d, point] = split(name);
    const read = async (): Promise<unknown> =>
      getPath(
        e.edge !== undefined
          ? (await plant.gateway.shadow(d.deviceName))?.state.reported
          : plant.cloudReported(d),
        point.split("."),
      );
    const { held, last } = await until(read, (v) => matches(v, e.equals, e.tolerance), e.within);
    return held
      ? undefined
      : `expected ${JSON.stringify(e.equals)}${e.tolerance ? ` ± ${e.tolerance}` : ""}, got ${last === undefined ? "nothing" : JSON.stringify(last)} within ${e.within} ms`;
  }
}
