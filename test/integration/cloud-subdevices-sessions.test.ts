import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import { alibabaCredentials } from "../../src/north/dialects/alibaba/sign.js";
import {
  extErrorTopic,
  loginParams,
  signedEntry,
  topoAddParams,
  topoChangeTopic,
  type SubDeviceIdentity,
} from "../../src/north/dialects/alibaba/subdevices.js";
import { shadowGetTopic } from "../../src/north/dialects/alibaba/topics.js";
import {
  loadSecretsFile,
  type CloudServiceOptions,
  type RunningCloudService,
  type SessionEvent,
} from "../../src/sim/cloud/index.js";
import {
  closeCloudTestResources,
  connectGateway,
  connectTestClient,
  httpJson,
  startTestCloud,
  subDeviceRequest,
  type TestClient,
} from "../helpers/cloud.js";
import { describeWithMosquitto } from "../helpers/mosquitto-suite.js";
import { until } from "../helpers/until.js";

/**
 * Strict sessions, the operator's switch, restarts, mosquitto and the CLI of the local cloud
 * service's sub-devices (shadow-protocol.md 2.3). The requests themselves are in
 * cloud-subdevices.test.ts.
 */

const dirs: string[] = [];
afterEach(async () => {
  await closeCloudTestResources();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const tempDir = async (): Promise<string> => {
  const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-subdevices-"));
  dirs.push(dir);
  return dir;
};

const T0 = 1_700_000_000_000;
const GW = { productKey: "a1Gateway", deviceName: "gw-01", deviceSecret: "gw-secret-01" };
const GW2 = { productKey: "a1Gateway", deviceName: "gw-02", deviceSecret: "gw-secret-02" };
/** Names unique within the file: the mosquitto suite shares one broker. */
let serial = 0;
const nextSub = (): SubDeviceIdentity => {
  const n = ++serial;
  return { productKey: "a1Boiler", deviceName: `boiler-${n}`, deviceSecret: `sub-secret-${n}` };
};
const key = (d: { productKey: string; deviceName: string }) => ({
  productKey: d.productKey,
  deviceName: d.deviceName,
});

const topoAdd = (gw: TestClient, devices: readonly SubDeviceIdentity[], g = GW) =>
  subDeviceRequest(
    gw,
    g,
    "thing.topo.add",
    topoAddParams(
      devices.map((d) => signedEntry(d, "hmacsha256", T0)),
      "hmacsha256",
    ),
  );

const login = (gw: TestClient, d: SubDeviceIdentity) =>
  subDeviceRequest(
    gw,
    GW,
    "combine.login",
    loginParams(signedEntry(d, "hmacsha256", T0), "hmacsha256"),
  );

const update = (version: number) => ({
  method: "update",
  state: { reported: { temp: 20 + version } },
  version,
});

const sessionError = (d: SubDeviceIdentity) => ({
  code: 520,
  message: "device session error",
  data: key(d),
});

/** A sub-device's shadow request over the gateway's connection, answered on /shadow/get. */
async function report(gw: TestClient, d: SubDeviceIdentity, version: number) {
  const reply = gw.nextOn(shadowGetTopic(d.productKey, d.deviceName));
  await gw.publish(`/shadow/update/${d.productKey}/${d.deviceName}`, update(version));
  return reply;
}

/** The same, refused: the 520 on the gateway's /ext/error is awaited instead. */
async function refused(gw: TestClient, d: SubDeviceIdentity, g = GW) {
  const error = gw.nextOn(extErrorTopic(g.productKey, g.deviceName));
  await gw.publish(`/shadow/update/${d.productKey}/${d.deviceName}`, update(99));
  return (await error).message as unknown;
}

async function rig(subs: readonly SubDeviceIdentity[], opts: CloudServiceOptions = {}) {
  const cloud = await startTestCloud({
    now: () => T0,
    deviceSecrets: [GW, GW2, ...subs],
    strictSessions: true,
    ...opts,
  });
  const gw = await connectGateway(cloud.mqttUrl, GW);
  for (const d of subs) await gw.subscribe(shadowGetTopic(d.productKey, d.deviceName));
  expect((await topoAdd(gw, subs)).message.code).toBe(200);
  return { cloud, gw };
}

const isLoggedIn = (cloud: RunningCloudService, d: SubDeviceIdentity): boolean =>
  cloud.service.isLoggedIn(d.productKey, d.deviceName);

describe("strict sessions over the embedded broker", () => {
  it("refuses an update without login with 520 on /ext/error, applies it after login, refuses again after dropSession", async () => {
    const d = nextSub();
    const { cloud, gw } = await rig([d]);
    const event = once(cloud.service, "session").then(([e]) => e as SessionEvent);
    expect(await refused(gw, d)).toEqual(sessionError(d));
    expect(await event).toEqual({
      kind: "refused",
      gateway: key(GW),
      devices: [key(d)],
      code: 520,
    });
    expect(cloud.service.getShadow(d.productKey, d.deviceName)).toBeUndefined();

    expect((await login(gw, d)).message.code).toBe(200);
    expect((await report(gw, d, 1)).message).toMatchObject({
      method: "reply",
      payload: { status: "success", version: 1 },
    });
    expect(cloud.service.getShadow(d.productKey, d.deviceName)).toMatchObject({ version: 1 });

    expect(cloud.service.dropSession(d.productKey, d.deviceName)).toBe(true);
    expect(cloud.service.dropSession(d.productKey, d.deviceName)).toBe(false);
    expect(await refused(gw, d)).toEqual(sessionError(d));
    expect(cloud.service.getShadow(d.productKey, d.deviceName)).toMatchObject({
      version: 1,
      state: { reported: { temp: 21 } },
    });
    // Nothing was answered on the device's own topic for the refused requests.
    expect(gw.queuedOn(shadowGetTopic(d.productKey, d.deviceName))).toEqual([]);
  });

  it("ends a gateway's sub-device sessions when its connection closes", async () => {
    const d = nextSub();
    const { cloud, gw } = await rig([d]);
    await login(gw, d);
    expect(isLoggedIn(cloud, d)).toBe(true);
    await gw.close();
    await until("the session to end with the connection", () => !isLoggedIn(cloud, d));
    const again = await connectGateway(cloud.mqttUrl, GW);
    expect(await refused(again, d)).toEqual(sessionError(d));
    // The topology stays: logging in again is all it takes.
    expect((await login(again, d)).message.code).toBe(200);
    await again.subscribe(shadowGetTopic(d.productKey, d.deviceName));
    expect((await report(again, d, 1)).message.payload.status).toBe("success");
  });

  it("admits a device on its own connection; another gateway's connection gets 520 for it", async () => {
    const d = nextSub();
    const { cloud, gw } = await rig([d]);
    const direct = await connectTestClient(
      cloud.mqttUrl,
      alibabaCredentials({ ...d, secureMode: 3 }),
    );
    await direct.subscribe(shadowGetTopic(d.productKey, d.deviceName));
    expect((await report(direct, d, 1)).message.payload).toEqual({ status: "success", version: 1 });

    // Logged in through the first gateway, it is still not the second gateway's to publish.
    await login(gw, d);
    const other = await connectGateway(cloud.mqttUrl, GW2);
    expect(await refused(other, d, GW2)).toEqual(sessionError(d));
    expect(cloud.service.getShadow(d.productKey, d.deviceName)).toMatchObject({ version: 1 });
  });

  it("without strict sessions serves updates without login, but still refuses a disabled device", async () => {
    const d = nextSub();
    const { cloud, gw } = await rig([d], { strictSessions: false });
    expect((await report(gw, d, 1)).message.payload.status).toBe("success");
    await httpJson(`${cloud.httpUrl}/devices/${d.productKey}/${d.deviceName}/disable`, {
      method: "POST",
    });
    expect(await refused(gw, d)).toEqual(sessionError(d));
    expect(cloud.service.getShadow(d.productKey, d.deviceName)).toMatchObject({ version: 1 });
  });
});

describe("the operator's switch (HTTP)", () => {
  it("disable publishes topo/change 8, ends the session and refuses logins (522) and updates; enable publishes 2", async () => {
    const d = nextSub();
    const { cloud, gw } = await rig([d]);
    await login(gw, d);
    const url = `${cloud.httpUrl}/devices/${d.productKey}/${d.deviceName}`;
    expect((await httpJson(url)).body).toMatchObject({
      Success: true,
      disabled: false,
      gateway: key(GW),
      session: key(GW),
    });

    const change = gw.nextOn(topoChangeTopic(GW.productKey, GW.deviceName));
    const disabled = await httpJson(`${url}/disable`, { method: "POST" });
    expect(disabled).toMatchObject({
      status: 200,
      body: { Success: true, disabled: true, changed: true, gateway: key(GW), notified: true },
    });
    expect((await change).message).toEqual({
      id: expect.stringMatching(/^\d+$/),
      version: "1.0",
      method: "thing.topo.change",
      params: { status: 8, subList: [key(d)] },
    });
    expect(isLoggedIn(cloud, d)).toBe(false);
    expect((await login(gw, d)).message).toMatchObject({ code: 522, message: "device disabled" });
    expect(await refused(gw, d)).toEqual(sessionError(d));
    expect((await httpJson(url)).body).toMatchObject({ disabled: true, session: null });
    // Disabling again changes nothing and tells nobody.
    expect((await httpJson(`${url}/disable`, { method: "POST" })).body).toMatchObject({
      changed: false,
      notified: false,
    });

    const enabled = gw.nextOn(topoChangeTopic(GW.productKey, GW.deviceName));
    expect((await httpJson(`${url}/enable`, { method: "POST" })).body).toMatchObject({
      disabled: false,
      changed: true,
    });
    expect((await enabled).message).toMatchObject({ params: { status: 2, subList: [key(d)] } });
    expect((await login(gw, d)).message.code).toBe(200);
    expect((await report(gw, d, 1)).message.payload.status).toBe("success");
  });

  it("answers 404 for an unknown device and 405 for the wrong method", async () => {
    const cloud = await startTestCloud({ deviceSecrets: [GW] });
    expect(
      await httpJson(`${cloud.httpUrl}/devices/a1Boiler/nobody/disable`, { method: "POST" }),
    ).toMatchObject({ status: 404, body: { Success: false, Code: "NotFound" } });
    const wrong = await httpJson(`${cloud.httpUrl}/devices/a1Gateway/gw-01/disable`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
    expect((await httpJson(`${cloud.httpUrl}/devices/a1Gateway/gw-01`)).body).toMatchObject({
      disabled: false,
      gateway: null,
      session: null,
    });
  });
});

describe("restarts", () => {
  it("keeps topology and disabled devices in the --db file; sessions end with the service", async () => {
    const dbFile = path.join(await tempDir(), "cloud.db");
    const [a, b] = [nextSub(), nextSub()];
    const first = await rig([a, b], { dbFile });
    await login(first.gw, a);
    await httpJson(`${first.cloud.httpUrl}/devices/${b.productKey}/${b.deviceName}/disable`, {
      method: "POST",
    });
    await first.cloud.close();

    const cloud = await startTestCloud({
      now: () => T0,
      deviceSecrets: [GW, a, b],
      strictSessions: true,
      dbFile,
    });
    const gw = await connectGateway(cloud.mqttUrl, GW);
    const got = await subDeviceRequest(gw, GW, "thing.topo.get", {});
    expect(got.message).toMatchObject({ code: 200, data: [key(a), key(b)] });
    expect(isLoggedIn(cloud, a)).toBe(false);
    expect(await refused(gw, a)).toEqual(sessionError(a));
    // No topology add needed after the restart.
    expect((await login(gw, a)).message.code).toBe(200);
    expect((await login(gw, b)).message.code).toBe(522);
  });
});

describeWithMosquitto("over mosquitto (external broker: the publisher is unknown)", (broker) => {
  it("tells the device's topology gateway, serves after login, refuses after logout", async () => {
    const d = nextSub();
    const { cloud, gw } = await rig([d], { brokerUrl: broker().url });
    expect(cloud.broker).toBeUndefined();
    expect(await refused(gw, d)).toEqual(sessionError(d));
    expect(cloud.service.getShadow(d.productKey, d.deviceName)).toBeUndefined();
    expect((await login(gw, d)).message.code).toBe(200);
    expect((await report(gw, d, 1)).message.payload.status).toBe("success");
    const out = await subDeviceRequest(gw, GW, "combine.logout", key(d));
    expect(out.message.code).toBe(200);
    expect(await refused(gw, d)).toEqual(sessionError(d));

    // A device in no topology is taken for a directly connected one: the service cannot see.
    const direct = nextSub();
    await gw.subscribe(shadowGetTopic(direct.productKey, direct.deviceName));
    expect((await report(gw, direct, 1)).message.payload.status).toBe("success");
  });
});

describe("shadowgate cloud --secrets FILE --strict-sessions", () => {
  const main = path.resolve(import.meta.dirname, "../../dist/cli/main.js");

  it("reads the secrets file and serves sub-devices under strict sessions", async () => {
    const d = nextSub();
    const file = path.join(await tempDir(), "secrets.yaml");
    await writeFile(
      file,
      `# gateway and sub-device\n${GW.productKey}/${GW.deviceName}: "${GW.deviceSecret}"\n` +
        `${d.productKey}/${d.deviceName}: ${d.deviceSecret}\n`,
    );
    const child = spawn(
      process.execPath,
      [
        main,
        "cloud",
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
        "--secrets",
        file,
        "--strict-sessions",
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SHADOWGATE_LOG_LEVEL: "warn" } },
    );
    const exited = once(child, "exit");
    try {
      let stdout = "";
      const mqtt = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (b: Buffer) => {
          stdout += b.toString();
          const url = /MQTT\s+(mqtt:\/\/\S+)/.exec(stdout)?.[1];
          if (url && /sessions\s+strict/.test(stdout)) resolve(url);
        });
        void exited.then(([code]) => reject(new Error(`exited ${String(code)}: ${stdout}`)));
      });
      expect(stdout).toContain("credentials checked");
      const gw = await connectGateway(mqtt, GW);
      await gw.subscribe(shadowGetTopic(d.productKey, d.deviceName));
      expect((await topoAdd(gw, [d])).message.code).toBe(200);
      expect(await refused(gw, d)).toEqual(sessionError(d));
      expect((await login(gw, d)).message.code).toBe(200);
      expect((await report(gw, d, 1)).message.payload.status).toBe("success");
      await gw.close();
      child.kill("SIGTERM");
      expect(await exited).toEqual([0, null]);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("refuses a bad secrets file with exit code 2, naming the line and never the secret", async () => {
    const file = path.join(await tempDir(), "secrets.yaml");
    await writeFile(file, `a1Gateway/gw-01: hunter2-secret\nno-slash-here: other-secret\n`);
    const child = spawn(
      process.execPath,
      [main, "cloud", "--mqtt-port", "0", "--http-port", "0", "--secrets", file],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
    expect(stderr).toContain(`${file}:2:`);
    expect(stderr).toContain("no-slash-here");
    expect(stderr).not.toMatch(/hunter2|other-secret/);
  });
});

describe("loadSecretsFile", () => {
  it("reads YAML and JSON maps of pk/dn to secret; errors name the key, never the value", async () => {
    const dir = await tempDir();
    const yaml = path.join(dir, "s.yaml");
    await writeFile(yaml, "a1Gateway/gw-01: s1\n'a1Boiler/boiler-1': \"s: 2\"\n");
    expect(await loadSecretsFile(yaml)).toEqual([
      { productKey: "a1Gateway", deviceName: "gw-01", deviceSecret: "s1" },
      { productKey: "a1Boiler", deviceName: "boiler-1", deviceSecret: "s: 2" },
    ]);
    const json = path.join(dir, "s.json");
    await writeFile(json, JSON.stringify({ "a1Boiler/boiler-2": "s3" }));
    expect(await loadSecretsFile(json)).toEqual([
      { productKey: "a1Boiler", deviceName: "boiler-2", deviceSecret: "s3" },
    ]);
    const empty = path.join(dir, "empty.yaml");
    await writeFile(empty, "# nothing yet\n");
    expect(await loadSecretsFile(empty)).toEqual([]);

    for (const [text, problem] of [
      ["a1Boiler/boiler-3: 12345\n", /string/],
      ['a1Boiler/boiler-4: ""\n', /empty/],
      ["a1Boiler/+: secret-plus\n", /productKey\/deviceName/],
      ["a1Boiler/boiler-5: [secret-in-list\n", /.+/],
    ] as const) {
      const bad = path.join(dir, "bad.yaml");
      await writeFile(bad, text);
      const e = await loadSecretsFile(bad).then(
        () => undefined,
        (err: { code: string; message: string }) => err,
      );
      expect(e?.code).toMatch(/^SG_CONFIG_/);
      expect(e?.message).toMatch(problem);
      expect(e?.message).not.toMatch(/12345|secret-plus|secret-in-list/);
    }
    const missing = await loadSecretsFile(path.join(dir, "none.yaml")).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: ErrorCodes.CONFIG_READ });
  });
});
