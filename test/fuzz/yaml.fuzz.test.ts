import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatProblem, loadConfig, type Problem } from "../../src/config/load.js";
import { runCli } from "../helpers/run.js";
import { fuzz, fuzzRun, LONG, regressionCases } from "./harness.js";

/**
 * `validate` against mutations of the shipped examples (config/gateway.yaml and
 * mappings/boiler-01.yaml): deleted, duplicated and renamed keys, values of the wrong type, huge
 * numbers, anchors and aliases up to alias bombs, tabs, a BOM, CRLF, truncation, control and
 * other unicode characters, deep flow collections, very long lines, several documents. Whatever
 * the files hold, loading them never throws and never hangs, and either succeeds or lists
 * problems as `file:line:col ...` in one of the two files, with no stack trace and no
 * `undefined` or `[object Object]` where a value should be.
 *
 * Each input is the two texts, {gateway, mapping}, so a shrunk counterexample is a fixture that
 * can be read; the gateway file names its mappings as `./mappings`.
 */

const ROOT = path.resolve(import.meta.dirname, "../..");

interface Texts {
  readonly gateway: string;
  readonly mapping: string;
}
type Target = keyof Texts;

const GATEWAY_FILE = "gateway.yaml";
const MAPPING_FILE = path.join("mappings", "boiler-01.yaml");

/** Everything the examples' `${...}` need, or have a default for. */
const ENV: NodeJS.ProcessEnv = { PLC_HOST: "127.0.0.1" };

/** One file loaded for longer than this is a hang; a correctness bound, not a speed target. */
const HANG_MS = 2000;

// ---------------------------------------------------------------------------------------------
// Mutations. Each one picks its place with a natural number taken modulo what the text offers,
// so that it applies to whatever the mutations before it left.

/** Values of the wrong type, odd numbers and YAML's odd corners, for any scalar. */
const ODD_VALUES = [
  "[1, 2]",
  "[]",
  "{ a: 1 }",
  "{}",
  '"str"',
  "''",
  "text",
  "true",
  "false",
  "yes",
  "null",
  "~",
  "1e309",
  "-1e309",
  "-0",
  "0x1F",
  "0xFFFFFFFFFFFFFFFFFFFF",
  "0o777",
  "99999999999999999999",
  "-99999999999999999999",
  "1.7976931348623157e308",
  "5e-324",
  "9007199254740993",
  "4294967296",
  "65536",
  "-1",
  "0",
  "1.5",
  ".nan",
  ".inf",
  "-.inf",
  "1_000",
  "12:30:00",
  "2001-12-14t21:59:43.10-05:00",
  "!!binary aGVsbG8=",
  "!!str 5",
  "!!int x",
  "!!float 1",
  "!!map {}",
  "!!seq []",
  "!!set { a, b }",
  "!!omap [ a: 1 ]",
  "!!timestamp 2001-12-14",
  "!unknown x",
  "!<tag:yaml.org,2002:str> x",
  "|\n  block",
  ">-\n  folded\n  text",
  "\n  - a\n  - b",
  "\n  a: 1\n  b: 2",
  '"\\u0000"',
  '"\\uD800"',
  '"\\x"',
  "'it''s'",
  "${UNSET_VAR}",
  "${PLC_HOST}",
  "${PLC_PORT:-}",
  "${A:-${B}}",
  '"${PLC_PORT:-5020}"',
  "$${PLC_HOST}",
  "* a",
  "&",
  "*",
  "!",
  "? x",
  "-",
  "- x",
  "__proto__",
  "constructor",
  "{ __proto__: 1 }",
  "{ <<: { a: 1 } }",
  "[[[[1]]]]",
  "60s",
  "0s",
  "-5s",
  "1y",
  "1e3s",
  "99999999999999999999ms",
];

/** Replacements for a key: reserved names, non-string keys, tags, typos. */
const ODD_KEYS = [
  "__proto__",
  "constructor",
  "toString",
  "<<",
  "Version",
  '"version"',
  "? version",
  "1",
  "null",
  "true",
  "[a]",
  "{ a: 1 }",
  "*x",
  "&k version",
  "!!str version",
  "!!int 1",
  "",
  "-",
  "a b",
];

/** Characters a careless editor, a bad copy or an attacker could put anywhere. */
const ODD_CHARS = [
  "\0",
  "\x01",
  "\x07",
  "\b",
  "\x0b",
  "\f",
  "\x1b",
  "\x7f",
  "\x85",
  "\u00a0",
  "\u2028",
  "\u2029",
  "\u200b",
  "\u202e",
  "\ufeff",
  "\ufffd",
  "\ufffe",
  "\uffff",
  "\ud800",
  "\udfff",
  "\u{1f600}",
  "é",
  "\r",
  "\n",
  "\t",
  " ",
  '"',
  "'",
  "\\",
  "{",
  "}",
  "[",
  "]",
  ":",
  ",",
  "#",
  "&",
  "*",
  "!",
  "|",
  ">",
  "%",
  "@",
  "`",
  "-",
  "?",
  "$",
];

type Mutation =
  | { op: "deleteLine"; file: Target; at: number }
  | { op: "deleteKey"; file: Target; at: number; flow: boolean }
  | { op: "duplicateKey"; file: Target; at: number; flow: boolean; block: boolean }
  | { op: "renameKey"; file: Target; at: number; key: string }
  | { op: "wrongType"; file: Target; at: number; value: string }
  | { op: "anchorAlias"; file: Target; anchorAt: number; aliasAt: number; blockAnchor: boolean }
  | { op: "merge"; file: Target; anchorAt: number; at: number }
  | {
      op: "aliasBomb";
      file: Target;
      levels: number;
      width: number;
      form: "flow" | "block" | "map" | "merge";
      useAt: number | undefined;
    }
  | { op: "tabs"; file: Target; at: number; how: "indent" | "afterColon" | "all" }
  | { op: "bom"; file: Target; twice: boolean }
  | { op: "lineEnds"; file: Target; how: "crlf" | "cr" | "mixed"; at: number }
  | { op: "truncate"; file: Target; at: number }
  | { op: "insertChars"; file: Target; at: number; chars: string }
  | {
      op: "deepNesting";
      file: Target;
      at: number;
      depth: number;
      open: "[" | "{" | "{a: " | "- " | "block";
      closed: boolean;
    }
  | { op: "longLine"; file: Target; at: number; length: number; char: string; asKey: boolean }
  | { op: "documents"; file: Target; how: "append" | "prefix" | "split" | "end" | "directive" };

const KEY_LINE = /^( *)(?:- +)?([A-Za-z_$][\w.$-]*):(?=[ \t\r]|$)/;
/**
 * `key: value` with a plain or `${...}` value, in a block or a flow map. Every repetition is
 * bounded: unbounded ones backtrack quadratically over a 100,000-character line.
 */
const SCALAR =
  /([A-Za-z_$][\w.$-]{0,63}): {1,16}(\$\{[^}\r\n]{0,200}\}|[^\s{}[\],#&*!|>'"][^,{}[\]#\r\n]{0,200}?)(?= {0,16}(?:[,}\]]|#|\r?$))/gm;

interface Scalar {
  readonly keyStart: number;
  readonly keyEnd: number;
  readonly valueStart: number;
  readonly valueEnd: number;
}

function scalars(text: string): Scalar[] {
  return Array.from(text.matchAll(SCALAR), (m) => {
    const key = m[1] ?? "";
    const value = m[2] ?? "";
    const keyStart = m.index;
    const valueEnd = keyStart + m[0].length;
    return {
      keyStart,
      keyEnd: keyStart + key.length,
      valueStart: valueEnd - value.length,
      valueEnd,
    };
  });
}

/** Indices of the lines that start a `key:` in block style. */
function keyLines(lines: readonly string[]): number[] {
  return lines.flatMap((l, i) => (KEY_LINE.test(l) ? [i] : []));
}

const indentOf = (line: string): number => /^ */.exec(line)?.[0].length ?? 0;

/** The line at `i` and the more indented (or blank) lines after it: a key and its value. */
function blockEnd(lines: readonly string[], i: number): number {
  const indent = indentOf(lines[i] ?? "");
  let end = i + 1;
  while (end < lines.length) {
    const l = lines[end] ?? "";
    if (l.trim() !== "" && indentOf(l) <= indent) break;
    end++;
  }
  return end;
}

const pick = <T>(items: readonly T[], at: number): T | undefined =>
  items.length === 0 ? undefined : items[at % items.length];

const splice = (text: string, start: number, end: number, insert: string): string =>
  text.slice(0, start) + insert + text.slice(end);

/** The alias bomb's definition lines, anchors `<name>0` .. `<name><levels-1>`. */
function bomb(name: string, levels: number, width: number, form: string): string[] {
  const lines = [`${name}0: &${name}0 [${Array(width).fill("lol").join(", ")}]`];
  for (let k = 1; k < levels; k++) {
    const prev = `*${name}${k - 1}`;
    const anchor = `${name}${k}: &${name}${k}`;
    if (form === "block") {
      lines.push(anchor, ...Array<string>(width).fill(`  - ${prev}`));
    } else if (form === "map") {
      const entries = Array.from({ length: width }, (_, j) => `k${j}: ${prev}`);
      lines.push(`${anchor} { ${entries.join(", ")} }`);
    } else if (form === "merge") {
      lines.push(`${anchor} { <<: [${Array(width).fill(prev).join(", ")}], k${k}: ${prev} }`);
    } else {
      lines.push(`${anchor} [${Array(width).fill(prev).join(", ")}]`);
    }
  }
  return lines;
}

function mutate(text: string, m: Mutation, n: number): string {
  const lines = text.split("\n");
  const keys = keyLines(lines);
  const values = scalars(text);
  switch (m.op) {
    case "deleteLine": {
      if (lines.length === 0) return text;
      lines.splice(m.at % lines.length, 1);
      return lines.join("\n");
    }
    case "deleteKey": {
      if (m.flow) {
        const s = pick(values, m.at);
        if (!s) return text;
        const after = /^ *,? */.exec(text.slice(s.valueEnd))?.[0].length ?? 0;
        return splice(text, s.keyStart, s.valueEnd + after, "");
      }
      const i = pick(keys, m.at);
      if (i === undefined) return text;
      lines.splice(i, blockEnd(lines, i) - i);
      return lines.join("\n");
    }
    case "duplicateKey": {
      if (m.flow) {
        const s = pick(values, m.at);
        if (!s) return text;
        return splice(text, s.keyStart, s.keyStart, `${text.slice(s.keyStart, s.valueEnd)}, `);
      }
      const i = pick(keys, m.at);
      if (i === undefined) return text;
      const end = m.block ? blockEnd(lines, i) : i + 1;
      lines.splice(end, 0, ...lines.slice(i, end));
      return lines.join("\n");
    }
    case "renameKey": {
      const s = pick(values, m.at);
      if (!s) return text;
      return splice(text, s.keyStart, s.keyEnd, m.key);
    }
    case "wrongType": {
      const s = pick(values, m.at);
      if (!s) return text;
      return splice(text, s.valueStart, s.valueEnd, m.value);
    }
    case "anchorAlias": {
      const name = `a${n}`;
      // The anchor on a scalar, or on a key's block value (`points: &a`).
      let anchored = text;
      const i = pick(keys, m.anchorAt);
      if (m.blockAnchor && i !== undefined) {
        const line = lines[i] ?? "";
        const colon = (KEY_LINE.exec(line)?.[0].length ?? 1) - 1;
        lines[i] = `${line.slice(0, colon + 1)} &${name}${line.slice(colon + 1)}`;
        anchored = lines.join("\n");
      } else {
        const s = pick(values, m.anchorAt);
        if (!s) return text;
        anchored = splice(text, s.valueStart, s.valueStart, `&${name} `);
      }
      // The alias anywhere: before the anchor, after it, or inside its own value.
      const t = pick(scalars(anchored), m.aliasAt);
      return t ? splice(anchored, t.valueStart, t.valueEnd, `*${name}`) : anchored;
    }
    case "merge": {
      const s = pick(values, m.anchorAt);
      const i = pick(keys, m.at);
      if (!s || i === undefined) return text;
      const name = `m${n}`;
      // The merge line goes into the map of the key line at `at`, in front of its first key.
      const line = lines[i] ?? "";
      lines.splice(i, 0, `${" ".repeat(indentOf(line))}<<: *${name}`);
      const merged = lines.join("\n");
      const t = scalars(merged)[values.indexOf(s)];
      if (!t) return merged;
      return splice(merged, t.valueStart, t.valueStart, `&${name} `);
    }
    case "aliasBomb": {
      const name = `b${n}_`;
      const defs = bomb(name, m.levels, m.width, m.form);
      let bombed = [...defs, text].join("\n");
      if (m.useAt !== undefined) {
        // Used where the schema looks, after the definitions (whose values come first).
        const s = pick(scalars(bombed).slice(defs.length), m.useAt);
        if (s) bombed = splice(bombed, s.valueStart, s.valueEnd, `*${name}${m.levels - 1}`);
      }
      return bombed;
    }
    case "tabs": {
      if (m.how === "all") return text.replace(/^( {2})+/gm, (s) => "\t".repeat(s.length / 2));
      const i = pick(keys, m.at) ?? 0;
      const line = lines[i] ?? "";
      lines[i] =
        m.how === "indent"
          ? line.replace(/^ */, (s) => (s === "" ? "\t" : "\t".repeat(Math.ceil(s.length / 2))))
          : line.replace(/: /, ":\t");
      return lines.join("\n");
    }
    case "bom":
      return (m.twice ? "\ufeff\ufeff" : "\ufeff") + text;
    case "lineEnds": {
      if (m.how === "crlf") return text.replace(/\r?\n/g, "\r\n");
      if (m.how === "cr") return text.replace(/\r?\n/g, "\r");
      if (lines.length === 0) return text;
      const i = m.at % lines.length;
      lines[i] = `${lines[i] ?? ""}\r`;
      return lines.join("\n");
    }
    case "truncate":
      return text.slice(0, m.at % (text.length + 1));
    case "insertChars": {
      const at = m.at % (text.length + 1);
      return splice(text, at, at, m.chars);
    }
    case "deepNesting": {
      const s = pick(values, m.at);
      if (m.open === "block") {
        // A block map `depth` levels deep, one key a line, under a top-level key.
        const nested = Array.from({ length: m.depth }, (_, k) => `${"  ".repeat(k + 1)}d${k}:`);
        return [text, "deep:", ...nested, m.closed ? `${"  ".repeat(m.depth + 1)}x` : ""].join(
          "\n",
        );
      }
      const close = m.open === "[" ? "]" : m.open === "- " ? "" : "}";
      const value =
        m.open === "- "
          ? `\n${"- ".repeat(m.depth)}x`
          : m.open.repeat(m.depth) + (m.closed ? `x${close.repeat(m.depth)}` : "");
      if (!s) return `${text}\ndeep: ${value}`;
      return splice(text, s.valueStart, s.valueEnd, value);
    }
    case "longLine": {
      const long = m.char.repeat(m.length);
      if (m.asKey) {
        if (lines.length === 0) return long;
        const i = m.at % lines.length;
        lines.splice(i, 0, `${" ".repeat(indentOf(lines[i] ?? ""))}k${long}: 1`);
        return lines.join("\n");
      }
      const s = pick(values, m.at);
      return s ? splice(text, s.valueEnd, s.valueEnd, long) : text + long;
    }
    case "documents":
      switch (m.how) {
        case "append":
          return `${text}\n---\n${text}`;
        case "prefix":
          return `---\n${text}`;
        case "split": {
          const i = pick(keys, 1) ?? 0;
          lines.splice(i, 0, "---");
          return lines.join("\n");
        }
        case "end":
          return `${text}\n...\n`;
        case "directive":
          return `%YAML 1.1\n---\n${text}`;
      }
  }
}

const target: fc.Arbitrary<Target> = fc.constantFrom("gateway", "mapping");
const at = fc.nat();

/** The cheap, structural mutations weigh more than the big inputs, which take the time. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("deleteLine" as const), file: target, at }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("deleteKey" as const),
      file: target,
      at,
      flow: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("duplicateKey" as const),
      file: target,
      at,
      flow: fc.boolean(),
      block: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("renameKey" as const),
      file: target,
      at,
      key: fc.constantFrom(...ODD_KEYS),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("wrongType" as const),
      file: target,
      at,
      value: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...ODD_VALUES) },
        { weight: 1, arbitrary: fc.double().map(String) },
        { weight: 1, arbitrary: fc.bigInt().map(String) },
        { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("anchorAlias" as const),
      file: target,
      anchorAt: at,
      aliasAt: at,
      blockAnchor: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("merge" as const), file: target, anchorAt: at, at }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("aliasBomb" as const),
      file: target,
      levels: fc.integer({ min: 2, max: 12 }),
      width: fc.integer({ min: 2, max: 12 }),
      form: fc.constantFrom("flow" as const, "block" as const, "map" as const, "merge" as const),
      useAt: fc.option(at, { nil: undefined }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("tabs" as const),
      file: target,
      at,
      how: fc.constantFrom("indent" as const, "afterColon" as const, "all" as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("bom" as const), file: target, twice: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("lineEnds" as const),
      file: target,
      how: fc.constantFrom("crlf" as const, "cr" as const, "mixed" as const),
      at,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("truncate" as const), file: target, at }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("insertChars" as const),
      file: target,
      at,
      chars: fc.oneof(
        fc.string({ unit: fc.constantFrom(...ODD_CHARS), minLength: 1, maxLength: 8 }),
        fc.string({ unit: "binary", minLength: 1, maxLength: 8 }),
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.record({
        op: fc.constant("deepNesting" as const),
        file: target,
        at,
        depth: fc.oneof(
          fc.constantFrom(63, 64, 65, 1000, 10_000),
          fc.integer({ min: 1, max: 10_000 }),
        ),
        open: fc.constantFrom("[" as const, "{" as const, "{a: " as const, "- " as const),
        closed: fc.boolean(),
      }),
      fc.record({
        op: fc.constant("deepNesting" as const),
        file: target,
        at,
        depth: fc.integer({ min: 1, max: 200 }),
        open: fc.constant("block" as const),
        closed: fc.boolean(),
      }),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("longLine" as const),
      file: target,
      at,
      length: fc.integer({ min: 1000, max: 100_000 }),
      char: fc.constantFrom("a", " ", "\t", '"', "'", "[", "{", "#", ":", "é", "\u{1f600}", "\\"),
      asKey: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("documents" as const),
      file: target,
      how: fc.constantFrom(
        "append" as const,
        "prefix" as const,
        "split" as const,
        "end" as const,
        "directive" as const,
      ),
    }),
  },
);

/** Mutated copies of the examples, as the two texts (JSON-serializable, for the fixtures). */
function mutatedTexts(base: Texts): fc.Arbitrary<Texts> {
  return fc.array(mutation, { minLength: 1, maxLength: 5 }).map((ms) => {
    const texts = { ...base };
    ms.forEach((m, n) => {
      texts[m.file] = mutate(texts[m.file], m, n);
    });
    return texts;
  });
}

// ---------------------------------------------------------------------------------------------
// The checks.

/** What each file holds now: most inputs mutate one file, and the other need not be written. */
const written = new Map<string, string>();

/** Writes the two files into `dir`; returns the gateway file's path. */
async function writeTexts(dir: string, texts: Texts): Promise<string> {
  for (const [name, text] of [
    [GATEWAY_FILE, texts.gateway],
    [MAPPING_FILE, texts.mapping],
  ] as const) {
    const file = path.join(dir, name);
    if (written.get(file) === text) continue;
    await writeFile(file, text);
    written.set(file, text);
  }
  return path.join(dir, GATEWAY_FILE);
}

/** Each line's length, lines as the loader counts them (\n or \r\n ends one; a lone \r does not). */
const lineLengths = (text: string): number[] => text.split("\n").map((l) => l.length);

/** `file:line:col ` at a place that exists in one of the two files. */
const POSITIONED = /^(gateway\.yaml|mappings\/boiler-01\.yaml):(\d+):(\d+) /;

function checkProblem(p: Problem, dir: string, texts: Texts): void {
  const line = formatProblem(p, dir);
  const m = POSITIONED.exec(line);
  if (!m) throw new Error(`not positioned in one of the files: ${JSON.stringify(line)}`);
  const [, file, l, c] = m;
  const lengths = lineLengths(file === GATEWAY_FILE ? texts.gateway : texts.mapping);
  const row = Number(l);
  const col = Number(c);
  const length = lengths[row - 1];
  if (row < 1 || col < 1 || length === undefined || col > length + 1) {
    throw new Error(`position past the file's end: ${JSON.stringify(line)}`);
  }
  const said = line.slice(m[0].length);
  if (said.trim() === "") throw new Error(`no message: ${JSON.stringify(line)}`);
  if (said.includes("    at ") || /^\s+at /m.test(said)) {
    throw new Error(`a stack trace: ${JSON.stringify(line)}`);
  }
  if (said.includes("[object Object]") || /\bundefined\b/.test(said)) {
    throw new Error(`a value JavaScript failed to print: ${JSON.stringify(line)}`);
  }
}

/** loadConfig in process: resolves, in bounded time, ok or with positioned problems. */
async function checkLoad(config: string, texts: Texts): Promise<void> {
  const dir = path.dirname(config);
  const started = performance.now();
  const r = await loadConfig(config, ENV);
  const ms = performance.now() - started;
  if (ms > HANG_MS) throw new Error(`loading took ${Math.round(ms)} ms (bound ${HANG_MS} ms)`);
  if (r.ok) {
    for (const w of r.config.warnings ?? []) checkProblem(w, dir, texts);
    return;
  }
  if (r.problems.length === 0) throw new Error("refused with no problem listed");
  for (const p of r.problems) checkProblem(p, dir, texts);
}

/** The built CLI: exit 0, or 2 with `file:line:col` problems; never a stack trace. */
async function checkCli(config: string): Promise<void> {
  const r = await runCli(["validate", "-c", GATEWAY_FILE], {
    cwd: path.dirname(config),
    env: { PATH: process.env.PATH ?? "", ...ENV },
  });
  if (/^\s+at /m.test(r.stderr) || r.stderr.includes("    at ")) {
    throw new Error(`a stack trace (exit ${r.code}):\n${r.stderr}`);
  }
  if (r.code === 0) return;
  if (r.code !== 2) throw new Error(`exit ${r.code}:\n${r.stderr}`);
  if (!/^(gateway\.yaml|mappings\/boiler-01\.yaml):\d+:\d+ /m.test(r.stderr)) {
    throw new Error(`exit 2 without file:line:col:\n${r.stderr}`);
  }
}

/**
 * Writes the files once and checks them in process and, when `cli`, with the built CLI too
 * (in another process, on the other core, while loadConfig runs here).
 */
async function check(dir: string, texts: Texts, cli: boolean): Promise<void> {
  const config = await writeTexts(dir, texts);
  const results = await Promise.allSettled([
    checkLoad(config, texts),
    cli ? checkCli(config) : Promise.resolve(),
  ]);
  for (const r of results) if (r.status === "rejected") throw r.reason;
}

// ---------------------------------------------------------------------------------------------

let base: Texts;
let dir: string;

beforeAll(async () => {
  base = {
    gateway: readFileSync(path.join(ROOT, "config/gateway.yaml"), "utf8").replace(
      /^mappings: .*$/m,
      "mappings: ./mappings",
    ),
    mapping: readFileSync(path.join(ROOT, "mappings/boiler-01.yaml"), "utf8"),
  };
  dir = await mkdtemp(path.join(tmpdir(), "sg-fuzz-yaml-"));
  await mkdir(path.join(dir, "mappings"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Long runs take as long as they take (npm run fuzz passes --testTimeout=0). */
const TIMEOUT = LONG ? 0 : 60_000;

/**
 * How many of the first generated inputs also go through the built CLI: half a second each, so
 * a few, the same ones on every CI run. The runs that shrink a failure do not start the CLI, so a
 * failure only the CLI shows is saved as it was generated.
 */
const CLI_RUNS = LONG ? 500 : 20;

describe("fuzz yaml: validate on mutated example files", () => {
  it("the unmutated examples load", async () => {
    const r = await loadConfig(await writeTexts(dir, base), ENV);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it(
    "never throws or hangs, and positions every problem (the first inputs also through the CLI)",
    async () => {
      let cliRuns = 0;
      const runs = await fuzz(
        "yaml",
        mutatedTexts(base),
        (texts) => check(dir, texts, cliRuns++ < CLI_RUNS),
        fuzzRun(1000, 100_000),
      );
      expect(cliRuns).toBeGreaterThanOrEqual(CLI_RUNS);
      expect(runs).toBeGreaterThanOrEqual(LONG ? 100_000 : 1000);
    },
    TIMEOUT,
  );
});

describe("fuzz yaml: saved counterexamples", () => {
  it.each(regressionCases<Texts>("yaml"))("$name", async ({ input }) => {
    await check(dir, input, true);
  });
});
