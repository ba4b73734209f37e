import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../../src/core/errors.js";
import { ShadowService, type ShadowTransport } from "../../../src/sim/cloud/shadow-service.js";
import { ShadowStore } from "../../../src/sim/cloud/store.js";
import { captureLogger } from "../../helpers/cloud.js";

/** Records what the service publishes; online-ness is set by the test. */
class FakeTransport implements ShadowTransport {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- replies are asserted on
  readonly published: Array<{ topic: string; message: any }> = [];
  online: boolean | undefined = true;
  failing = false;
  async start(): Promise<void> {}
  async publish(topic: string, payload: string): Promise<void> {
    if (this.failing) throw new Error("broker gone");
    this.published.push({ topic, message: JSON.parse(payload) });
  }
  isOnline(): boolean | undefined {
    return this.online;
  }
  async stop(): Promise<void> {}
}

const NOW_MS = 1_700_000_000_500;
const NOW_S = 1_700_000_000;

let store: ShadowStore;
let transport: FakeTransport;
let service: ShadowService;
let records: Array<Record<string, unknown>>;

beforeEach(() => {
  store = new ShadowStore();
  transport = new FakeTransport();
  const captured = captureLogger();
  records = captured.records;
  service = new ShadowService({ store, transport, logger: captured.logger, now: () => NOW_MS });
});
afterEach(() => store.close());

const send = (topic: string, message: unknown): void =>
  service.handleMessage(
    topic,
    Buffer.from(typeof message === "string" ? message : JSON.stringify(message)),
  );

/** Lets the fire-and-forget publishes of handleMessage settle. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("ShadowService over a fake transport", () => {
  it("answers on the device's get topic with whole-second timestamps", async () => {
    send("/shadow/update/pk/dn", { method: "update", state: { reported: { a: 1 } }, version: 3 });
    await settle();
    expect(transport.published).toEqual([
      {
        topic: "/shadow/get/pk/dn",
        message: { method: "reply", payload: { status: "success", version: 3 }, timestamp: NOW_S },
      },
    ]);
    expect(store.get("pk", "dn")?.metadata.reported).toEqual({ a: { timestamp: NOW_S } });
  });

  it("does not answer a message on a topic that is not a request topic, and logs it once", async () => {
    send("/shadow/get/pk/dn", "{broken");
    send("/elsewhere", { method: "get" });
    await settle();
    expect(transport.published).toEqual([]);
    const logged = records.filter((r) => r.code === ErrorCodes.CLOUD_REQUEST_INVALID);
    expect(logged.map((r) => r.topic)).toEqual(["/shadow/get/pk/dn", "/elsewhere"]);
  });

  it("logs every malformed request exactly once, with its topic and code", async () => {
    send("/shadow/update/pk/a", "{broken");
    send("/shadow/update/pk/b", { method: "nope" });
    await settle();
    const logged = records.filter((r) => r.code === ErrorCodes.CLOUD_REQUEST_INVALID);
    expect(logged.map((r) => [r.topic, r.shadowCode])).toEqual([
      ["/shadow/update/pk/a", 400],
      ["/shadow/update/pk/b", 406],
    ]);
    expect(transport.published).toHaveLength(2);
  });

  it("answers get on an empty shadow with 407 and the stored version", async () => {
    send("/shadow/update/pk/dn", { method: "get", clientToken: "t" });
    send("/shadow/update/pk/dn", { method: "update", state: { reported: { a: 1 } }, version: 4 });
    send("/shadow/update/pk/dn", { method: "delete", state: { reported: "null" }, version: 5 });
    send("/shadow/update/pk/dn", { method: "get" });
    await settle();
    const [never, , , emptied] = transport.published.map((p) => p.message);
    expect(never).toEqual({
      method: "reply",
      payload: {
        status: "error",
        content: { errorcode: "407", errormessage: "shadow document is empty" },
      },
      version: 0,
      timestamp: NOW_S,
      clientToken: "t",
    });
    expect(emptied).toMatchObject({ payload: { content: { errorcode: "407" } }, version: 5 });
  });

  it("pushes control after the reply when an update sets desired and the device is online", async () => {
    const events: unknown[] = [];
    service.on("control", (e) => events.push(e));
    send("/shadow/update/pk/dn", { method: "update", state: { desired: { sp: 5 } }, version: 1 });
    await settle();
    expect(transport.published.map((p) => p.message.method)).toEqual(["reply", "control"]);
    expect(transport.published[1]?.message).toEqual({
      method: "control",
      payload: {
        status: "success",
        state: { desired: { sp: 5 } },
        metadata: { desired: { sp: { timestamp: NOW_S } } },
      },
      version: 1,
      timestamp: NOW_S,
    });
    expect(events).toEqual([
      { productKey: "pk", deviceName: "dn", version: 1, online: true, published: true },
    ]);
  });

  it("does not push control to an offline device, nor when desired is only cleared", async () => {
    transport.online = false;
    const offline = await service.updateDesired(
      "pk",
      "dn",
      { method: "update", state: { desired: { sp: 1 } } },
      { delta: true },
    );
    expect(offline).toMatchObject({
      ok: true,
      version: 1,
      control: { online: false, published: false },
    });
    transport.online = true;
    const cleared = await service.updateDesired(
      "pk",
      "dn",
      { method: "update", state: { desired: "null" } },
      { delta: true },
    );
    expect(cleared).toEqual({ ok: true, version: 2 });
    expect(transport.published).toEqual([]);
  });

  it("publishes anyway when the transport cannot tell who is online", async () => {
    transport.online = undefined;
    const outcome = await service.updateDesired(
      "pk",
      "dn",
      { method: "update", state: { desired: { sp: 1 } } },
      { delta: false },
    );
    expect(outcome).toMatchObject({ ok: true, control: { online: undefined, published: true } });
    expect(transport.published.map((p) => p.message.method)).toEqual(["control"]);
  });

  it("answers 500 and logs when the store fails, instead of throwing into the broker", async () => {
    store.close();
    expect(() => send("/shadow/update/pk/dn", { method: "get", clientToken: "t" })).not.toThrow();
    await settle();
    expect(transport.published[0]?.message).toMatchObject({
      payload: { status: "error", content: { errorcode: "500" } },
      clientToken: "t",
    });
    expect(records.filter((r) => r.code === ErrorCodes.CLOUD_INTERNAL)).toHaveLength(1);
  });

  it("logs a failed publish and goes on", async () => {
    transport.failing = true;
    const outcome = await service.updateDesired(
      "pk",
      "dn",
      { method: "update", state: { desired: { sp: 1 } } },
      { delta: false },
    );
    expect(outcome).toMatchObject({ ok: true, control: { published: false } });
    expect(records.filter((r) => r.code === ErrorCodes.CLOUD_PUBLISH)).toHaveLength(1);
    expect(store.get("pk", "dn")?.state.desired).toEqual({ sp: 1 });
  });
});
