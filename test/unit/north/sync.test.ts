import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { silentLogger, type Logger } from "../../../src/core/logger.js";
import { captureLogger, controlMessage } from "../../helpers/cloud.js";
import type { JsonObject, JsonValue } from "../../../src/core/types.js";
import { alibabaDialect } from "../../../src/north/dialects/alibaba/index.js";
import type { Dialect } from "../../../src/north/dialect.js";
import type { LinkEvents } from "../../../src/north/link.js";
import { openDatabase } from "../../../src/store/database.js";
import { Outbox } from "../../../src/store/outbox.js";
import {
  SyncEngine,
  type CommandResult,
  type JournalRecord,
  type SyncHooks,
} from "../../../src/north/sync.js";

/** A link whose "cloud" is the test: it sees every publish and writes every reply. */
class ScriptedLink extends EventEmitter<LinkEvents> {
  online = false;
  subscribed: string[] = [];
  sent: Array<{ topic: string; msg: Record<string, unknown> }> = [];
  async subscribe(topics: readonly string[]): Promise<void> {
    this.subscribed.push(...topics);
  }
  async publish(topic: string, payload: string): Promise<void> {
    this.sent.push({ topic, msg: JSON.parse(payload) as Record<string, unknown> });
  }
  up(): void {
    this.online = true;
    this.emit("online");
  }
  down(): void {
    this.online = false;
    this.emit("offline", "test");
  }
  deliver(dn: string, msg: unknown): void {
    this.emit(
      "message",
      `/shadow/get/pk/${dn}`,
      Buffer.from(typeof msg === "string" ? msg : JSON.stringify(msg)),
    );
  }
  /** Takes the messages sent so far. */
  take(): Array<{ topic: string; msg: Record<string, unknown> }> {
    return this.sent.splice(0);
  }
}

const success = (token: unknown, version: number, extra: Record<string, unknown> = {}) => ({
  method: "reply",
  payload: { status: "success", version, ...extra },
  version,
  timestamp: 1,
  clientToken: token,
});
const failure = (token: unknown, code: number) => ({
  method: "reply",
  payload: { status: "error", content: { errorcode: String(code), errormessage: "x" } },
  timestamp: 1,
  clientToken: token,
});
const getReply = (token: unknown, version: number, desired: JsonObject = {}, ts = 100) =>
  success(token, version, {
    state: { desired, reported: {} },
    metadata: {
      desired: Object.fromEntries(Object.keys(desired).map((k) => [k, { timestamp: ts }])),
    },
  });
const control = (version: number, desired: JsonObject, ts: number) =>
  controlMessage(version, desired, ts);

function setup(
  devices = ["dev"],
  gate?: () => Promise<void>,
  minIntervalMs = 0,
  dialect: Dialect = alibabaDialect,
  log: Logger = silentLogger(),
) {
  const edge: JsonObject = { temp: 20, on: true };
  const link = new ScriptedLink();
  const executed: Array<{ device: string; point: string; value: JsonValue; resume?: boolean }> = [];
  const journal = new Map<string, JournalRecord & { status: string }>();
  const outbox = new Outbox(
    openDatabase(":memory:"),
    { maxAgeMs: 86_400_000, maxBytes: 1 << 30 },
    silentLogger(),
  );
  const hooks: SyncHooks = {
    // The edge shadow: what polls reported last.
    snapshot: () => edge,
    pointNames: () => ["temp", "on", "setpoint", "alarm.ack"],
    execute: async (device, point, value, opts): Promise<CommandResult> => {
      executed.push({ device, point, value, ...(opts.resume && { resume: true }) });
      await gate?.();
      if (typeof value === "number" && value > 100)
        return { status: "rejected", reason: "above max" };
      return { status: "applied", value };
    },
    backlog: outbox,
    journal: {
      last: (pk, dn, point) => journal.get(`${pk}/${dn}/${point}`),
      record: (pk, dn, point, e) => void journal.set(`${pk}/${dn}/${point}`, e),
      forget: (pk, dn, point) => void journal.delete(`${pk}/${dn}/${point}`),
    },
  };
  const sync = new SyncEngine(
    link,
    dialect,
    devices.map((deviceName) => ({ productKey: "pk", deviceName })),
    hooks,
    {
      sendWindowMs: 100,
      minIntervalMs,
      maxInFlight: 5,
      replyTimeoutMs: 5000,
      conflictRetries: 3,
    },
    log,
  );
  return { link, sync, executed, edge, journal, outbox };
}

/** A poll cycle's report: staged, then made durable by the flush that ends the cycle. */
function report(s: ReturnType<typeof setup>, device: string, reported: JsonObject): void {
  Object.assign(s.edge, reported);
  s.sync.report(device, reported);
  s.sync.flush();
}

/** Connects and answers the initial get with `version`; returns the first full report. */
async function connect(s: ReturnType<typeof setup>, version = 5) {
  s.link.up();
  await vi.advanceTimersByTimeAsync(0);
  const [get] = s.link.take();
  expect(get?.msg).toMatchObject({ method: "get" });
  s.link.deliver("dev", getReply(get?.msg.clientToken, version));
  await vi.advanceTimersByTimeAsync(0);
  const [report] = s.link.take();
  return report;
}

/**
 * A control push with a later version makes the engine learn the cloud's version with a get
 * (it does not take the push's): answers that get with `version`.
 */
async function refreshed(s: ReturnType<typeof setup>, version: number): Promise<void> {
  const [get] = s.link.take();
  expect(get?.msg).toMatchObject({ method: "get" });
  s.link.deliver("dev", getReply(get?.msg.clientToken, version));
  await vi.advanceTimersByTimeAsync(0);
}

/** Connected, and the first report acknowledged: the cloud is at version 6. */
async function synced(s: ReturnType<typeof setup>): Promise<void> {
  const first = await connect(s, 5);
  s.link.deliver("dev", success(first?.msg.clientToken, 6));
}

describe("SyncEngine (Alibaba dialect, scripted cloud)", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("subscribes first, gets every shadow, then pushes the whole reported state with version + 1", async () => {
    const s = setup(["a", "b"]);
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

  it("executes a control push once, reports the outcome under _commands and clears desired", async () => {
    const s = setup();
    const first = await connect(s, 5);
    s.link.deliver("dev", success(first?.msg.clientToken, 6));
    s.link.deliver("dev", control(7, { setpoint: 55, alarm: { ack: true } }, 1000));
    s.link.deliver("dev", control(7, { setpoint: 55, alarm: { ack: true } }, 1000)); // QoS 1 redelivery
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed).toEqual([
      { device: "dev", point: "setpoint", value: 55 },
      { device: "dev", point: "alarm.ack", value: true },
    ]);
    await refreshed(s, 7);
    // The outcome goes up first, so the cloud sees the read-back at once; then desired clears.
    const [outcome] = s.link.take();
    expect(outcome?.msg).toMatchObject({
      version: 8,
      state: {
        reported: {
          _commands: {
            setpoint: { status: "applied", ts: 1000, version: 7, value: 55 },
            "alarm.ack": { status: "applied", ts: 1000, version: 7, value: true },
          },
        },
      },
    });
    s.link.deliver("dev", success(outcome?.msg.clientToken, 8));
    await vi.advanceTimersByTimeAsync(0);
    const [clear] = s.link.take();
    expect(clear?.msg).toEqual({
      method: "update",
      state: { desired: "null" },
      version: 9,
      clientToken: expect.any(String),
    });
    expect(s.sync.stats.duplicateCommands).toBe(2);
  });

  it("journals the intent before the write, and resumes a command a crash cut short", async () => {
    const s = setup();
    // What a gateway killed between the write and its outcome leaves behind.
    s.journal.set("pk/dev/setpoint", { ts: 1000, version: 7, value: "55", status: "executing" });
    const first = await connect(s, 8);
    s.link.deliver("dev", success(first?.msg.clientToken, 9));
    s.link.deliver("dev", control(10, { setpoint: 55, on: false }, 1000));
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed).toEqual([
      { device: "dev", point: "setpoint", value: 55, resume: true },
      { device: "dev", point: "on", value: false },
    ]);
    expect(s.journal.get("pk/dev/setpoint")).toMatchObject({ status: "applied", value: "55" });
  });

  it("runs a second command with the same whole-second timestamp when its version is later", async () => {
    const s = setup();
    await synced(s);
    s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
    s.link.deliver("dev", control(9, { setpoint: 60 }, 1000));
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed.map((e) => e.value)).toEqual([50, 60]);
  });

  it("after a reconnect, executes only desired values newer than the last execution", async () => {
    const s = setup();
    await synced(s);
    s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    s.link.down();
    s.link.take();
    s.link.up();
    await vi.advanceTimersByTimeAsync(0);
    const [get] = s.link.take().filter((m) => m.msg.method === "get");
    // The clear was lost with the link: the cloud still offers setpoint 50, plus a new command.
    s.link.deliver("dev", {
      ...getReply(get?.msg.clientToken, 8, { setpoint: 50, on: false }),
      payload: {
        status: "success",
        version: 8,
        state: { desired: { setpoint: 50, on: false }, reported: {} },
        metadata: { desired: { setpoint: { timestamp: 1000 }, on: { timestamp: 1005 } } },
      },
    });
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed.map((e) => [e.point, e.value])).toEqual([
      ["setpoint", 50],
      ["on", false],
    ]);
  });

  it("reports a rejected command and still clears desired", async () => {
    const s = setup();
    await synced(s);
    s.link.deliver("dev", control(7, { setpoint: 500 }, 1000));
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    await refreshed(s, 7);
    const [outcome] = s.link.take();
    expect(outcome?.msg.state).toEqual({
      reported: {
        _commands: { setpoint: { status: "rejected", reason: "above max", ts: 1000, version: 7 } },
      },
    });
    s.link.deliver("dev", success(outcome?.msg.clientToken, 8));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.link.take()[0]?.msg.state).toEqual({ desired: "null" });
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

  describe("found by the fault-injection suite", () => {
    /** Executions that wait until the test lets them finish, one at a time. */
    function gated() {
      const waiting: Array<() => void> = [];
      const gate = () => new Promise<void>((resolve) => waiting.push(resolve));
      const release = async () => {
        waiting.shift()?.();
        await vi.advanceTimersByTimeAsync(0);
      };
      return {
        gate,
        release,
        get waiting() {
          return waiting.length;
        },
      };
    }

    it("does not run a command again when a later push carries it along", async () => {
      const s = setup();
      await synced(s);
      s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      // Another attribute set before the clear went out: the push carries setpoint again,
      // with the same timestamp and the later version.
      s.link.deliver("dev", control(9, { setpoint: 50, on: false }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed.map((e) => [e.point, e.value])).toEqual([
        ["setpoint", 50],
        ["on", false],
      ]);
    });

    it("clears desired ahead of further reports once the outcome is acknowledged", async () => {
      const s = setup();
      await synced(s);
      s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      await refreshed(s, 7);
      const [outcome] = s.link.take();
      expect(outcome?.msg.state).toMatchObject({ reported: { _commands: { setpoint: {} } } });
      // The device keeps changing: a report is always due when the outcome is acknowledged.
      report(s, "dev", { temp: 21 });
      s.link.deliver("dev", success(outcome?.msg.clientToken, 8));
      await vi.advanceTimersByTimeAsync(0);
      const [clear] = s.link.take();
      expect(clear?.msg).toMatchObject({ state: { desired: "null" }, version: 9 });
      s.link.deliver("dev", success(clear?.msg.clientToken, 9));
      await vi.advanceTimersByTimeAsync(100);
      expect(s.link.take()[0]?.msg).toMatchObject({ state: { reported: { temp: 21 } } });
    });

    it("never clears desired while a received command still waits for its turn", async () => {
      const g = gated();
      const s = setup(["dev"], g.gate);
      const first = await connect(s, 5);
      s.link.deliver("dev", success(first?.msg.clientToken, 6));
      s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      // A second command arrives while the first is being written.
      s.link.deliver("dev", control(9, { setpoint: 50, on: false }, 1000));
      await g.release(); // setpoint done; "on" now waits for the device
      await refreshed(s, 9);
      const [outcome] = s.link.take();
      expect(outcome?.msg.state).toMatchObject({ reported: { _commands: { setpoint: {} } } });
      s.link.deliver("dev", success(outcome?.msg.clientToken, 10));
      await vi.advanceTimersByTimeAsync(1000);
      // A clear now would remove "on" from the cloud before it ran; a SIGKILL would lose it.
      expect(s.link.take()).toEqual([]);
      await g.release();
      await s.sync.idle();
      const [second] = s.link.take();
      expect(second?.msg.state).toMatchObject({ reported: { _commands: { on: {} } } });
      s.link.deliver("dev", success(second?.msg.clientToken, 11));
      await vi.advanceTimersByTimeAsync(0);
      expect(s.link.take()[0]?.msg).toMatchObject({ state: { desired: "null" }, version: 12 });
      expect(s.executed.map((e) => e.point)).toEqual(["setpoint", "on"]);
    });

    it("after a restart, clears desired only once the outcomes left in the outbox are in the cloud", async () => {
      // A rate limit of one request a minute, so that the report waits for a token while the
      // desired batch runs and asks for the clear.
      const s = setup(["dev"], undefined, 60_000);
      // What a gateway SIGKILLed after executing setpoint 50, before sending its outcome, left.
      s.journal.set("pk/dev/setpoint", { ts: 1000, version: 7, value: "50", status: "applied" });
      s.outbox.stage("pk", "dev", {
        _commands: { setpoint: { status: "applied", ts: 1000, version: 7, value: 50 } },
      });
      s.outbox.flush();
      s.link.up();
      await vi.advanceTimersByTimeAsync(0);
      // Two gets go unanswered (reply timeouts): they use up the burst of the rate limit.
      await vi.advanceTimersByTimeAsync(10_000);
      const gets = s.link.take();
      expect(gets.map((m) => m.msg.method)).toEqual(["get", "get", "get"]);
      // The clear was never sent: the cloud still offers the command.
      s.link.deliver("dev", getReply(gets[2]?.msg.clientToken, 8, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed).toEqual([]);
      /** The next request, once the rate limit lets it out (answered before it times out). */
      const next = async () => {
        for (let i = 0; i < 120 && s.link.sent.length === 0; i++) {
          await vi.advanceTimersByTimeAsync(1000);
        }
        return s.link.take()[0];
      };
      // The outcome first: a clear first would let the next command for the point come and
      // be merged with this one's outcome, which the cloud would then never see.
      const first = await next();
      expect(first?.msg.state).toMatchObject({
        reported: { _commands: { setpoint: { status: "applied", value: 50 } } },
      });
      s.link.deliver("dev", success(first?.msg.clientToken, 9));
      expect((await next())?.msg).toMatchObject({ state: { desired: "null" }, version: 10 });
    });

    it("makes each outcome durable before the journal says done, not at the end of the batch", async () => {
      const g = gated();
      const s = setup(["dev"], g.gate);
      // What the outbox holds at the moment the journal marks each command done.
      const atDone: Array<JsonObject | undefined> = [];
      const set = s.journal.set.bind(s.journal);
      s.journal.set = (key, entry) => {
        if (entry.status !== "executing") atDone.push(s.outbox.pending("pk", "dev")?.reported);
        return set(key, entry);
      };
      await synced(s);
      s.link.deliver("dev", control(7, { setpoint: 50, on: false }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await g.release(); // setpoint written and journaled; "on" is being written
      expect(s.journal.get("pk/dev/setpoint")?.status).toBe("applied");
      // A SIGKILL after the journal said done finds the outcome in the outbox.
      expect(atDone).toEqual([
        { _commands: { setpoint: { status: "applied", ts: 1000, version: 7, value: 50 } } },
      ]);
      await g.release();
      await s.sync.idle();
      expect(atDone[1]).toMatchObject({ _commands: { on: { status: "applied", value: false } } });
    });
  });
  describe("found with hostile input (issue 10)", () => {
    it("a refused command does not move the point's last-executed mark", async () => {
      const s = setup();
      s.journal.set("pk/dev/setpoint", { ts: 1000, version: 7, value: "50", status: "applied" });
      await synced(s);
      // Out of range, stamped an hour ahead of the gateway's clock (which is at 0 here).
      s.link.deliver("dev", control(7, { setpoint: 500, on: true }, 3600));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.journal.get("pk/dev/setpoint")).toEqual({
        ts: 1000,
        version: 7,
        value: "50",
        status: "applied",
      });
      // A point with no command before: the refusal leaves none either.
      s.link.deliver("dev", control(8, { on: 500 }, 3600));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.journal.has("pk/dev/on")).toBe(true); // "on: true" above was applied
      s.journal.delete("pk/dev/on");
      s.link.deliver("dev", control(9, { on: 700 }, 3601));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.journal.has("pk/dev/on")).toBe(false);
      // A real command now, stamped before the refused one: it runs.
      s.link.deliver("dev", control(10, { setpoint: 60 }, 1001));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed.map((e) => [e.point, e.value])).toEqual([
        ["setpoint", 500],
        ["on", true],
        ["on", 500],
        ["on", 700],
        ["setpoint", 60],
      ]);
      expect(s.journal.get("pk/dev/setpoint")).toMatchObject({ ts: 1001, value: "60" });
      expect(s.sync.stats.commands).toEqual({ applied: 2, rejected: 3, failed: 0 });
    });

    it("a redelivered refusal is a duplicate, not a second outcome", async () => {
      const s = setup();
      await synced(s);
      s.link.deliver("dev", control(7, { setpoint: 500 }, 1000));
      s.link.deliver("dev", control(7, { setpoint: 500 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed).toHaveLength(1);
      expect(s.sync.stats).toMatchObject({
        duplicateCommands: 1,
        commands: { applied: 0, rejected: 1, failed: 0 },
      });
    });

    it.each([
      ["a day and a minute", 86_460],
      ["ten years", 315_360_000],
      ["2^53 seconds", 2 ** 53],
    ])(
      "refuses a desired value stamped %s ahead, without a write or a journal entry",
      async (_what, ts) => {
        const { logger, records } = captureLogger();
        const s = setup(["dev"], undefined, 0, alibabaDialect, logger);
        await synced(s);
        s.link.deliver("dev", control(7, { setpoint: 55 }, ts));
        s.link.deliver("dev", control(8, { setpoint: 56 }, ts));
        await vi.advanceTimersByTimeAsync(0);
        await s.sync.idle();
        expect(s.executed).toEqual([]);
        expect(s.journal.has("pk/dev/setpoint")).toBe(false);
        await refreshed(s, 8);
        const [outcome] = s.link.take();
        expect(outcome?.msg.state).toMatchObject({
          reported: {
            _commands: {
              setpoint: {
                status: "rejected",
                ts,
                reason: expect.stringMatching(/ahead of the gateway's clock .*NTP/),
              },
            },
          },
        });
        // Logged once, however many come.
        expect(records.filter((r) => r.code === "SG_SHADOW_BAD_MESSAGE")).toHaveLength(1);
        // The next real command runs.
        s.link.deliver("dev", success(outcome?.msg.clientToken, 9));
        s.link.deliver("dev", control(10, { setpoint: 57 }, 1002));
        await vi.advanceTimersByTimeAsync(0);
        await s.sync.idle();
        expect(s.executed).toEqual([{ device: "dev", point: "setpoint", value: 57 }]);
      },
    );

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
      const s = setup(["dev"], undefined, 0, dialect, logger);
      s.link.up();
      await vi.advanceTimersByTimeAsync(0);
      expect(s.link.take()).toEqual([]);
      expect(records.filter((r) => r.code === "SG_INTERNAL")).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(5000);
      expect(s.link.take()[0]?.msg).toMatchObject({ method: "get" });
    });

    it("a batch of desired values that throws does not stop later batches", async () => {
      const s = setup();
      await synced(s);
      const last = s.journal.get.bind(s.journal);
      let broken = true;
      s.journal.get = (key) => {
        if (broken) throw new Error("disk I/O error");
        return last(key);
      };
      s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      broken = false;
      s.link.deliver("dev", control(8, { setpoint: 51 }, 1001));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed.map((e) => e.value)).toEqual([51]);
    });
  });
});
