/**
 * Issue 10, cloud messages: what generated hostile input on /shadow/get/{pk}/{dn} broke, against
 * the built daemon (`dist/cli/main.js run`, a child process), the PLC simulator and the cloud
 * shadow service (embedded broker) over real sockets. A second MQTT client, the "attacker",
 * publishes on the gateway's inbound topic as a broken cloud or a foreign client could.
 */
import { copyFile, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { JsonObject } from "../../src/core/types.js";
import type { RunningCloudService } from "../../src/sim/cloud/index.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import {
  closeCloudTestResources,
  connectTestClient,
  controlMessage,
  httpJson,
  startTestCloud,
  type TestClient,
} from "../helpers/cloud.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { until } from "../helpers/until.js";

const root = path.resolve(import.meta.dirname, "../..");
const PK = "a1Boiler";
const DN = "boiler-01";
const INBOUND = `/shadow/get/${PK}/${DN}`;
/** The boiler's set point: holding register 9, int16 tenths of a degree. */
const SETPOINT = 9;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await closeCloudTestResources();
});

interface Plant {
  sim: RunningSimulator;
  cloud: RunningCloudService;
  gateway: GatewayProcess;
  attacker: TestClient;
  /** Writes the PLC saw on the set point. */
  setpointWrites: number;
  reported(): JsonObject;
  version(): number;
  commandOf(point: string): Record<string, unknown> | undefined;
  setDesired(desired: JsonObject): Promise<void>;
  /** Publishes a well-formed control push for the device from the attacker. */
  control(desired: JsonObject, ts: number, version?: number): Promise<void>;
}

async function plant(nodeArgs?: string[]): Promise<Plant> {
  const sim = await startSimulator({ port: 0 });
  cleanups.push(() => sim.close());
  sim.sim.profile?.stop();
  const cloud = await startTestCloud();
  const dir = await mkdtemp(path.join(tmpdir(), "sg-hostile-cloud-"));
  await mkdir(path.join(dir, "mappings"));
  await copyFile(
    path.join(root, "mappings/boiler-01.yaml"),
    path.join(dir, "mappings/boiler-01.yaml"),
  );
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    JSON.stringify({
      version: 1,
      gateway: { name: "hostile-gw", dataDir: "./data" },
      sources: {
        plc1: { protocol: "modbus-tcp", host: "127.0.0.1", port: sim.port, timeout: "500ms" },
      },
      cloud: {
        url: cloud.mqttUrl,
        productKey: "a1Gateway",
        deviceName: "edge-01",
        sendWindow: "50ms",
        replyTimeout: "2s",
      },
      mappings: "./mappings",
    }),
  );
  const gateway = new GatewayProcess({
    configFile,
    logFile: path.join(dir, "gateway.log"),
    ...(nodeArgs && { nodeArgs }),
  });
  gateway.start();
  cleanups.push(() => gateway.stop());
  const attacker = await connectTestClient(cloud.mqttUrl);
  const shadow = () => cloud.service.getShadow(PK, DN);
  const p: Plant = {
    sim,
    cloud,
    gateway,
    attacker,
    setpointWrites: 0,
    reported: () => shadow()?.state.reported ?? {},
    version: () => shadow()?.version ?? 0,
    commandOf: (point) =>
      (
        shadow()?.state.reported?._commands as Record<string, Record<string, unknown>> | undefined
      )?.[point],
    async setDesired(desired) {
      const r = await httpJson(`${cloud.httpUrl}/shadows/${PK}/${DN}`, {
        body: { ShadowMessage: { method: "update", state: { desired } }, DeltaUpdate: true },
      });
      expect(r.body).toMatchObject({ Success: true });
    },
    async control(desired, ts, version = p.version() + 1) {
      await attacker.publish(
        INBOUND,
        controlMessage(version, desired, ts, Math.floor(Date.now() / 1000)),
      );
    },
  };
  sim.sim.on("write", (w) => {
    if (w.table === "holding" && w.address === SETPOINT) p.setpointWrites++;
  });
  await until(
    "the first report in the cloud",
    () => p.reported().temperature === 21.5,
    20_000,
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}\n${gateway.tail()}`);
  });
  return p;
}

/** Awaits `what`, adding the daemon's last log lines to the failure. */
async function expectSoon(p: Plant, what: string, cond: () => boolean): Promise<void> {
  await until(what, cond).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}\n${p.gateway.tail(40)}`);
  });
}

async function runsCommand(p: Plant, value: number): Promise<void> {
  await p.setDesired({ targetTemperature: value });
  await expectSoon(
    p,
    `${value} written to the PLC`,
    () => p.sim.sim.unit(1).holding[SETPOINT] === value * 10,
  );
  await expectSoon(p, `${value} applied in the cloud`, () => {
    const c = p.commandOf("targetTemperature");
    return c?.status === "applied" && c.value === value;
  });
}

describe("hostile control pushes against the daemon (issue 10)", () => {
  it("a refused command stamped in the future never blocks the commands after it", async () => {
    const p = await plant();
    const now = Math.floor(Date.now() / 1000);
    const stamps = [now + 3600, now + 86_400, now + 315_360_000, 2 ** 53];
    for (const [i, ts] of stamps.entries()) {
      // Out of range (the mapping's max is 120): the guard refuses it.
      await p.control({ targetTemperature: 500 }, ts);
      await expectSoon(p, `the refusal of the command stamped ${ts}`, () => {
        const c = p.commandOf("targetTemperature");
        return c?.status === "rejected" && c.ts === ts;
      });
      await runsCommand(p, 70 + i);
    }
    // In range but ten years ahead of the clock: refused as bad input, never written.
    await p.control({ targetTemperature: 99 }, now + 315_360_000 + 1);
    await expectSoon(p, "the refusal of the far-future command", () => {
      const c = p.commandOf("targetTemperature");
      return c?.status === "rejected" && c.ts === now + 315_360_000 + 1;
    });
    expect(p.commandOf("targetTemperature")?.reason).toMatch(/ahead of the gateway's clock/);
    await runsCommand(p, 80);
    expect(p.setpointWrites).toBe(stamps.length + 1);
    expect(p.gateway.running).toBe(true);
  });

  it("a version at the integer limit, and a flood of forged versions, neither kill nor silence it", async () => {
    const p = await plant();
    const versionBefore = p.version();
    const now = Math.floor(Date.now() / 1000);
    await p.control({ targetTemperature: 500 }, now, Number.MAX_SAFE_INTEGER);
    // Forged versions the gateway must not carry into its requests (Alibaba stores them).
    for (let i = 0; i < 100; i++) {
      const version = i % 2 === 0 ? 4_294_967_295 + i : Number.MAX_SAFE_INTEGER - 1 - i;
      await p.control({ targetTemperature: 500 }, now - 1000 + i, version);
    }
    // Still reporting.
    p.sim.sim.profile?.set("flow", 133);
    await expectSoon(p, "flow 133 in the cloud", () => p.reported().flow === 133);
    // And still executing commands.
    await runsCommand(p, 75);
    expect(p.gateway.running).toBe(true);
    // Every version the cloud holds came from the cloud's own counting.
    expect(p.version()).toBeGreaterThan(versionBefore);
    expect(p.version()).toBeLessThan(versionBefore + 1000);
  });

  it("an exception that escapes an event handler, and an unhandled rejection, are logged and the daemon goes on", async () => {
    const preload = pathToFileURL(path.join(root, "test/fixtures/preload/escape-on-signal.mjs"));
    const p = await plant(["--import", preload.href]);
    process.kill(p.gateway.pid ?? 0, "SIGUSR2");
    await expectSoon(
      p,
      "both escapes logged",
      () =>
        p.gateway.tail().includes("injected exception (test)") &&
        p.gateway.tail().includes("injected rejection (test)"),
    );
    const escapes = p.gateway
      .tail()
      .split("\n")
      .filter((l) => l.includes("injected"));
    expect(escapes.every((l) => l.includes('"code":"SG_INTERNAL"'))).toBe(true);
    p.sim.sim.profile?.set("flow", 141);
    await expectSoon(p, "flow 141 in the cloud", () => p.reported().flow === 141);
    expect(p.gateway.running).toBe(true);
  });
});
