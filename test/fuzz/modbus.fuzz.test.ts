import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import { testLogger } from "../helpers/logs.js";
import type { RawSample } from "../../src/core/samples.js";
import type { ModbusTable } from "../../src/core/types.js";
import { ModbusDriver, type ModbusTransport } from "../../src/south/modbus/modbus-driver.js";
import { crc16, rtuFrame } from "../../src/south/modbus/rtu-frame.js";
import {
  answerData,
  crc16Reference,
  eagerDriverOptions,
  mbapFrame,
  readAnswerPdu,
  rtuFrameReference,
  ScriptedSlave,
  type Framing,
  type SlaveAction,
  type SlaveRequest,
} from "../helpers/hostile-modbus.js";
import { until } from "../helpers/until.js";
import { fuzz, fuzzRun, LONG, regressionCases } from "./harness.js";

/**
 * "Modbus answers from a hostile slave (wrong transaction id, function code, byte count, unit id,
 * exception codes, truncated and oversized frames, bytes dripping slowly, answers to earlier
 * requests): the point goes bad with a reason, the next request is not confused with the last
 * one, the connection recovers."
 *
 * Each generated case is a sequence of polls (driver.read of one point, or of up to three points
 * of different tables, one request each) through the real ModbusDriver, over a real socket on
 * 127.0.0.1, against a scripted slave (test/helpers/hostile-modbus.ts) that answers each request
 * as the case says: correctly, or one of the mutations below. Per point read:
 *
 * - it resolves (never throws, no unhandled rejection) within READ_BOUND_MS: no hang;
 * - a correct answer on an intact stream gives a good sample with exactly the slave's values;
 * - an unusable answer gives a bad sample with a reason and a code of the catalogue; an exception
 *   code only when the slave sent that exception to this request;
 * - a good sample never carries other values than the slave's for this request (the register
 *   values change with every request, so an answer to an earlier one would show);
 * - after the sequence, a correct exchange succeeds again (with the driver's reconnect).
 *
 * Modbus TCP (our MbapClient) takes most of the answers. RTU goes through the same driver with
 * the rtu-over-tcp transport (RtuClient on modbus-serial, bare RTU frames on a socket): the
 * in-process seam for RTU framing and CRC checks, without a pty and its timing. RTU has no
 * transaction id, so its slave sends no answer to an earlier request after the next request
 * (nothing could tell it from the answer); earlier answers come glued after an answer, where
 * the client must drop them before its next request.
 *
 * A correct answer can time out only if this process stalls (GC, a loaded CI machine) for about
 * a timeout; such reads are tolerated when the stall was measured, and counted.
 */

// ---------------------------------------------------------------------------------------------
// Sizes

/** The driver's answer timeout: silences and cut frames cost this much, so they are kept rare. */
const TIMEOUT_MS = 30;
/** No read may take longer: the no-hang bound (not a performance target). */
const READ_BOUND_MS = 5 * TIMEOUT_MS + 1000;
/** Event-loop lateness (one gap, or all) that may turn a correct answer into a timeout. */
const STALL_MS = TIMEOUT_MS / 4;
/** The waits of a dripping frame add up to at most this. */
const DRIP_BUDGET_MS = 4;
/** A bound for reconnecting and for the final good read. */
const RECOVER_MS = 10_000;

const TCP_RUN = fuzzRun(1000, 17_000);
const RTU_RUN = fuzzRun(150, 2_500);
/** The CI run must send at least this many hostile answers over TCP. */
const MIN_TCP_ANSWERS = 10_000;
const TIMEOUT = LONG ? 0 : 120_000;
/** FUZZ_TRACE=1: every read of every case to stderr (to follow a saved counterexample). */
const TRACE = process.env.FUZZ_TRACE === "1";

// ---------------------------------------------------------------------------------------------
// The generated input: JSON-serializable, so a shrunk failure is saved and replayed as it is.

interface Point {
  readonly table: ModbusTable;
  readonly address: number;
  readonly count: number;
}

/** A well-formed extra MBAP frame: an earlier answer on this connection, another tid, a copy. */
type Extra =
  | { readonly kind: "stale"; readonly back: number }
  | { readonly kind: "tid"; readonly xor: number }
  | { readonly kind: "dup" };

/** What both framings share: the right answer whole, in two pieces, or a byte at a time. */
type Delivery =
  | { readonly kind: "ok" }
  | { readonly kind: "split"; readonly at: number }
  | { readonly kind: "drip"; readonly gaps: readonly number[] };

/** What both framings share too: the answer cut short, never sent, or its connection closed. */
type StreamEnd =
  | { readonly kind: "truncate"; readonly keep: number }
  | { readonly kind: "silence" }
  /** The first `keep` bytes (modulo the size), then the connection closed or reset. */
  | { readonly kind: "close"; readonly keep: number; readonly reset: boolean };

type TcpReply =
  | Delivery
  /** The answer, then an extra frame glued to it or a moment later. */
  | { readonly kind: "after"; readonly extra: Extra; readonly late: boolean }
  /** An extra frame, then the answer glued to it, or nothing. */
  | { readonly kind: "before"; readonly extra: Extra; readonly answer: boolean }
  /** The answer with junk bytes (no zeros) glued after it. */
  | { readonly kind: "trailing"; readonly bytes: readonly number[] }
  | { readonly kind: "protocol"; readonly id: number }
  /** The MBAP length off by `delta`; a longer one padded with filler bytes, or not (a wait). */
  | { readonly kind: "length"; readonly delta: number; readonly pad: boolean }
  | { readonly kind: "unit"; readonly xor: number }
  | { readonly kind: "fc"; readonly fc: number }
  /** An exception answer, with `extra` bytes after the code inside the frame. */
  | { readonly kind: "exception"; readonly code: number; readonly extra: number }
  /** The byte count off by `delta`; `consistent`: the data and MBAP length follow it. */
  | { readonly kind: "count"; readonly delta: number; readonly consistent: boolean }
  /** Junk bytes (no zeros), then the answer glued to them, or nothing. */
  | { readonly kind: "garbage"; readonly bytes: readonly number[]; readonly answer: boolean }
  | StreamEnd;

type RtuReply =
  | Delivery
  /** The answer with an earlier answer of this connection glued after it. */
  | { readonly kind: "stale"; readonly back: number }
  | { readonly kind: "trailing"; readonly bytes: readonly number[] }
  /** One byte of the answer changed (after the unit and function code), the CRC kept. */
  | { readonly kind: "crc"; readonly at: number; readonly xor: number }
  /** An answer from another unit / with another function code, then the answer, or nothing. */
  | { readonly kind: "unit"; readonly xor: number; readonly answer: boolean }
  | { readonly kind: "fc"; readonly fc: number; readonly answer: boolean }
  | { readonly kind: "exception"; readonly code: number; readonly badCrc: boolean }
  /** The byte count off by `delta`, the data as asked, the CRC right for the frame sent. */
  | { readonly kind: "count"; readonly delta: number }
  /** More data than asked, with a byte count and CRC that agree with it. */
  | { readonly kind: "oversize"; readonly bytes: readonly number[] }
  /** Junk before the answer; `clean` junk holds no byte equal to the unit id. */
  | {
      readonly kind: "garbage";
      readonly bytes: readonly number[];
      readonly answer: boolean;
      readonly clean: boolean;
    }
  | StreamEnd;

/** One point read and how the slave answers its request. */
interface Read<R> {
  readonly point: Point;
  readonly reply: R;
}

/**
 * One driver.read (a poll): one point, or up to three points of different tables, which the
 * driver reads with one request each, in its table order (coil, discrete input, input, holding);
 * after a failure other than an exception it marks the rest bad without sending them.
 */
interface Step<R> {
  readonly reads: ReadonlyArray<Read<R>>;
}

interface Case<R> {
  readonly transport: "tcp" | "rtu";
  readonly unit: number;
  /** Seeds the register values: they change with every request. */
  readonly seed: number;
  readonly steps: ReadonlyArray<Step<R>>;
}
type TcpCase = Case<TcpReply>;
type RtuCase = Case<RtuReply>;

const byte = fc.integer({ min: 0, max: 255 });
const nonZero = fc.integer({ min: 1, max: 255 });
const junk = fc.array(nonZero, { minLength: 1, maxLength: 12 });
const gaps = fc.array(fc.constantFrom(0, 0, 0, 1), { minLength: 1, maxLength: 4 });
const smallDelta = fc.integer({ min: -3, max: 3 }).filter((d) => d !== 0);
const anyDelta = fc.oneof(
  { arbitrary: smallDelta, weight: 3 },
  { arbitrary: fc.integer({ min: -300, max: 300 }).filter((d) => d !== 0), weight: 1 },
);
/** true in `p` percent of the cases. */
const chance = (p: number): fc.Arbitrary<boolean> =>
  fc.integer({ min: 1, max: 100 }).map((n) => n <= p);

const tables: readonly ModbusTable[] = ["holding", "input", "coil", "discreteInput"];
const point: fc.Arbitrary<Point> = fc.constantFrom(...tables).chain((table) => {
  const bits = table === "coil" || table === "discreteInput";
  const max = bits ? 2000 : 125;
  return fc.record({
    table: fc.constant(table),
    address: fc.integer({ min: 0, max: 499 }),
    count: fc.oneof(
      { arbitrary: fc.integer({ min: 1, max: bits ? 32 : 8 }), weight: 4 },
      { arbitrary: fc.integer({ min: 1, max }), weight: 1 },
    ),
  });
});

const extra: fc.Arbitrary<Extra> = fc.oneof(
  fc.record({ kind: fc.constant("stale" as const), back: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant("tid" as const), xor: fc.integer({ min: 1, max: 0xffff }) }),
  fc.record({ kind: fc.constant("dup" as const) }),
);

/** Deliveries, for either framing (first in its arbitrary, as the seeds expect). */
const deliveries = [
  { arbitrary: fc.constant({ kind: "ok" as const }), weight: 20 },
  { arbitrary: fc.record({ kind: fc.constant("split" as const), at: fc.nat() }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant("drip" as const), gaps }), weight: 4 },
];

/** Stream ends, for either framing (last in its arbitrary). */
const streamEnds = [
  { arbitrary: fc.record({ kind: fc.constant("truncate" as const), keep: fc.nat() }), weight: 1 },
  { arbitrary: fc.constant({ kind: "silence" as const }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant("close" as const),
      keep: fc.nat(),
      reset: fc.boolean(),
    }),
    weight: 3,
  },
];

const tcpReply: fc.Arbitrary<TcpReply> = fc.oneof(
  ...deliveries,
  {
    arbitrary: fc.record({ kind: fc.constant("after" as const), extra, late: fc.boolean() }),
    weight: 6,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("before" as const), extra, answer: chance(95) }),
    weight: 7,
  },
  { arbitrary: fc.record({ kind: fc.constant("trailing" as const), bytes: junk }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant("protocol" as const),
      id: fc.integer({ min: 1, max: 0xffff }),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("length" as const),
      delta: anyDelta,
      pad: chance(90),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant("unit" as const), xor: nonZero }), weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant("fc" as const), fc: byte }), weight: 5 },
  {
    arbitrary: fc.record({
      kind: fc.constant("exception" as const),
      code: byte,
      extra: fc.oneof({ arbitrary: fc.constant(0), weight: 5 }, fc.integer({ min: 1, max: 3 })),
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("count" as const),
      delta: anyDelta,
      consistent: fc.boolean(),
    }),
    weight: 6,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("garbage" as const),
      bytes: junk,
      answer: chance(90),
    }),
    weight: 4,
  },
  ...streamEnds,
);

const rtuReply: fc.Arbitrary<RtuReply> = fc.oneof(
  ...deliveries,
  {
    arbitrary: fc.record({
      kind: fc.constant("stale" as const),
      back: fc.integer({ min: 1, max: 4 }),
    }),
    weight: 5,
  },
  { arbitrary: fc.record({ kind: fc.constant("trailing" as const), bytes: junk }), weight: 4 },
  {
    arbitrary: fc.record({ kind: fc.constant("crc" as const), at: fc.nat(), xor: nonZero }),
    weight: 8,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("unit" as const), xor: nonZero, answer: chance(80) }),
    weight: 5,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("fc" as const), fc: byte, answer: chance(80) }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("exception" as const),
      code: byte,
      badCrc: chance(20),
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("count" as const), delta: anyDelta }),
    weight: 8,
  },
  { arbitrary: fc.record({ kind: fc.constant("oversize" as const), bytes: junk }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant("garbage" as const),
      bytes: fc.array(byte, { minLength: 1, maxLength: 12 }),
      answer: chance(80),
      clean: fc.boolean(),
    }),
    weight: 4,
  },
  ...streamEnds,
);

function cases<R>(transport: "tcp" | "rtu", reply: fc.Arbitrary<R>): fc.Arbitrary<Case<R>> {
  const read = fc.record({ point, reply });
  const reads = fc.oneof(
    { arbitrary: fc.tuple(read), weight: 3 },
    {
      arbitrary: fc.uniqueArray(read, {
        minLength: 2,
        maxLength: 3,
        selector: (r) => r.point.table,
      }),
      weight: 1,
    },
  );
  return fc.record({
    transport: fc.constant(transport),
    unit: fc.integer({ min: 1, max: 247 }),
    seed: fc.nat(),
    steps: fc.array(fc.record({ reads }), { minLength: 5, maxLength: 15 }),
  });
}

// ---------------------------------------------------------------------------------------------
// What the slave sends for a reply, and what the read must come back as.

/** Function codes of the reads (Modbus Application Protocol 6.1-6.4), kept apart from src. */
const READ_FC: Readonly<Record<ModbusTable, number>> = {
  coil: 1,
  discreteInput: 2,
  holding: 3,
  input: 4,
};

/**
 * good: a good sample with exactly the slave's values; bad: a bad sample; either: one of the two
 * (a mutation that leaves the right answer recognisable, or bytes left over from before).
 */
type Expect = "good" | "either" | "bad";

interface Plan {
  readonly actions: SlaveAction[];
  /** What the read must come back as, when the stream was intact before this answer. */
  readonly expect: Expect;
  /** The exception code sent, when the answer was a well-formed exception. */
  readonly exception?: number;
  /** Bytes that make no whole frame may stay on the connection after this answer. */
  readonly taints: boolean;
  /** Anything but the correct answer in one chunk. */
  readonly hostile: boolean;
}

/** What a reply is built from. */
interface Ctx {
  readonly req: SlaveRequest;
  readonly unit: number;
  readonly fc: number;
  /** The slave's values for this request. */
  readonly values: readonly number[];
  /** Other values of the same shape, for frames that are not the answer. */
  readonly other: readonly number[];
  /** The correct answer. */
  readonly answer: Buffer;
  /** The correct answers to the earlier requests on this connection. */
  readonly earlier: readonly Buffer[];
}

const plan = (
  expect: Expect,
  actions: SlaveAction[],
  o: { taints?: boolean; hostile?: boolean; exception?: number } = {},
): Plan => ({
  actions,
  expect,
  taints: o.taints ?? false,
  hostile: o.hostile ?? true,
  ...(o.exception !== undefined && { exception: o.exception }),
});

/** A function code that is neither the request's nor its exception code. */
function otherFc(fc: number, request: number): number {
  let f = fc & 0xff;
  while (f === request || f === (request | 0x80)) f = (f + 1) & 0xff;
  return f;
}

/** A byte count `delta` away from the right one, never the right one. */
function lyingCount(right: number, delta: number): number {
  const count = (((right + delta) % 256) + 256) % 256;
  return count === right ? right ^ 1 : count;
}

function split(frame: Buffer, at: number): SlaveAction[] {
  const cut = 1 + (at % (frame.length - 1));
  return [{ write: frame.subarray(0, cut) }, { wait: 0 }, { write: frame.subarray(cut) }];
}

/**
 * The frame one byte per chunk (the first and last 12 bytes of a long frame, the middle in one
 * chunk), with event-loop turns or millisecond waits between them, DRIP_BUDGET_MS in all.
 */
function drip(frame: Buffer, waits: readonly number[]): SlaveAction[] {
  const chunks: Buffer[] = [];
  const edge = frame.length <= 24 ? frame.length : 12;
  for (let i = 0; i < edge; i++) chunks.push(frame.subarray(i, i + 1));
  if (edge < frame.length) {
    chunks.push(frame.subarray(edge, frame.length - edge));
    for (let i = frame.length - edge; i < frame.length; i++) chunks.push(frame.subarray(i, i + 1));
  }
  let budget = DRIP_BUDGET_MS;
  const out: SlaveAction[] = [];
  chunks.forEach((write, i) => {
    if (i > 0) {
      let wait = waits[i % waits.length] ?? 0;
      if (wait > budget) wait = 0;
      budget -= wait;
      out.push({ wait });
    }
    out.push({ write });
  });
  return out;
}

function resized(data: readonly number[], size: number): number[] {
  return size <= data.length
    ? data.slice(0, size)
    : [...data, ...new Array<number>(size - data.length).fill(0x5a)];
}

/**
 * A well-formed frame that is not the answer. One sent late may arrive while the next requests
 * are on the wire, so its transaction id is kept clear of theirs: a frame with the id of a
 * request not sent yet is a forgery no client could tell from the answer.
 */
function extraFrame(e: Extra, x: Ctx, late: boolean): Buffer {
  if (e.kind === "dup") return x.answer;
  const stale = e.kind === "stale" ? x.earlier[x.earlier.length - e.back] : undefined;
  if (stale !== undefined) return stale;
  // Another transaction id (or no earlier answer on this connection yet).
  let tid = x.req.tid ^ (e.kind === "tid" ? e.xor : e.back);
  if (late && ((tid - x.req.tid) & 0xffff) <= 1024) tid ^= 0x8000;
  return mbapFrame(tid, x.unit, readAnswerPdu(x.fc, x.other));
}

/**
 * Modbus TCP (MbapClient). A frame that cannot be delimited or disagrees with its own length,
 * or part of a frame still waiting at the timeout, closes the connection, so the next request
 * goes on a new one and must be served right; a well-formed frame that is not the answer
 * (another tid) is dropped and the answer after it is used. Only junk after a complete answer
 * stays on the connection (the client cannot know it is junk before more bytes come).
 *
 * Junk holds no zero byte, so that no MBAP header with protocol id 0 can be read out of it (with
 * transaction ids below 256, see the case sizes): junk never forges a well-formed answer, which
 * no client could tell from a real one.
 */
function tcpPlan(r: TcpReply, x: Ctx): Plan {
  const F = x.answer;
  const tid = x.req.tid;
  const pdu = readAnswerPdu(x.fc, x.values);
  switch (r.kind) {
    case "ok":
    case "split":
    case "drip":
    case "truncate":
    case "silence":
    case "close":
      return sharedPlan(r, F);
    case "after": {
      const e = extraFrame(r.extra, x, r.late);
      return plan(
        "good",
        r.late ? [{ write: F }, { wait: 1 }, { write: e }] : [{ write: Buffer.concat([F, e]) }],
      );
    }
    case "before": {
      const e = extraFrame(r.extra, x, false);
      // A copy of the answer before it is the answer: the second copy is the stray one.
      return r.answer || r.extra.kind === "dup"
        ? plan("good", [{ write: r.answer ? Buffer.concat([e, F]) : e }])
        : plan("bad", [{ write: e }]);
    }
    case "trailing":
      return plan("good", [{ write: Buffer.concat([F, Buffer.from(r.bytes)]) }], { taints: true });
    case "protocol":
      return plan("bad", [{ write: mbapFrame(tid, x.unit, pdu, { protocol: r.id }) }]);
    case "length": {
      const length = Math.max(0, F.length - 6 + r.delta);
      const pad = Buffer.alloc(r.delta > 0 && r.pad ? r.delta : 0, 0xa5);
      return plan("bad", [
        { write: Buffer.concat([mbapFrame(tid, x.unit, pdu, { length }), pad]) },
      ]);
    }
    case "unit":
      return plan("bad", [{ write: mbapFrame(tid, x.unit ^ r.xor, pdu) }]);
    case "fc":
      return plan("bad", [
        { write: mbapFrame(tid, x.unit, [otherFc(r.fc, x.fc), ...pdu.slice(1)]) },
      ]);
    case "exception": {
      const body = [x.fc | 0x80, r.code, ...new Array<number>(r.extra).fill(0)];
      return plan("bad", [{ write: mbapFrame(tid, x.unit, body) }], {
        ...(r.extra === 0 && { exception: r.code }),
      });
    }
    case "count": {
      const data = answerData(x.fc, x.values);
      const count = lyingCount(data.length, r.delta);
      const body = r.consistent ? resized(data, count) : data;
      return plan("bad", [{ write: mbapFrame(tid, x.unit, [x.fc, count, ...body]) }]);
    }
    case "garbage": {
      const bytes = Buffer.from(r.bytes);
      return plan("bad", [{ write: r.answer ? Buffer.concat([bytes, F]) : bytes }]);
    }
  }
}

/** The answer `F` delivered, or cut short, the same way whatever the framing. */
function sharedPlan(r: Delivery | StreamEnd, F: Buffer): Plan {
  switch (r.kind) {
    case "ok":
      return plan("good", [{ write: F }], { hostile: false });
    case "split":
      return plan("good", split(F, r.at));
    case "drip":
      return plan("good", drip(F, r.gaps));
    case "truncate":
      return plan("bad", [{ write: F.subarray(0, 1 + (r.keep % (F.length - 1))) }]);
    case "silence":
      return plan("bad", []);
    case "close": {
      const keep = r.keep % F.length;
      return plan("bad", [
        ...(keep > 0 ? [{ write: F.subarray(0, keep) }] : []),
        { close: r.reset ? "reset" : "end" },
      ]);
    }
  }
}

/**
 * RTU frames over TCP (RtuClient on modbus-serial): no transaction id, a CRC, and the receive
 * buffer emptied before each request, so whatever an answer leaves behind is gone by the next
 * one. modbus-serial looks for the first unit id + function code that starts a frame of the
 * expected size, so a frame from another unit or with another function code before the answer
 * may hide it (a CRC error) or be skipped (the answer is used).
 */
function rtuPlan(r: RtuReply, x: Ctx): Plan {
  const F = x.answer;
  const pdu = readAnswerPdu(x.fc, x.values);
  switch (r.kind) {
    case "ok":
    case "split":
    case "drip":
    case "truncate":
    case "silence":
    case "close":
      return sharedPlan(r, F);
    case "stale": {
      const e = x.earlier[x.earlier.length - r.back] ?? F;
      return plan("good", [{ write: Buffer.concat([F, e]) }]);
    }
    case "trailing":
      return plan("good", [{ write: Buffer.concat([F, Buffer.from(r.bytes)]) }]);
    case "crc": {
      const frame = Buffer.from(F);
      const at = 2 + (r.at % (frame.length - 2));
      frame[at] = (frame[at] ?? 0) ^ r.xor;
      return plan("bad", [{ write: frame }]);
    }
    case "unit":
    case "fc": {
      const wrong =
        r.kind === "unit"
          ? rtuFrameReference(x.unit ^ r.xor, pdu)
          : rtuFrameReference(x.unit, [otherFc(r.fc, x.fc), ...pdu.slice(1)]);
      return r.answer
        ? plan("either", [{ write: Buffer.concat([wrong, F]) }])
        : plan("bad", [{ write: wrong }]);
    }
    case "exception": {
      const frame = rtuFrameReference(x.unit, [x.fc | 0x80, r.code]);
      if (r.badCrc) frame[frame.length - 1] = (frame[frame.length - 1] ?? 0) ^ 0xff;
      return plan("bad", [{ write: frame }], { ...(!r.badCrc && { exception: r.code }) });
    }
    case "count": {
      const data = answerData(x.fc, x.values);
      const frame = rtuFrameReference(x.unit, [x.fc, lyingCount(data.length, r.delta), ...data]);
      return plan("bad", [{ write: frame }]);
    }
    case "oversize": {
      const data = [...answerData(x.fc, x.values), ...r.bytes];
      return plan("either", [
        { write: rtuFrameReference(x.unit, [x.fc, data.length & 0xff, ...data]) },
      ]);
    }
    case "garbage": {
      const bytes = Buffer.from(
        r.clean ? r.bytes.map((b) => (b === x.unit ? b ^ 0x40 : b)) : r.bytes,
      );
      if (!r.answer) return plan("bad", [{ write: bytes }]);
      return plan(r.clean ? "good" : "either", [{ write: Buffer.concat([bytes, F]) }]);
    }
  }
}

interface Wire<R> {
  readonly framing: Framing;
  transport(port: number): ModbusTransport;
  answer(req: SlaveRequest, unit: number, values: readonly number[]): Buffer;
  plan(reply: R, x: Ctx): Plan;
  /**
   * RTU has no transaction id: an answer that came after its timeout (the process stalled) may
   * be read as the answer to the next request. After that, values and exception codes are not
   * checked for the rest of the case (no throw, no hang, and recovery still are).
   */
  readonly desyncOnStall: boolean;
}

const TCP: Wire<TcpReply> = {
  framing: "mbap",
  transport: (port) => ({ kind: "tcp", host: "127.0.0.1", port }),
  answer: (req, unit, values) => mbapFrame(req.tid, unit, readAnswerPdu(req.fc, values)),
  plan: tcpPlan,
  desyncOnStall: false,
};

const RTU: Wire<RtuReply> = {
  framing: "rtu",
  transport: (port) => ({ kind: "rtu-over-tcp", host: "127.0.0.1", port }),
  answer: (req, unit, values) => rtuFrameReference(unit, readAnswerPdu(req.fc, values)),
  plan: rtuPlan,
  desyncOnStall: true,
};

// ---------------------------------------------------------------------------------------------
// Running a case

/** The slave's register values for request `step` of a case: they change with every request. */
function truth(seed: number, step: number, p: Point): number[] {
  const bits = p.table === "coil" || p.table === "discreteInput";
  const out: number[] = [];
  for (let i = 0; i < p.count; i++) {
    let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b);
    h ^= Math.imul(step + 1, 0xc2b2ae35) ^ Math.imul(p.address + i + 1, 0x27d4eb2f);
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
    h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
    h ^= h >>> 15;
    out.push(bits ? (h >>> 7) & 1 : h & 0xffff);
  }
  return out;
}

/**
 * How late the event loop turned since reset(): the longest gap between two ticks of a 2 ms
 * interval, and the time lost in all gaps beyond 2 ms. One long pause (GC) shows in the first;
 * a process that gets the CPU only now and then (a loaded machine) in the second.
 */
class StallMeter {
  private static readonly TICK_MS = 2;
  private last = performance.now();
  private longest = 0;
  private lost = 0;
  private timer: NodeJS.Timeout | undefined;

  start(): void {
    this.reset();
    this.timer = setInterval(() => {
      const now = performance.now();
      const gap = now - this.last;
      this.longest = Math.max(this.longest, gap);
      this.lost += Math.max(0, gap - StallMeter.TICK_MS);
      this.last = now;
    }, StallMeter.TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  reset(): void {
    this.last = performance.now();
    this.longest = 0;
    this.lost = 0;
  }

  /** The loop was late by at least `ms`, in one gap or in all. */
  stalled(ms: number): boolean {
    const open = performance.now() - this.last;
    return Math.max(this.longest, open) >= ms || this.lost + open >= ms;
  }

  describe(): string {
    return `longest gap ${this.longest.toFixed(1)} ms, ${this.lost.toFixed(1)} ms lost`;
  }
}

const stall = new StallMeter();
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

const CODES = new Set<string>(Object.values(ErrorCodes));

/** The final read: an address no step reads, so that no learned illegal range covers it. */
const FINAL: Point = { table: "holding", address: 60_000, count: 4 };
const ERROR_CODES = new Set<string>([
  ErrorCodes.MODBUS_EXCEPTION,
  ErrorCodes.MODBUS_ILLEGAL_ADDRESS,
]);

interface Stats {
  /** Answers the slave sent (silence included) to the hostile sequences. */
  answers: number;
  /** Those that were not the correct answer in one chunk. */
  hostile: number;
  /** Reads whose answer came too late because the process stalled (tolerated). */
  stalls: number;
}

/** A request due now, and what the slave made of it. */
interface Due<R> {
  readonly point: Point;
  /** undefined: answer correctly (the final reads). */
  readonly reply: R | undefined;
  readonly values: readonly number[];
  readonly other: readonly number[];
  /** The point lies in a range the driver learned is illegal (02): it must not be sent. */
  readonly skip: boolean;
  got: { readonly expect: Expect; readonly plan: Plan } | undefined;
}

async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle in ${ms} ms (a hang)`)), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

const hex2 = (n: number): string => n.toString(16).toUpperCase().padStart(2, "0");
const overlaps = (a: Point, b: Point): boolean =>
  a.table === b.table && a.address < b.address + b.count && b.address < a.address + a.count;
const sameValues = (a: readonly number[] | undefined, b: readonly number[]): boolean =>
  a !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);

interface Judged {
  readonly error?: string;
  /** A correct answer turned bad by a measured stall (or values unchecked after one, RTU). */
  readonly tolerated?: boolean;
}

/** The invariants of one read. */
function judge(
  s: RawSample,
  j: {
    skip: boolean;
    got: Due<unknown>["got"];
    values: readonly number[];
    /** The failures of this poll that stop the rest of it (not exceptions). */
    stops: ReadonlyArray<{ code: string; reason: string }>;
    stalled: boolean;
    desync: boolean;
  },
): Judged {
  const q = s.quality;
  if (j.skip) {
    if (j.got !== undefined) return { error: "read a range the device declared illegal (02)" };
    if (q.status !== "bad" || q.code !== ErrorCodes.MODBUS_ILLEGAL_ADDRESS) {
      return { error: "expected MODBUS_ILLEGAL_ADDRESS without a request (02 learned)" };
    }
    return {};
  }
  if (q.status === "good") {
    if (j.got === undefined) return { error: "good, but the slave was never asked" };
    if (!sameValues(s.data, j.values)) {
      if (j.desync) return { tolerated: true };
      return { error: `good with values that are not the slave's for this request` };
    }
    if (j.got.expect === "bad") return { error: "good, although the answer was unusable" };
    return {};
  }
  if (q.status !== "bad") return { error: `quality ${q.status}` };
  if (!CODES.has(q.code)) return { error: `code ${q.code} is not in ErrorCodes` };
  if (typeof q.reason !== "string" || q.reason.trim() === "") return { error: "no reason" };
  if (j.got === undefined) {
    // Not sent: the connection is down, or an earlier request of the poll failed (same reason).
    const stopped = j.stops.some((f) => f.code === q.code && f.reason === q.reason);
    return q.code === ErrorCodes.MODBUS_DISCONNECTED || stopped
      ? {}
      : { error: `${q.code} although no request reached the slave` };
  }
  if (
    !j.desync &&
    (q.code === ErrorCodes.MODBUS_EXCEPTION || q.code === ErrorCodes.MODBUS_ILLEGAL_ADDRESS)
  ) {
    const ex = j.got.plan.exception;
    if (ex === undefined) return { error: "an exception the slave did not send to this request" };
    if ((ex === 2) !== (q.code === ErrorCodes.MODBUS_ILLEGAL_ADDRESS)) {
      return { error: `${q.code} for exception ${ex}` };
    }
    if (!q.reason.includes(`exception ${hex2(ex)}`)) {
      return { error: `the reason does not name exception ${hex2(ex)}` };
    }
  }
  if (j.got.expect === "good") {
    if (j.stalled || j.desync) return { tolerated: true };
    return { error: "bad, although the answer was correct and the stream intact" };
  }
  return {};
}

async function runCase<R>(wire: Wire<R>, c: Case<R>): Promise<Stats> {
  const stats: Stats = { answers: 0, hostile: 0, stalls: 0 };
  const problems: string[] = [];
  const conns = new Map<number, { earlier: Buffer[]; tainted: boolean }>();
  let due: ReadonlyArray<Due<R>> = [];

  const slave = new ScriptedSlave(wire.framing, (req) => {
    const d = due.find((x) => READ_FC[x.point.table] === req.fc && x.got === undefined);
    if (d === undefined) {
      problems.push(`a request when none was due: ${JSON.stringify(req)}`);
      return [];
    }
    if (
      req.unit !== c.unit ||
      req.address !== d.point.address ||
      req.quantity !== d.point.count ||
      d.skip
    ) {
      problems.push(`request ${JSON.stringify(req)} for ${JSON.stringify(d)}`);
    }
    let conn = conns.get(req.connection);
    if (conn === undefined) {
      conn = { earlier: [], tainted: false };
      conns.set(req.connection, conn);
    }
    const answer = wire.answer(req, c.unit, d.values);
    const p =
      d.reply === undefined
        ? plan("good", [{ write: answer }], { hostile: false })
        : wire.plan(d.reply, {
            req,
            unit: c.unit,
            fc: req.fc,
            values: d.values,
            other: d.other,
            answer,
            earlier: conn.earlier,
          });
    d.got = { expect: conn.tainted ? "either" : p.expect, plan: p };
    if (p.taints) conn.tainted = true;
    conn.earlier.push(answer);
    return p.actions;
  });

  const port = await slave.start();
  const driver = new ModbusDriver(
    "fuzz",
    eagerDriverOptions(wire.transport(port), TIMEOUT_MS),
    testLogger(),
  );
  const online = () =>
    until("the driver online", () => driver.health().state === "online", RECOVER_MS, 1);
  /** One poll of `dues`: one sample per point, in order. */
  const poll = async (dues: ReadonlyArray<Due<R>>, what: string): Promise<RawSample[]> => {
    due = dues;
    const points = dues.map((d, j) => ({ key: `p${j}`, ...d.point }));
    let samples: RawSample[];
    try {
      samples = await within(what, READ_BOUND_MS, driver.read({ unitId: c.unit, points }));
    } finally {
      due = [];
    }
    if (problems.length > 0 || slave.malformed.length > 0) {
      throw new Error(`${what}: the slave saw ${[...problems, ...slave.malformed].join("; ")}`);
    }
    if (samples.length !== points.length || samples.some((s, j) => s.key !== `p${j}`)) {
      throw new Error(`${what}: samples ${JSON.stringify(samples)}`);
    }
    return samples;
  };

  try {
    await driver.start();
    /** Ranges the driver learned are illegal (exception 02): it reads them no more. */
    const learned: Point[] = [];
    let desync = false;
    /**
     * The previous poll was stalled: its request may have timed out before the slave's bytes
     * were read (say the end of the connection), and they meet this poll's request instead.
     */
    let stalledBefore = false;
    /** Requests so far: the register values change with each. */
    let n = 0;
    for (const [i, step] of c.steps.entries()) {
      await online();
      const what = `step ${i} ${JSON.stringify(step)}`;
      const dues: Array<Due<R>> = step.reads.map((r) => ({
        point: r.point,
        reply: r.reply,
        values: truth(c.seed, n, r.point),
        other: truth(c.seed ^ 0x5bd1e995, n++, r.point),
        skip: learned.some((l) => overlaps(l, r.point)),
        got: undefined,
      }));
      stall.reset();
      const samples = await poll(dues, what);
      const stalledNow = stall.stalled(STALL_MS);
      const stalled = stalledNow || stalledBefore;
      stalledBefore = stalledNow;
      if (TRACE) {
        const seen = samples.map((s, j) => [dues[j]?.got?.expect ?? "not sent", s.quality]);
        process.stderr.write(`${what}: ${JSON.stringify(seen)} (${stall.describe()})\n`);
      }
      const stops = samples.flatMap((s, j) =>
        dues[j]?.got !== undefined && s.quality.status === "bad" && !ERROR_CODES.has(s.quality.code)
          ? [{ code: s.quality.code, reason: s.quality.reason }]
          : [],
      );
      let timedOut = false;
      let tolerated = false;
      samples.forEach((s, j) => {
        const d = dues[j];
        if (d === undefined) return;
        if (d.got !== undefined) {
          stats.answers++;
          if (d.got.plan.hostile) stats.hostile++;
        }
        const v = judge(s, { skip: d.skip, got: d.got, values: d.values, stops, stalled, desync });
        if (v.error !== undefined) {
          throw new Error(
            `${what}, point ${j}: ${v.error}; sample ${JSON.stringify(s)}; values ${JSON.stringify(d.values)}`,
          );
        }
        if (v.tolerated === true) tolerated = true;
        if (s.quality.status === "bad" && s.quality.code === ErrorCodes.MODBUS_TIMEOUT) {
          timedOut = true;
        }
        if (
          d.got !== undefined &&
          s.quality.status === "bad" &&
          s.quality.code === ErrorCodes.MODBUS_ILLEGAL_ADDRESS
        ) {
          learned.push(d.point);
        }
      });
      if (tolerated) stats.stalls++;
      // A stall may have let an answer come after its timeout, into the next request (RTU).
      if (wire.desyncOnStall && (tolerated || (stalled && timedOut))) desync = true;
    }

    // The connection recovers: a correct exchange succeeds, after a reconnect if need be.
    const values = truth(c.seed, n, FINAL);
    let last: RawSample | undefined;
    let attempts = 0;
    stall.reset();
    await until(
      "a good read after the hostile answers",
      async () => {
        if (driver.health().state !== "online") return false;
        attempts++;
        const final: Due<R> = {
          point: FINAL,
          reply: undefined,
          values,
          other: values,
          skip: false,
          got: undefined,
        };
        [last] = await poll([final], "the final read");
        if (last?.quality.status !== "good") return false;
        if (!sameValues(last.data, values) && !desync) {
          throw new Error(
            `the final read: values that are not the slave's: ${JSON.stringify(last)}`,
          );
        }
        return sameValues(last.data, values);
      },
      RECOVER_MS,
      2,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last sample ${JSON.stringify(last)}`);
    });
    // At most: one read that meets what the last answer left behind, one on the new connection.
    if (attempts > 3 && !stall.stalled(STALL_MS) && !desync) {
      throw new Error(`the connection took ${attempts} reads to recover`);
    }
  } finally {
    due = [];
    await within("the driver's stop", RECOVER_MS, driver.stop());
    await slave.stop();
  }
  // An unhandled rejection surfaces after the microtasks of the case: give it a turn.
  await new Promise((resolve) => setImmediate(resolve));
  if (unhandled.length > 0) {
    throw new Error(`unhandled rejection: ${String(unhandled.splice(0)[0])}`);
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------

const total = {
  tcp: { answers: 0, hostile: 0, stalls: 0, cases: 0 },
  rtu: { answers: 0, hostile: 0, stalls: 0, cases: 0 },
};

beforeAll(() => {
  stall.start();
  process.on("unhandledRejection", onUnhandled);
});
afterAll(() => {
  stall.stop();
  process.off("unhandledRejection", onUnhandled);
  const { tcp, rtu } = total;
  if (tcp.cases + rtu.cases === 0) return;
  process.stderr.write(
    `fuzz modbus: ${tcp.answers + rtu.answers} hostile-slave answers sent (Modbus TCP ${tcp.answers} in ${tcp.cases} cases, ${tcp.hostile} of them not the plain correct answer; RTU ${rtu.answers} in ${rtu.cases} cases, ${rtu.hostile} not plain); ${tcp.stalls + rtu.stalls} reads tolerated after a measured stall\n`,
  );
});

function property<R>(wire: Wire<R>, tally: (typeof total)["tcp"]) {
  return async (c: Case<R>): Promise<void> => {
    const s = await runCase(wire, c);
    tally.cases++;
    tally.answers += s.answers;
    tally.hostile += s.hostile;
    tally.stalls += s.stalls;
  };
}

describe("fuzz modbus: a hostile slave", () => {
  it(
    `Modbus TCP: bad with a reason, never confused, recovers (${LONG ? "long run" : "CI run"})`,
    async () => {
      await fuzz("modbus", cases("tcp", tcpReply), property(TCP, total.tcp), TCP_RUN);
      if (!LONG && process.env.FUZZ_SEED === undefined) {
        // The count, over TCP alone.
        expect(total.tcp.answers).toBeGreaterThanOrEqual(MIN_TCP_ANSWERS);
      }
    },
    TIMEOUT,
  );

  it(
    `Modbus RTU over TCP (modbus-serial): bad frames rejected with a reason, never confused, recovers (${LONG ? "long run" : "CI run"})`,
    async () => {
      await fuzz("modbus-rtu", cases("rtu", rtuReply), property(RTU, total.rtu), RTU_RUN);
    },
    TIMEOUT,
  );

  it("the RTU CRC of rtu-frame.ts agrees with a table-driven CRC-16/MODBUS", async () => {
    await fuzz(
      "modbus-crc",
      fc.tuple(byte, fc.array(byte, { maxLength: 300 })),
      ([unit, pdu]) => {
        const bytes = Uint8Array.from(pdu);
        expect(crc16(bytes)).toBe(crc16Reference(bytes));
        expect(rtuFrame(unit, bytes).equals(rtuFrameReference(unit, pdu))).toBe(true);
      },
      fuzzRun(2000, 100_000),
    );
  });
});

describe("fuzz modbus: saved counterexamples", () => {
  const saved = [
    ...regressionCases<TcpCase | RtuCase>("modbus"),
    ...regressionCases<TcpCase | RtuCase>("modbus-rtu"),
  ];
  if (saved.length === 0) it.skip("none saved", () => undefined);
  it.each(saved.map((s) => [s.name, s.input] as const))("%s", async (_name, input) => {
    await (input.transport === "tcp"
      ? runCase(TCP, input as TcpCase)
      : runCase(RTU, input as RtuCase));
  });
});
