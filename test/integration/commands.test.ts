import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { testLogger } from "../helpers/logs.js";
import { CommandExecutor } from "../../src/daemon/commands.js";
import type { DevicePlan } from "../../src/mapping/types.js";
import { EdgeShadow } from "../../src/shadow/edge-shadow.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import type { Source } from "../../src/south/protocol.js";
import { protocolOf } from "../../src/south/registry.js";

const root = path.resolve(import.meta.dirname, "../..");
let sim: RunningSimulator | undefined;
let source: Source | undefined;
afterEach(async () => {
  await source?.stop();
  await sim?.close();
  sim = source = undefined;
});

/** The shipped boiler mapping against the simulator, dynamics stopped so values stay put. */
async function boiler() {
  sim = await startSimulator({ port: 0 });
  sim.sim.profile?.stop();
  const loaded = await loadConfig(path.join(root, "config/gateway.yaml"), {
    PLC_PORT: String(sim.port),
  });
  if (!loaded.ok) throw new Error("example config invalid");
  const plan = loaded.config.devices[0] as DevicePlan;
  const config = loaded.config.gateway.sources.plc1;
  if (!config) throw new Error("no source plc1");
  const plc1 = (source = await protocolOf(config).open("plc1", config, {
    dataDir: loaded.config.dataDir,
    configDir: root,
    log: testLogger(),
  }));
  await plc1.start();
  const channel = plc1.channel(plan);
  const shadow = new EdgeShadow([plan]);
  const writes: unknown[] = [];
  sim.sim.on("write", (w) => writes.push(w));
  const exec = new CommandExecutor(
    new Map([[plan.deviceName, plan]]),
    (name) => (name === plan.deviceName ? channel : undefined),
    shadow,
    testLogger(),
  );
  return { sim, shadow, exec, writes, unit: sim.sim.unit(1) };
}

describe("CommandExecutor against the simulator", () => {
  it("writes a scaled set point, reads it back and reports it to the edge shadow", async () => {
    const b = await boiler();
    const outcome = await b.exec.execute("boiler-01", "targetTemperature", 75.5);
    expect(outcome).toEqual({ status: "applied", value: 75.5 });
    expect(b.unit.holding[9]).toBe(755);
    expect(b.shadow.document("boiler-01")?.state.reported).toEqual({ targetTemperature: 75.5 });
  });

  it("resuming after a crash writes only if the device does not hold the value yet", async () => {
    const b = await boiler();
    b.unit.holding[9] = 755; // the interrupted write had landed
    expect(await b.exec.execute("boiler-01", "targetTemperature", 75.5, { resume: true })).toEqual({
      status: "applied",
      value: 75.5,
    });
    expect(b.writes).toEqual([]);
    // It had not landed: written now, once.
    expect(await b.exec.execute("boiler-01", "targetTemperature", 70, { resume: true })).toEqual({
      status: "applied",
      value: 70,
    });
    expect(b.writes).toHaveLength(1);
    expect(b.unit.holding[9]).toBe(700);
  });

  it("resuming right after a restart waits for the device to answer before it decides", async () => {
    const b = await boiler();
    b.unit.holding[9] = 755; // the interrupted write had landed
    await b.sim.sim.stop();
    // The connection is down when the resumed command starts, and back while it waits.
    const resumed = b.exec.execute("boiler-01", "targetTemperature", 75.5, { resume: true });
    await b.sim.sim.start({ port: b.sim.port });
    expect(await resumed).toEqual({ status: "applied", value: 75.5 });
    expect(b.writes).toEqual([]);
  });

  it("resuming when the device never answers fails the command and writes nothing", async () => {
    const b = await boiler();
    await b.sim.sim.stop();
    expect(await b.exec.execute("boiler-01", "targetTemperature", 70, { resume: true })).toEqual({
      status: "failed",
      reason:
        "cannot read the device to tell whether the write before the restart landed; not written again",
    });
    expect(b.writes).toEqual([]);
  });

  it("writes a coil", async () => {
    const b = await boiler();
    expect(await b.exec.execute("boiler-01", "running", false)).toEqual({
      status: "applied",
      value: false,
    });
    expect(b.unit.coil[0]).toBe(0);
  });

  it("rejects without writing: unmapped, read-only, wrong type, out of range, off resolution", async () => {
    const b = await boiler();
    const cases: Array<[string, unknown, RegExp]> = [
      ["nosuch", 1, /not a mapped point/],
      ["temperature", 30, /read-only/],
      ["flow", 3, /read-only/],
      ["targetTemperature", "hot", /takes a number/],
      ["targetTemperature", 121, /above the maximum 120/],
      ["targetTemperature", -1, /below the minimum 0/],
      ["targetTemperature", 60.25, /resolution 0.1/],
      ["running", 1, /true or false/],
    ];
    for (const [point, value, reason] of cases) {
      const outcome = await b.exec.execute("boiler-01", point, value);
      expect(outcome.status, point).toBe("rejected");
      expect(outcome.reason, point).toMatch(reason);
    }
    expect(b.writes).toEqual([]);
    expect(b.unit.holding[9]).toBe(600);
  });

  it("reports failed when the device does not keep the value", async () => {
    const b = await boiler();
    // A device that clamps: every write of the set point is undone before the read-back.
    b.sim.sim.on("write", (w) => {
      if (w.table === "holding" && w.address === 9) b.unit.holding[9] = 1000;
    });
    const outcome = await b.exec.execute("boiler-01", "targetTemperature", 80);
    expect(outcome).toEqual({ status: "failed", reason: "wrote 80 but read back 100", value: 100 });
  });

  it("reports failed when the device refuses the write", async () => {
    const b = await boiler();
    b.unit.addHole({ table: "holding", from: 9, to: 9 });
    const outcome = await b.exec.execute("boiler-01", "targetTemperature", 80);
    expect(outcome.status).toBe("failed");
    expect(outcome.reason).toMatch(/exception 02/);
  });
});
