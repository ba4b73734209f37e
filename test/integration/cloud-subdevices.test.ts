import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import {
  MAX_BATCH_LOGIN,
  MAX_LOGINS_PER_MINUTE,
  MAX_TOPO_ADD,
  batchLoginParams,
  loginParams,
  requestTopic,
  signedEntry,
  topoAddParams,
  type SubDeviceIdentity,
} from "../../src/north/dialects/alibaba/subdevices.js";
import type { Logger } from "../../src/core/logger.js";
import type { RunningCloudService, SessionEvent } from "../../src/sim/cloud/index.js";
import {
  captureLogger,
  closeCloudTestResources,
  connectGateway,
  startTestCloud,
  subDeviceRequest,
  type TestClient,
} from "../helpers/cloud.js";
import { seededRandom } from "../helpers/random.js";

/**
 * The gateway side of Alibaba sub-devices in the local cloud service (shadow-protocol.md 2.3):
 * topology, registration, login and logout, over the embedded broker and real MQTT clients.
 * Strict sessions, the operator's switch, restarts and mosquitto are in
 * cloud-subdevices-sessions.test.ts.
 */

afterEach(closeCloudTestResources);

const GW = { productKey: "a1Gateway", deviceName: "gw-01", deviceSecret: "gw-secret-01" };
const sub = (i: number): SubDeviceIdentity => ({
  productKey: "a1Boiler",
  deviceName: `boiler-${i}`,
  deviceSecret: `sub-secret-${i}`,
});
/** More sub-devices than one topology add may carry. */
const SUBS = Array.from({ length: MAX_BATCH_LOGIN + 1 }, (_, i) => sub(i));
const key = (d: { productKey: string; deviceName: string }) => ({
  productKey: d.productKey,
  deviceName: d.deviceName,
});

const T0 = 1_700_000_000_000;

async function start(opts: { maxSubDevicesOnline?: number; logger?: Logger } = {}) {
  let clock = T0;
  const cloud = await startTestCloud({
    now: () => clock,
    deviceSecrets: [GW, ...SUBS],
    ...opts,
  });
  const gw = await connectGateway(cloud.mqttUrl, GW);
  return { cloud, gw, advance: (ms: number) => (clock += ms), now: () => clock };
}

const topoAdd = (gw: TestClient, devices: readonly SubDeviceIdentity[], now = T0) =>
  subDeviceRequest(
    gw,
    GW,
    "thing.topo.add",
    topoAddParams(
      devices.map((d) => signedEntry(d, "hmacsha256", now)),
      "hmacsha256",
    ),
  );

const login = (gw: TestClient, d: SubDeviceIdentity, now = T0) =>
  subDeviceRequest(
    gw,
    GW,
    "combine.login",
    loginParams(signedEntry(d, "hmacsha256", now), "hmacsha256"),
  );

const nextSession = (cloud: RunningCloudService): Promise<SessionEvent> =>
  once(cloud.service, "session").then(([e]) => e as SessionEvent);

describe("topology (thing.topo.add, get, delete)", () => {
  it("adds sub-devices whose entries are signed with their own secrets; get lists them", async () => {
    const { cloud, gw } = await start();
    const event = nextSession(cloud);
    const added = await topoAdd(gw, [sub(2), sub(1)]);
    expect(added.message).toEqual({
      id: expect.any(String),
      code: 200,
      message: "success",
      data: [key(sub(2)), key(sub(1))],
    });
    expect(await event).toEqual({
      kind: "topo_add",
      gateway: key(GW),
      devices: [key(sub(2)), key(sub(1))],
      code: 200,
    });
    const got = await subDeviceRequest(gw, GW, "thing.topo.get", {});
    expect(got.message).toMatchObject({ code: 200, data: [key(sub(1)), key(sub(2))] });
    expect(cloud.service.topology(GW.productKey, GW.deviceName)).toEqual([
      key(sub(1)),
      key(sub(2)),
    ]);
  });

  it("accepts a sign computed outside our code (Python's hmac), in any hex case and method case", async () => {
    // The sign below was computed independently of src/ with:
    //   python3 -c 'import hmac,hashlib; print(hmac.new(b"vector-secret-0001",
    //     b"clientIda1Boiler&boiler-vecdeviceNameboiler-vecproductKeya1Boilertimestamp1524448722000",
    //     hashlib.sha256).hexdigest())'
    // and with hashlib.sha1 for the second one.
    const vec = { productKey: "a1Boiler", deviceName: "boiler-vec" };
    const cloud = await startTestCloud({
      deviceSecrets: [GW, { ...vec, deviceSecret: "vector-secret-0001" }],
    });
    const gw = await connectGateway(cloud.mqttUrl, GW);
    const entry = {
      ...vec,
      clientId: "a1Boiler&boiler-vec",
      timestamp: "1524448722000",
      signmethod: "hmacSha256",
      sign: "E65B0AFFD8E01F2691937B97AE88A201F2105422BD75D1F8579737FAB83AC83E",
    };
    const r = await subDeviceRequest(gw, GW, "thing.topo.add", [entry]);
    expect(r.message).toMatchObject({ code: 200, data: [vec] });
    const sha1 = {
      ...entry,
      // A number, as the JS SDK sends it: signed as its decimal text.
      timestamp: 1524448722000,
      signmethod: "hmacsha1",
      sign: "0819b04926fa824e24717d17a469a5655461b829",
    };
    expect((await subDeviceRequest(gw, GW, "thing.topo.add", [sha1])).message.code).toBe(200);
    const wrong = { ...entry, sign: entry.sign.replace("E65B", "E65C") };
    expect((await subDeviceRequest(gw, GW, "thing.topo.add", [wrong])).message.code).toBe(401);
    expect(cloud.service.topology(GW.productKey, GW.deviceName)).toEqual([vec]);
  });

  it("refuses the whole request for one bad sign (401), an unknown device (6100) or itself (6402)", async () => {
    const { cloud, gw } = await start();
    const forged = signedEntry({ ...sub(3), deviceSecret: "not-its-secret" }, "hmacsha256", T0);
    const good = signedEntry(sub(4), "hmacsha256", T0);
    const bad = await subDeviceRequest(
      gw,
      GW,
      "thing.topo.add",
      topoAddParams([good, forged], "hmacsha256"),
    );
    expect(bad.message).toMatchObject({ code: 401, data: [{ ...key(sub(3)), code: 401 }] });
    expect(cloud.service.topology(GW.productKey, GW.deviceName)).toEqual([]);

    const stranger = { productKey: "a1Boiler", deviceName: "stranger", deviceSecret: "x" };
    const unknown = await topoAdd(gw, [stranger]);
    expect(unknown.message).toMatchObject({ code: 6100, data: [{ ...key(stranger), code: 6100 }] });
    const self = await topoAdd(gw, [GW]);
    expect(self.message).toMatchObject({ code: 6402 });
  });

  it(`takes at most ${MAX_TOPO_ADD} entries (460 beyond) and refuses malformed entries with 460`, async () => {
    const { cloud, gw } = await start();
    const tooMany = await topoAdd(gw, SUBS.slice(0, MAX_TOPO_ADD + 1));
    expect(tooMany.message).toMatchObject({ code: 460, message: "request parameter error" });
    const full = await topoAdd(gw, SUBS.slice(0, MAX_TOPO_ADD));
    expect(full.message.code).toBe(200);
    expect(cloud.service.topology(GW.productKey, GW.deviceName)).toHaveLength(MAX_TOPO_ADD);
    const noSign = {
      ...signedEntry(sub(40), "hmacsha256", T0),
      signmethod: "hmacsha256",
      sign: "",
    };
    expect((await subDeviceRequest(gw, GW, "thing.topo.add", [noSign])).message.code).toBe(460);
    const wildcard = { ...noSign, deviceName: "boiler/#" };
    expect((await subDeviceRequest(gw, GW, "thing.topo.add", [wildcard])).message.code).toBe(460);
  });

  it("deletes from the topology (6100 for a device not in it), and logins then get 6401", async () => {
    const { cloud, gw } = await start();
    await topoAdd(gw, [sub(1), sub(2)]);
    expect((await login(gw, sub(1))).message.code).toBe(200);
    const absent = await subDeviceRequest(gw, GW, "thing.topo.delete", [key(sub(1)), key(sub(9))]);
    expect(absent.message).toMatchObject({ code: 6100, data: [{ ...key(sub(9)), code: 6100 }] });
    expect(cloud.service.topology(GW.productKey, GW.deviceName)).toHaveLength(2);
    const deleted = await subDeviceRequest(gw, GW, "thing.topo.delete", [key(sub(1))]);
    expect(deleted.message).toMatchObject({ code: 200, data: [key(sub(1))] });
    // Deleting the topology ends the session it allowed.
    expect(cloud.service.isLoggedIn(sub(1).productKey, sub(1).deviceName)).toBe(false);
    expect((await login(gw, sub(1))).message.code).toBe(6401);
  });

  it("a sub-device added by a second gateway moves to it, and its session through the first ends", async () => {
    const GW2 = { productKey: "a1Gateway", deviceName: "gw-02", deviceSecret: "gw-secret-02" };
    const cloud = await startTestCloud({ now: () => T0, deviceSecrets: [GW, GW2, ...SUBS] });
    const gw = await connectGateway(cloud.mqttUrl, GW);
    const gw2 = await connectGateway(cloud.mqttUrl, GW2);
    await topoAdd(gw, [sub(1)]);
    expect((await login(gw, sub(1))).message.code).toBe(200);
    const moved = await subDeviceRequest(
      gw2,
      GW2,
      "thing.topo.add",
      topoAddParams([signedEntry(sub(1), "hmacsha256", T0)], "hmacsha256"),
    );
    expect(moved.message.code).toBe(200);
    expect(cloud.service.topology(GW.productKey, GW.deviceName)).toEqual([]);
    expect(cloud.service.isLoggedIn(sub(1).productKey, sub(1).deviceName)).toBe(false);
    expect((await login(gw, sub(1))).message.code).toBe(6401);
  });
});

describe("dynamic registration (thing.sub.register)", () => {
  it("returns the secret of each device it knows, all or nothing; 6100 for an unknown one", async () => {
    const { logger, records } = captureLogger();
    const { cloud, gw } = await start({ logger });
    const event = nextSession(cloud);
    const r = await subDeviceRequest(gw, GW, "thing.sub.register", [key(sub(5))]);
    expect(r.message).toEqual({
      id: expect.any(String),
      code: 200,
      message: "success",
      data: [
        { iotId: expect.stringMatching(/^\S{20}$/), ...key(sub(5)), deviceSecret: "sub-secret-5" },
      ],
    });
    expect(await event).toMatchObject({ kind: "register", devices: [key(sub(5))], code: 200 });
    const unknown = { productKey: "a1Boiler", deviceName: "nobody" };
    const refused = await subDeviceRequest(gw, GW, "thing.sub.register", [key(sub(5)), unknown]);
    expect(refused.message).toMatchObject({ code: 6100, data: [{ ...unknown, code: 6100 }] });
    // The secret goes into the reply only; and neither it nor a sign is ever logged.
    await topoAdd(gw, [sub(5)]);
    await login(gw, sub(5));
    const text = JSON.stringify(records);
    expect(text).toContain("boiler-5");
    expect(text).not.toContain("sub-secret-5");
    expect(text).not.toContain(signedEntry(sub(5), "hmacsha256", T0).sign);
  });
});

describe("sub-device login (combine.login, batch_login, logout, batch_logout)", () => {
  it("logs a sub-device in through its gateway and counts the login messages", async () => {
    const { cloud, gw } = await start();
    await topoAdd(gw, [sub(1)]);
    const event = nextSession(cloud);
    const r = await login(gw, sub(1));
    expect(r.message).toEqual({
      id: expect.any(String),
      code: 200,
      message: "success",
      data: key(sub(1)),
    });
    expect(await event).toEqual({
      kind: "login",
      gateway: key(GW),
      devices: [key(sub(1))],
      code: 200,
    });
    expect(cloud.service.isLoggedIn(sub(1).productKey, sub(1).deviceName)).toBe(true);
    expect(cloud.service.loginMessages).toBe(1);
  });

  it("answers 6100 unknown, 6401 no topology, 6287 bad sign, in that order", async () => {
    const { cloud, gw } = await start();
    const stranger = { productKey: "a1Boiler", deviceName: "stranger", deviceSecret: "x" };
    expect((await login(gw, stranger)).message).toMatchObject({ code: 6100, data: key(stranger) });
    // Not in the topology: 6401 even with a bad sign (the topology is checked first).
    const forged = { ...sub(1), deviceSecret: "wrong" };
    expect((await login(gw, forged)).message.code).toBe(6401);
    await topoAdd(gw, [sub(1)]);
    expect((await login(gw, forged)).message).toMatchObject({
      code: 6287,
      message: "invalid sign",
    });
    expect(cloud.service.isLoggedIn(sub(1).productKey, sub(1).deviceName)).toBe(false);
    expect(cloud.service.loginMessages).toBe(3);
  });

  it(`refuses a ${MAX_LOGINS_PER_MINUTE + 1}th login of one device within a minute with 429`, async () => {
    const { cloud, gw, advance, now } = await start();
    await topoAdd(gw, [sub(1)]);
    for (let i = 0; i < MAX_LOGINS_PER_MINUTE; i++) {
      expect((await login(gw, sub(1), now())).message.code).toBe(200);
      advance(10_000);
    }
    // Five logins at T0 .. T0+40 s; the sixth at T0+50 s is within the minute of the first.
    expect((await login(gw, sub(1), now())).message).toMatchObject({
      code: 429,
      message: "too many requests",
    });
    // Once the first login is a minute old, there is room for one more.
    advance(10_000);
    expect((await login(gw, sub(1), now())).message.code).toBe(200);
    expect(cloud.service.loginMessages).toBe(MAX_LOGINS_PER_MINUTE + 2);
  });

  it("refuses logins past the online limit of the gateway with 428", async () => {
    const { cloud, gw } = await start({ maxSubDevicesOnline: 2 });
    await topoAdd(gw, [sub(1), sub(2), sub(3)]);
    expect((await login(gw, sub(1))).message.code).toBe(200);
    expect((await login(gw, sub(2))).message.code).toBe(200);
    expect((await login(gw, sub(3))).message.code).toBe(428);
    // A device already online may log in again: it takes no second place.
    expect((await login(gw, sub(2))).message.code).toBe(200);
    cloud.service.dropSession(sub(1).productKey, sub(1).deviceName);
    expect((await login(gw, sub(3))).message.code).toBe(200);
  });

  it("batch login is all or nothing: one bad entry logs nobody in and is named in data", async () => {
    const { cloud, gw } = await start();
    const devices = [sub(1), sub(2), sub(3)];
    await topoAdd(gw, devices);
    const entries = devices.map((d, i) =>
      signedEntry(i === 1 ? { ...d, deviceSecret: "wrong" } : d, "hmacsha256", T0),
    );
    const bad = await subDeviceRequest(
      gw,
      GW,
      "combine.batch_login",
      batchLoginParams(entries, "hmacsha256"),
    );
    expect(bad.message).toMatchObject({ code: 6287, data: [{ ...key(sub(2)), code: 6287 }] });
    for (const d of devices)
      expect(cloud.service.isLoggedIn(d.productKey, d.deviceName)).toBe(false);

    const good = devices.map((d) => signedEntry(d, "hmacsha256", T0));
    const event = nextSession(cloud);
    const ok = await subDeviceRequest(
      gw,
      GW,
      "combine.batch_login",
      batchLoginParams(good, "hmacsha256"),
    );
    expect(ok.message).toMatchObject({ code: 200, data: devices.map(key) });
    expect(await event).toMatchObject({
      kind: "batch_login",
      code: 200,
      devices: devices.map(key),
    });
    for (const d of devices)
      expect(cloud.service.isLoggedIn(d.productKey, d.deviceName)).toBe(true);
    expect(cloud.service.loginMessages).toBe(2);
  });

  it(`batch login takes at most ${MAX_BATCH_LOGIN} devices (460 beyond) and no device twice`, async () => {
    const { gw } = await start();
    const entries = SUBS.slice(0, MAX_BATCH_LOGIN + 1).map((d) => signedEntry(d, "hmacsha256", T0));
    const r = await subDeviceRequest(
      gw,
      GW,
      "combine.batch_login",
      batchLoginParams(entries, "hmacsha256"),
    );
    expect(r.message.code).toBe(460);
    const twice = [entries[0], entries[0]].filter((e) => e !== undefined);
    const dup = await subDeviceRequest(
      gw,
      GW,
      "combine.batch_login",
      batchLoginParams(twice, "hmacsha256"),
    );
    expect(dup.message).toMatchObject({
      code: 460,
      data: { reason: expect.stringMatching(/twice/) },
    });
  });

  it("logs out one device (520 when it is not logged in) or a batch, in either params form", async () => {
    const { cloud, gw } = await start();
    const devices = [sub(1), sub(2), sub(3)];
    await topoAdd(gw, devices);
    for (const d of devices) await login(gw, d);
    const out = await subDeviceRequest(gw, GW, "combine.logout", key(sub(1)));
    expect(out.message).toMatchObject({ code: 200, data: key(sub(1)) });
    expect(cloud.service.isLoggedIn(sub(1).productKey, sub(1).deviceName)).toBe(false);
    const again = await subDeviceRequest(gw, GW, "combine.logout", key(sub(1)));
    expect(again.message).toMatchObject({ code: 520, message: "device session error" });

    const batch = await subDeviceRequest(gw, GW, "combine.batch_logout", {
      deviceList: [key(sub(2))],
    });
    expect(batch.message).toMatchObject({ code: 200, data: [key(sub(2))] });
    // A bare list works too; the device not logged in is named, the others still leave.
    await login(gw, sub(2));
    const mixed = await subDeviceRequest(gw, GW, "combine.batch_logout", [
      key(sub(1)),
      key(sub(2)),
      key(sub(3)),
    ]);
    expect(mixed.message).toMatchObject({ code: 520, data: [{ ...key(sub(1)), code: 520 }] });
    for (const d of devices)
      expect(cloud.service.isLoggedIn(d.productKey, d.deviceName)).toBe(false);
  });
});

describe("malformed requests", () => {
  it("answers 460 when there is an id, logs once otherwise, and never stops serving", async () => {
    const { logger, records } = captureLogger();
    const cloud = await startTestCloud({ now: () => T0, deviceSecrets: [GW, ...SUBS], logger });
    const gw = await connectGateway(cloud.mqttUrl, GW);
    const topic = requestTopic("combine.login", GW.productKey, GW.deviceName);
    const reply = `${topic}_reply`;

    // With an id to answer: 460, whatever the id's type.
    for (const [payload, id] of [
      [{ id: "7", params: "not an object" }, "7"],
      [{ id: 8, params: {} }, "8"],
      [{ id: "9", params: { productKey: "a1Boiler", deviceName: "boiler-1" } }, "9"],
      [
        {
          id: "10",
          params: {
            ...loginParams(signedEntry(sub(1), "hmacsha256", T0), "hmacsha256"),
            timestamp: "soon",
          },
        },
        "10",
      ],
      [
        {
          id: "11",
          params: {
            ...loginParams(signedEntry(sub(1), "hmacsha256", T0), "hmacsha256"),
            signMethod: "rot13",
          },
        },
        "11",
      ],
    ] as const) {
      const next = gw.nextOn(reply);
      await gw.publish(topic, payload);
      expect((await next).message).toMatchObject({ id, code: 460 });
    }

    // Without one: nothing to answer, and not fatal. Seeded, so a failure replays.
    const random = seededRandom(0x5eed);
    const garbage = [
      "",
      "{",
      "null",
      "[1,2,3]",
      '"text"',
      '{"params":{}}',
      '{"id":{"nested":true}}',
      "\u0000\u00ff".repeat(64),
      ...Array.from({ length: 20 }, () =>
        Array.from({ length: Math.floor(random() * 80) }, () =>
          String.fromCharCode(32 + Math.floor(random() * 95)),
        ).join(""),
      ),
    ];
    const topics = [topic, requestTopic("thing.topo.add", GW.productKey, GW.deviceName)];
    for (const t of topics) for (const g of garbage) await gw.publish(t, g);
    // Deep, wide and oddly typed params on every method, with ids: each answered.
    const methods = [
      "thing.topo.add",
      "thing.topo.delete",
      "thing.sub.register",
      "combine.batch_login",
      "combine.logout",
      "combine.batch_logout",
    ] as const;
    const odd = [
      null,
      1,
      "x",
      [],
      [null],
      [[[]]],
      { deviceList: 5 },
      { deviceList: [{}] },
      Array(40).fill({ productKey: 1 }),
    ];
    for (const m of methods) {
      for (const params of odd) {
        const r = await subDeviceRequest(gw, GW, m, params);
        expect(r.message.code, `${m} ${JSON.stringify(params)}`).toBe(460);
      }
    }

    // Still serving, and every malformed message was logged exactly once.
    const ok = await subDeviceRequest(gw, GW, "thing.topo.get", {});
    expect(ok.message).toMatchObject({ code: 200, data: [] });
    expect(gw.queuedOn(reply)).toEqual([]);
    const logged = records.filter((r) => r.code === ErrorCodes.CLOUD_REQUEST_INVALID);
    expect(logged).toHaveLength(5 + topics.length * garbage.length + methods.length * odd.length);
  });

  it("does not answer a device that publishes on another gateway's topics", async () => {
    const { logger, records } = captureLogger();
    const cloud = await startTestCloud({ now: () => T0, deviceSecrets: [GW, ...SUBS], logger });
    const gw = await connectGateway(cloud.mqttUrl, GW);
    const other = { productKey: "a1Gateway", deviceName: "gw-elsewhere" };
    const otherReply = `${requestTopic("thing.topo.get", other.productKey, other.deviceName)}_reply`;
    await gw.subscribe(otherReply);
    await gw.publish(requestTopic("thing.topo.get", other.productKey, other.deviceName), {
      id: "1",
      params: {},
    });
    // Its own request, sent after on the same connection, is answered; the other never is.
    expect((await subDeviceRequest(gw, GW, "thing.topo.get", {})).message.code).toBe(200);
    expect(gw.queuedOn(otherReply)).toEqual([]);
    expect(records.filter((r) => r.code === ErrorCodes.CLOUD_REQUEST_INVALID)).toHaveLength(1);
  });
});
