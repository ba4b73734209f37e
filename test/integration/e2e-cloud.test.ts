import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { testLogger } from "../helpers/logs.js";
import type { JsonObject } from "../../src/core/types.js";
import { Gateway } from "../../src/daemon/gateway.js";
import type { RunningCloudService } from "../../src/sim/cloud/index.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import {
  closeCloudTestResources,
  connectTestClient,
  httpJson,
  startTestCloud,
} from "../helpers/cloud.js";
import { until } from "../helpers/until.js";
import { describeWithMosquitto } from "../helpers/mosquitto-suite.js";

const root = path.resolve(import.meta.dirname, "../..");
const PK = "a1Boiler";
const DN = "boiler-01";

interface Plant {
  sim: RunningSimulator;
  cloud: RunningCloudService;
  gateway: Gateway;
  /** Writes the PLC saw on the set point register (holding 9). */
  setpointWrites: number;
  reported(): JsonObject;
  desired(): JsonObject | undefined;
  setDesired(desired: JsonObject): Promise<void>;
}

const running: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop();
  await closeCloudTestResources();
});

async function plant(brokerUrl?: string): Promise<Plant> {
  const sim = await startSimulator({ port: 0 });
  running.push(() => sim.close());
  sim.sim.profile?.stop();
  const cloud = await startTestCloud(brokerUrl ? { brokerUrl } : {});
  const loaded = await loadConfig(path.join(root, "config/gateway.yaml"), {
    PLC_PORT: String(sim.port),
    CLOUD_URL: brokerUrl ?? cloud.mqttUrl,
  });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const dataDir = await mkdtemp(path.join(tmpdir(), "sg-e2e-"));
  const gateway = new Gateway({ ...loaded.config, dataDir }, testLogger());
  await gateway.start();
  running.push(() => gateway.stop());
  const p: Plant = {
    sim,
    cloud,
    gateway,
    setpointWrites: 0,
    reported: () => cloud.service.getShadow(PK, DN)?.state.reported ?? {},
    desired: () => cloud.service.getShadow(PK, DN)?.state.desired,
    async setDesired(desired) {
      const r = await httpJson(`${cloud.httpUrl}/shadows/${PK}/${DN}`, {
        body: { ShadowMessage: { method: "update", state: { desired } }, DeltaUpdate: true },
      });
      expect(r.body).toMatchObject({ Success: true });
    },
  };
  sim.sim.on("write", (w) => {
    if (w.table === "holding" && w.address === 9) p.setpointWrites++;
  });
  await until("the first report in the cloud", () => p.reported().temperature === 21.5);
  return p;
}

const commandOf = (p: Plant, point: string) =>
  (p.reported()._commands as Record<string, Record<string, unknown>> | undefined)?.[point];

function suite(name: string, brokerUrl: () => string | undefined) {
  describe(`simulator -> gateway -> ${name} -> cloud shadow service`, () => {
    it("reports the PLC's state to the cloud shadow", async () => {
      const p = await plant(brokerUrl());
      expect(p.reported()).toMatchObject({
        temperature: 21.5,
        targetTemperature: 60,
        running: true,
        doorOpen: false,
        state: "idle",
        alarm: { overheat: false },
        flow: 120,
      });
      // A change in the PLC travels up as a partial update.
      p.sim.sim.profile?.set("flow", 133);
      await until("flow 133 in the cloud", () => p.reported().flow === 133);
    });

    it("writes a desired value set over HTTP to the PLC, reports the read-back and clears desired", async () => {
      const p = await plant(brokerUrl());
      await p.setDesired({ targetTemperature: 80 });
      await until("the set point in the PLC", () => p.sim.sim.unit(1).holding[9] === 800);
      await until("the read-back in the cloud", () => p.reported().targetTemperature === 80);
      await until(
        "the outcome in the cloud",
        () => commandOf(p, "targetTemperature")?.status === "applied",
      );
      await until("desired cleared", () => p.desired() === undefined);
      expect(commandOf(p, "targetTemperature")).toMatchObject({ status: "applied", value: 80 });
      expect(p.setpointWrites).toBe(1);
    });

    it("recovers from a version bumped from the side with exactly one retry", async () => {
      const p = await plant(brokerUrl());
      await until("in sync", () => {
        const st = p.gateway.sync?.deviceState(DN);
        return st?.synced === true && !st.busy && !st.backlog;
      });
      const side = await connectTestClient(brokerUrl() ?? p.cloud.mqttUrl);
      await side.subscribe(`/shadow/get/${PK}/${DN}`);
      const version = p.cloud.service.getShadow(PK, DN)?.version ?? 0;
      const reply = await side.request(PK, DN, {
        method: "update",
        state: { reported: { note: "written by someone else" } },
        version: version + 10,
      });
      expect(reply.message.payload).toMatchObject({ status: "success", version: version + 10 });
      const conflictsBefore = p.gateway.sync?.stats.conflicts ?? 0;
      p.sim.sim.profile?.set("flow", 140);
      await until("flow 140 in the cloud", () => p.reported().flow === 140);
      expect((p.gateway.sync?.stats.conflicts ?? 0) - conflictsBefore).toBe(1);
      expect(p.reported().note).toBe("written by someone else");
      expect(p.cloud.service.getShadow(PK, DN)?.version).toBeGreaterThan(version + 10);
    });

    it("executes a duplicated control once, early or late", async () => {
      const p = await plant(brokerUrl());
      const spy = await connectTestClient(brokerUrl() ?? p.cloud.mqttUrl);
      await spy.subscribe(`/shadow/get/${PK}/${DN}`);
      const handled = () => {
        const st = p.gateway.sync?.stats;
        return (st?.duplicateCommands ?? 0) + (st?.badMessages ?? 0);
      };
      await p.setDesired({ targetTemperature: 70 });
      let control: unknown;
      while (control === undefined) {
        const m = await spy.next();
        if (m.message?.method === "control") control = m.message;
      }
      // At once, as a QoS 1 redelivery would bring it: the journal drops it.
      await spy.publish(`/shadow/get/${PK}/${DN}`, control);
      await until(
        "the command applied",
        () => commandOf(p, "targetTemperature")?.status === "applied",
      );
      await until("the early duplicate handled", () => handled() >= 1);
      // Much later, after desired was cleared: the stale version makes it re-read the shadow.
      await until("desired cleared", () => p.desired() === undefined);
      const before = handled();
      await spy.publish(`/shadow/get/${PK}/${DN}`, control);
      await until("the late duplicate handled", () => handled() > before);
      await p.gateway.sync?.idle();
      expect(p.setpointWrites).toBe(1);
      expect(p.sim.sim.unit(1).holding[9]).toBe(700);
      expect(p.gateway.sync?.stats.commands).toEqual({ applied: 1, rejected: 0, failed: 0 });
    });

    it("rejects an out-of-range desired value and writes nothing", async () => {
      const p = await plant(brokerUrl());
      await p.setDesired({ targetTemperature: 500 });
      await until(
        "the rejection in the cloud",
        () => commandOf(p, "targetTemperature")?.status === "rejected",
      );
      expect(commandOf(p, "targetTemperature")?.reason).toMatch(/above the maximum 120/);
      await until("desired cleared", () => p.desired() === undefined);
      expect(p.setpointWrites).toBe(0);
      expect(p.sim.sim.unit(1).holding[9]).toBe(600);
      expect(p.reported().targetTemperature).toBe(60);
    });
  });
}

suite("aedes", () => undefined);

describeWithMosquitto("with mosquitto", (broker) => suite("mosquitto", () => broker().url));
