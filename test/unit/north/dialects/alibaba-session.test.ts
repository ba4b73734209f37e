/**
 * The Alibaba sub-device session step (north/dialects/alibaba/session.ts) against a scripted
 * cloud: the test answers every request the way the platform does (shadow-protocol.md 2.3) and
 * sees every message the gateway sends. Signs are checked against an HMAC computed by Python's
 * hmac module, not by our code.
 */
import { execFileSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtemp, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { testLogger } from "../../../helpers/logs.js";
import {
  SessionRefusal,
  type DeviceSession,
  type SessionEvents,
  type ShadowDevice,
} from "../../../../src/north/dialect.js";
import { alibabaCloudSchema as cloudSchema } from "../../../../src/north/dialects/alibaba/config.js";
import { alibabaSession } from "../../../../src/north/dialects/alibaba/session.js";
import {
  readRegisteredSecrets,
  REGISTERED_SECRETS_FILE,
} from "../../../../src/north/dialects/alibaba/secrets.js";
import {
  extErrorTopic,
  parseSubDeviceTopic,
  replyTopic,
  signedEntry,
  topoChangeTopic,
  verifyEntry,
  type SubDeviceMethod,
} from "../../../../src/north/dialects/alibaba/subdevices.js";
import type { Link, LinkEvents } from "../../../../src/north/link.js";

interface Sent {
  readonly method: SubDeviceMethod;
  readonly id: string;
  // The test reads the params as the cloud would.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
  readonly params: any;
  readonly qos: 0 | 1 | undefined;
}

/** What the scripted cloud answers: a code (200 with data) per request. */
type Answer = (m: Sent) => { code: number; message?: string; data?: unknown } | undefined;

class ScriptedLink extends EventEmitter<LinkEvents> implements Link {
  online = true;
  readonly sent: Sent[] = [];
  answer: Answer = () => ({ code: 200, data: [] });
  session: DeviceSession | undefined;

  async subscribe(): Promise<void> {}

  async publish(topic: string, payload: string, qos?: 0 | 1): Promise<void> {
    const parsed = parseSubDeviceTopic(topic);
    if (parsed?.kind !== "request") throw new Error(`unexpected publish on ${topic}`);
    const body = JSON.parse(payload) as { id: string; params: unknown; method: string };
    expect(body.method).toBe(parsed.method);
    const m: Sent = { method: parsed.method, id: body.id, params: body.params, qos };
    this.sent.push(m);
    const a = this.answer(m);
    if (!a || !this.session) return;
    const reply = JSON.stringify({
      id: m.id,
      code: a.code,
      message: a.message ?? "",
      data: a.data ?? {},
    });
    // The reply arrives after the publish resolved, as over a broker.
    setImmediate(() =>
      this.session?.handle(replyTopic(m.method, "gwPk", "gw"), Buffer.from(reply)),
    );
  }

  methods(): string[] {
    return this.sent.map((s) => s.method);
  }
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  vi.useRealTimers();
});

const sub = (i: number, secret = `secret-${i}`): ShadowDevice => ({
  productKey: "a1Plc",
  deviceName: `plc${i}`,
  deviceSecret: secret,
});
const GATEWAY_ITSELF: ShadowDevice = { productKey: "gwPk", deviceName: "gw" };

async function setup(devices: readonly ShadowDevice[], subDevices: Record<string, unknown> = {}) {
  const link = new ScriptedLink();
  const seen: string[] = [];
  const events: SessionEvents = {
    lost: (d) => seen.push(`lost ${d.deviceName}`),
    refused: (d, code) => seen.push(`refused ${d.deviceName} ${code}`),
    resumed: (d) => seen.push(`resumed ${d.deviceName}`),
  };
  const dataDir = await mkdtemp(path.join(tmpdir(), "sg-subdev-"));
  const session = alibabaSession({
    link,
    cloud: cloudSchema.parse({
      url: "mqtt://127.0.0.1:1",
      productKey: "gwPk",
      deviceName: "gw",
      replyTimeout: "2s",
      subDevices,
    }),
    devices,
    events,
    dataDir,
    configDir: dataDir,
    log: testLogger(),
  });
  if (!session) throw new Error("no session step");
  link.session = session;
  return { link, session, seen, dataDir };
}

/** Settles every login and says which were refused, with the code. */
async function loginAll(session: DeviceSession, devices: readonly ShadowDevice[]) {
  const outcomes = await Promise.allSettled(devices.map((d) => session.login(d)));
  return outcomes.map((o, i) =>
    o.status === "fulfilled"
      ? `${devices[i]?.deviceName} ok`
      : `${devices[i]?.deviceName} ${o.reason instanceof SessionRefusal ? `refused ${o.reason.code}` : "failed"}`,
  );
}

describe("sub-device signs", () => {
  it("match an HMAC computed by Python's hmac module over the documented content", () => {
    const e = signedEntry(
      { productKey: "a1Plc", deviceName: "plc1", deviceSecret: "s3cr3t-Plc1" },
      "hmacsha256",
      1_700_000_000_123,
    );
    const content = "clientIda1Plc&plc1deviceNameplc1productKeya1Plctimestamp1700000000123";
    const python = execFileSync(
      "python3",
      [
        "-c",
        "import hmac,hashlib,sys;print(hmac.new(sys.argv[1].encode(),sys.argv[2].encode(),getattr(hashlib,sys.argv[3])).hexdigest())",
        "s3cr3t-Plc1",
        content,
        "sha256",
      ],
      { encoding: "utf8", env: { ...process.env, PYENV_VERSION: "system" } },
    ).trim();
    expect(e).toEqual({
      productKey: "a1Plc",
      deviceName: "plc1",
      clientId: "a1Plc&plc1",
      timestamp: "1700000000123",
      sign: python,
    });
    // The cloud's check takes either hex case and the JS SDK's method spelling.
    expect(verifyEntry({ ...e, sign: python.toUpperCase() }, "hmacSha256", "s3cr3t-Plc1")).toBe(
      true,
    );
    expect(verifyEntry(e, "hmacsha256", "another")).toBe(false);
    expect(verifyEntry(e, "rot13", "s3cr3t-Plc1")).toBe(false);
  });
});

describe("topology and logins", () => {
  it("adds the missing devices in batches of 30, once; logs 65 in with two batch logins; the gateway itself needs none", async () => {
    const devices = Array.from({ length: 65 }, (_, i) => sub(i));
    const { link, session } = await setup([GATEWAY_ITSELF, ...devices]);
    // Five are in the topology already.
    link.answer = (m) =>
      m.method === "thing.topo.get"
        ? {
            code: 200,
            data: devices
              .slice(0, 5)
              .map(({ productKey, deviceName }) => ({ productKey, deviceName })),
          }
        : { code: 200, data: [] };
    expect(await loginAll(session, [GATEWAY_ITSELF, ...devices])).toEqual([
      "gw ok",
      ...devices.map((d) => `${d.deviceName} ok`),
    ]);
    expect(link.methods()).toEqual([
      "thing.topo.get",
      "thing.topo.add",
      "thing.topo.add",
      "combine.batch_login",
      "combine.batch_login",
    ]);
    const adds = link.sent.filter((s) => s.method === "thing.topo.add");
    expect(adds.map((a) => a.params.length)).toEqual([30, 30]);
    expect(adds[0]?.params[0]).toMatchObject({
      productKey: "a1Plc",
      deviceName: "plc5",
      signmethod: "hmacsha256",
    });
    for (const entry of adds.flatMap((a) => a.params))
      expect(verifyEntry(entry, entry.signmethod, `secret-${entry.deviceName.slice(3)}`)).toBe(
        true,
      );
    const logins = link.sent.filter((s) => s.method === "combine.batch_login");
    expect(logins.map((l) => l.params.deviceList.length)).toEqual([50, 15]);
    expect(logins.every((l) => l.qos === 0)).toBe(true);

    // A reconnect logs in again; the topology is not asked for again.
    link.sent.splice(0);
    expect(await loginAll(session, devices.slice(0, 2))).toEqual(["plc0 ok", "plc1 ok"]);
    expect(link.methods()).toEqual(["combine.batch_login"]);
  });

  it("finds the device that spoiled a batch with single logins; the others log in", async () => {
    const devices = [sub(1), sub(2, "wrong"), sub(3)];
    const { link, session } = await setup(devices);
    link.answer = (m) => {
      if (m.method === "combine.batch_login")
        return { code: 6287, message: "invalid sign", data: [] };
      if (m.method === "combine.login")
        return m.params.deviceName === "plc2"
          ? { code: 6287, message: "invalid sign" }
          : { code: 200 };
      return { code: 200, data: [] };
    };
    expect(await loginAll(session, devices)).toEqual(["plc1 ok", "plc2 refused 6287", "plc3 ok"]);
    expect(link.methods().filter((m) => m === "combine.login")).toHaveLength(3);
  });

  it("takes a 429 as worth another try, a 522 as a refusal", async () => {
    const { link, session } = await setup([sub(1), sub(2)], { login: "single" });
    link.answer = (m) =>
      m.method === "combine.login"
        ? m.params.deviceName === "plc1"
          ? { code: 429, message: "too many requests" }
          : { code: 522, message: "device disabled" }
        : { code: 200, data: [] };
    expect(await loginAll(session, [sub(1), sub(2)])).toEqual(["plc1 failed", "plc2 refused 522"]);
    expect(link.methods()).toEqual([
      "thing.topo.get",
      "thing.topo.add",
      "combine.login",
      "combine.login",
    ]);
  });

  it("sends at most 5 logins of one device a minute", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "Date"] });
    const start = Date.now();
    const { link, session } = await setup([sub(1)]);
    const logins = () => link.methods().filter((m) => m === "combine.login").length;
    const state = (p: Promise<void>) => {
      const s = { settled: false };
      void p.then(() => (s.settled = true));
      return s;
    };
    for (let i = 0; i < 5; i++) {
      const done = state(session.login(sub(1)));
      // Fake time passes in small steps until the scripted reply has come (bounded).
      for (let t = 0; t < 100 && !done.settled; t++) await vi.advanceTimersByTimeAsync(10);
      expect(done.settled).toBe(true);
    }
    expect(logins()).toBe(5);
    const sixth = state(session.login(sub(1)));
    await vi.advanceTimersByTimeAsync(50_000);
    expect(sixth.settled).toBe(false);
    expect(logins()).toBe(5);
    for (let t = 0; t < 2000 && !sixth.settled; t++) await vi.advanceTimersByTimeAsync(10);
    expect(sixth.settled).toBe(true);
    expect(logins()).toBe(6);
    // The sixth went out a minute after the first, not before.
    expect(Date.now() - start).toBeGreaterThanOrEqual(60_000);
  });

  it("registers missing secrets dynamically and keeps them owner-only in the data folder", async () => {
    const bare: ShadowDevice = { productKey: "a1Plc", deviceName: "plc9" };
    const { link, session, dataDir } = await setup([bare], { register: "dynamic" });
    link.answer = (m) =>
      m.method === "thing.sub.register"
        ? {
            code: 200,
            data: [{ iotId: "x", productKey: "a1Plc", deviceName: "plc9", deviceSecret: "reg-9" }],
          }
        : { code: 200, data: [] };
    expect(await loginAll(session, [bare])).toEqual(["plc9 ok"]);
    expect(link.methods()).toEqual([
      "thing.sub.register",
      "thing.topo.get",
      "thing.topo.add",
      "combine.login",
    ]);
    const login = link.sent.find((s) => s.method === "combine.login");
    expect(verifyEntry(login?.params, "hmacsha256", "reg-9")).toBe(true);
    expect(readRegisteredSecrets(dataDir).get("a1Plc/plc9")).toBe("reg-9");
    expect((await stat(path.join(dataDir, REGISTERED_SECRETS_FILE))).mode & 0o777).toBe(0o600);
  });

  it("logs the devices out with one batch_logout", async () => {
    const { link, session } = await setup([sub(1), sub(2), GATEWAY_ITSELF]);
    await Promise.all([
      session.logout(sub(1)),
      session.logout(sub(2)),
      session.logout(GATEWAY_ITSELF),
    ]);
    expect(link.sent.map((s) => [s.method, s.params, s.qos])).toEqual([
      [
        "combine.batch_logout",
        {
          deviceList: [
            { productKey: "a1Plc", deviceName: "plc1" },
            { productKey: "a1Plc", deviceName: "plc2" },
          ],
        },
        0,
      ],
    ]);
  });
});

describe("what the cloud says unasked", () => {
  it("520 loses a session, 522/521 and topo/change refuse and resume; anything malformed or unknown is ignored", async () => {
    const { session, seen } = await setup([sub(1), sub(2)]);
    const say = (topic: string, body: unknown) =>
      session.handle(topic, Buffer.from(typeof body === "string" ? body : JSON.stringify(body)));
    const err = extErrorTopic("gwPk", "gw");
    const change = topoChangeTopic("gwPk", "gw");
    const plc = (n: number) => ({ productKey: "a1Plc", deviceName: `plc${n}` });

    expect(say(err, { code: 520, message: "device session error", data: plc(1) })).toBe(true);
    expect(say(err, { code: 522, message: "device disabled", data: plc(2) })).toBe(true);
    say(change, { id: "1", method: "thing.topo.change", params: { status: 8, subList: [plc(1)] } });
    say(change, {
      id: "2",
      method: "thing.topo.change",
      params: { status: 2, subList: [plc(1), plc(2)] },
    });
    expect(seen).toEqual([
      "lost plc1",
      "refused plc2 522",
      "refused plc1 522",
      "resumed plc1",
      "resumed plc2",
    ]);

    seen.splice(0);
    for (const body of [
      "not json",
      "[]",
      { code: 520 },
      { code: 520, data: { productKey: "a1Plc", deviceName: "stranger" } },
      { code: "520", data: plc(1) },
    ])
      expect(say(err, body)).toBe(true);
    for (const body of [
      { params: { status: 8, subList: "plc1" } },
      { params: { status: 8, subList: [{ productKey: 1 }] } },
      { params: { status: 99, subList: [plc(1)] } },
    ])
      expect(say(change, body)).toBe(true);
    // A reply nobody waits for, and another gateway's error.
    expect(say(replyTopic("combine.login", "gwPk", "gw"), { id: "77", code: 200 })).toBe(true);
    expect(say(extErrorTopic("other", "gw"), { code: 520, data: plc(1) })).toBe(true);
    expect(seen).toEqual([]);
    // Not the session's topics: the engine decodes them.
    expect(say("/shadow/get/a1Plc/plc1", {})).toBe(false);
  });

  it("fails the logins awaiting a reply when the connection drops", async () => {
    const { link, session } = await setup([sub(1)]);
    link.answer = () => undefined; // the cloud never answers
    const login = session.login(sub(1));
    await vi.waitFor(() => expect(link.methods()).toEqual(["thing.topo.get"]));
    session.offline();
    await expect(login).rejects.toThrow(/connection dropped/);
  });
});
