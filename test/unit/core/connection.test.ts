import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConnectionMachine } from "../../../src/core/connection.js";
import type { ConnectionState } from "../../../src/core/types.js";
import { captureLogger } from "../../helpers/cloud.js";

describe("ConnectionMachine", () => {
  beforeEach(() => void vi.useFakeTimers({ now: 0 }));
  afterEach(() => void vi.useRealTimers());

  function machine() {
    const { logger, records } = captureLogger();
    const seen: ConnectionState[] = [];
    const m = new ConnectionMachine(
      {
        reconnectMinMs: 100,
        reconnectMaxMs: 1000,
        fields: () => ({ source: "plc1" }),
        onChange: (s) => seen.push(s),
        random: () => 1, // the longest delay of each step
      },
      logger,
    );
    return { m, records, seen };
  }

  it("logs each transition once, with the owner's fields, a warning for backoff", () => {
    const { m, records, seen } = machine();
    m.to("connecting");
    m.to("connecting");
    m.to("online");
    expect(seen).toEqual(["connecting", "online"]);
    expect(records.map((r) => [r.level, r.source, r.from, r.to])).toEqual([
      [30, "plc1", "disconnected", "connecting"],
      [30, "plc1", "connecting", "online"],
    ]);
    m.retry("reset by peer", () => undefined);
    expect(records.at(-1)).toMatchObject({ level: 40, to: "backoff", reason: "reset by peer" });
  });

  it("reconnects after a delay that doubles until the connection proves itself", async () => {
    const { m, records } = machine();
    const attempts: number[] = [];
    const fail = (): void =>
      m.retry("refused", () => {
        attempts.push(Date.now());
        m.to("connecting");
      });
    fail();
    await vi.advanceTimersByTimeAsync(100);
    fail();
    await vi.advanceTimersByTimeAsync(200);
    expect(attempts).toEqual([100, 300]);
    expect(records.filter((r) => r.to === "backoff").map((r) => r.retryInMs)).toEqual([100, 200]);
    m.proven();
    fail();
    expect(records.at(-1)?.retryInMs).toBe(100);
  });

  it("stopping cancels a pending reconnect and refuses new ones", async () => {
    const { m, seen } = machine();
    const reconnect = vi.fn();
    m.retry("refused", reconnect);
    m.stopping();
    m.retry("refused again", reconnect);
    await vi.advanceTimersByTimeAsync(5000);
    expect(reconnect).not.toHaveBeenCalled();
    m.stopped();
    expect(seen).toEqual(["backoff", "stopping", "disconnected"]);
  });
});
