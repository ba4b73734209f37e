import { describe, expect, it, vi } from "vitest";
import { captureLogger } from "../../helpers/cloud.js";
import { alibabaDialect } from "../../../src/north/dialects/alibaba/index.js";
import type { Dialect } from "../../../src/north/dialect.js";
import {
  connect,
  control,
  failure,
  getReply,
  report,
  setup,
  success,
  synced,
  useFakeClock,
} from "./scripted-cloud.js";

/** The request pump (src/north/pump.ts) through the engine, against a scripted cloud. */
describe("request pump (Alibaba dialect, scripted cloud)", () => {
  useFakeClock();

  it("subscribes first, gets every shadow, then pushes the whole reported state with version + 1", async () => {
    const s = setup({ devices: ["a", "b"] });
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.subscribed).toEqual(["/shadow/get/pk/a", "/shadow/get/pk/b"]);
    const gets = s.link.take();
    expect(gets.map((g) => [g.topic, g.msg.method])).toEqual([
      ["/shadow/update/pk/a", "get"],
      ["/shadow/update/pk/b", "get"],
    ]);
    s.link.deliver("a", getReply(gets[0]?.msg.clientToken, 41));
    await vi.advanceTimersByTimeAsync(0);
    const [report] = s.link.take();
    expect(report).toEqual({
      topic: "/shadow/update/pk/a",
      msg: {
        method: "update",
        state: { reported: { temp: 20, on: true } },
        version: 42,
        clientToken: expect.any(String),
      },
    });
  });

  it("takes a 407 reply to the first get (an empty shadow) as a start from that version", async () => {
    const s = setup();
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    const [get] = s.link.take();
    s.link.deliver("dev", { ...failure(get?.msg.clientToken, 407), version: 0 });
    await vi.advanceTimersByTimeAsync(0);
    const sent = s.link.take();
    expect(sent.map((m) => m.msg)).toEqual([
      {
        method: "update",
        state: { reported: { temp: 20, on: true } },
        version: 1,
        clientToken: expect.any(String),
      },
    ]);
  });

  it("batches changes per send window, one request in flight per device", async () => {
    const s = setup();
    const first = await connect(s);
    report(s, "dev", { temp: 21 });
    report(s, "dev", { alarm: { hi: true } });
    await vi.advanceTimersByTimeAsync(500);
    expect(s.link.take()).toEqual([]); // the first report still awaits its reply
    s.link.deliver("dev", success(first?.msg.clientToken, 6));
    await vi.advanceTimersByTimeAsync(0);
    const [next] = s.link.take();
    expect(next?.msg).toMatchObject({
      state: { reported: { temp: 21, alarm: { hi: true } } },
      version: 7,
    });
    expect(s.sync.deviceState("dev")).toEqual({
      version: 6,
      synced: true,
      busy: true,
      backlog: true,
    });
  });

  it("recovers from a version conflict with one get and one resend of the merged state", async () => {
    const s = setup();
    await synced(s);
    report(s, "dev", { temp: 22 });
    await vi.advanceTimersByTimeAsync(100);
    const [update] = s.link.take();
    expect(update?.msg).toMatchObject({ version: 7 });
    // Someone else bumped the shadow to 9 meanwhile.
    s.link.deliver("dev", failure(update?.msg.clientToken, 409));
    report(s, "dev", { on: false });
    await vi.advanceTimersByTimeAsync(0);
    const [get] = s.link.take();
    expect(get?.msg).toMatchObject({ method: "get" });
    s.link.deliver("dev", getReply(get?.msg.clientToken, 9));
    await vi.advanceTimersByTimeAsync(0);
    const [resend] = s.link.take();
    expect(resend?.msg).toMatchObject({
      method: "update",
      version: 10,
      state: { reported: { temp: 22, on: false } },
    });
    s.link.deliver("dev", success(resend?.msg.clientToken, 10));
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.link.take()).toEqual([]);
    expect(s.sync.stats).toMatchObject({ conflicts: 1 });
  });

  it("drops a request the cloud refuses permanently, once, without looping", async () => {
    const s = setup();
    const first = await connect(s);
    s.link.deliver("dev", failure(first?.msg.clientToken, 408));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(s.link.take()).toEqual([]);
    expect(s.sync.stats.rejected).toBe(1);
    report(s, "dev", { temp: 30 });
    await vi.advanceTimersByTimeAsync(100);
    expect(s.link.take()[0]?.msg).toMatchObject({ state: { reported: { temp: 30 } } });
  });

  it("drops a report the dialect cannot encode (over 128 attributes) instead of crashing", async () => {
    const s = setup();
    await synced(s);
    report(s, "dev", Object.fromEntries(Array.from({ length: 130 }, (_, i) => [`p${i}`, i])));
    await vi.advanceTimersByTimeAsync(200);
    expect(s.link.take()).toEqual([]);
    expect(s.sync.stats.rejected).toBe(1);
    expect(s.sync.deviceState("dev")?.backlog).toBe(false);
    report(s, "dev", { temp: 1 });
    await vi.advanceTimersByTimeAsync(200);
    expect(s.link.take()[0]?.msg.state).toEqual({ reported: { temp: 1 } });
  });

  it("ignores malformed messages and unknown devices, and never executes on their account", async () => {
    const s = setup();
    await synced(s);
    s.link.deliver("dev", "not json");
    s.link.deliver("dev", { method: "control", payload: { state: { desired: { setpoint: 1 } } } });
    s.link.deliver("dev", { method: "frobnicate", version: 1, timestamp: 1 });
    s.link.emit(
      "message",
      "/shadow/get/pk/stranger",
      Buffer.from(JSON.stringify(control(99, { setpoint: 1 }, 5))),
    );
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed).toEqual([]);
    expect(s.sync.stats.badMessages).toBe(3);
  });

  it("a control whose version went backwards is not executed; the shadow is read again", async () => {
    const s = setup();
    const first = await connect(s, 20);
    s.link.deliver("dev", success(first?.msg.clientToken, 21));
    s.link.deliver("dev", control(3, { setpoint: 10 }, 2000));
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed).toEqual([]);
    expect(s.link.take()[0]?.msg).toMatchObject({ method: "get" });
  });

  it("resends after a reply timeout, and keeps what a dropped link carried", async () => {
    const s = setup();
    const first = await connect(s, 5);
    await vi.advanceTimersByTimeAsync(5000);
    expect(s.sync.stats.timeouts).toBe(1);
    const [again] = s.link.take();
    expect(again?.msg).toMatchObject({ state: { reported: { temp: 20, on: true } }, version: 6 });
    expect(again?.msg.clientToken).not.toBe(first?.msg.clientToken);
    s.link.down();
    report(s, "dev", { temp: 25 });
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    const [get] = s.link.take();
    s.link.deliver("dev", getReply(get?.msg.clientToken, 6));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.take()[0]?.msg).toMatchObject({
      state: { reported: { temp: 25, on: true } },
      version: 7,
    });
  });

  it("sends at most the dialect's limit of requests in flight over all devices", async () => {
    const s = setup({
      devices: ["a", "b", "c"],
      dialect: { ...alibabaDialect, limits: { ...alibabaDialect.limits, maxInFlight: 2 } },
    });
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    const gets = s.link.take();
    expect(gets.map((g) => g.topic)).toEqual(["/shadow/update/pk/a", "/shadow/update/pk/b"]);
    // A reply frees a slot: the third device's get goes.
    s.link.deliver("a", failure(gets[0]?.msg.clientToken, 500));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.take().map((m) => [m.topic, m.msg.method])).toEqual([
      ["/shadow/update/pk/c", "get"],
    ]);
  });

  it("publishes each kind of request on the topic the dialect names for it", async () => {
    const dialect: Dialect = {
      ...alibabaDialect,
      topics: (pk, dn) => ({
        subscriptions: [`things/${pk}/${dn}/accepted`, `things/${pk}/${dn}/rejected`],
        requests: {
          get: `things/${pk}/${dn}/get`,
          report: `things/${pk}/${dn}/update`,
          clear: `things/${pk}/${dn}/update`,
        },
      }),
    };
    const s = setup({ dialect });
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.subscribed).toEqual(["things/pk/dev/accepted", "things/pk/dev/rejected"]);
    const [get] = s.link.take();
    expect(get?.topic).toBe("things/pk/dev/get");
    s.link.deliver("dev", getReply(get?.msg.clientToken, 5));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.take()[0]?.topic).toBe("things/pk/dev/update");
  });

  describe("found with hostile input (issue 10)", () => {
    it("does not take a control push's version: a get learns the cloud's own", async () => {
      const s = setup();
      await synced(s);
      s.link.deliver("dev", control(4_294_967_295, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.sync.deviceState("dev")?.version).toBe(6);
      const [get] = s.link.take();
      expect(get?.msg).toMatchObject({ method: "get" });
      s.link.deliver("dev", getReply(get?.msg.clientToken, 7, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      const [outcome] = s.link.take();
      expect(outcome?.msg).toMatchObject({
        version: 8,
        state: { reported: { _commands: { setpoint: { status: "applied" } } } },
      });
      s.link.deliver("dev", success(outcome?.msg.clientToken, 8));
      await vi.advanceTimersByTimeAsync(0);
      // The forged version's clear is not remembered over the cloud's own: desired is cleared.
      expect(s.link.take()[0]?.msg).toMatchObject({ state: { desired: "null" }, version: 9 });
      expect(s.executed).toHaveLength(1);
    });

    it("refuses versions beyond 2^53 - 2 as bad messages and goes on reporting", async () => {
      const s = setup();
      await synced(s);
      s.link.deliver("dev", control(Number.MAX_SAFE_INTEGER, { setpoint: 50 }, 1000));
      s.link.deliver("dev", { ...control(7, { setpoint: 51 }, 1000), version: 2 ** 60 });
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed).toEqual([]);
      expect(s.sync.stats.badMessages).toBe(2);
      report(s, "dev", { temp: 30 });
      await vi.advanceTimersByTimeAsync(100);
      const [update] = s.link.take();
      expect(update?.msg).toMatchObject({ version: 7, state: { reported: { temp: 30 } } });
      // A reply to the gateway's own request at the limit is refused too: it times out instead.
      s.link.deliver("dev", success(update?.msg.clientToken, Number.MAX_SAFE_INTEGER));
      await vi.advanceTimersByTimeAsync(5000);
      expect(s.sync.stats.timeouts).toBe(1);
      expect(s.sync.deviceState("dev")?.version).toBe(6);
    });

    it("a request that cannot be built is logged and retried later, never thrown from a timer", async () => {
      let failures = 1;
      const dialect: Dialect = {
        ...alibabaDialect,
        encodeGet: (token) => {
          if (failures-- > 0) throw new Error("cannot encode");
          return alibabaDialect.encodeGet(token);
        },
      };
      const { logger, records } = captureLogger();
      const s = setup({ dialect, log: logger });
      s.link.up();
      await vi.advanceTimersByTimeAsync(0);
      expect(s.link.take()).toEqual([]);
      expect(records.filter((r) => r.code === "SG_INTERNAL")).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(5000);
      expect(s.link.take()[0]?.msg).toMatchObject({ method: "get" });
    });
  });
});
