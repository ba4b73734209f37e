import { readFile } from "node:fs/promises";
import path from "node:path";
import { connectAsync } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { testLogger } from "../helpers/logs.js";
import { Gateway } from "../../src/daemon/gateway.js";
import type { LoadedConfig } from "../../src/config/load.js";
import type { JsonObject } from "../../src/core/types.js";
import {
  startAwsCloudService,
  type AwsCloudServiceOptions,
  type RunningAwsCloudService,
} from "../../src/sim/cloud/aws/index.js";
import type { AwsError } from "../../src/sim/cloud/aws/document.js";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { TcpProxy } from "../../src/sim/tcp-proxy.js";
import { closeCloudTestResources, connectTestClient, httpJson } from "../helpers/cloud.js";
import { startGateway } from "../helpers/gateway.js";
import { describeWithMosquitto } from "../helpers/mosquitto-suite.js";
import { makeCertificates } from "../helpers/tls.js";
import { until } from "../helpers/until.js";

/**
 * The gateway on the AWS dialect against the local AWS IoT Device Shadow service, over the
 * in-process broker and over mosquitto: reports, desired values executed once and cleared with
 * JSON null naming the version, a newer desired value never cleared unseen, redelivered deltas,
 * a reconnect, a restart, named shadows, a split report and the 10-in-flight cap.
 */

const THING = "boiler-01";

const running: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop();
  await closeCloudTestResources();
});

const gatewayYaml = (plcPort: number, url: string, extra = ""): string => `
version: 1
gateway: { name: edge-01, dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${plcPort}, timeout: 1s }
cloud:
  dialect: aws
  url: ${url}
  clientId: edge-01
  sendWindow: 50ms
${extra}
mappings: ./mappings
`;

const boilerYaml = (device: string): string => `
version: 1
device: ${device}
source: plc1
pollInterval: 100ms
points:
  temperature: { register: 40001, type: float32, deadband: 0.2 }
  targetTemperature: { register: 40010, type: int16, scale: 0.1, writable: true, min: 0, max: 120 }
  running: { coil: 1, writable: true }
`;

interface Plant {
  config: LoadedConfig;
  sim: RunningSimulator;
  cloud: RunningAwsCloudService;
  gateway: Gateway;
  /** Writes the PLC saw on the set point register (holding 9). */
  writes: number[];
  doc(
    shadow?: string,
  ): { state: { desired?: JsonObject; reported?: JsonObject }; version: number } | undefined;
  setDesired(desired: JsonObject, shadow?: string): Promise<void>;
  rejected: AwsError[];
}

async function plant(
  brokerUrl: string | undefined,
  opts: {
    cloud?: AwsCloudServiceOptions;
    device?: string;
    gatewayExtra?: string;
    /** Mapping files beside the boiler's, by name. */
    mappings?: Record<string, string>;
    /** The gateway's URL, when it is not the broker's own (TLS). */
    url?: string;
    /** The gateway reaches the broker through this proxy, which a test may cut. */
    proxy?: TcpProxy;
  } = {},
): Promise<Plant> {
  const sim = await startSimulator({ port: 0 });
  running.push(() => sim.close());
  sim.sim.profile?.stop();
  const cloud = await startAwsCloudService({
    mqttPort: 0,
    httpPort: 0,
    logger: testLogger(),
    ...(brokerUrl && { brokerUrl }),
    ...opts.cloud,
  });
  running.push(() => cloud.close());
  const rejected: AwsError[] = [];
  cloud.service.on("rejected", (_topic, e) => rejected.push(e));
  let url = opts.url ?? brokerUrl ?? cloud.mqttUrl;
  if (opts.proxy) {
    opts.proxy.setTarget(Number(new URL(url).port));
    const { port } = await opts.proxy.start();
    running.push(() => opts.proxy?.stop() ?? Promise.resolve());
    url = `mqtt://127.0.0.1:${port}`;
  }
  const { gateway, config } = await startGateway(gatewayYaml(sim.port, url, opts.gatewayExtra), {
    boiler: boilerYaml(opts.device ?? `{ thingName: ${THING} }`),
    ...opts.mappings,
  });
  running.push(() => gateway.stop());
  const writes: number[] = [];
  sim.sim.on("write", (w) => {
    if (w.table === "holding" && w.address === 9) writes.push(sim.sim.unit(1).holding[9] ?? -1);
  });
  const shadowName = /shadowName: ([\w-]+)/.exec(opts.device ?? "")?.[1];
  const p: Plant = {
    config,
    sim,
    cloud,
    gateway,
    writes,
    rejected,
    doc: (shadow = shadowName) => cloud.service.getShadow(THING, shadow),
    async setDesired(desired, shadow = shadowName) {
      const q = shadow === undefined ? "" : `?name=${shadow}`;
      const r = await httpJson(`${cloud.httpUrl}/things/${THING}/shadow${q}`, {
        body: { state: { desired } },
      });
      expect(r.status).toBe(200);
    },
  };
  await until("the first report in the cloud", () => p.doc()?.state.reported?.temperature === 21.5);
  return p;
}

const outcome = (p: Plant, point: string) =>
  (p.doc()?.state.reported?._commands as Record<string, JsonObject> | undefined)?.[point];

function suite(name: string, brokerUrl: () => string | undefined) {
  describe(`simulator -> gateway (aws) -> ${name} -> AWS shadow service`, () => {
    it("reports the PLC's state to the classic shadow without naming a version", async () => {
      const p = await plant(brokerUrl());
      expect(p.doc()?.state.reported).toMatchObject({
        temperature: 21.5,
        targetTemperature: 60,
        running: true,
      });
      // The first get finds no shadow (AWS's first-connection pattern); the full report makes it.
      expect(p.rejected).toEqual([
        { code: 404, message: `No shadow exists with name: '${THING}'` },
      ]);
    });

    it("writes a desired value once, reports its read-back and clears desired with JSON null", async () => {
      const p = await plant(brokerUrl());
      await p.setDesired({ targetTemperature: 80 });
      await until(
        "the read-back in the cloud",
        () => p.doc()?.state.reported?.targetTemperature === 80,
      );
      await until("desired cleared", () => p.doc()?.state.desired === undefined);
      expect(outcome(p, "targetTemperature")).toMatchObject({ status: "applied", value: 80 });
      expect(p.writes).toEqual([800]);
      expect(p.rejected.filter((e) => e.code !== 404)).toEqual([]);
    });

    it("never clears a desired value set while the previous one was executing", async () => {
      const p = await plant(brokerUrl());
      // The second value is set just as the gateway's clear of the first reaches the service:
      // the clear names a version the shadow has left behind, so it is refused (409), and the
      // gateway reads the shadow, runs the second value and clears that one.
      let raced = false;
      p.cloud.service.on("request", (_topic, body) => {
        const desired = (body["state"] as JsonObject | undefined)?.["desired"] as JsonObject;
        if (raced || desired?.["targetTemperature"] !== null) return;
        raced = true;
        expect(
          p.cloud.service.update(THING, undefined, {
            state: { desired: { targetTemperature: 90 } },
          }).ok,
        ).toBe(true);
      });
      const conflicts = p.gateway.sync?.stats.conflicts ?? 0;
      await p.setDesired({ targetTemperature: 70 });
      await until("the second value in the PLC", () => p.sim.sim.unit(1).holding[9] === 900);
      await until("desired cleared", () => p.doc()?.state.desired === undefined);
      await until("the read-back", () => p.doc()?.state.reported?.targetTemperature === 90);
      expect(p.writes).toEqual([700, 900]);
      expect((p.gateway.sync?.stats.conflicts ?? 0) - conflicts).toBe(1);
      expect(p.rejected).toContainEqual({ code: 409, message: "Version conflict" });
    });

    it("executes a redelivered delta once", async () => {
      const p = await plant(brokerUrl());
      const spy = await connectTestClient(brokerUrl() ?? p.cloud.mqttUrl);
      await spy.subscribe(`$aws/things/${THING}/shadow/update/delta`);
      await p.setDesired({ targetTemperature: 75 });
      const delta = await spy.next();
      await until("desired cleared", () => p.doc()?.state.desired === undefined);
      const duplicates = p.gateway.sync?.stats.duplicateCommands ?? 0;
      // The same delta again, as QoS 1 redelivery would bring it.
      await spy.mqtt.publishAsync(delta.topic, JSON.stringify(delta.message), { qos: 1 });
      await until(
        "the duplicate recognised",
        () => (p.gateway.sync?.stats.duplicateCommands ?? 0) > duplicates,
      );
      expect(p.writes).toEqual([750]);
    });

    it("executes desired set while the link was down after it reconnects, once", async () => {
      const proxy = new TcpProxy({ targetPort: 0 });
      const p = await plant(brokerUrl(), { proxy });
      await until("in sync", () => p.gateway.sync?.deviceState(THING)?.synced === true);
      // Cut the gateway's connection and set desired while it is away.
      proxy.cut(undefined, { reset: true });
      await until(
        "the gateway offline",
        () => p.gateway.sync?.deviceState(THING)?.synced === false,
      );
      await p.setDesired({ targetTemperature: 65 });
      proxy.restore();
      await until("the value in the PLC", () => p.sim.sim.unit(1).holding[9] === 650);
      await until("desired cleared", () => p.doc()?.state.desired === undefined);
      expect(p.writes).toEqual([650]);
    });

    it("syncs a named shadow", async () => {
      const p = await plant(brokerUrl(), {
        device: `{ thingName: ${THING}, shadowName: boiler }`,
      });
      expect(p.cloud.service.getShadow(THING)).toBeUndefined();
      await p.setDesired({ running: false });
      await until("the coil off", () => p.sim.sim.unit(1).coil[0] === 0);
      await until("desired cleared", () => p.doc()?.state.desired === undefined);
      expect(p.doc()?.state.reported?.running).toBe(false);
    });
  });
}

suite("aedes", () => undefined);

describe("gateway (aws) against the in-process AWS shadow service", () => {
  it("connects with the thing's certificate over mutual TLS; a client without one is refused", async () => {
    const dir = await makeCertificates();
    const file = (f: string) => readFile(path.join(dir, f));
    const tls = {
      cert: await file("server.pem"),
      key: await file("server.key"),
      ca: await file("ca.pem"),
    };
    // The gateway's TLS files, relative to its config: absolute here.
    const tlsYaml = `  tls: { ca: ${path.join(dir, "ca.pem")}, cert: ${path.join(dir, "client.pem")}, key: ${path.join(dir, "client.key")} }`;
    const p = await plant(undefined, { cloud: { tls }, gatewayExtra: tlsYaml });
    expect(p.cloud.mqttUrl).toMatch(/^mqtts:/);
    expect(p.doc()?.state.reported?.running).toBe(true);
    await expect(
      connectAsync(p.cloud.mqttUrl, { ca: tls.ca, reconnectPeriod: 0, connectTimeout: 5000 }),
    ).rejects.toThrow();
  });

  it("runs a desired value set while the gateway was stopped once after its restart", async () => {
    const p = await plant(undefined);
    await p.setDesired({ targetTemperature: 55 });
    await until("desired cleared", () => p.doc()?.state.desired === undefined);
    await p.gateway.stop();
    await p.setDesired({ targetTemperature: 45 });
    const again = new Gateway(p.config, testLogger());
    running.push(() => again.stop());
    await again.start();
    await until("the new value in the PLC", () => p.sim.sim.unit(1).holding[9] === 450);
    await until("desired cleared", () => p.doc()?.state.desired === undefined);
    expect(p.writes).toEqual([550, 450]);
  });

  it("splits a report over 8 KB into updates that each fit", async () => {
    const points = Array.from(
      { length: 300 },
      (_, i) => `  register_with_a_rather_long_name_${i}: { register: ${40101 + i}, type: uint16 }`,
    ).join("\n");
    const big = `
version: 1
device: { thingName: press-07 }
source: plc1
pollInterval: 100ms
points:
${points}
`;
    const p = await plant(undefined, {
      cloud: { maxDocumentBytes: 32 * 1024 },
      mappings: { press: big },
    });
    await until(
      "every register in the cloud",
      () => Object.keys(p.cloud.service.getShadow("press-07")?.state.reported ?? {}).length === 300,
    );
    // About 12 KB in updates of at most 8 KB each (the service answers 413 to a larger one):
    // one full report went as two.
    expect(p.rejected.filter((e) => e.code !== 404)).toEqual([]);
    expect(p.cloud.service.getShadow("press-07")?.version).toBe(2);
    expect(p.config.warnings?.[0]?.message).toMatch(/press-07 could reach about \d+ bytes/);
  });

  it("ignores malformed messages and refuses desired for unmapped or read-only points, writing nothing", async () => {
    const p = await plant(undefined);
    await until("in sync", () => p.gateway.sync?.deviceState(THING)?.synced === true);
    const side = await connectTestClient(p.cloud.mqttUrl);
    const T = `$aws/things/${THING}/shadow`;
    const bad = p.gateway.sync?.stats.badMessages ?? 0;
    const garbage: Array<[string, string | Buffer]> = [
      [`${T}/update/delta`, "{not json"],
      [`${T}/update/delta`, JSON.stringify({ state: { targetTemperature: 99 }, version: "7" })],
      [`${T}/get/accepted`, JSON.stringify({ state: [], version: 1 })],
      [`${T}/update/rejected`, JSON.stringify({ message: "no code" })],
      [`${T}/update/delta`, Buffer.alloc(70 * 1024, 0x20)],
      [`${T}/update/delta`, Buffer.from([0xff, 0xfe, 0x7b])],
    ];
    for (const [topic, payload] of garbage)
      await side.mqtt.publishAsync(topic, payload, { qos: 1 });
    await until(
      "each malformed message counted",
      () => (p.gateway.sync?.stats.badMessages ?? 0) - bad === garbage.length,
    );
    // Desired for a point the mapping lacks, for a read-only one, and an object for a boolean.
    await p.setDesired({ nosuch: 1, temperature: 5, running: { a: { b: { c: 1 } } } });
    await until("desired cleared", () => p.doc()?.state.desired === undefined);
    expect(outcome(p, "nosuch")).toMatchObject({ status: "rejected" });
    expect(outcome(p, "temperature")).toMatchObject({ status: "rejected" });
    expect(outcome(p, "running")).toMatchObject({ status: "rejected", reason: /true or false/ });
    expect(p.writes).toEqual([]);
    expect(p.sim.sim.unit(1).coil[0]).toBe(1);
  });

  it("sends a report refused as too large (413) again in smaller parts", async () => {
    const points = Array.from(
      { length: 300 },
      (_, i) => `  register_with_a_rather_long_name_${i}: { register: ${40101 + i}, type: uint16 }`,
    ).join("\n");
    const big = `version: 1\ndevice: { thingName: press-07 }\nsource: plc1\npollInterval: 100ms\npoints:\n${points}\n`;
    // A cloud that takes at most 2.5 KB an update: the 8 KB parts are refused, then 4 KB
    // ones, and 2 KB parts go through.
    const p = await plant(undefined, {
      cloud: { maxDocumentBytes: 32 * 1024, maxRequestBytes: 2500 },
      mappings: { press: big },
    });
    await until(
      "every register in the cloud",
      () => Object.keys(p.cloud.service.getShadow("press-07")?.state.reported ?? {}).length === 300,
    );
    expect(p.rejected.filter((e) => e.code === 413).length).toBe(2);
    expect(p.rejected.filter((e) => e.code !== 404 && e.code !== 413)).toEqual([]);
  });

  it("keeps at most 10 requests in flight on its connection with 50 things", async () => {
    const things = Object.fromEntries(
      Array.from({ length: 50 }, (_, i) => [
        `plc-${i}`,
        `
version: 1
device: { thingName: plc-${i} }
source: plc1
pollInterval: 1s
points:
  temperature: { register: 40001, type: float32 }
`,
      ]),
    );
    const p = await plant(undefined, {
      cloud: { replyDelayMs: 20 },
      gatewayExtra: "  maxInFlight: 50",
      mappings: things,
    });
    await until("every thing reported", () =>
      Array.from({ length: 50 }, (_, i) => p.cloud.service.getShadow(`plc-${i}`)).every(
        (d) => d?.state.reported?.temperature === 21.5,
      ),
    );
    expect(p.rejected.filter((e) => e.code === 429)).toEqual([]);
  });
});

describeWithMosquitto("with mosquitto", (broker) => suite("mosquitto", () => broker().url));
