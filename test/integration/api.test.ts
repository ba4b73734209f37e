/**
 * The local HTTP API against a running daemon (the Service, in process) over the Modbus
 * simulator, with and without the cloud: every route, the token, local commands through the
 * guard with the PLC's register read back (and nothing written when refused), their outcomes in
 * `_commands` locally and in the cloud, the event stream (a stalled reader dropped while a fast
 * one keeps receiving), reload refused and applied with the stream following the new gateway;
 * and `shadowgate run` serving the API.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { setImmediate as tick } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { testLogger } from "../helpers/logs.js";
import type { JsonObject } from "../../src/core/types.js";
import type { Service } from "../../src/daemon/service.js";
import { startAwsCloudService } from "../../src/sim/cloud/aws/index.js";
import type { RunningCloudService } from "../../src/sim/cloud/index.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { closeCloudTestResources, httpJson, startTestCloud } from "../helpers/cloud.js";
import { GatewayProcess } from "../helpers/gateway-process.js";
import { SseReader, StalledReader } from "../helpers/sse.js";
import { parsePromText, valueOf } from "../helpers/prom-text.js";
import { until } from "../helpers/until.js";
import { serveSite, shippedBoilerMapping, writeSite } from "../helpers/site.js";

const DN = "boiler-01";
const PK = "a1Boiler";
const TOKEN = "integration-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
  await closeCloudTestResources();
});

interface Plant {
  sim: RunningSimulator;
  service: Service;
  cloud: RunningCloudService | undefined;
  url: string;
  port: number;
  mappingFile: string;
  mapping: string;
  configFile: string;
  /** Writes the PLC saw on the set point register (holding 9). */
  setpointWrites(): number;
  api(p: string, init?: { method?: string; body?: unknown }): ReturnType<typeof httpJson>;
}

async function plant(opts: { cloud: boolean; token?: string }): Promise<Plant> {
  const sim = await startSimulator({ port: 0 });
  running.push(() => sim.close());
  sim.sim.profile?.stop();
  let writes = 0;
  sim.sim.on("write", (w) => {
    if (w.table === "holding" && w.address === 9) writes++;
  });
  const cloud = opts.cloud ? await startTestCloud() : undefined;
  const mapping = await shippedBoilerMapping();
  const dir = await writeSite("sg-api-", {
    "mappings/boiler-01.yaml": mapping,
    "gateway.yaml": `version: 1
gateway: { name: edge-api, dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port}, timeout: 1s }
${cloud ? `cloud: { url: "${cloud.mqttUrl}", productKey: a1Gateway, deviceName: edge-01 }\n` : ""}api:
  listen: 127.0.0.1:0
${opts.token ? `  token: ${opts.token}\n` : ""}mappings: ./mappings
`,
  });
  const mappingFile = path.join(dir, "mappings", "boiler-01.yaml");
  const configFile = path.join(dir, "gateway.yaml");
  const { service, port, url } = await serveSite(configFile, running);
  const headers = opts.token ? auth : {};
  return {
    sim,
    service,
    cloud,
    url,
    port,
    mappingFile,
    mapping,
    configFile,
    setpointWrites: () => writes,
    api: (p, init = {}) => httpJson(`${url}${p}`, { ...init, headers }),
  };
}

const cloudCommand = (p: Plant, point: string) =>
  (
    p.cloud?.service.getShadow(PK, DN)?.state.reported?._commands as
      Record<string, JsonObject> | undefined
  )?.[point];

describe("local API against a running gateway, with the cloud and a token", () => {
  it("serves every route, runs local commands through the guard and the journal, and streams events", async () => {
    const p = await plant({ cloud: true, token: TOKEN });

    // Health needs no token; everything else does.
    expect((await httpJson(`${p.url}/healthz`)).body).toEqual({ status: "alive" });
    const anonymous = await httpJson(`${p.url}/api/v1/devices`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect((await httpJson(`${p.url}/readyz`)).status).toBe(401);

    await until("ready", async () => (await p.api("/readyz")).status === 200);
    expect((await p.api("/readyz")).body).toMatchObject({
      ready: true,
      reasons: [],
      store: "open",
      sources: { plc1: "online" },
      config: { devices: 1 },
    });
    await until(
      "the device synced",
      async () => (await p.api("/api/v1/devices")).body.devices[0].cloud?.state === "synced",
    );
    const [device] = (await p.api("/api/v1/devices")).body.devices;
    expect(device).toMatchObject({
      name: DN,
      productKey: PK,
      source: "plc1",
      online: true,
      points: 7,
      cloud: { state: "synced" },
      outbox: 0,
    });
    expect(device.lastPoll).toBeGreaterThan(Date.now() - 60_000);

    const shadow = (await p.api(`/api/v1/devices/${DN}/shadow`)).body;
    expect(shadow.state.reported).toMatchObject({ temperature: 21.5, targetTemperature: 60 });
    expect(shadow.state.desired).toEqual({});
    expect(shadow.metadata.reported.temperature).toMatchObject({ quality: "good" });
    expect(shadow.metadata.reported.temperature.timestamp).toEqual(expect.any(Number));

    const metrics = await fetch(`${p.url}/metrics`, { headers: auth });
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
    // The gateway's own registry: a strict parse, and this source's polls counted.
    const families = parsePromText(await metrics.text());
    expect(
      valueOf(families, "shadowgate_source_polls_total", { source: "plc1", unit: "1" }),
    ).toBeGreaterThan(0);

    const events = await SseReader.open(`${p.url}/api/v1/events`, auth);

    // Applied: written, read back from the PLC's register, in _commands here and in the cloud.
    const applied = await p.api(`/api/v1/devices/${DN}/points/targetTemperature`, {
      method: "PUT",
      body: { value: 75.5 },
    });
    expect(applied.status).toBe(200);
    expect(applied.body.outcome).toMatchObject({ status: "applied", value: 75.5, source: "local" });
    expect(p.sim.sim.unit(1).holding[9]).toBe(755);
    expect(p.setpointWrites()).toBe(1);
    const event = await events.next((e) => e.event === "command");
    expect(event.data).toMatchObject({
      device: DN,
      point: "targetTemperature",
      outcome: { status: "applied", source: "local" },
    });
    await events.next((e) => e.event === "point" && e.data.reported.targetTemperature === 75.5);
    expect((await p.api(`/api/v1/devices/${DN}/shadow`)).body.state.reported).toMatchObject({
      targetTemperature: 75.5,
      _commands: { targetTemperature: { status: "applied", value: 75.5, source: "local" } },
    });
    await until(
      "the outcome in the cloud",
      () => cloudCommand(p, "targetTemperature") !== undefined,
    );
    expect(cloudCommand(p, "targetTemperature")).toMatchObject({
      status: "applied",
      source: "local",
    });

    // Refused by the guard: 422 with its reason, nothing written, the refusal in _commands.
    const refused = await p.api(`/api/v1/devices/${DN}/points/targetTemperature`, {
      method: "PUT",
      body: { value: 121 },
    });
    expect(refused.status).toBe(422);
    expect(refused.body.error).toEqual({
      code: "SG_COMMAND_REJECTED",
      message: "121 is above the maximum 120 of targetTemperature",
    });
    expect(p.setpointWrites()).toBe(1);
    expect(p.sim.sim.unit(1).holding[9]).toBe(755);
    expect(
      (await p.api(`/api/v1/devices/${DN}/shadow`)).body.state.reported._commands.targetTemperature,
    ).toMatchObject({ status: "rejected", source: "local" });
    await until(
      "the refusal in the cloud",
      () => cloudCommand(p, "targetTemperature")?.status === "rejected",
    );
    const readOnly = await p.api(`/api/v1/devices/${DN}/points/temperature`, {
      method: "PUT",
      body: { value: 30 },
    });
    expect(readOnly).toMatchObject({ status: 422, body: { error: { message: /read-only/ } } });
    expect(
      (await p.api(`/api/v1/devices/${DN}/points/nope`, { method: "PUT", body: { value: 1 } }))
        .status,
    ).toBe(404);

    // A reader that stalls is dropped; the fast one keeps receiving. The PLC's poll rate cannot
    // fill a socket's buffers within a test, so the flood goes through the gateway's shadow
    // emitter, the path every reported update takes to the API.
    const slow = await StalledReader.open(p.port, "/api/v1/events", auth);
    const api = p.service.api;
    await until("two readers", () => api?.status().eventClients === 2);
    const filler = "x".repeat(64 * 1024);
    let n = 0;
    while (api?.status().eventClientsDropped === 0) {
      p.service.current.shadow.emit("update", {
        productKey: PK,
        deviceName: DN,
        reported: { filler, n: n++ },
        quality: {},
        ts: Date.now(),
      });
      await tick();
      if (n > 2000) throw new Error("the stalled reader was never dropped");
    }
    p.sim.sim.profile?.set("flow", 133);
    await events.next((e) => e.event === "point" && e.data.reported.flow === 133);
    expect(await slow.drain()).not.toContain('"flow":133');
    expect(api?.status()).toMatchObject({ eventClients: 1, eventClientsDropped: 1 });

    // Quality changes and the link state are events too.
    p.sim.sim.unit(1).addHole({ table: "holding", from: 0, to: 30 });
    const quality = await events.next((e) => e.event === "quality");
    expect(quality.data.device).toBe(DN);
    await p.cloud?.close();
    expect((await events.next((e) => e.event === "link")).data).toMatchObject({ online: false });
    expect((await p.api("/api/v1/devices")).body.devices[0].cloud.state).toBe("offline");
  });

  it("reload: refused with every problem as file:line:col, applied, and the stream follows the new gateway", async () => {
    const p = await plant({ cloud: true, token: TOKEN });
    await until("ready", async () => (await p.api("/readyz")).status === 200);
    const events = await SseReader.open(`${p.url}/api/v1/events`, auth);
    await writeFile(p.mappingFile, p.mapping.replace("type: float32", "type: float99"));
    const refused = await p.api("/api/v1/reload", { method: "POST" });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe("SG_RELOAD_REFUSED");
    expect(refused.body.problems).toHaveLength(1);
    expect(refused.body.problems[0]).toMatch(/boiler-01\.yaml:\d+:\d+ .*type/);

    const before = p.service.current;
    await writeFile(p.mappingFile, p.mapping);
    expect(await p.api("/api/v1/reload", { method: "POST" })).toMatchObject({
      status: 200,
      body: { status: "applied", plan: { added: [], changed: [], removed: [] } },
    });
    expect(p.service.current).toBe(before);
    // A changed history limit rebuilds the gateway: the stream follows the new one.
    const config = await readFile(p.configFile, "utf8");
    await writeFile(
      p.configFile,
      config.replace("dataDir: ./data }", "dataDir: ./data, history: { maxAge: 2d } }"),
    );
    expect(await p.api("/api/v1/reload", { method: "POST" })).toMatchObject({
      status: 200,
      body: { status: "applied", plan: "rebuilt" },
    });
    expect(p.service.current).not.toBe(before);
    p.sim.sim.profile?.set("flow", 150);
    await events.next((e) => e.event === "point" && e.data.reported.flow === 150);
    const applied = await p.api(`/api/v1/devices/${DN}/points/targetTemperature`, {
      method: "PUT",
      body: { value: 70 },
    });
    expect(applied.status).toBe(200);
    expect(p.sim.sim.unit(1).holding[9]).toBe(700);
  });
});

describe("the console's views: a device's definitions, raw words, history, cloud shadow and last reload", () => {
  it("serves them from the running gateway, its store and its cloud sync", async () => {
    const p = await plant({ cloud: true, token: TOKEN });
    await until(
      "the device synced",
      async () => (await p.api("/api/v1/devices")).body.devices[0].cloud?.state === "synced",
    );
    const detail = (await p.api(`/api/v1/devices/${DN}`)).body;
    expect(detail).toMatchObject({ name: DN, connection: "online", overruns: 0 });
    expect(detail.file).toMatch(/boiler-01\.yaml$/);
    const target = detail.definitions.find((d: { name: string }) => d.name === "targetTemperature");
    expect(target).toEqual({
      name: "targetTemperature",
      where: "40010 (holding 9), int16 AB, scale 0.1",
      unit: "degC",
      writable: true,
      onChange: true,
      min: 0,
      max: 120,
      defined: expect.stringMatching(/boiler-01\.yaml:\d+$/),
    });

    // The point's words, read from the PLC now, and their value under each byte order.
    p.sim.sim.unit(1).holding[9] = 0x0102;
    const raw = (await p.api(`/api/v1/devices/${DN}/points/targetTemperature/raw`)).body;
    expect(raw.words).toEqual([0x0102]);
    expect(raw.values).toEqual([
      { byteOrder: "AB", value: 25.8, configured: true },
      { byteOrder: "BA", value: 51.3, configured: false },
    ]);
    const bit = await p.api(`/api/v1/devices/${DN}/points/running/raw`);
    expect(bit).toMatchObject({ status: 422, body: { error: { code: "SG_API_NO_RAW" } } });

    // History: the values the outbox recorded, oldest first.
    await until("25.8 reported", async () => {
      const h = (await p.api(`/api/v1/devices/${DN}/points/targetTemperature/history`)).body;
      return h.values.some((v: { value: unknown }) => v.value === 25.8);
    });
    const history = (await p.api(`/api/v1/devices/${DN}/points/targetTemperature/history`)).body;
    expect(history.values.map((v: { value: unknown }) => v.value)).toEqual([60, 25.8]);

    // The cloud shadow, read again on request: what the cloud holds, at its version.
    await until(
      "25.8 in the cloud",
      () => p.cloud?.service.getShadow(PK, DN)?.state.reported?.targetTemperature === 25.8,
    );
    const cloud = (await p.api(`/api/v1/devices/${DN}/cloud?fresh=1`)).body;
    expect(cloud).toMatchObject({
      device: DN,
      fresh: true,
      version: p.cloud?.service.getShadow(PK, DN)?.version,
      reported: { targetTemperature: 25.8 },
      desired: {},
    });

    // The last reload, refused with the problem's file:line:col.
    expect((await p.api("/api/v1/reload")).body).toEqual({ last: null });
    await writeFile(p.mappingFile, p.mapping.replace("type: float32", "type: float99"));
    await p.api("/api/v1/reload", { method: "POST" });
    const last = (await p.api("/api/v1/reload")).body.last;
    expect(last).toMatchObject({ trigger: "api", reply: { status: "refused" } });
    expect(last.reply.problems[0]).toMatch(/boiler-01\.yaml:\d+:\d+ .*type/);

    // With the link down, the last shadow read is served, marked not fresh.
    await p.cloud?.close();
    await until(
      "offline",
      async () => (await p.api("/api/v1/devices")).body.devices[0].cloud.state === "offline",
    );
    expect((await p.api(`/api/v1/devices/${DN}/cloud?fresh=1`)).body).toMatchObject({
      fresh: false,
      reported: { targetTemperature: 25.8 },
    });
  });

  it("says why there is no history or cloud shadow without a cloud section", async () => {
    const p = await plant({ cloud: false });
    await until("ready", async () => (await p.api("/readyz")).status === 200);
    expect(await p.api(`/api/v1/devices/${DN}/points/temperature/history`)).toMatchObject({
      status: 503,
      body: { error: { code: "SG_API_UNAVAILABLE", message: /only a cloud section opens/ } },
    });
    expect(await p.api(`/api/v1/devices/${DN}/cloud`)).toMatchObject({
      status: 503,
      body: { error: { message: "the config has no cloud section" } },
    });
    expect((await p.api(`/api/v1/devices/${DN}/points/nope/history`)).status).toBe(404);
  });
});

describe("local API without a cloud section (no store, no journal)", () => {
  it("still guards, writes and reads back; the outcome lives in the edge shadow's _commands", async () => {
    const p = await plant({ cloud: false });
    await until("ready", async () => (await p.api("/readyz")).status === 200);
    expect((await p.api("/readyz")).body.store).toBe("none");
    const [device] = (await p.api("/api/v1/devices")).body.devices;
    expect(device).not.toHaveProperty("cloud");
    expect(device).not.toHaveProperty("outbox");

    const ok = await p.api(`/api/v1/devices/${DN}/points/targetTemperature`, {
      method: "PUT",
      body: { value: 42 },
    });
    expect(ok).toMatchObject({
      status: 200,
      body: { outcome: { status: "applied", value: 42, source: "local" } },
    });
    expect(p.sim.sim.unit(1).holding[9]).toBe(420);
    const bad = await p.api(`/api/v1/devices/${DN}/points/targetTemperature`, {
      method: "PUT",
      body: { value: -5 },
    });
    expect(bad.status).toBe(422);
    expect(bad.body.error.message).toBe("-5 is below the minimum 0 of targetTemperature");
    expect(p.setpointWrites()).toBe(1);
    expect((await p.api(`/api/v1/devices/${DN}/shadow`)).body.state.reported).toMatchObject({
      targetTemperature: 42,
      _commands: { targetTemperature: { status: "rejected", source: "local" } },
    });
    const malformed = await p.api(`/api/v1/devices/${DN}/points/targetTemperature`, {
      method: "PUT",
      body: "{value: 1",
    });
    expect(malformed).toMatchObject({
      status: 400,
      body: { error: { code: "SG_API_BAD_REQUEST" } },
    });
    expect(p.setpointWrites()).toBe(1);
  });
});

it("a reload asked for while the daemon stops does not start a gateway again", async () => {
  const p = await plant({ cloud: false });
  const before = p.service.current;
  const stopping = p.service.stop();
  expect(await p.service.reload()).toEqual({ status: "failed", reason: "the daemon is stopping" });
  await stopping;
  expect(p.service.current).toBe(before);
  expect(Object.values(before.status()).map((s) => s.state)).toEqual(["stopped", "stopped"]);
  await expect(fetch(`${p.url}/healthz`)).rejects.toThrow();
});

it("shadowgate run serves the API of its config's api section", async () => {
  const sim = await startSimulator({ port: 0 });
  running.push(() => sim.close());
  const dir = await writeSite("sg-api-run-", {
    "mappings/boiler-01.yaml": await shippedBoilerMapping(),
    "gateway.yaml": `version: 1
gateway: { dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port} }
api: { listen: "127.0.0.1:0", token: ${TOKEN} }
mappings: ./mappings
`,
  });
  const configFile = path.join(dir, "gateway.yaml");
  const gw = new GatewayProcess({ configFile, logFile: path.join(dir, "gateway.log") });
  gw.start();
  running.push(() => gw.stop());
  let port: number | undefined;
  await until("the API listening", () => {
    port = /"msg":"local API listening"/.test(gw.tail(200))
      ? Number(/"port":(\d+)[^\n]*"local API listening"/.exec(gw.tail(200))?.[1])
      : undefined;
    return port !== undefined;
  });
  const url = `http://127.0.0.1:${port}`;
  expect((await httpJson(`${url}/healthz`)).status).toBe(200);
  expect((await httpJson(`${url}/api/v1/devices`)).status).toBe(401);
  await until(
    "the device's first poll",
    async () =>
      (await httpJson(`${url}/api/v1/devices/${DN}/shadow`, { headers: auth })).body.state?.reported
        .temperature !== undefined,
  );
  expect(gw.tail(200)).not.toContain(TOKEN);
  // Its process signals still work with the API up: SIGTERM stops it cleanly.
  expect(await gw.stop()).toMatchObject({ code: 0 });
});

describe("an AWS IoT gateway's devices in the API", () => {
  it("are named by their thing and shadow, not by a product key they do not have", async () => {
    const sim = await startSimulator({ port: 0 });
    running.push(() => sim.close());
    const cloud = await startAwsCloudService({ mqttPort: 0, httpPort: 0, logger: testLogger() });
    running.push(() => cloud.close());
    const mapping = (device: string, register: number) => `version: 1
device: ${device}
source: plc1
pollInterval: 100ms
points:
  level: { register: ${register}, type: uint16 }
`;
    const dir = await writeSite("sg-api-aws-", {
      "mappings/pump.yaml": mapping("{ thingName: pump-7 }", 40001),
      "mappings/motor.yaml": mapping("{ thingName: pump-7, shadowName: motor }", 40002),
      "gateway.yaml": `version: 1
gateway: { name: edge-aws, dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port}, timeout: 1s }
cloud: { dialect: aws, url: "${cloud.mqttUrl}", clientId: edge-aws }
api: { listen: "127.0.0.1:0" }
mappings: ./mappings
`,
    });
    sim.sim.unit(1).holding[0] = 7;
    sim.sim.unit(1).holding[1] = 9;
    const { url } = await serveSite(path.join(dir, "gateway.yaml"), running);

    const { devices } = (await httpJson(`${url}/api/v1/devices`)).body as {
      devices: JsonObject[];
    };
    const byName = Object.fromEntries(devices.map((d) => [d.name, d]));
    expect(byName["pump-7"]).toMatchObject({ thingName: "pump-7" });
    expect(byName["pump-7.motor"]).toMatchObject({ thingName: "pump-7", shadowName: "motor" });
    for (const d of devices) expect(d).not.toHaveProperty("productKey");
    expect(byName["pump-7"]).not.toHaveProperty("shadowName");

    const shadow = async (name: string) =>
      (await httpJson(`${url}/api/v1/devices/${name}/shadow`)).body as JsonObject & {
        state: { reported: JsonObject };
      };
    await until("both read", async () => (await shadow("pump-7.motor")).state.reported.level === 9);
    const motor = await shadow("pump-7.motor");
    expect(motor).toMatchObject({
      device: "pump-7.motor",
      thingName: "pump-7",
      shadowName: "motor",
    });
    expect(motor).not.toHaveProperty("productKey");
    expect(await shadow("pump-7")).toMatchObject({
      thingName: "pump-7",
      state: { reported: { level: 7 } },
    });
    expect((await httpJson(`${url}/api/v1/devices/pump-7.motor`)).body).toMatchObject({
      thingName: "pump-7",
      shadowName: "motor",
      file: expect.stringMatching(/motor\.yaml$/),
    });
  });
});
