/**
 * Interop against an independent Modbus server: pymodbus (Debian's python3-pymodbus), whose
 * registers are encoded by pymodbus's own BinaryPayloadBuilder (test/fixtures/pymodbus/server.py),
 * never by our codec. A misunderstanding shared by our client and our own simulator cannot hide
 * here. The built CLI (`npm run build` first) polls every point once, and its JSON must equal the
 * values stated below by hand.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { keepLog } from "../helpers/logs.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = join(ROOT, "dist/cli/main.js");
const SERVER = join(ROOT, "test/fixtures/pymodbus/server.py");
/** Debian's interpreter, which carries python3-pymodbus; the `python3` on PATH may be another. */
const PYTHON = "/usr/bin/python3";
const DEVICE = "interop-1";

function probePymodbus(): string | undefined {
  const r = spawnSync(
    PYTHON,
    ["-c", "import pymodbus.server, pymodbus.payload, pymodbus.datastore"],
    { encoding: "utf8" },
  );
  if (r.error) return `${PYTHON}: ${r.error.message}`;
  if (r.status !== 0) return r.stderr.trim().split("\n").pop() ?? `exit ${r.status}`;
  return undefined;
}
const missing = probePymodbus();
const skipNote =
  missing !== undefined && process.env.CI !== "true"
    ? `pymodbus is not importable by ${PYTHON} (${missing}); install python3-pymodbus and ` +
      `python3-serial-asyncio (.ci/run does). Skipped outside CI; under CI=true this fails.`
    : undefined;

type Table = "holding" | "input" | "coil" | "discreteInput";

/** One entry of server.py's spec: what pymodbus places at a 0-based PDU address. */
interface SpecEntry {
  table: Table;
  address: number;
  type?: string;
  byteOrder?: string;
  value?: number | string | boolean;
  length?: number;
  words?: number[];
}

interface Case {
  /** Dotted shadow name. */
  name: string;
  table: Table;
  /** 0-based PDU address. */
  address: number;
  /** The point as the mapping file states it. */
  point: Record<string, unknown>;
  /** What pymodbus encodes there; absent when another case's entry already covers the register. */
  put?: Omit<SpecEntry, "table" | "address">;
  /** The value `read --json` must report. */
  expected: unknown;
}

const WIDE = ["ABCD", "CDAB", "BADC", "DCBA"] as const;
const NARROW = ["AB", "BA"] as const;

/** The Modicon form of a holding register's PDU address. */
const hr = (address: number): { register: number } => ({
  register: address < 9999 ? 40001 + address : 400001 + address,
});

/** One point per 32/64-bit byte order, `size` registers each, from `base` on. */
function everyWideOrder(
  name: string,
  base: number,
  type: string,
  value: number | string,
  expected: unknown,
  extra: Record<string, unknown> = {},
): Case[] {
  const size = type.endsWith("64") ? 4 : 2;
  return WIDE.map((byteOrder, i) => ({
    name: `${name}.${byteOrder}`,
    table: "holding",
    address: base + i * size,
    point: { ...hr(base + i * size), type, byteOrder, ...extra },
    put: { type, byteOrder, value },
    expected,
  }));
}

function everyNarrowOrder(
  name: string,
  base: number,
  type: string,
  value: number | string,
  expected: unknown,
  length?: number,
): Case[] {
  const size = length ?? 1;
  return NARROW.map((byteOrder, i) => ({
    name: `${name}.${byteOrder}`,
    table: "holding",
    address: base + i * size,
    point: { ...hr(base + i * size), type, byteOrder, ...(length !== undefined && { length }) },
    put: { type, byteOrder, value, ...(length !== undefined && { length }) },
    expected,
  }));
}

function one(
  name: string,
  table: Table,
  address: number,
  point: Record<string, unknown>,
  put: Case["put"],
  expected: unknown,
): Case {
  return { name, table, address, point, ...(put !== undefined && { put }), expected };
}

const bit = (n: number, expected: boolean): Case =>
  one(`bits.b${n}`, "holding", 324, { ...hr(324), type: "uint16", bit: n }, undefined, expected);

/*
 * Holding register layout (0-based PDU addresses). maxGap is 8: gaps of at most 8 unused
 * registers are read through, 9 or more split the request.
 *   0-32      bool, 16-bit, int32, uint32    gaps of 3 and exactly 8 inside: one request
 *   (33-41)   a 9-register gap: split
 *   42-117    64-bit integers                 one request
 *   150-181   float32, float64                gap of 2 inside: one request
 *   300-332   strings, bits, enums, scaling   gap of 4 inside: one request
 *   10000     6-digit Modicon address, alone
 *   65534-5   the last two registers of the address space
 * The unused registers hold noise words, so a point read one register off shows.
 */
const CASES: Case[] = [
  one(
    "bool.on",
    "holding",
    0,
    { table: "holding", offset: 0, type: "bool" },
    { type: "bool", value: true },
    true,
  ),
  one("bool.off", "holding", 1, { ...hr(1), type: "bool" }, { type: "bool", value: false }, false),
  ...everyNarrowOrder("int16", 2, "int16", -12345, -12345),
  ...everyNarrowOrder("uint16", 4, "uint16", 51966, 51966),
  // 6-8 noise
  ...everyWideOrder("int32", 9, "int32", -123456789, -123456789),
  // 17-24 noise: exactly maxGap
  ...everyWideOrder("uint32", 25, "uint32", 3000000000, 3000000000),
  // 33-41 noise: one more than maxGap

  ...everyWideOrder("int64.small", 42, "int64", -20015998343868, -20015998343868),
  // 0x0123456789ABCDEF: eight distinct bytes, beyond 2^53, so a decimal string.
  ...everyWideOrder("int64.big", 58, "int64", "81985529216486895", "81985529216486895"),
  ...everyWideOrder("int64.negBig", 74, "int64", "-81985529216486895", "-81985529216486895"),
  // 0xFEDCBA9876543210
  ...everyWideOrder("uint64.big", 90, "uint64", "18364758544493064720", "18364758544493064720"),
  one(
    "uint64.small",
    "holding",
    106,
    { ...hr(106), type: "uint64", byteOrder: "CDAB" },
    { type: "uint64", byteOrder: "CDAB", value: 4294967296 },
    4294967296,
  ),
  one(
    "int64.maxSafe",
    "holding",
    110,
    { ...hr(110), type: "int64" },
    { type: "int64", byteOrder: "ABCD", value: "9007199254740991" },
    9007199254740991,
  ),
  one(
    "int64.twoPow53",
    "holding",
    114,
    { ...hr(114), type: "int64", byteOrder: "DCBA" },
    { type: "int64", byteOrder: "DCBA", value: "9007199254740992" },
    "9007199254740992",
  ),

  // -3.14 is not a float32; it reports as the shortest decimal that reads back the same.
  ...everyWideOrder("float32", 150, "float32", -3.14, -3.14),
  one(
    "float32half",
    "holding",
    158,
    { ...hr(158), type: "float32", byteOrder: "CDAB" },
    { type: "float32", byteOrder: "CDAB", value: 21.5 },
    21.5,
  ),
  // 160-161 noise
  ...everyWideOrder("float64", 162, "float64", 1234.5678, 1234.5678),
  one(
    "float64tiny",
    "holding",
    178,
    { ...hr(178), type: "float64", byteOrder: "BADC" },
    { type: "float64", byteOrder: "BADC", value: -2.5e-300 },
    -2.5e-300,
  ),

  ...everyNarrowOrder("string", 300, "string", "Hello, PLC", "Hello, PLC", 6),
  ...everyNarrowOrder("stringOdd", 312, "string", "ABC", "ABC", 2),
  one(
    "stringPadded",
    "holding",
    316,
    { ...hr(316), type: "string", length: 4 },
    { type: "string", byteOrder: "AB", length: 4, value: "Tank 7  " },
    "Tank 7",
  ),
  // 320-323 noise
  // 0xA008: bits 15, 13 and 3 set.
  one("bits.b3", "holding", 324, { ...hr(324), type: "uint16", bit: 3 }, { words: [0xa008] }, true),
  bit(0, false),
  bit(4, false),
  bit(13, true),
  bit(15, true),
  one(
    "enum.state",
    "holding",
    325,
    { ...hr(325), type: "uint16", enum: { 0: "idle", 1: "heating", 2: "fault" } },
    { type: "uint16", value: 2 },
    "fault",
  ),
  one(
    "enum.unknown",
    "holding",
    326,
    { ...hr(326), type: "uint16", enum: { 0: "idle", 1: "heating" } },
    { type: "uint16", value: 7 },
    7,
  ),
  one(
    "enum.signed",
    "holding",
    327,
    { ...hr(327), type: "int16", byteOrder: "BA", enum: { "-2": "underrange", 2: "overrange" } },
    { type: "int16", byteOrder: "BA", value: -2 },
    "underrange",
  ),
  // -215 * 0.1 + 273.15
  one(
    "scaled.int16",
    "holding",
    328,
    { ...hr(328), type: "int16", scale: 0.1, valueOffset: 273.15 },
    { type: "int16", value: -215 },
    251.65,
  ),
  one(
    "scaled.uint32",
    "holding",
    329,
    { ...hr(329), type: "uint32", byteOrder: "CDAB", scale: 0.01 },
    { type: "uint32", byteOrder: "CDAB", value: 123456 },
    1234.56,
  ),
  one(
    "scaled.float32",
    "holding",
    331,
    { ...hr(331), type: "float32", byteOrder: "DCBA", scale: 2, valueOffset: -50 },
    { type: "float32", byteOrder: "DCBA", value: 100 },
    150,
  ),

  one(
    "far.sixDigit",
    "holding",
    10000,
    { register: 410001, type: "uint16" },
    { type: "uint16", value: 4242 },
    4242,
  ),
  one(
    "far.top",
    "holding",
    65534,
    { table: "holding", offset: 65534, type: "float32", byteOrder: "BADC" },
    { type: "float32", byteOrder: "BADC", value: 0.5 },
    0.5,
  ),

  one(
    "input.first",
    "input",
    0,
    { table: "input", offset: 0, type: "int16" },
    { type: "int16", value: -2 },
    -2,
  ),
  one(
    "input.flow",
    "input",
    12,
    { table: "input", offset: 12, type: "uint16" },
    { type: "uint16", value: 1234 },
    1234,
  ),
  one(
    "input.level",
    "input",
    13,
    { register: 30014, type: "float32", byteOrder: "CDAB" },
    { type: "float32", byteOrder: "CDAB", value: 98.25 },
    98.25,
  ),
  one(
    "input.counter",
    "input",
    100,
    { table: "input", offset: 100, type: "uint32", byteOrder: "BADC" },
    { type: "uint32", byteOrder: "BADC", value: 3735928559 },
    3735928559,
  ),

  one("coil.c1", "coil", 0, { coil: 1 }, { value: true }, true),
  one("coil.c5", "coil", 4, { coil: 5 }, { value: false }, false),
  one("coil.c6", "coil", 5, { coil: 6, writable: true }, { value: true }, true),
  one("coil.c200", "coil", 199, { coil: 200 }, { value: false }, false),
  one("di.d3", "discreteInput", 2, { discreteInput: 3 }, { value: true }, true),
  one("di.d4", "discreteInput", 3, { discreteInput: 4 }, { value: false }, false),
  one("di.d10", "discreteInput", 9, { table: "discreteInput", offset: 9 }, { value: true }, true),
];

/** Values in the unused addresses next to and between the points. */
const NOISE: SpecEntry[] = [
  { table: "holding", address: 6, words: [0xdead, 0xbeef, 0xffff] },
  { table: "holding", address: 17, words: Array.from({ length: 8 }, (_, i) => 0xa5a0 + i) },
  { table: "holding", address: 33, words: Array.from({ length: 9 }, (_, i) => 0x5a50 + i) },
  { table: "holding", address: 118, words: [0xffff, 0xffff] },
  { table: "holding", address: 160, words: [0x7fc0, 0x0000] },
  { table: "holding", address: 320, words: [0x2020, 0x4142, 0xffff, 0x0001] },
  { table: "holding", address: 333, words: [0xffff] },
  { table: "holding", address: 9999, words: [0x1111] },
  { table: "holding", address: 10001, words: [0x2222] },
  { table: "holding", address: 65533, words: [0x3333] },
  { table: "input", address: 1, words: [0xffff, 0xfffe, 0xfffd] },
  { table: "input", address: 11, words: [0xeeee] },
  { table: "input", address: 15, words: [0xdddd] },
  { table: "input", address: 99, words: [0xcccc] },
  { table: "input", address: 102, words: [0xbbbb] },
  { table: "coil", address: 3, value: true },
  { table: "coil", address: 198, value: true },
  { table: "coil", address: 200, value: true },
  { table: "discreteInput", address: 1, value: true },
  { table: "discreteInput", address: 4, value: true },
  { table: "discreteInput", address: 10, value: true },
];

/**
 * The reads the planner must send, `<fc> <address> <count>` as server.py logs them: merged
 * across gaps up to maxGap (8 registers, 64 bits), split beyond.
 */
const EXPECTED_REQUESTS = [
  "1 0 6", // coils 1-6
  "1 199 1", // coil 200: 193 bits away
  "2 2 8", // discrete inputs 3-10
  "4 0 1", // input 0: 11 registers before the next
  "4 12 3",
  "4 100 2",
  "3 0 33",
  "3 42 76",
  "3 150 32",
  "3 300 33",
  "3 10000 1",
  "3 65534 2",
];

function nest(cases: readonly Case[]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const c of cases) {
    const path = c.name.split(".");
    const leaf = path.pop() as string;
    let node = root;
    for (const key of path) {
      node[key] ??= {};
      node = node[key] as Record<string, unknown>;
    }
    node[leaf] = c.expected;
  }
  return root;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: readonly string[]): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, SHADOWGATE_LOG_LEVEL: "warn" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.once("error", reject);
    child.once("close", (code) => {
      keepLog("cli", stderr);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Starts server.py and resolves with its port once it prints `ready <port>`. */
function startServer(spec: string, log: string): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(PYTHON, [SERVER, "--log", log, "--stop-on-stdin-eof", "0", spec], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const lines = createInterface({ input: child.stdout });
    const onExit = (code: number | null, signal: string | null): void => {
      reject(new Error(`server.py exited (${code ?? signal}) before ready:\n${stderr}`));
    };
    child.once("error", reject);
    child.once("exit", onExit);
    lines.on("line", (line) => {
      const m = /^ready (\d+)$/.exec(line);
      if (!m) return;
      child.off("exit", onExit);
      resolvePromise({ child, port: Number(m[1]) });
    });
  });
}

describe("interop with an independent Modbus server (pymodbus BinaryPayloadBuilder)", () => {
  let dir = "";
  let config = "";
  let requestLog = "";
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    if (skipNote !== undefined) {
      console.warn(`interop-pymodbus: skipped: ${skipNote}`);
      return;
    }
    if (missing !== undefined) {
      throw new Error(`CI=true and pymodbus is missing, so this test fails: ${missing}`);
    }
    dir = await mkdtemp(join(tmpdir(), "sg-pymodbus-"));
    const spec: SpecEntry[] = [
      ...CASES.flatMap((c) =>
        c.put === undefined ? [] : [{ table: c.table, address: c.address, ...c.put }],
      ),
      ...NOISE,
    ];
    const specFile = join(dir, "spec.json");
    requestLog = join(dir, "requests.log");
    await writeFile(specFile, JSON.stringify(spec, null, 2));
    const started = await startServer(specFile, requestLog);
    server = started.child;

    const mapping = {
      version: 1,
      device: { productKey: "a1Interop", deviceName: DEVICE },
      source: "pymodbus",
      unitId: 1,
      pollInterval: "1s",
      points: Object.fromEntries(CASES.map((c) => [c.name, c.point])),
    };
    const gateway = {
      version: 1,
      gateway: { name: "interop", dataDir: join(dir, "data") },
      sources: {
        pymodbus: {
          protocol: "modbus-tcp",
          host: "127.0.0.1",
          port: started.port,
          timeout: "5s",
          maxGap: 8,
        },
      },
      mappings: join(dir, "mappings"),
    };
    await mkdir(join(dir, "mappings"));
    await writeFile(join(dir, "mappings", "interop-1.yaml"), stringify(mapping));
    config = join(dir, "gateway.yaml");
    await writeFile(config, stringify(gateway));
  });

  afterAll(async () => {
    const child = server;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reads every type under every byte order as pymodbus encoded it", async (ctx) => {
    if (skipNote !== undefined) ctx.skip(skipNote);
    const run = await runCli(["read", "-c", config, "--json"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? "")).toStrictEqual({ [DEVICE]: nest(CASES) });

    const requests = (await readFile(requestLog, "utf8")).trimEnd().split("\n");
    expect([...requests].sort()).toEqual([...EXPECTED_REQUESTS].sort());
  });

  it("--raw lists the words of a float32 CDAB point and its value under each byte order", async (ctx) => {
    if (skipNote !== undefined) ctx.skip(skipNote);
    const run = await runCli(["read", "-c", config, "--raw", "float32.CDAB", "--json"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as {
      device: string;
      point: string;
      words: number[];
      values: Array<{ byteOrder: string; value: unknown; configured: boolean }>;
    };
    expect(out.device).toBe(DEVICE);
    expect(out.point).toBe("float32.CDAB");
    // -3.14f is 0xC048F5C3; CDAB puts the low word first.
    expect(out.words).toEqual([0xf5c3, 0xc048]);
    expect(out.values.map((v) => v.byteOrder)).toEqual([...WIDE]);
    expect(out.values.filter((v) => v.configured)).toEqual([
      { byteOrder: "CDAB", value: -3.14, configured: true },
    ]);
    expect(out.values.find((v) => v.byteOrder === "ABCD")?.value).not.toBe(-3.14);
  });
});
