import { EventEmitter } from "node:events";
import { afterEach, beforeEach, expect, vi } from "vitest";
import { type Logger } from "../../../src/core/logger.js";
import { testLogger } from "../../helpers/logs.js";
import type { JsonObject, JsonValue } from "../../../src/core/types.js";
import { alibabaDialect } from "../../../src/north/dialects/alibaba/index.js";
import type { DeviceSession, Dialect, JournalRecord } from "../../../src/north/dialect.js";
import type { CommandResult, SyncHooks } from "../../../src/north/hooks.js";
import type { LinkEvents } from "../../../src/north/link.js";
import { SyncEngine } from "../../../src/north/sync.js";
import { openDatabase } from "../../../src/store/database.js";
import { Outbox } from "../../../src/store/outbox.js";
import { controlMessage } from "../../helpers/cloud.js";

/**
 * The sync engine against a scripted cloud, for the unit tests of the request pump, the desired
 * runner and the session step: the test sees every publish and writes every reply.
 */

/** A link whose "cloud" is the test: it sees every publish and writes every reply. */
export class ScriptedLink extends EventEmitter<LinkEvents> {
  online = false;
  subscribed: string[] = [];
  sent: Array<{ topic: string; msg: Record<string, unknown> }> = [];
  /** Subscribes and publishes in order, for tests of what comes before what. */
  events: string[] = [];
  async subscribe(topics: readonly string[]): Promise<void> {
    this.subscribed.push(...topics);
    this.events.push(`subscribe ${topics.join(" ")}`);
  }
  async publish(topic: string, payload: string): Promise<void> {
    const msg = JSON.parse(payload) as Record<string, unknown>;
    this.sent.push({ topic, msg });
    this.events.push(`publish ${String(msg.method)}`);
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

export const success = (token: unknown, version: number, extra: Record<string, unknown> = {}) => ({
  method: "reply",
  payload: { status: "success", version, ...extra },
  version,
  timestamp: 1,
  clientToken: token,
});
export const failure = (token: unknown, code: number) => ({
  method: "reply",
  payload: { status: "error", content: { errorcode: String(code), errormessage: "x" } },
  timestamp: 1,
  clientToken: token,
});
export const getReply = (token: unknown, version: number, desired: JsonObject = {}, ts = 100) =>
  success(token, version, {
    state: { desired, reported: {} },
    metadata: {
      desired: Object.fromEntries(Object.keys(desired).map((k) => [k, { timestamp: ts }])),
    },
  });
export const control = (version: number, desired: JsonObject, ts: number) =>
  controlMessage(version, desired, ts);

export interface SetupOptions {
  devices?: string[];
  /** Awaited by every execution, so that a test can hold commands in the middle. */
  gate?: () => Promise<void>;
  minIntervalMs?: number;
  dialect?: Dialect;
  log?: Logger;
  session?: DeviceSession;
}

export function setup({
  devices = ["dev"],
  gate,
  minIntervalMs = 0,
  dialect = alibabaDialect,
  log = testLogger(),
  session,
}: SetupOptions = {}) {
  const edge: JsonObject = { temp: 20, on: true };
  const link = new ScriptedLink();
  const executed: Array<{ device: string; point: string; value: JsonValue; resume?: boolean }> = [];
  const journal = new Map<string, JournalRecord & { status: string }>();
  const outbox = new Outbox(
    openDatabase(":memory:"),
    { maxAgeMs: 86_400_000, maxBytes: 1 << 30 },
    testLogger(),
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
      ...(session && { session: () => session }),
    },
    log,
  );
  return { link, sync, executed, edge, journal, outbox };
}

export type Scripted = ReturnType<typeof setup>;

/** A poll cycle's report: staged, then made durable by the flush that ends the cycle. */
export function report(s: Scripted, device: string, reported: JsonObject): void {
  Object.assign(s.edge, reported);
  s.sync.report(device, reported);
  s.sync.flush();
}

/** Connects and answers the initial get with `version`; returns the first full report. */
export async function connect(s: Scripted, version = 5) {
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
export async function refreshed(s: Scripted, version: number): Promise<void> {
  const [get] = s.link.take();
  expect(get?.msg).toMatchObject({ method: "get" });
  s.link.deliver("dev", getReply(get?.msg.clientToken, version));
  await vi.advanceTimersByTimeAsync(0);
}

/** Connected, and the first report acknowledged: the cloud is at version 6. */
export async function synced(s: Scripted): Promise<void> {
  const first = await connect(s, 5);
  s.link.deliver("dev", success(first?.msg.clientToken, 6));
}

/** Fake timers from 0 for every test of the file. */
export function useFakeClock(): void {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}
