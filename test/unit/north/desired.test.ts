import { describe, expect, it, vi } from "vitest";
import type { JsonObject } from "../../../src/core/types.js";
import { alibabaDialect } from "../../../src/north/dialects/alibaba/index.js";
import type { Dialect } from "../../../src/north/dialect.js";
import { captureLogger } from "../../helpers/cloud.js";
import {
  connect,
  control,
  getReply,
  refreshed,
  report,
  setup,
  success,
  synced,
  useFakeClock,
} from "./scripted-cloud.js";

/** The desired runner (src/north/desired.ts) through the engine, against a scripted cloud. */
describe("desired runner (Alibaba dialect, scripted cloud)", () => {
  useFakeClock();

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

  it("asks the dialect whether a desired value is a new command", async () => {
    // A rule by version alone, as AWS orders desired.
    const dialect: Dialect = {
      ...alibabaDialect,
      isNewCommand: (last, offered) => last === undefined || offered.version > last.version,
    };
    const s = setup({ dialect });
    await synced(s);
    s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
    // Alibaba's rule would take these for duplicates (same second, same value).
    s.link.deliver("dev", control(8, { setpoint: 50 }, 1000));
    // ... and this one for a new command (a later timestamp), the version rule not.
    s.link.deliver("dev", control(8, { setpoint: 51 }, 1001));
    await vi.advanceTimersByTimeAsync(0);
    await s.sync.idle();
    expect(s.executed.map((e) => e.value)).toEqual([50, 50]);
    expect(s.sync.stats.duplicateCommands).toBe(1);
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
      const s = setup({ gate: g.gate });
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
      const s = setup({ minIntervalMs: 60_000 });
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
      const s = setup({ gate: g.gate });
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
        const s = setup({ log: logger });
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

  describe("local commands (the local API)", () => {
    it("journals a local command, marks its outcome local, and outranks older cloud values", async () => {
      const s = setup();
      await synced(s);
      s.link.deliver("dev", control(7, { setpoint: 50 }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      vi.setSystemTime(2_000_500); // 2000.5 s: stamped 2000 in Alibaba's seconds
      const outcome = await s.sync.local("dev", "setpoint", 60);
      expect(outcome).toEqual({
        status: "applied",
        ts: 2000,
        version: 7,
        value: 60,
        source: "local",
      });
      expect(s.journal.get("pk/dev/setpoint")).toEqual({
        ts: 2000,
        version: 7,
        value: "60",
        status: "applied",
      });
      expect(s.outbox.pending("pk", "dev")?.reported).toMatchObject({
        _commands: { setpoint: outcome },
      });
      // The cloud's older value, offered again after a reconnect, does not undo it; a newer one runs.
      s.link.deliver("dev", control(8, { setpoint: 50 }, 1000));
      s.link.deliver("dev", control(9, { setpoint: 70 }, 2001));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed.map((e) => [e.point, e.value])).toEqual([
        ["setpoint", 50],
        ["setpoint", 60],
        ["setpoint", 70],
      ]);
    });

    it("a refused local command puts the point's journal entry back and is reported", async () => {
      const s = setup();
      await synced(s);
      s.journal.set("pk/dev/setpoint", { ts: 1000, version: 7, value: "55", status: "applied" });
      vi.setSystemTime(2_000_000);
      const outcome = await s.sync.local("dev", "setpoint", 500);
      expect(outcome).toEqual({
        status: "rejected",
        ts: 2000,
        version: 7,
        reason: "above max",
        source: "local",
      });
      expect(s.journal.get("pk/dev/setpoint")).toEqual({
        ts: 1000,
        version: 7,
        value: "55",
        status: "applied",
      });
      // Refused locally is not refused for the cloud: the same value from it still runs.
      s.link.deliver("dev", control(8, { setpoint: 500 }, 1001));
      await vi.advanceTimersByTimeAsync(0);
      await s.sync.idle();
      expect(s.executed.map((e) => e.value)).toEqual([500, 500]);
    });

    it("runs behind the device's queued cloud commands, which show as desired pending", async () => {
      const waiting: Array<() => void> = [];
      const s = setup({ gate: () => new Promise<void>((resolve) => waiting.push(resolve)) });
      await synced(s);
      s.link.deliver("dev", control(7, { setpoint: 50, on: false }, 1000));
      await vi.advanceTimersByTimeAsync(0);
      expect(s.sync.desiredPending("dev")).toEqual({ setpoint: 50, on: false });
      const local = s.sync.local("dev", "setpoint", 40);
      while (waiting.length > 0 || s.executed.length < 3) {
        waiting.shift()?.();
        await vi.advanceTimersByTimeAsync(0);
      }
      expect((await local).status).toBe("applied");
      expect(s.executed.map((e) => [e.point, e.value])).toEqual([
        ["setpoint", 50],
        ["on", false],
        ["setpoint", 40],
      ]);
      expect(s.sync.desiredPending("dev")).toEqual({});
    });
  });
});
