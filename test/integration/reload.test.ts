/**
 * Reload without a gap (issue 13): a running daemon, two simulated PLCs and the local cloud
 * service. A reload adds one device, changes another and removes a third, while a fourth device
 * ("steady") keeps reporting: each of its reports makes the PLC hold the next number, so its
 * history must be one unbroken sequence, every row sent, and its PLC connection never dropped.
 * A broken config is then refused and the running one goes on.
 */
import { EventEmitter } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { testLogger } from "../helpers/logs.js";
import { Service, type SignalSource } from "../../src/daemon/service.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { TcpProxy } from "../../src/sim/tcp-proxy.js";
import { openReadOnly } from "../../src/store/database.js";
import { readHistory } from "../../src/store/outbox.js";
import { closeCloudTestResources, startTestCloud } from "../helpers/cloud.js";
import { until } from "../helpers/until.js";

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
  await closeCloudTestResources();
});

const PK = "a1Plant";
/** The steady device's sequence stops here, so the loop is bounded whatever happens. */
const LAST = 60_000;

const mapping = (dn: string, source: string, unit: number, interval: string, points: string) =>
  `version: 1
device: { productKey: ${PK}, deviceName: ${dn} }
source: ${source}
unitId: ${unit}
pollInterval: ${interval}
points:
${points}`;

async function startPlc(units: number[]): Promise<{ sim: ModbusTcpSimulator; port: number }> {
  const sim = new ModbusTcpSimulator({ units });
  const { port } = await sim.start({ port: 0 });
  running.push(() => sim.stop());
  return { sim, port };
}

it("adds, changes and removes devices in place while another device's reports go on unbroken; a broken config is refused", async () => {
  const { sim: plcA, port: portA } = await startPlc([1, 2]);
  const { sim: plcB, port: portB } = await startPlc([1]);
  const cloud = await startTestCloud();
  const dir = await mkdtemp(path.join(tmpdir(), "sg-reload-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1
gateway: { name: reload, dataDir: ./data }
sources:
  plcA: { protocol: modbus-tcp, host: 127.0.0.1, port: ${portA} }
  plcB: { protocol: modbus-tcp, host: 127.0.0.1, port: ${portB} }
cloud: { url: "${cloud.mqttUrl}", productKey: a1Gw, deviceName: gw, sendWindow: 20ms }
mappings: ./mappings
`,
  );
  const file = (name: string) => path.join(dir, "mappings", `${name}.yaml`);
  await writeFile(
    file("steady"),
    mapping("steady", "plcA", 1, "50ms", "  seq: { register: 40001 }\n"),
  );
  await writeFile(
    file("changing"),
    mapping("changing", "plcA", 2, "100ms", "  level: { register: 40001 }\n"),
  );
  await writeFile(
    file("leaving"),
    mapping("leaving", "plcB", 1, "100ms", "  level: { register: 40001 }\n"),
  );
  plcA.unit(1).holding[0] = 1;
  plcA.unit(2).holding[0] = 0xfffe;
  plcB.unit(1).holding[0] = 5;

  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, testLogger());
  // Each report of the steady device puts the next number into its PLC: a poll missed or a
  // report lost shows as a hole in the sequence.
  let latest = 0;
  let last = LAST;
  service.current.shadow.on("update", (u) => {
    const seq = u.reported.seq;
    if (u.deviceName !== "steady" || typeof seq !== "number") return;
    latest = seq;
    if (seq < last) plcA.unit(1).holding[0] = seq + 1;
  });
  await service.start();
  const signals = new EventEmitter();
  const stopped = service.run(signals as SignalSource);
  running.push(async () => {
    signals.emit("SIGTERM");
    await stopped;
  });
  const reported = (dn: string) => cloud.service.getShadow(PK, dn)?.state.reported ?? {};
  await until("every device in the cloud", () =>
    ["steady", "changing", "leaving"].every((dn) => Object.keys(reported(dn)).length > 0),
  );
  expect(reported("changing").level).toBe(0xfffe);

  // The reload: "changing" reads its register as int16 and gains a point, "leaving" goes,
  // "arriving" comes on plcB (which stays in use).
  await writeFile(
    file("changing"),
    mapping(
      "changing",
      "plcA",
      2,
      "100ms",
      "  level: { register: 40001, type: int16 }\n  more: { register: 40002 }\n",
    ),
  );
  await rm(file("leaving"));
  await writeFile(
    file("arriving"),
    mapping("arriving", "plcB", 1, "100ms", "  volume: { register: 40001 }\n"),
  );
  // Everything "leaving" reported is confirmed, so it leaves the cloud sync with the reload.
  const cloudDevices = () =>
    service.current.status().cloud?.details.devices as Record<string, { backlog: boolean }>;
  await until("leaving's reports confirmed", () => cloudDevices().leaving?.backlog === false);
  const before = latest;
  await expect(service.reload()).resolves.toEqual({
    status: "applied",
    plan: { added: ["arriving"], changed: ["changing"], removed: ["leaving"], reconnected: true },
  });
  await until("the new and the changed device in the cloud", () => {
    return reported("arriving").volume === 5 && reported("changing").level === -2;
  });
  await until("the steady device reporting well past the reload", () => latest >= before + 20);
  // The steady device's PLC connection (and plcB's, still in use) stayed up throughout.
  expect(plcA.stats().connections).toEqual({ open: 1, accepted: 1 });
  expect(plcB.stats().connections).toEqual({ open: 1, accepted: 1 });
  expect(service.current.status().cloud?.details).toMatchObject({
    devices: { steady: {}, changing: {}, arriving: {} },
  });
  expect(Object.keys(service.current.status().cloud?.details.devices ?? {})).not.toContain(
    "leaving",
  );

  // A broken mapping is refused, named at file:line:col, and the running config goes on.
  await writeFile(
    file("arriving"),
    mapping("arriving", "plcB", 1, "100ms", "  volume: { register: 40001, type: float33 }\n"),
  );
  const refused = await service.reload();
  expect(refused.status).toBe("refused");
  expect(refused.status === "refused" && refused.problems).toEqual([
    expect.stringMatching(
      /arriving\.yaml:7:36 points\.volume\.type: "float33" is not allowed here/,
    ),
  ]);
  const atRefusal = latest;
  plcB.unit(1).holding[0] = 6;
  await until(
    "the running config still polls",
    () => reported("arriving").volume === 6 && latest > atRefusal + 5,
  );

  // Every report of the steady device is in the outbox, in one unbroken sequence, and sent.
  // The sequence ends (after the number already in the PLC); once the gateway has its last
  // report acknowledged, it stops.
  last = latest;
  await until("the sequence ended", () => latest === last + 1);
  const steady = () =>
    (service.current.status().cloud?.details.devices as Record<string, { backlog: boolean }>)
      .steady;
  await until(
    "the steady device's last report acknowledged",
    () => reported("steady").seq === latest && steady()?.backlog === false,
  );
  signals.emit("SIGTERM");
  await stopped;
  const db = openReadOnly(path.join(dir, "data", "shadowgate.db"));
  try {
    const rows = readHistory(db, "steady");
    const seqs = rows.map((r) => r.reported.seq);
    expect(seqs).toEqual(Array.from({ length: latest }, (_, i) => i + 1));
    expect(rows.every((r) => r.sent)).toBe(true);
  } finally {
    db.close();
  }
});

it("a stop keeps the reports of the last polls: the outbox ends with the edge shadow's last value", async () => {
  const { sim: plc, port: plcPort } = await startPlc([1]);
  // 30 ms each way: a poll is nearly always under way, so the stop lands in one.
  const proxy = new TcpProxy({ targetPort: plcPort });
  const { port } = await proxy.start();
  running.push(() => proxy.stop());
  proxy.delay = 30;
  const dir = await mkdtemp(path.join(tmpdir(), "sg-stop-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  // No cloud listens on port 9: every report stays in the outbox.
  await writeFile(
    configFile,
    `version: 1
gateway: { name: stop, dataDir: ./data }
sources:
  plc: { protocol: modbus-tcp, host: 127.0.0.1, port: ${port} }
cloud: { url: "mqtt://127.0.0.1:9", productKey: a1Gw, deviceName: gw }
mappings: ./mappings
`,
  );
  await writeFile(
    path.join(dir, "mappings", "steady.yaml"),
    mapping("steady", "plc", 1, "20ms", "  seq: { register: 40001 }\n"),
  );
  plc.unit(1).holding[0] = 1;
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, testLogger());
  let latest = 0;
  service.current.shadow.on("update", (u) => {
    const seq = u.reported.seq;
    if (u.deviceName !== "steady" || typeof seq !== "number") return;
    latest = seq;
    if (seq < LAST) plc.unit(1).holding[0] = seq + 1;
  });
  await service.start();
  await until("reporting", () => latest >= 5);
  // Stopped while a poll is under way: it ends after the cloud component has stopped.
  await service.stop();
  const db = openReadOnly(path.join(dir, "data", "shadowgate.db"));
  try {
    const seqs = readHistory(db, "steady").map((r) => r.reported.seq);
    expect(seqs).toEqual(Array.from({ length: latest }, (_, i) => i + 1));
  } finally {
    db.close();
  }
});

it("a removed device's reports still waiting for the cloud are sent after the reload", async () => {
  const { sim: plc, port } = await startPlc([1, 2]);
  const cloud = await startTestCloud();
  const uplink = new TcpProxy({ targetPort: Number(new URL(cloud.mqttUrl).port) });
  const { port: uplinkPort } = await uplink.start();
  running.push(() => uplink.stop());
  const dir = await mkdtemp(path.join(tmpdir(), "sg-drain-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1
gateway: { name: drain, dataDir: ./data }
sources:
  plc: { protocol: modbus-tcp, host: 127.0.0.1, port: ${port} }
cloud: { url: "mqtt://127.0.0.1:${uplinkPort}", productKey: a1Gw, deviceName: gw, sendWindow: 20ms, reconnect: { min: 50ms, max: 200ms } }
mappings: ./mappings
`,
  );
  const file = (name: string) => path.join(dir, "mappings", `${name}.yaml`);
  await writeFile(file("keep"), mapping("keep", "plc", 1, "50ms", "  v: { register: 40001 }\n"));
  await writeFile(file("going"), mapping("going", "plc", 2, "50ms", "  v: { register: 40001 }\n"));
  plc.unit(1).holding[0] = 1;
  plc.unit(2).holding[0] = 1;
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, testLogger());
  await service.start();
  running.push(() => service.stop());
  const reported = (dn: string) => cloud.service.getShadow(PK, dn)?.state.reported ?? {};
  await until("both in the cloud", () => reported("keep").v === 1 && reported("going").v === 1);

  // The uplink goes down; "going" reports a new value, which waits in the outbox. (Its first
  // report may itself still be unconfirmed here, so the backlog alone does not show that the
  // new value was read.)
  let goingRead = false;
  service.current.shadow.on("update", (u) => {
    if (u.deviceName === "going" && u.reported.v === 9) goingRead = true;
  });
  uplink.cut();
  plc.unit(2).holding[0] = 9;
  const cloudDevices = () =>
    service.current.status().cloud?.details.devices as Record<string, { backlog: boolean }>;
  await until("going's new value read", () => goingRead);
  await until("going's report queued", () => cloudDevices().going?.backlog === true);
  await rm(file("going"));
  // The device stops being polled, but stays with the cloud sync until its rows are sent: the
  // cloud identities did not change, so the link is not replaced either.
  await expect(service.reload()).resolves.toEqual({
    status: "applied",
    plan: { added: [], changed: [], removed: ["going"], reconnected: false },
  });
  uplink.restore();
  await until("the removed device's queued value in the cloud", () => reported("going").v === 9);
  await until("nothing left for it", () => cloudDevices().going?.backlog === false);
});
