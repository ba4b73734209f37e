/**
 * The whole path with an OPC UA server beside a Modbus PLC: the OPC UA simulator and the
 * Modbus simulator -> the gateway -> the broker -> the cloud shadow service. Both shadows sync,
 * and a desired value set over HTTP is written to each device, read back and reported.
 */
import { readdirSync, renameSync } from "node:fs";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import type { JsonObject } from "../../src/core/types.js";
import type { Gateway } from "../../src/daemon/gateway.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { startOpcuaSimulator } from "../../src/sim/opcua/index.js";
import { closeCloudTestResources, httpJson, startTestCloud } from "../helpers/cloud.js";
import { startGateway } from "../helpers/gateway.js";
import type { SourceHealth } from "../../src/south/driver.js";
import { until } from "../helpers/until.js";

const PK = "a1Plant";

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
  await closeCloudTestResources();
});

interface Plant {
  opc: Awaited<ReturnType<typeof startOpcuaSimulator>>;
  plc: ModbusTcpSimulator;
  gateway: Gateway;
  dataDir: string;
  reported(dn: string): JsonObject;
  setDesired(dn: string, desired: JsonObject): Promise<void>;
}

/**
 * The OPC UA simulator, a Modbus simulator, the cloud service and a gateway with one device on
 * each source; `security` is the OPC UA source's config lines.
 */
async function plant(security = ""): Promise<Plant> {
  const opc = await startOpcuaSimulator({ port: 0 });
  running.push(() => opc.close());
  opc.stopDynamics(); // values change only when the test says so
  const plc = new ModbusTcpSimulator({ units: [1] });
  const { port } = await plc.start({ port: 0 });
  running.push(() => plc.stop());
  plc.unit(1).holding[0] = 7;

  const cloud = await startTestCloud();
  const { gateway, config } = await startGateway(
    `version: 1
gateway: { name: opcua-test, dataDir: ./data }
sources:
  opc1:
    protocol: opcua
    endpoint: ${opc.endpoint}
    reconnect: { min: 100ms, max: 500ms }
${security}
  plc1:
    protocol: modbus-tcp
    host: 127.0.0.1
    port: ${port}
cloud:
  url: ${cloud.mqttUrl}
  productKey: a1Gateway
  deviceName: opcua-test
  sendWindow: 0s
mappings: ./mappings
`,
    {
      boiler: `version: 1
device: { productKey: ${PK}, deviceName: boiler }
source: opc1
pollInterval: 100ms
points:
  temperature: { node: "ns=1;s=Boiler.Temperature" }
  setpoint: { node: /1:Boiler/1:Setpoint, writable: true, min: 0, max: 120 }
  running: { node: "ns=1;s=Boiler.Running", writable: true }
  state: { node: "ns=1;s=Boiler.State" }
`,
      pump: `version: 1
device: { productKey: ${PK}, deviceName: pump }
source: plc1
pollInterval: 100ms
points:
  speed: { register: 40001, writable: true }
`,
    },
  );
  running.push(() => gateway.stop());
  return {
    opc,
    plc,
    gateway,
    dataDir: config.dataDir,
    reported: (dn) => cloud.service.getShadow(PK, dn)?.state.reported ?? {},
    async setDesired(dn, desired) {
      const r = await httpJson(`${cloud.httpUrl}/shadows/${PK}/${dn}`, {
        body: { ShadowMessage: { method: "update", state: { desired } }, DeltaUpdate: true },
      });
      expect(r.body).toMatchObject({ Success: true });
    },
  };
}

const outcome = (p: Plant, dn: string, point: string) =>
  (p.reported(dn)._commands as Record<string, Record<string, unknown>> | undefined)?.[point];

it("an OPC UA server and a Modbus PLC sync their shadows and each executes a desired value", async () => {
  const p = await plant();
  await until(
    "both shadows",
    () => p.reported("boiler").temperature !== undefined && p.reported("pump").speed === 7,
  );
  expect(p.reported("boiler")).toMatchObject({
    temperature: p.opc.get("Temperature"),
    setpoint: p.opc.get("Setpoint"),
    running: p.opc.get("Running"),
    state: p.opc.get("State"),
  });

  // A change on the server arrives through the subscription.
  p.opc.set("Temperature", 66.5);
  await until("the new temperature", () => p.reported("boiler").temperature === 66.5);

  // Desired values: one to each device, written, read back and reported.
  await p.setDesired("boiler", { setpoint: 75.5 });
  await p.setDesired("pump", { speed: 1200 });
  await until(
    "both outcomes",
    () =>
      outcome(p, "boiler", "setpoint")?.status === "applied" &&
      outcome(p, "pump", "speed")?.status === "applied",
  );
  expect(p.opc.get("Setpoint")).toBe(75.5);
  expect(p.plc.unit(1).holding[0]).toBe(1200);
  expect(p.reported("boiler").setpoint).toBe(75.5);
  expect(p.reported("pump").speed).toBe(1200);

  // Out of range: refused before anything is written.
  await p.setDesired("boiler", { setpoint: 500 });
  await until("the refusal", () => outcome(p, "boiler", "setpoint")?.status === "rejected");
  expect(p.opc.get("Setpoint")).toBe(75.5);

  // The server restarts: the session comes back and a change made meanwhile arrives.
  await p.opc.restart();
  p.opc.set("Temperature", 70.25);
  await until("the change after the restart", () => p.reported("boiler").temperature === 70.25);
});

it("with SignAndEncrypt, refuses an untrusted server until its certificate is moved as the log says", async () => {
  const p = await plant("    securityMode: SignAndEncrypt");
  const opcSource = () => p.gateway.status().sources?.details.opc1 as SourceHealth | undefined;
  const pki = path.join(p.dataDir, "pki", "opcua");
  // Refused: the rejected certificate is waiting in the PKI folder, and nothing is reported.
  await until("the certificate refused", () => {
    try {
      return readdirSync(path.join(pki, "rejected")).length > 0;
    } catch {
      return false;
    }
  });
  expect(p.reported("boiler").temperature).toBeUndefined();
  expect(opcSource()?.state).not.toBe("online");
  // What the operator does: move it to trusted/certs. The driver reads the list again.
  const [file] = readdirSync(path.join(pki, "rejected"));
  if (!file) throw new Error("no rejected certificate");
  renameSync(path.join(pki, "rejected", file), path.join(pki, "trusted", "certs", file));
  await until("the boiler's shadow", () => p.reported("boiler").temperature !== undefined);
  expect(p.reported("boiler").temperature).toBe(p.opc.get("Temperature"));
  await p.setDesired("boiler", { running: false });
  await until("the write", () => outcome(p, "boiler", "running")?.status === "applied");
  expect(p.opc.get("Running")).toBe(false);
});
