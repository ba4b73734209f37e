/**
 * Hostile cloud messages into the sync engine, for each dialect (issue 17): structure-aware
 * generated messages (valid envelopes with wrong types, huge and deep nesting, unicode,
 * duplicate keys, versions at the integer limits, desired values for unmapped, read-only and
 * out-of-range points, replies for unknown tokens and for the gateway's own requests, link
 * drops, floods) delivered to the real SyncEngine, DesiredRunner and RequestPump, over the real
 * journal and outbox (SQLite), the real CommandExecutor and guard, and the real Modbus channel
 * of the boiler's mapping, whose driver is a register memory that records every write.
 *
 * After every generated sequence:
 * - no exception escaped (nothing thrown, nothing logged as SG_INTERNAL);
 * - every device write is one the guard passes: a mapped, writable point, a value within its
 *   min..max that some message offered for that point;
 * - the journal stays consistent: every write comes after its intent was journaled and before
 *   its outcome, and no command (point, timestamp, value) executes twice, nor one that is not
 *   new by the journal's rule (isNewByTimestamp) against the point's last execution.
 */
import { EventEmitter } from "node:events";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { pino } from "pino";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { ErrorCodes } from "../../src/core/errors.js";
import type { RawPoint, RawSample } from "../../src/core/samples.js";
import type { JsonObject, JsonValue } from "../../src/core/types.js";
import { CommandExecutor } from "../../src/daemon/commands.js";
import { decodeRegisters } from "../../src/mapping/codec.js";
import type { CompiledPoint, ModbusDevicePlan } from "../../src/mapping/types.js";
import { isNewByTimestamp, type Dialect, type JournalRecord } from "../../src/north/dialect.js";
import { alibabaDialect } from "../../src/north/dialects/alibaba/index.js";
import { awsDialect } from "../../src/north/dialects/aws/index.js";
import type { Journal } from "../../src/north/hooks.js";
import type { LinkEvents } from "../../src/north/link.js";
import { SyncEngine } from "../../src/north/sync.js";
import { EdgeShadow } from "../../src/shadow/edge-shadow.js";
import { modbusChannel } from "../../src/south/modbus/device-channel.js";
import type { ModbusDriver } from "../../src/south/modbus/modbus-driver.js";
import { openDatabase } from "../../src/store/database.js";
import { DesiredJournal } from "../../src/store/desired-journal.js";
import { Outbox } from "../../src/store/outbox.js";
import { fuzz, fuzzRun, LONG, regressionCases } from "./harness.js";

const root = path.resolve(import.meta.dirname, "../..");
const THING = "boiler-01";

/** Messages per generated sequence, and sequences per run: 10,000+ messages per dialect in CI. */
const MAX_MESSAGES = 45;
const CI_SEQUENCES = 700;
const LONG_SEQUENCES = 50_000;
/** A bound on the CI run (it takes seconds); the long run has none. */
const TIMEOUT = LONG ? 0 : 180_000;

// --- The generated input: JSON-serializable, so a failure is saved and replayed as it is. ---

/** One step of a sequence. */
type Step =
  /** A message on one of the device's inbound topics (or a stranger's). */
  | { readonly kind: "message"; readonly topic: number; readonly payload: string }
  /** A well-formed reply to the gateway's latest request, with generated contents. */
  | { readonly kind: "answer"; readonly body: JsonObject; readonly error?: number }
  /** The n-th message of the sequence again (MQTT QoS 1 delivers at least once). */
  | { readonly kind: "repeat"; readonly index: number }
  | { readonly kind: "link"; readonly up: boolean }
  | { readonly kind: "wait"; readonly ms: number };

const POINTS = [
  "targetTemperature",
  "running",
  "temperature",
  "state",
  "doorOpen",
  "flow",
  "alarm",
  "nope",
  "__proto__",
  "constructor",
  "täglich",
  "",
];

const numbers = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: false }),
  fc.constantFrom(
    0,
    -0,
    1,
    -1,
    60,
    65,
    72.5,
    80,
    120,
    120.1,
    121,
    1e308,
    -1e308,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    -(2 ** 53),
    Number.MAX_SAFE_INTEGER,
    0.1,
    1e-300,
  ),
);
const scalar: fc.Arbitrary<JsonValue> = fc.oneof(
  numbers,
  fc.boolean(),
  fc.constant(null),
  fc.string({ unit: "binary", maxLength: 12 }),
  fc.constantFrom("80", "idle", "heating", "true", "1e3", ""),
);
/** A desired value: mostly plausible, sometimes any JSON at all, sometimes deep. */
const desiredValue: fc.Arbitrary<JsonValue> = fc.oneof(
  { weight: 6, arbitrary: scalar },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<JsonValue> },
  { weight: 1, arbitrary: fc.constant({ overheat: true }) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 10, max: 300 }).map((n) => nest(n)),
  },
);
/**
 * Desired objects: mostly commands the guard may pass (the writable points, values in and just
 * out of range), so that the write path runs often; the rest anything at all.
 */
const plausible = fc.dictionary(
  fc.constantFrom("targetTemperature", "running", "temperature"),
  fc.constantFrom<JsonValue>(60, 65, 72.5, 80, 0, 120, 120.05, 121, -1, true, false, "80"),
  { minKeys: 1, maxKeys: 2 },
);
const desired = fc.oneof(
  { weight: 3, arbitrary: plausible },
  { weight: 2, arbitrary: fc.dictionary(fc.constantFrom(...POINTS), desiredValue, { maxKeys: 4 }) },
);
const timestamp: fc.Arbitrary<JsonValue> = fc.oneof(
  // Few distinct seconds, so that the same command (point, second, value) comes again often.
  { weight: 5, arbitrary: fc.integer({ min: 1_800_000_000, max: 1_800_000_003 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(0, -1, 2 ** 53, 1.5, 1_800_000_000_000, 9_999_999_999, "1", null),
  },
);
const version: fc.Arbitrary<JsonValue> = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 0, max: 60 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(-1, 2 ** 31, 2 ** 53, 2 ** 53 + 2, 1.5, "7", null, 1e308),
  },
);
const token: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.string({ maxLength: 70 }),
  fc.constantFrom(null, 1, "x".repeat(65), "00-1"),
);
/** Metadata for a desired object: a timestamp per key, sometimes wrong. */
const metadataFor = (d: JsonObject): fc.Arbitrary<JsonObject> =>
  fc
    .tuple(...Object.keys(d).map(() => timestamp), timestamp)
    .map((ts) => Object.fromEntries(Object.keys(d).map((k, i) => [k, { timestamp: ts[i] ?? 1 }])));

function nest(depth: number): JsonValue {
  let v: JsonValue = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

/** Text that is not quite JSON, or JSON the parsers may treat differently. */
const oddText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 50 }),
  fc.constantFrom(
    "",
    "null",
    "[]",
    "1",
    '"x"',
    "{",
    '{"method":"control","method":"reply"}',
    '{"state":{"desired":{"targetTemperature":70,"targetTemperature":500}},"version":3}',
    '{"payload":{"status":"success","state":{"desired":{"running":true}},"metadata":{"desired":{"running":{"timestamp":1800000001}}}},"method":"control","version":99,"version":1}',
    `${"[".repeat(5000)}${"]".repeat(5000)}`,
    `{"a":${"{".repeat(2000)}`,
    "\u0000\u0001\u0002",
    '{"__proto__":{"polluted":true}}',
  ),
  fc.integer({ min: 1, max: 3 }).map((k) => `{"pad":"${"x".repeat(k * 300_000)}"}`),
);

/** Alibaba bodies on /shadow/get/{pk}/{dn}. */
const alibabaBody: fc.Arbitrary<unknown> = fc.oneof(
  desired.chain((d) =>
    fc
      .record({
        ts: timestamp,
        meta: metadataFor(d),
        v: version,
        status: fc.constantFrom("success", "success", "success", "error", 1),
      })
      .map(({ meta, v, ts, status }) => ({
        method: "control",
        payload: { status, state: { desired: d }, metadata: { desired: meta } },
        version: v,
        timestamp: ts,
      })),
  ),
  fc.record({
    method: fc.constantFrom("reply", "control", "update", "get", "delete", 7),
    payload: fc.oneof(
      fc.record({ status: fc.constantFrom("success", "error", "", null), version }),
      fc.record({
        status: fc.constant("error"),
        content: fc.record({
          errorcode: fc.constantFrom("405", "409", "400", "x", 409),
          errormessage: fc.string(),
        }),
      }),
      fc.jsonValue({ maxDepth: 2 }),
    ),
    version,
    clientToken: token,
    timestamp,
  }),
  fc.jsonValue({ maxDepth: 3 }),
);

/** AWS bodies, for whichever of its topics the step names. */
const awsBody: fc.Arbitrary<unknown> = fc.oneof(
  desired.chain((d) =>
    fc
      .record({ meta: metadataFor(d), v: version, ts: timestamp, t: fc.option(token) })
      .map(({ meta, v, ts, t }) => ({
        state: { desired: d, reported: {}, delta: d, ...d },
        metadata: { desired: meta, ...meta },
        version: v,
        timestamp: ts,
        ...(t !== null && { clientToken: t }),
      })),
  ),
  fc.record({
    code: fc.constantFrom(400, 401, 403, 404, 409, 413, 429, 500, 503, "409", -1),
    message: fc.string(),
    clientToken: token,
  }),
  fc.jsonValue({ maxDepth: 3 }),
);

/** A reply to the gateway's own latest request: a get's document, an update's ack, an error. */
const answerBody: fc.Arbitrary<{ body: JsonObject; error?: number }> = fc.oneof(
  desired.chain((d) =>
    fc.record({ meta: metadataFor(d), v: version }).map(({ meta, v }) => ({
      body: { desired: d, meta, version: v },
    })),
  ),
  version.map((v) => ({ body: { version: v } })),
  fc.constantFrom(400, 404, 409, 413, 429, 500, 405, 407).map((error) => ({ body: {}, error })),
);

function steps(body: fc.Arbitrary<unknown>, topics: number): fc.Arbitrary<Step[]> {
  const step: fc.Arbitrary<Step> = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant("message" as const),
        topic: fc.nat({ max: topics - 1 }),
        payload: fc.oneof(
          { weight: 6, arbitrary: body.map((b) => JSON.stringify(b)) },
          { weight: 1, arbitrary: oddText },
        ),
      }),
    },
    {
      weight: 6,
      arbitrary: answerBody.map(({ body, error }): Step => ({
        kind: "answer",
        body,
        ...(error !== undefined && { error }),
      })),
    },
    { weight: 1, arbitrary: fc.boolean().map((up): Step => ({ kind: "link", up })) },
    {
      weight: 2,
      arbitrary: fc.nat({ max: MAX_MESSAGES }).map((index): Step => ({ kind: "repeat", index })),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(0, 50, 1000, 6000).map((ms): Step => ({ kind: "wait", ms })),
    },
  );
  return fc.array(step, { minLength: 10, maxLength: MAX_MESSAGES });
}

// --- The engine under test, and what it does to the device. ---

class FuzzLink extends EventEmitter<LinkEvents> {
  online = false;
  sent: Array<{ topic: string; body: Record<string, unknown> }> = [];
  async subscribe(): Promise<void> {}
  async publish(topic: string, payload: string): Promise<void> {
    this.sent.push({ topic, body: JSON.parse(payload) as Record<string, unknown> });
  }
}

interface Write {
  readonly point: CompiledPoint;
  readonly value: unknown;
  /** The journal's last record for the point when the write happened. */
  readonly journaled: (JournalRecord & { status: string }) | undefined;
}

interface DialectCase {
  readonly name: string;
  readonly dialect: Dialect;
  readonly plan: () => ModbusDevicePlan;
  /** The inbound topics a step may pick from (the device's own, and a stranger's). */
  readonly topics: (pk: string, dn: string) => string[];
  readonly body: fc.Arbitrary<unknown>;
  /** A reply to a request the gateway sent, in the dialect's envelope. */
  answer(
    request: { topic: string; body: Record<string, unknown> },
    a: { body: JsonObject; error?: number },
    pk: string,
    dn: string,
  ): { topic: string; payload: string };
}

const plans: Record<string, ModbusDevicePlan> = {};

async function loadPlan(dialect: "alibaba" | "aws"): Promise<ModbusDevicePlan> {
  const dir = await mkdtemp(path.join(tmpdir(), `sg-fuzz-${dialect}-`));
  await mkdir(path.join(dir, "mappings"));
  let mapping = await readFile(path.join(root, "mappings/boiler-01.yaml"), "utf8");
  if (dialect === "aws")
    mapping = mapping.replace(/^device: .*$/m, `device: { thingName: ${THING} }`);
  await writeFile(path.join(dir, "mappings", "boiler-01.yaml"), mapping);
  const cloud =
    dialect === "aws"
      ? "{ dialect: aws, url: 'mqtt://127.0.0.1:1', clientId: edge }"
      : "{ url: 'mqtt://127.0.0.1:1', productKey: a1Gateway, deviceName: edge-01 }";
  await writeFile(
    path.join(dir, "gateway.yaml"),
    `version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: 1 }\ncloud: ${cloud}\nmappings: ./mappings\n`,
  );
  const loaded = await loadConfig(path.join(dir, "gateway.yaml"));
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const [plan] = loaded.config.devices;
  if (!plan) throw new Error("no device");
  return plan as ModbusDevicePlan;
}

const alibaba: DialectCase = {
  name: "alibaba",
  dialect: alibabaDialect,
  plan: () => plans.alibaba as ModbusDevicePlan,
  topics: (pk, dn) => [`/shadow/get/${pk}/${dn}`, `/shadow/get/${pk}/other`, "/shadow/get", "#"],
  body: alibabaBody,
  answer(request, a, pk, dn) {
    const token = request.body.clientToken;
    const payload = a.error
      ? { status: "error", content: { errorcode: String(a.error), errormessage: "x" } }
      : {
          status: "success",
          version: a.body.version,
          ...(request.body.method === "get" && {
            state: { desired: a.body.desired ?? {}, reported: {} },
            metadata: { desired: a.body.meta ?? {} },
          }),
        };
    return {
      topic: `/shadow/get/${pk}/${dn}`,
      payload: JSON.stringify({
        method: "reply",
        payload,
        version: a.body.version,
        timestamp: 1,
        clientToken: token,
      }),
    };
  },
};

const aws: DialectCase = {
  name: "aws",
  dialect: awsDialect,
  plan: () => plans.aws as ModbusDevicePlan,
  topics: (_pk, dn) => {
    const p = `$aws/things/${dn}/shadow`;
    return [
      `${p}/update/delta`,
      `${p}/get/accepted`,
      `${p}/get/rejected`,
      `${p}/update/accepted`,
      `${p}/update/rejected`,
      `${p}/delete/accepted`,
      `${p}/update/documents`,
      `$aws/things/other/shadow/update/delta`,
      `${p}/name/x/update/delta`,
    ];
  },
  body: awsBody,
  answer(request, a) {
    const op = request.topic.endsWith("/get") ? "get" : "update";
    const base = request.topic;
    const token = request.body.clientToken;
    if (a.error)
      return {
        topic: `${base}/rejected`,
        payload: JSON.stringify({ code: a.error, message: "x", clientToken: token }),
      };
    return {
      topic: `${base}/accepted`,
      payload: JSON.stringify({
        state:
          op === "get"
            ? { desired: a.body.desired ?? {}, reported: {} }
            : (request.body.state ?? {}),
        metadata: op === "get" ? { desired: a.body.meta ?? {} } : {},
        version: a.body.version,
        timestamp: 1,
        clientToken: token,
      }),
    };
  },
};

interface Outcome {
  readonly internal: string[];
  readonly writes: readonly Write[];
  readonly offered: ReadonlyMap<string, unknown[]>;
  readonly problems: string[];
}

/** Every desired value a payload offers, by top-level point name (and `alarm.overheat`). */
function collectOffered(payload: unknown, into: Map<string, unknown[]>): void {
  const visit = (v: unknown, depth: number): void => {
    if (depth > 12 || v === null || typeof v !== "object") return;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const list = into.get(k) ?? [];
      list.push(x);
      into.set(k, list);
      if (k === "alarm" && x && typeof x === "object")
        into.set("alarm.overheat", [
          ...(into.get("alarm.overheat") ?? []),
          (x as JsonObject).overheat,
        ]);
      visit(x, depth + 1);
    }
  };
  visit(payload, 0);
}

async function runSequence(c: DialectCase, seq: readonly Step[]): Promise<Outcome> {
  const plan = c.plan();
  const { productKey: pk, deviceName: dn } = plan;
  const internal: string[] = [];
  const problems: string[] = [];
  const log = pino(
    { level: "error" },
    {
      write: (line: string) => {
        const r = JSON.parse(line) as { code?: string; msg?: string; err?: { message?: string } };
        if (r.code === ErrorCodes.INTERNAL) internal.push(`${r.msg}: ${r.err?.message ?? ""}`);
      },
    },
  );
  // The device: a register memory behind the real Modbus channel, every write recorded.
  const memory = new Map<string, number>();
  for (const p of plan.points) {
    const init = p.name === "targetTemperature" ? [600] : new Array<number>(p.count).fill(0);
    init.forEach((w, i) => memory.set(`${p.table}:${p.address + i}`, w));
  }
  const writes: Write[] = [];
  const db = openDatabase(":memory:");
  const real = new DesiredJournal(db);
  const driver = {
    async read(req: { points: readonly RawPoint[] }): Promise<RawSample[]> {
      return req.points.map((p) => ({
        key: p.key,
        quality: { status: "good" },
        data: Array.from(
          { length: p.count },
          (_, i) => memory.get(`${p.table}:${p.address + i}`) ?? 0,
        ),
        ts: Date.now(),
      }));
    },
    async write(_unit: number, p: RawPoint, data: readonly number[]): Promise<void> {
      const point = plan.points.find((x) => x.table === p.table && x.address === p.address);
      if (!point) {
        problems.push(`a write to ${p.table} ${p.address}, which no point maps`);
        return;
      }
      const value =
        point.table === "coil" || point.table === "discreteInput"
          ? data[0] === 1
          : decodeRegisters(point.codec, data);
      writes.push({ point, value, journaled: real.last(pk, dn, point.name) });
      data.forEach((w, i) => memory.set(`${p.table}:${p.address + i}`, w));
    },
  } as unknown as ModbusDriver;
  const channel = modbusChannel(plan, driver);
  const shadow = new EdgeShadow([plan]);
  const executor = new CommandExecutor(new Map([[dn, plan]]), () => channel, shadow, log);
  // The journal as the engine uses it, with each record checked as it is made.
  const completed = new Map<string, Array<JournalRecord & { status: string }>>();
  const journal: Journal = {
    last: (p, d, point) => real.last(p, d, point),
    record: (p, d, point, e) => {
      if (e.status === "executing") {
        const done = completed.get(point) ?? [];
        if (done.some((x) => x.ts === e.ts && x.value === e.value))
          problems.push(`${point} ${e.value}@${e.ts} executed a second time`);
        const prev = done[done.length - 1];
        if (prev && !isNewByTimestamp(prev, e))
          problems.push(`${point} ${e.value}@${e.ts} is not new after ${prev.value}@${prev.ts}`);
      } else if (e.status === "applied" || e.status === "failed") {
        completed.set(point, [...(completed.get(point) ?? []), e]);
      }
      real.record(p, d, point, e);
    },
    forget: (p, d, point) => real.forget(p, d, point),
  };
  const outbox = new Outbox(db, { maxAgeMs: 86_400_000, maxBytes: 1 << 30 }, log);
  const link = new FuzzLink();
  const sync = new SyncEngine(
    link,
    c.dialect,
    [{ productKey: pk, deviceName: dn }],
    {
      snapshot: () => shadow.document(dn)?.state.reported ?? {},
      pointNames: () => plan.points.map((p) => p.name),
      execute: (name, point, value, opts) => executor.execute(name, point, value, opts),
      journal,
      backlog: outbox,
      outcome: (name, point, outcome) => shadow.recordCommand(name, point, outcome),
    },
    {
      sendWindowMs: 100,
      minIntervalMs: 0,
      maxInFlight: 5,
      replyTimeoutMs: 5000,
      conflictRetries: 3,
    },
    log,
  );
  const offered = new Map<string, unknown[]>();
  const topics = c.topics(pk, dn);
  const delivered: Array<{ topic: string; payload: string }> = [];
  try {
    link.online = true;
    link.emit("online");
    await vi.advanceTimersByTimeAsync(0);
    for (const step of seq) {
      if (step.kind === "message") {
        collectOffered(safeParse(step.payload), offered);
        const topic = topics[step.topic % topics.length] ?? "";
        delivered.push({ topic, payload: step.payload });
        link.emit("message", topic, Buffer.from(step.payload));
      } else if (step.kind === "answer") {
        const request = link.sent[link.sent.length - 1];
        if (request) {
          const a = c.answer(request, step, pk, dn);
          collectOffered(safeParse(a.payload), offered);
          delivered.push(a);
          link.emit("message", a.topic, Buffer.from(a.payload));
        }
      } else if (step.kind === "repeat") {
        const again = delivered[step.index % Math.max(1, delivered.length)];
        if (again) link.emit("message", again.topic, Buffer.from(again.payload));
      } else if (step.kind === "link") {
        if (step.up !== link.online) {
          link.online = step.up;
          if (step.up) link.emit("online");
          else link.emit("offline", "fuzz");
        }
      } else await vi.advanceTimersByTimeAsync(step.ms);
      await vi.advanceTimersByTimeAsync(0);
    }
    await vi.advanceTimersByTimeAsync(10);
    await sync.idle();
  } finally {
    sync.stop();
    db.close();
  }
  return { internal, writes, offered, problems };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The guard's rule, restated: what a write may be. */
function checkWrites(o: Outcome): string[] {
  const wrong: string[] = [...o.problems, ...o.internal.map((m) => `internal error: ${m}`)];
  for (const w of o.writes) {
    const p = w.point;
    if (!p.writable) wrong.push(`wrote read-only ${p.name}`);
    if (typeof w.value === "number") {
      if (p.min !== undefined && w.value < p.min) wrong.push(`${p.name} ${w.value} < min ${p.min}`);
      if (p.max !== undefined && w.value > p.max) wrong.push(`${p.name} ${w.value} > max ${p.max}`);
    }
    const offers = o.offered.get(p.name) ?? [];
    const matches = offers.some((x) =>
      typeof x === "number" && typeof w.value === "number"
        ? Math.abs(x - w.value) < 1e-9
        : x === w.value,
    );
    if (!matches) wrong.push(`wrote ${p.name} = ${JSON.stringify(w.value)}, which nothing offered`);
    if (w.journaled?.status !== "executing")
      wrong.push(`wrote ${p.name} without its intent journaled first`);
  }
  return wrong;
}

beforeAll(async () => {
  plans.alibaba = await loadPlan("alibaba");
  plans.aws = await loadPlan("aws");
});

afterEach(() => {
  vi.useRealTimers();
});

describe.each([alibaba, aws])("hostile cloud messages, $name dialect", (c) => {
  it(
    `no exception, no write the guard did not pass, the journal consistent (${LONG ? "long run" : "CI run"})`,
    async () => {
      vi.useFakeTimers({ now: 1_800_000_000_000 });
      let messages = 0;
      let writes = 0;
      await fuzz(
        `cloud-${c.name}`,
        steps(c.body, c.topics("pk", "dn").length),
        async (seq) => {
          const o = await runSequence(c, seq);
          messages += seq.filter((s) => s.kind !== "link" && s.kind !== "wait").length;
          writes += o.writes.length;
          expect(checkWrites(o)).toEqual([]);
        },
        fuzzRun(CI_SEQUENCES, LONG_SEQUENCES),
      );
      process.stderr.write(`fuzz cloud-${c.name}: ${messages} messages, ${writes} device writes\n`);
      if (!LONG) {
        // The run must reach the count and exercise the write path, not only refusals.
        expect(messages).toBeGreaterThanOrEqual(10_000);
        expect(writes).toBeGreaterThan(50);
      }
    },
    TIMEOUT,
  );

  it.each(regressionCases<Step[]>(`cloud-${c.name}`).map((r) => [r.name, r.input] as const))(
    "regression %s",
    async (_name, seq) => {
      vi.useFakeTimers({ now: 1_800_000_000_000 });
      expect(checkWrites(await runSequence(c, seq))).toEqual([]);
    },
  );
});
