/**
 * The daemon's signal handling (daemon/service.ts) against a real simulated PLC and real config
 * files: SIGHUP reloads, a broken config is refused and the running gateway keeps its values, a
 * storm of SIGHUPs never runs two gateways at once, SIGTERM stops after the reload under way.
 */
import { EventEmitter } from "node:events";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { loadConfig } from "../../../src/config/load.js";
import { parseOverride } from "../../../src/config/override.js";
import { testLogger } from "../../helpers/logs.js";
import { Service, type SignalSource } from "../../../src/daemon/service.js";
import { ModbusTcpSimulator } from "../../../src/sim/modbus/index.js";
import { captureLogger } from "../../helpers/cloud.js";
import { until } from "../../helpers/until.js";

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
});

const mapping = (type: string) => `version: 1
device: { productKey: a1Plant, deviceName: boiler }
source: plc
pollInterval: 50ms
points:
  level: { register: 40001, type: ${type} }
`;

async function plant(log = testLogger()) {
  const sim = new ModbusTcpSimulator({ units: [1] });
  const { port } = await sim.start({ port: 0 });
  running.push(() => sim.stop());
  sim.unit(1).holding[0] = 7;
  const dir = await mkdtemp(path.join(tmpdir(), "sg-service-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1
gateway: { name: svc, dataDir: ./data }
sources:
  plc: { protocol: modbus-tcp, host: 127.0.0.1, port: ${port} }
mappings: ./mappings
`,
  );
  const mappingFile = path.join(dir, "mappings", "boiler.yaml");
  await writeFile(mappingFile, mapping("uint16"));
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, log);
  await service.start();
  running.push(() => service.stop());
  const level = () => service.current.shadow.document("boiler")?.state.reported.level;
  return { sim, service, mappingFile, level };
}

it("reloads on SIGHUP, refuses a broken config keeping the running gateway, and stops on SIGTERM", async () => {
  const { sim, service, mappingFile, level } = await plant();
  const signals = new EventEmitter();
  const stopped = service.run(signals as SignalSource);
  await until("first value", () => level() === 7);

  const first = service.current;
  await writeFile(mappingFile, mapping("float33"));
  signals.emit("SIGHUP");
  await service.reload(); // queued behind the signal's reload: both have been refused
  expect(service.current).toBe(first);
  sim.unit(1).holding[0] = 8;
  await until("the running gateway still polls", () => level() === 8);

  // A storm: three reloads queue one behind another and end with the gateway polling the new
  // mapping, in place, over the connection it had (the source did not change).
  await writeFile(mappingFile, mapping("int16"));
  signals.emit("SIGHUP");
  signals.emit("SIGHUP");
  signals.emit("SIGHUP");
  await expect(service.reload()).resolves.toEqual({
    status: "applied",
    plan: { added: [], changed: [], removed: [], reconnected: false },
  });
  expect(service.current).toBe(first);
  sim.unit(1).holding[0] = 0xffff;
  await until("the reloaded mapping (int16)", () => level() === -1);
  expect(sim.stats().connections).toEqual({ open: 1, accepted: 1 });

  // SIGTERM during a reload: the stop waits for it, then stops the gateway it started.
  signals.emit("SIGHUP");
  signals.emit("SIGTERM");
  await expect(stopped).resolves.toBe("SIGTERM");
  await until("the PLC connection closed", () => sim.stats().connections.open === 0);
  expect(signals.listenerCount("SIGHUP") + signals.listenerCount("SIGTERM")).toBe(0);
});

it("says which changed sections wait for a restart, at every reload until then, and applies the rest", async () => {
  const { logger, records } = captureLogger();
  const { service, mappingFile } = await plant(logger);
  const configFile = path.join(path.dirname(mappingFile), "..", "gateway.yaml");
  await writeFile(
    configFile,
    `${await readFile(configFile, "utf8")}log: { level: debug }\napi: { listen: "127.0.0.1:0" }\n`,
  );
  await writeFile(mappingFile, mapping("int16"));
  const reply = await service.reload();
  expect(reply).toMatchObject({
    status: "applied",
    plan: { changed: ["boiler"] },
    restartNeeded: ["api", "log"],
  });
  const warned = () => records.filter((r) => r.code === "SG_RELOAD_RESTART_NEEDED");
  expect(warned()).toHaveLength(1);
  expect(warned()[0]).toMatchObject({ level: 40, sections: ["api", "log"] });
  expect(warned()[0]?.msg).toMatch(/only a restart applies/);
  // Still not applied: the next reload says so again.
  await expect(service.reload()).resolves.toMatchObject({ restartNeeded: ["api", "log"] });
  expect(warned()).toHaveLength(2);
});

it("with watch, reloads when a mapping file is saved, and refuses a broken save", async () => {
  const { logger, records } = captureLogger();
  const { sim, service, mappingFile, level } = await plant(logger);
  await until("first value", () => level() === 7);
  service.watch();
  sim.unit(1).holding[0] = 0xffff;
  await until("polled as uint16", () => level() === 0xffff);
  await writeFile(mappingFile, mapping("int16"));
  await until("the saved mapping applied (int16)", () => level() === -1);
  await writeFile(mappingFile, mapping("float33"));
  await until("the broken save refused", () =>
    records.some((r) => String(r.msg).startsWith("reload refused")),
  );
  expect(level()).toBe(-1);
  // The watch goes on: the next good save is applied.
  await writeFile(mappingFile, mapping("uint16"));
  await until("the next good save applied", () => level() === 0xffff);
  expect(sim.stats().connections).toEqual({ open: 1, accepted: 1 });
});

it("a SIGTERM during the start waits for it, then stops: no gateway is left polling", async () => {
  const { logger } = captureLogger();
  const sim = new ModbusTcpSimulator({ units: [1] });
  const { port } = await sim.start({ port: 0 });
  running.push(() => sim.stop());
  const dir = await mkdtemp(path.join(tmpdir(), "sg-service-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1\ngateway: { name: svc, dataDir: ./data }\nsources:\n  plc: { protocol: modbus-tcp, host: 127.0.0.1, port: ${port} }\nmappings: ./mappings\n`,
  );
  await writeFile(path.join(dir, "mappings", "boiler.yaml"), mapping("uint16"));
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, logger);
  const signals = new EventEmitter();
  const stopped = service.run(signals as SignalSource);
  const started = service.start();
  signals.emit("SIGHUP");
  signals.emit("SIGTERM");
  await started;
  await expect(stopped).resolves.toBe("SIGTERM");
  expect(service.stopped).toBe(true);
  await until("the PLC connection closed", () => sim.stats().connections.open === 0);
  const polls = sim.stats().requests;
  // Stopped for good: another reload is refused, and nothing polls any more.
  await expect(service.reload()).resolves.toMatchObject({ status: "failed" });
  expect(sim.stats().requests).toBe(polls);
});

it("keeps the command line's overrides across a reload", async () => {
  const sim = new ModbusTcpSimulator({ units: [1] });
  const { port } = await sim.start({ port: 0 });
  running.push(() => sim.stop());
  sim.unit(1).holding[0] = 9;
  const dir = await mkdtemp(path.join(tmpdir(), "sg-service-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  // The file names a port nothing listens on; the override names the simulator's.
  await writeFile(
    configFile,
    "version: 1\ngateway: { name: svc, dataDir: ./data }\nsources:\n  plc: { protocol: modbus-tcp, host: 127.0.0.1, port: 9, timeout: 200ms }\nmappings: ./mappings\n",
  );
  await writeFile(path.join(dir, "mappings", "boiler.yaml"), mapping("uint16"));
  const override = parseOverride(`sources.plc.port=${port}`);
  if (typeof override === "string") throw new Error(override);
  const loaded = await loadConfig(configFile, process.env, [override]);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, testLogger());
  await service.start();
  running.push(() => service.stop());
  const level = () => service.current.shadow.document("boiler")?.state.reported.level;
  await until("polled through the override", () => level() === 9);
  await writeFile(path.join(dir, "mappings", "boiler.yaml"), mapping("int16"));
  expect(await service.reload()).toMatchObject({ status: "applied" });
  sim.unit(1).holding[0] = 0xfffe;
  await until("the reloaded device still reads the simulator", () => level() === -2);
});
