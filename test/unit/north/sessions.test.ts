import { describe, expect, it, vi } from "vitest";
import { alibabaDialect } from "../../../src/north/dialects/alibaba/index.js";
import type { DeviceSession, Dialect, ShadowDevice } from "../../../src/north/dialect.js";
import { failure, getReply, report, setup, synced, useFakeClock } from "./scripted-cloud.js";

/** A device logged in, subscribed and getting its shadow. */
const BROUGHT_UP = ["login dev", "subscribe /shadow/get/pk/dev", "publish get"];

/** A session error, as Alibaba answers a sub-device that is not logged in (520). */
const SESSION_ERROR = 520;

/**
 * A dialect with a per-device session step (as Alibaba's sub-device login will be, issue 12):
 * the test decides when each login ends and whether it succeeds; every call lands in `events`,
 * the link's subscribes and publishes too.
 */
function withSession() {
  const dialect: Dialect = {
    ...alibabaDialect,
    classify: (code, kind) =>
      code === SESSION_ERROR ? "session" : alibabaDialect.classify(code, kind),
  };
  const pending: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  let events: string[] = [];
  let auto = true;
  const session: DeviceSession = {
    subscriptions: [],
    handle: () => false,
    offline: () => undefined,
    login: (device: ShadowDevice) => {
      events.push(`login ${device.deviceName}`);
      if (auto) return Promise.resolve();
      return new Promise((resolve, reject) => pending.push({ resolve, reject }));
    },
    logout: async (device: ShadowDevice) => {
      events.push(`logout ${device.deviceName}`);
    },
  };
  const s = setup({ dialect, session });
  // One log of what happened in order: logins from the session, the rest from the link.
  events = s.link.events;
  return {
    ...s,
    /** Brings the link up with logins that wait for finish(). */
    upHeld: async () => {
      auto = false;
      s.link.up();
      await vi.advanceTimersByTimeAsync(0);
    },
    finish: async (ok = true) => {
      const login = pending.shift();
      if (ok) login?.resolve();
      else login?.reject(new Error("refused"));
      await vi.advanceTimersByTimeAsync(0);
    },
  };
}

describe("per-device session step (a test dialect)", () => {
  useFakeClock();

  it("logs a device in before its topics are used, and sends nothing until the login ends", async () => {
    const s = withSession();
    await s.upHeld();
    report(s, "dev", { temp: 21 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.link.events).toEqual(["login dev"]);
    await s.finish();
    expect(s.link.events).toEqual(BROUGHT_UP);
  });

  it("logs in again after a reconnect, before subscribing again", async () => {
    const s = withSession();
    await synced(s);
    s.link.down();
    s.link.events.splice(0);
    s.link.take();
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.events).toEqual(BROUGHT_UP);
  });

  it("after a session error reply, logs in again, gets the shadow and resends the report", async () => {
    const s = withSession();
    await synced(s);
    report(s, "dev", { temp: 22 });
    await vi.advanceTimersByTimeAsync(100);
    const [update] = s.link.take();
    expect(update?.msg).toMatchObject({ state: { reported: { temp: 22 } }, version: 7 });
    s.link.events.splice(0);
    s.link.deliver("dev", failure(update?.msg.clientToken, SESSION_ERROR));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.events).toEqual(BROUGHT_UP);
    const [get] = s.link.take();
    s.link.deliver("dev", getReply(get?.msg.clientToken, 6));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.take()[0]?.msg).toMatchObject({
      state: { reported: { temp: 22, on: true } },
      version: 7,
    });
  });

  it("takes a session error without a client token as one about the device", async () => {
    const s = withSession();
    await synced(s);
    s.link.events.splice(0);
    s.link.deliver("dev", failure(undefined, SESSION_ERROR));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.events).toEqual(BROUGHT_UP);
  });

  it("tries a failed login again with backoff: within half to one reply timeout the first time", async () => {
    const s = withSession();
    await s.upHeld();
    await s.finish(false);
    await vi.advanceTimersByTimeAsync(2499);
    expect(s.link.events).toEqual(["login dev"]);
    await vi.advanceTimersByTimeAsync(2501);
    await s.finish();
    expect(s.link.events).toEqual(["login dev", ...BROUGHT_UP]);
  });

  it("drops a login that the link outlived; the next connection logs in afresh", async () => {
    const s = withSession();
    await s.upHeld();
    s.link.down();
    await s.finish();
    expect(s.link.events).toEqual(["login dev"]);
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    await s.finish();
    expect(s.link.events).toEqual(["login dev", ...BROUGHT_UP]);
  });

  it("logs the device out when the engine stops with the link up", async () => {
    const s = withSession();
    await synced(s);
    const first = s.link.events.length;
    s.sync.stop();
    await s.sync.idle();
    expect(s.link.events.slice(first)).toEqual(["logout dev"]);
    expect(s.link.events.filter((e) => e.startsWith("login"))).toEqual(["login dev"]);
  });

  it("needs no login with a dialect that has no session step (Alibaba's own identity)", async () => {
    const s = setup();
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.events).toEqual(["subscribe /shadow/get/pk/dev", "publish get"]);
  });
});
