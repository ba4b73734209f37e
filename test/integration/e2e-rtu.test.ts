/**
 * The whole path with serial slaves: two RTU slaves on one pty line (timing-true at 19200 baud)
 * and one Modbus TCP PLC -> the gateway -> the broker -> the cloud shadow service. One slave
 * goes silent: the other two shadows keep syncing, the line stays open, and when the slave
 * answers again its shadow catches up.
 */
import { afterEach, expect, it } from "vitest";
import type { JsonObject } from "../../src/core/types.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { closeCloudTestResources, startTestCloud } from "../helpers/cloud.js";
import { startGateway } from "../helpers/gateway.js";
import type { SourceHealth } from "../../src/south/driver.js";
import { until } from "../helpers/until.js";
import { openPtyPair } from "../../src/sim/pty.js";

const PK = "a1Plant";

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
  await closeCloudTestResources();
});

const mapping = (deviceName: string, source: string, unitId: number) => `version: 1
device: { productKey: ${PK}, deviceName: ${deviceName} }
source: ${source}
unitId: ${unitId}
pollInterval: 200ms
points:
  level: { register: 40001, type: uint16 }
  total: { register: 40010, type: uint32 }
`;

it("two RTU slaves on one line and a TCP PLC sync their shadows through an outage of one slave", async () => {
  const line = await openPtyPair();
  running.push(() => line.close());
  const meters = new ModbusTcpSimulator({ units: [1, 2] });
  await meters.startRtu({ path: line.a, baud: 19_200 });
  running.push(() => meters.stop());
  const press = new ModbusTcpSimulator({ units: [1] });
  const { port } = await press.start({ port: 0 });
  running.push(() => press.stop());
  meters.unit(1).holding[0] = 11;
  meters.unit(2).holding[0] = 22;
  press.unit(1).holding[0] = 33;

  const cloud = await startTestCloud();
  const { gateway } = await startGateway(
    `version: 1
gateway: { name: rtu-test, dataDir: ./data }
sources:
  line1:
    protocol: modbus-rtu
    path: ${line.b}
    baud: 19200
    timeout: 100ms
    unitBackoff: 300ms
  press:
    protocol: modbus-tcp
    host: 127.0.0.1
    port: ${port}
cloud:
  url: ${cloud.mqttUrl}
  productKey: a1Gateway
  deviceName: rtu-test
  sendWindow: 0s
mappings: ./mappings
`,
    {
      "meter-1": mapping("meter-1", "line1", 1),
      "meter-2": mapping("meter-2", "line1", 2),
      press: mapping("press", "press", 1),
    },
  );
  running.push(() => gateway.stop());
  const reported = (dn: string): JsonObject =>
    cloud.service.getShadow(PK, dn)?.state.reported ?? {};

  await until("all three shadows", () =>
    [reported("meter-1").level, reported("meter-2").level, reported("press").level].every(
      (v) => v !== undefined,
    ),
  );
  expect([reported("meter-1").level, reported("meter-2").level, reported("press").level]).toEqual([
    11, 22, 33,
  ]);

  // Meter 2 goes silent; the others change and keep reaching the cloud.
  meters.unit(2).silent = true;
  meters.unit(2).holding[0] = 23;
  const line1 = () => gateway.status().sources?.details.line1 as SourceHealth | undefined;
  await until("the silent slave's timeouts", () => (line1()?.timeouts ?? 0) >= 3);
  meters.unit(1).holding[0] = 12;
  press.unit(1).holding[0] = 34;
  meters.unit(1).holding[9] = 1; // total: uint32 ABCD, high word first: 65,536
  await until(
    "meter-1 and press changes during the outage",
    () =>
      reported("meter-1").level === 12 &&
      reported("meter-1").total === 65_536 &&
      reported("press").level === 34,
  );
  expect(reported("meter-2").level).toBe(22);

  // It answers again: probed after its backoff, and its shadow catches up.
  meters.unit(2).silent = false;
  await until("meter-2 back", () => reported("meter-2").level === 23);
  expect(line1()).toMatchObject({ state: "online", reconnects: 0, badFrames: 0 });
});
