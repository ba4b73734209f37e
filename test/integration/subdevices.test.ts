/**
 * A gateway with its PLCs as Alibaba sub-devices, against the local cloud service in strict
 * sessions (a shadow request of a device that is not logged in is answered 520 on /ext/error
 * and not applied), over aedes in process and over mosquitto: three PLC devices on two sources
 * plus the gateway's own device. Topology is created on the first start only; every shadow
 * syncs; a desired value runs once on a sub-device; a dropped session logs in again and loses
 * no report; a disabled device stops while the others go on, and resumes with its backlog
 * coalesced; a wrong secret leaves 6287 in health; SIGTERM sends one batch_logout.
 */
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { testLogger } from "../helpers/logs.js";
import type { JsonObject } from "../../src/core/types.js";
import { Gateway } from "../../src/daemon/gateway.js";
import type { SessionStatus } from "../../src/north/sessions.js";
import type { RunningCloudService } from "../../src/sim/cloud/index.js";
import type { SessionEvent } from "../../src/sim/cloud/gateway-requests.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { closeCloudTestResources, httpJson, startTestCloud } from "../helpers/cloud.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { findMosquitto, startMosquitto, type RunningMosquitto } from "../helpers/mosquitto.js";
import { until } from "../helpers/until.js";

const GW = { productKey: "a1Gw", deviceName: "edge-01", deviceSecret: "gw-secret-0001" };
const PLC_PK = "a1Plc";
const SECRETS: Record<string, string> = {
  "press-1": "press-1-secret",
  "press-2": "press-2-secret",
  oven: "oven-secret",
};
const SUBS = Object.keys(SECRETS);

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
  await closeCloudTestResources();
});

let mosquitto: RunningMosquitto | undefined;
afterAll(async () => {
  await mosquitto?.stop();
});

type Broker = "aedes" | "mosquitto";
const BROKERS: readonly Broker[] =
  findMosquitto() !== undefined || process.env.CI === "true" ? ["aedes", "mosquitto"] : ["aedes"];

const mapping = (deviceName: string, source: string, unitId: number, extra = "") => `version: 1
device: { productKey: ${deviceName === GW.deviceName ? GW.productKey : PLC_PK}, deviceName: ${deviceName}${extra} }
source: ${source}
unitId: ${unitId}
pollInterval: 100ms
points:
  level: { register: 40001, type: uint16 }
  setpoint: { register: 40002, type: uint16, writable: true, max: 200 }
`;

interface Plant {
  cloud: RunningCloudService;
  plcA: ModbusTcpSimulator;
  plcB: ModbusTcpSimulator;
  configFile: string;
  dir: string;
  events: SessionEvent[];
  reported(dn: string): JsonObject;
  level(dn: string, value: number): void;
}

/** Sub-device -> its PLC and unit: press-1 and press-2 behind one source, the oven and the gateway's own device behind the other. */
const WHERE: Record<string, { plc: "plcA" | "plcB"; unit: number }> = {
  "press-1": { plc: "plcA", unit: 1 },
  "press-2": { plc: "plcA", unit: 2 },
  oven: { plc: "plcB", unit: 1 },
  [GW.deviceName]: { plc: "plcB", unit: 2 },
};

async function plant(broker: Broker): Promise<Plant> {
  const plcA = new ModbusTcpSimulator({ units: [1, 2] });
  const plcB = new ModbusTcpSimulator({ units: [1, 2] });
  const a = await plcA.start({ port: 0 });
  const b = await plcB.start({ port: 0 });
  running.push(
    () => plcA.stop(),
    () => plcB.stop(),
  );
  const secrets = [
    GW,
    ...SUBS.map((dn) => ({ productKey: PLC_PK, deviceName: dn, deviceSecret: SECRETS[dn] ?? "" })),
  ];
  if (broker === "mosquitto") mosquitto ??= await startMosquitto();
  const cloud = await startTestCloud({
    deviceSecrets: secrets,
    strictSessions: true,
    ...(broker === "mosquitto" && mosquitto && { brokerUrl: mosquitto.url }),
  });
  const events: SessionEvent[] = [];
  cloud.service.on("session", (e: SessionEvent) => events.push(e));

  const dir = await mkdtemp(path.join(tmpdir(), "sg-subdevices-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1
gateway: { name: subdevices, dataDir: ./data }
sources:
  lineA: { protocol: modbus-tcp, host: 127.0.0.1, port: ${a.port} }
  lineB: { protocol: modbus-tcp, host: 127.0.0.1, port: ${b.port} }
cloud:
  url: ${cloud.mqttUrl}
  productKey: ${GW.productKey}
  deviceName: ${GW.deviceName}
  deviceSecret: ${GW.deviceSecret}
  sendWindow: 0s
  replyTimeout: 1s
  reconnect: { min: 100ms, max: 500ms }
  subDevices: { secrets: subdevice-secrets.yaml }
mappings: ./mappings
`,
  );
  // press-1 carries its secret in its mapping file; the others are in the secrets file.
  await writeSecrets({ dir });
  for (const [dn, w] of Object.entries(WHERE)) {
    const extra = dn === "press-1" ? `, deviceSecret: ${SECRETS[dn]}` : "";
    await writeFile(
      path.join(dir, "mappings", `${dn}.yaml`),
      mapping(dn, w.plc === "plcA" ? "lineA" : "lineB", w.unit, extra),
    );
  }
  const sims = { plcA, plcB };
  const plant: Plant = {
    cloud,
    plcA,
    plcB,
    configFile,
    dir,
    events,
    reported: (dn) =>
      cloud.service.getShadow(dn === GW.deviceName ? GW.productKey : PLC_PK, dn)?.state.reported ??
      {},
    level: (dn, value) => {
      const w = WHERE[dn];
      if (w) sims[w.plc].unit(w.unit).holding[0] = value;
    },
  };
  Object.keys(WHERE).forEach((dn, i) => plant.level(dn, 10 + i));
  return plant;
}

/** The secrets file of press-2 and the oven; `wrongFor` gets a secret the cloud does not know. */
async function writeSecrets(p: { dir: string }, wrongFor?: string): Promise<void> {
  await writeFile(
    path.join(p.dir, "subdevice-secrets.yaml"),
    SUBS.filter((dn) => dn !== "press-1")
      .map((dn) => `"${PLC_PK}/${dn}": ${dn === wrongFor ? "not-the-secret" : SECRETS[dn]}\n`)
      .join(""),
    { mode: 0o600 },
  );
}

async function startInProcess(p: Plant): Promise<Gateway> {
  const loaded = await loadConfig(p.configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const gateway = new Gateway(loaded.config, testLogger());
  await gateway.start();
  running.push(() => gateway.stop());
  return gateway;
}

const sessions = (g: Gateway): Record<string, SessionStatus> =>
  ((g.status().cloud?.details as { sessions?: Record<string, SessionStatus> } | undefined)
    ?.sessions ?? {}) as Record<string, SessionStatus>;

const allLevels = (p: Plant) => Object.keys(WHERE).map((dn) => p.reported(dn).level);

describe.each(BROKERS)("sub-devices over %s, strict sessions", (broker) => {
  it("creates the topology once, logs in with one batch, syncs every shadow and runs a command once", async () => {
    const p = await plant(broker);
    const first = await startInProcess(p);
    await until("every shadow synced", () => allLevels(p).every((v) => v !== undefined));
    expect(allLevels(p)).toEqual([10, 11, 12, 13]);
    const kinds = () => p.events.map((e) => `${e.kind} ${e.code} ${e.devices.length}`);
    expect(kinds()).toEqual(["topo_get 200 0", "topo_add 200 3", "batch_login 200 3"]);
    expect(
      p.cloud.service
        .topology(GW.productKey, GW.deviceName)
        .map((d) => d.deviceName)
        .sort(),
    ).toEqual(["oven", "press-1", "press-2"]);
    expect(Object.values(sessions(first)).map((s) => s.state)).toEqual([
      "open",
      "open",
      "open",
      "open",
    ]);

    // A desired value on a sub-device: written once, read back, reported.
    const writes: number[] = [];
    p.plcA.on("write", (w) => {
      if (w.unitId === 2 && w.address === 1) writes.push(p.plcA.unit(2).holding[1] ?? -1);
    });
    const set = await httpJson(`${p.cloud.httpUrl}/shadows/${PLC_PK}/press-2`, {
      body: {
        ShadowMessage: { method: "update", state: { desired: { setpoint: 55 } } },
        DeltaUpdate: true,
      },
    });
    expect(set.status).toBe(200);
    await until("the command's outcome", () => {
      const c = p.reported("press-2")._commands as JsonObject | undefined;
      return (c?.setpoint as JsonObject | undefined)?.status === "applied";
    });
    expect(p.reported("press-2").setpoint).toBe(55);

    // A second start: the topology is there, only the logins go again; the command is not rerun.
    await first.stop();
    await until("the first gateway's logout", () =>
      p.events.some((e) => e.kind === "batch_logout"),
    );
    p.events.splice(0);
    await startInProcess(p);
    await until("logged in again", () => p.events.some((e) => e.kind === "batch_login"));
    expect(p.events.map((e) => e.kind)).toEqual(["topo_get", "batch_login"]);
    p.level("press-2", 99);
    await until("press-2 reports again", () => p.reported("press-2").level === 99);
    expect(writes).toEqual([55]);
  });

  it("logs a dropped session in again without losing a report; a disabled device stops and resumes coalesced", async () => {
    const p = await plant(broker);
    const g = await startInProcess(p);
    await until("every shadow synced", () => allLevels(p).every((v) => v !== undefined));

    // The cloud drops press-1's session: its next update gets 520 and is not applied.
    expect(p.cloud.service.dropSession(PLC_PK, "press-1")).toBe(true);
    p.level("press-1", 500);
    await until("press-1 logged in again and reported", () => p.reported("press-1").level === 500);
    expect(
      p.events.some((e) => e.kind === "refused" && e.devices[0]?.deviceName === "press-1"),
    ).toBe(true);
    expect(sessions(g)["press-1"]).toMatchObject({ state: "open" });
    expect(sessions(g)["press-1"]?.logins).toBeGreaterThanOrEqual(2);

    // An operator disables the oven: it stops; the others go on.
    const applied: string[] = [];
    p.cloud.service.on("applied", (e) => applied.push(e.deviceName));
    const disabled = await httpJson(`${p.cloud.httpUrl}/devices/${PLC_PK}/oven/disable`, {
      method: "POST",
    });
    expect(disabled.status).toBe(200);
    await until("the oven refused in health", () => sessions(g).oven?.state === "refused");
    expect(sessions(g).oven).toMatchObject({ code: 522 });
    for (const v of [600, 601, 602]) {
      p.level("oven", v);
      p.level("press-2", v);
      await until(`press-2 at ${v}`, () => p.reported("press-2").level === v);
    }
    expect(p.reported("oven").level).toBe(12);
    expect(applied.filter((d) => d === "oven")).toEqual([]);

    // Enabled again: it logs in and its backlog goes up as its latest state, in few updates.
    const enabled = await httpJson(`${p.cloud.httpUrl}/devices/${PLC_PK}/oven/enable`, {
      method: "POST",
    });
    expect(enabled.status).toBe(200);
    await until("the oven back", () => p.reported("oven").level === 602);
    expect(sessions(g).oven).toMatchObject({ state: "open" });
    expect(applied.filter((d) => d === "oven").length).toBeLessThanOrEqual(2);
  });

  it("a wrong secret leaves 6287 in that device's health; the others sync", async () => {
    const p = await plant(broker);
    const first = await startInProcess(p);
    await until("every shadow synced", () => allLevels(p).every((v) => v !== undefined));
    await first.stop();
    // The device was re-created in the console with a new secret; the file still has the old one.
    await writeSecrets(p, "press-2");
    p.level("oven", 77);
    const g = await startInProcess(p);
    await until("press-2 refused", () => sessions(g)["press-2"]?.state === "refused");
    await until("the others synced", () => p.reported("oven").level === 77);
    expect(sessions(g)["press-2"]).toMatchObject({ state: "refused", code: 6287 });
    expect(Object.values(sessions(g)).filter((s) => s.state === "open")).toHaveLength(3);
  });
});

it("SIGTERM logs the sub-devices out with one batch_logout before the daemon exits", async () => {
  const p = await plant("aedes");
  const daemon = new GatewayProcess({
    configFile: p.configFile,
    logFile: path.join(p.dir, "gateway.log"),
  });
  daemon.start();
  running.push(() => daemon.stop());
  await until("every shadow synced", () => allLevels(p).every((v) => v !== undefined), 30_000);
  const exit = await daemon.stop();
  expect(exit, daemon.tail()).toMatchObject({ code: 0 });
  const logouts = p.events.filter((e) => e.kind === "batch_logout");
  expect(logouts.map((e) => e.devices.map((d) => d.deviceName).sort())).toEqual([
    ["oven", "press-1", "press-2"],
  ]);
  expect(SUBS.some((dn) => p.cloud.service.isLoggedIn(PLC_PK, dn))).toBe(false);
});
