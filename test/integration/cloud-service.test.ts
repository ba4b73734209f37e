import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import type { Client } from "aedes";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import { MAX_ATTRIBUTES } from "../../src/north/dialects/alibaba/messages.js";
import { alibabaCredentials } from "../../src/north/dialects/alibaba/sign.js";
import {
  SHADOW_GET_WILDCARD,
  shadowGetTopic,
  shadowUpdateTopic,
} from "../../src/north/dialects/alibaba/topics.js";
import {
  startCloudService,
  type ControlEvent,
  type RunningCloudService,
} from "../../src/sim/cloud/index.js";
import {
  captureLogger,
  closeCloudTestResources,
  connectTestClient,
  httpJson,
  startTestCloud,
  type TestClient,
} from "../helpers/cloud.js";
import { describeWithMosquitto } from "../helpers/mosquitto-suite.js";

afterEach(closeCloudTestResources);

const PK = "a1Boiler";
const NOW_MS = 1_700_000_000_900;
const T = 1_700_000_000;
const now = (): number => NOW_MS;

/** Device names unique within the file: the mosquitto suite shares one broker. */
let serial = 0;
const nextDevice = (): string => `boiler-${++serial}`;

/** A device client listening on its own /shadow/get topic. */
async function device(cloud: RunningCloudService, dn: string): Promise<TestClient> {
  const client = await connectTestClient(cloud.mqttUrl);
  await client.subscribe(shadowGetTopic(PK, dn));
  return client;
}

const update = (state: unknown, version?: number, extra: object = {}): object => ({
  method: "update",
  state,
  ...(version === undefined ? {} : { version }),
  ...extra,
});

const errorReply = (code: string, extra: object = {}): object => ({
  method: "reply",
  payload: { status: "error", content: { errorcode: code, errormessage: expect.any(String) } },
  timestamp: T,
  ...extra,
});

const successReply = (version: number, extra: object = {}): object => ({
  method: "reply",
  payload: { status: "success", version },
  timestamp: T,
  ...extra,
});

const setDesired = (cloud: RunningCloudService, dn: string, desired: unknown, extra: object = {}) =>
  httpJson(`${cloud.httpUrl}/shadows/${PK}/${dn}`, {
    method: "POST",
    body: { ShadowMessage: { method: "update", state: { desired }, ...extra } },
  });

const nextControl = (emitter: RunningCloudService["service"]): Promise<ControlEvent> =>
  once(emitter, "control").then(([e]) => e as ControlEvent);

/** The subset run against both the embedded broker and mosquitto. */
function coreConformance(start: () => Promise<RunningCloudService>): void {
  it("update is answered with the version sent; get returns state, metadata and version", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    const r = await dev.request(PK, dn, update({ reported: { temp: 20.5 } }, 3));
    expect(r.topic).toBe(shadowGetTopic(PK, dn));
    expect(r.message).toEqual(successReply(3));
    const got = await dev.request(PK, dn, { method: "get" });
    expect(got.message).toEqual({
      method: "reply",
      payload: {
        status: "success",
        state: { reported: { temp: 20.5 } },
        metadata: { reported: { temp: { timestamp: T } } },
        version: 3,
      },
      version: 3,
      timestamp: T,
    });
  });

  it("an update with the stored version is refused with 409 and changes nothing", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    await dev.request(PK, dn, update({ reported: { a: 1 } }, 1));
    const r = await dev.request(PK, dn, update({ reported: { a: 2 } }, 1, { clientToken: "c-9" }));
    expect(r.message).toEqual(errorReply("409", { clientToken: "c-9" }));
    expect(cloud.service.getShadow(PK, dn)).toMatchObject({
      version: 1,
      state: { reported: { a: 1 } },
    });
  });

  it("a desired update through the HTTP API reaches the listening device as control", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    await dev.request(PK, dn, update({ reported: { sp: 20 } }, 1));
    const http = await setDesired(cloud, dn, { sp: 22 });
    expect(http).toMatchObject({ status: 200, body: { Success: true, version: 2 } });
    const pushed = await dev.next();
    expect(pushed).toEqual({
      topic: shadowGetTopic(PK, dn),
      message: {
        method: "control",
        payload: {
          status: "success",
          state: { desired: { sp: 22 }, reported: { sp: 20 } },
          metadata: { desired: { sp: { timestamp: T } }, reported: { sp: { timestamp: T } } },
        },
        version: 2,
        timestamp: T,
      },
    });
  });
}

describe("cloud service with the embedded broker (aedes), over a real connection", () => {
  const start = (): Promise<RunningCloudService> => startTestCloud({ now });

  coreConformance(start);

  it.each([
    ["400 malformed JSON", "{not json", "400"],
    ["401 method missing", { state: { reported: { a: 1 } }, version: 1 }, "401"],
    ["402 state missing", { method: "update", version: 1 }, "402"],
    [
      "403 version not a number",
      update({ reported: { a: 1 } }, undefined, { version: "1" }),
      "403",
    ],
    ["404 reported missing", update({}, 1), "404"],
    ["405 reported empty", update({ reported: {} }, 1), "405"],
    ["406 unknown method", { method: "upsert", state: { reported: { a: 1 } } }, "406"],
    [
      "408 too many attributes",
      update(
        {
          reported: Object.fromEntries(
            Array.from({ length: MAX_ATTRIBUTES + 1 }, (_, i) => [`p${i}`, i]),
          ),
        },
        1,
      ),
      "408",
    ],
  ])("%s", async (_name, payload, code) => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    const r = await dev.request(PK, dn, payload);
    expect(r.message).toEqual(errorReply(code));
    expect(cloud.service.getShadow(PK, dn)).toBeUndefined();
  });

  it("407 for get on an empty shadow, with the stored version so the client can go on", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    expect((await dev.request(PK, dn, { method: "get" })).message).toEqual(
      errorReply("407", { version: 0 }),
    );
  });

  it("version rules: equal -> 409, greater -> stored as sent, -1 -> cleared and reset to 0", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    expect((await dev.request(PK, dn, update({ reported: { a: 1 } }, 1))).message).toEqual(
      successReply(1),
    );
    expect((await dev.request(PK, dn, update({ reported: { a: 2 } }, 1))).message).toEqual(
      errorReply("409"),
    );
    expect((await dev.request(PK, dn, update({ reported: { a: 3 } }, 7))).message).toEqual(
      successReply(7),
    );
    const got = (await dev.request(PK, dn, { method: "get" })).message;
    expect([got.version, got.payload.version, got.payload.state]).toEqual([
      7,
      7,
      { reported: { a: 3 } },
    ]);
    expect((await dev.request(PK, dn, update({ reported: { a: 4 } }, 5))).message).toEqual(
      errorReply("409"),
    );

    expect((await dev.request(PK, dn, update({ reported: { a: 9 } }, -1))).message).toEqual(
      successReply(0),
    );
    expect((await dev.request(PK, dn, { method: "get" })).message).toEqual(
      errorReply("407", { version: 0 }),
    );
    expect((await dev.request(PK, dn, update({ reported: { a: 5 } }, 1))).message).toEqual(
      successReply(1),
    );
  });

  it('merges objects, replaces arrays, and deletes with "null" (string or JSON null)', async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    const ok = async (message: object, version: number): Promise<void> => {
      expect((await dev.request(PK, dn, message)).message).toEqual(successReply(version));
    };
    await ok(
      update({ reported: { temp: 20, alarm: { high: false, low: false }, modes: [1, 2] } }, 1),
      1,
    );
    await ok(update({ reported: { alarm: { high: true }, modes: [3] } }, 2), 2);
    await ok(update({ reported: { temp: "null" } }, 3), 3);
    await ok(update({ desired: { sp: 5 } }, 4), 4);
    // Desired was set (here by the device itself), so a control push follows the reply.
    expect((await dev.next()).message).toMatchObject({ method: "control", version: 4 });
    await ok(update({ desired: "null" }, 5), 5);
    await ok(update({ reported: { modes: null } }, 6), 6);
    const got = (await dev.request(PK, dn, { method: "get" })).message;
    expect(got.payload.state).toEqual({ reported: { alarm: { high: true, low: false } } });
    expect(got.payload.metadata).toEqual({ reported: { alarm: { timestamp: T } } });
    expect(got.version).toBe(6);
    expect(dev.pending).toBe(0);
  });

  it("delete removes one reported attribute, or all of them, and leaves desired", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    await dev.request(PK, dn, update({ reported: { a: 1, b: 2, c: 3 } }, 1));
    await setDesired(cloud, dn, { a: 10 });
    expect((await dev.next()).message.method).toBe("control");
    expect(
      (
        await dev.request(PK, dn, {
          method: "delete",
          state: { reported: { a: "null" } },
          version: 3,
        })
      ).message,
    ).toEqual(successReply(3));
    expect(cloud.service.getShadow(PK, dn)?.state).toEqual({
      desired: { a: 10 },
      reported: { b: 2, c: 3 },
    });
    await dev.request(PK, dn, { method: "delete", state: { reported: "null" }, version: 4 });
    expect(cloud.service.getShadow(PK, dn)).toMatchObject({
      state: { desired: { a: 10 } },
      metadata: { desired: { a: { timestamp: T } } },
      version: 4,
    });
  });

  it("echoes clientToken on success, get and error replies", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    const token = `${PK}.${dn}-1`;
    expect(
      (await dev.request(PK, dn, update({ reported: { a: 1 } }, 1, { clientToken: token })))
        .message,
    ).toEqual(successReply(1, { clientToken: token }));
    expect(
      (await dev.request(PK, dn, { method: "get", clientToken: "g-2" })).message.clientToken,
    ).toBe("g-2");
    expect((await dev.request(PK, dn, { method: "bad", clientToken: "e-3" })).message).toEqual(
      errorReply("406", { clientToken: "e-3" }),
    );
  });

  it(`holds ${MAX_ATTRIBUTES} reported attributes and refuses one more with 408`, async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    const full = Object.fromEntries(Array.from({ length: MAX_ATTRIBUTES }, (_, i) => [`p${i}`, i]));
    expect((await dev.request(PK, dn, update({ reported: full }, 1))).message).toEqual(
      successReply(1),
    );
    expect((await dev.request(PK, dn, update({ reported: { one: 1 } }, 2))).message).toEqual(
      errorReply("408"),
    );
    const doc = cloud.service.getShadow(PK, dn);
    expect([doc?.version, Object.keys(doc?.state.reported ?? {}).length]).toEqual([
      1,
      MAX_ATTRIBUTES,
    ]);
  });

  it("a desired update from an application over MQTT is answered and pushed to the device", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    const app = await connectTestClient(cloud.mqttUrl);
    await app.publish(shadowUpdateTopic(PK, dn), update({ desired: { sp: 30 } }, 1));
    expect((await dev.next()).message).toEqual(successReply(1));
    expect((await dev.next()).message).toMatchObject({
      method: "control",
      payload: { state: { desired: { sp: 30 } } },
      version: 1,
    });
  });

  it("a gateway listening on /shadow/get/+/+ gets control for each of its devices", async () => {
    const cloud = await start();
    const gateway = await connectTestClient(cloud.mqttUrl);
    await gateway.subscribe(SHADOW_GET_WILDCARD);
    const [a, b] = [nextDevice(), nextDevice()];
    await setDesired(cloud, a, { x: 1 });
    await setDesired(cloud, b, { x: 2 });
    const first = await gateway.next();
    const second = await gateway.next();
    expect([first.topic, first.message.method, second.topic, second.message.method]).toEqual([
      shadowGetTopic(PK, a),
      "control",
      shadowGetTopic(PK, b),
      "control",
    ]);
  });

  it("does not push control to a connected device that is not subscribed", async () => {
    const cloud = await start();
    const [listening, silent] = [nextDevice(), nextDevice()];
    const other = await device(cloud, listening);
    await connectTestClient(cloud.mqttUrl);
    const event = nextControl(cloud.service);
    const http = await setDesired(cloud, silent, { sp: 1 });
    expect(http.body).toMatchObject({ Success: true, version: 1 });
    expect(await event).toEqual({
      productKey: PK,
      deviceName: silent,
      version: 1,
      online: false,
      published: false,
    });
    // A push for the listening device arrives first in its queue: nothing for `silent` leaked.
    await setDesired(cloud, listening, { sp: 2 });
    expect((await other.next()).topic).toBe(shadowGetTopic(PK, listening));
  });

  it("treats an unsubscribed device as offline", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const dev = await device(cloud, dn);
    await dev.unsubscribe(shadowGetTopic(PK, dn));
    const event = nextControl(cloud.service);
    await setDesired(cloud, dn, { sp: 1 });
    expect(await event).toMatchObject({ online: false, published: false });
  });

  it("does not queue control for an offline persistent session; the device gets desired by get", async () => {
    const cloud = await start();
    const dn = nextDevice();
    const clientId = `${PK}.${dn}`;
    const first = await connectTestClient(cloud.mqttUrl, { clientId, clean: false });
    await first.subscribe(shadowGetTopic(PK, dn));
    const gone = new Promise<void>((resolve) => {
      const onDisconnect = (client: Client): void => {
        if (client.id !== clientId) return;
        cloud.broker?.off("clientDisconnect", onDisconnect);
        resolve();
      };
      cloud.broker?.on("clientDisconnect", onDisconnect);
    });
    await first.close();
    await gone;

    const event = nextControl(cloud.service);
    await setDesired(cloud, dn, { sp: 7 });
    expect(await event).toMatchObject({ online: false, published: false });

    // The broker restores the subscription; a queued control would arrive before the reply.
    const again = await connectTestClient(cloud.mqttUrl, { clientId, clean: false });
    const reply = await again.request(PK, dn, { method: "get" });
    expect(reply.message).toMatchObject({
      method: "reply",
      payload: { status: "success", state: { desired: { sp: 7 } } },
    });
    // ...and the restored subscription counts as online for the next push.
    await setDesired(cloud, dn, { sp: 8 });
    expect((await again.next()).message).toMatchObject({ method: "control", version: 2 });
  });

  it("checks Alibaba credentials when device secrets are given, and never logs a secret", async () => {
    const { logger, records } = captureLogger();
    const secret = "s3cr3t-Device-Secret";
    const dn = nextDevice();
    const cloud = await startTestCloud({
      now,
      logger,
      deviceSecrets: [{ productKey: PK, deviceName: dn, deviceSecret: secret }],
    });
    const good = alibabaCredentials({
      productKey: PK,
      deviceName: dn,
      deviceSecret: secret,
      secureMode: 3,
    });
    const dev = await connectTestClient(cloud.mqttUrl, good);
    await dev.subscribe(shadowGetTopic(PK, dn));
    expect((await dev.request(PK, dn, update({ reported: { a: 1 } }, 1))).message).toEqual(
      successReply(1),
    );

    const refused = async (opts: object): Promise<unknown> =>
      connectTestClient(cloud.mqttUrl, opts).then(
        () => "connected",
        (e: { code?: number }) => e.code,
      );
    const wrong = alibabaCredentials({
      productKey: PK,
      deviceName: dn,
      deviceSecret: "nope",
      secureMode: 3,
    });
    expect(await refused(wrong)).toBe(4);
    const stranger = alibabaCredentials({
      productKey: PK,
      deviceName: "stranger",
      deviceSecret: secret,
      secureMode: 3,
    });
    expect(await refused(stranger)).toBe(4);
    expect(await refused({ ...good, clientId: "no-sign-part" })).toBe(2);

    const codes = records.map((r) => r.code);
    expect(codes.filter((c) => c === ErrorCodes.AUTH_DENIED)).toHaveLength(2);
    expect(codes.filter((c) => c === ErrorCodes.AUTH_CLIENT_ID)).toHaveLength(1);
    const text = JSON.stringify(records);
    expect(text).not.toContain(secret);
    expect(text).not.toContain(good.password);
  });

  it("fails to start on a busy port with SG_CLOUD_START, leaving nothing open", async () => {
    const cloud = await start();
    const port = Number(new URL(cloud.mqttUrl).port);
    await expect(startCloudService({ mqttPort: port, httpPort: 0 })).rejects.toMatchObject({
      code: ErrorCodes.CLOUD_START,
    });
    await expect(
      startCloudService({ brokerUrl: "mqtt://127.0.0.1:1", httpPort: 0 }),
    ).rejects.toMatchObject({ code: ErrorCodes.CLOUD_START });
  });
});

describeWithMosquitto("cloud service as a client of mosquitto", (broker) => {
  const start = (): Promise<RunningCloudService> =>
    startTestCloud({ now, brokerUrl: broker().url });

  coreConformance(start);

  it("publishes control even to a device nobody listens for (it cannot see subscriptions)", async () => {
    const cloud = await start();
    expect(cloud.broker).toBeUndefined();
    const event = nextControl(cloud.service);
    await setDesired(cloud, nextDevice(), { sp: 1 });
    expect(await event).toMatchObject({ online: undefined, published: true });
  });
});

describe("shadowgate cloud (the CLI)", () => {
  const main = path.resolve(import.meta.dirname, "../../dist/cli/main.js");

  it("prints where it listens, serves MQTT and HTTP, and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, [main, "cloud", "--mqtt-port", "0", "--http-port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SHADOWGATE_LOG_LEVEL: "warn" },
    });
    const exited = once(child, "exit");
    try {
      let stdout = "";
      const urls = await new Promise<{ mqtt: string; http: string }>((resolve, reject) => {
        child.stdout.on("data", (b: Buffer) => {
          stdout += b.toString();
          const mqtt = /MQTT\s+(mqtt:\/\/\S+)/.exec(stdout)?.[1];
          const http = /HTTP\s+(http:\/\/\S+)/.exec(stdout)?.[1];
          if (mqtt && http) resolve({ mqtt, http });
        });
        void exited.then(([code]) => reject(new Error(`exited ${String(code)}: ${stdout}`)));
      });
      expect((await httpJson(`${urls.http}/healthz`)).body).toMatchObject({ status: "ok" });
      const dev = await connectTestClient(urls.mqtt);
      await dev.subscribe(shadowGetTopic(PK, "cli-1"));
      const r = await dev.request(PK, "cli-1", update({ reported: { a: 1 } }, 1));
      expect(r.message).toMatchObject({ payload: { status: "success", version: 1 } });
      await dev.close();
      child.kill("SIGTERM");
      expect(await exited).toEqual([0, null]);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("refuses a malformed --device-secret with exit code 64 without echoing the secret", async () => {
    const child = spawn(
      process.execPath,
      [main, "cloud", "--mqtt-port", "0", "--http-port", "0", "--device-secret", "pk-only=hunter2"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const [code] = await once(child, "exit");
    expect(code).toBe(64);
    expect(stderr).toContain("productKey/deviceName=secret");
    expect(stderr).not.toContain("hunter2");
  });
});
