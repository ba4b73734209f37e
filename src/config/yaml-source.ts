import {
  Composer,
  CST,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  Parser,
  parseDocument,
  visit,
} from "yaml";
import type { Alias, Document, Node, Pair } from "yaml";
import { ErrorCodes, type ErrorCode } from "../core/errors.js";
import type { SourcePosition } from "../mapping/types.js";

/** Maps and lists nested deeper than this are refused; the files we read need about five. */
const MAX_DEPTH = 64;

/**
 * Aliases (`*name`) may stand for at most this many values in one file (a scalar counts one, a
 * map or list one plus what it holds): plenty to share enum tables or durations, far too few for
 * an alias bomb, a few lines that would expand to billions of values.
 */
const MAX_ALIASED_VALUES = 5000;

/** A parsed YAML file that can answer "where is key path X" for error messages. */
export interface YamlSource {
  readonly file: string;
  readonly doc: Document.Parsed;
  /** Syntax errors, already positioned. */
  readonly syntaxErrors: ReadonlyArray<{ position: SourcePosition; message: string }>;
  /** Position of the value at `path`, or of the nearest ancestor that exists. */
  positionOf(path: readonly (string | number)[], key?: boolean): SourcePosition;
  positionOfOffset(offset: number): SourcePosition;
}

/**
 * Offset of the first map or list nested deeper than MAX_DEPTH. The yaml composer recurses once
 * per level and runs out of stack near a thousand, so the parser's tokens are measured first,
 * without recursion.
 */
function tooDeep(tokens: readonly CST.Token[]): number | undefined {
  const stack: Array<[CST.Token, number]> = [];
  for (const t of tokens) if (t.type === "document" && t.value) stack.push([t.value, 1]);
  stack.reverse();
  while (stack.length > 0) {
    const [token, depth] = stack.pop() ?? [];
    if (!CST.isCollection(token) || depth === undefined) continue;
    if (depth > MAX_DEPTH) return token.offset;
    // Pushed last to first so that the first too-deep collection in the text is found first.
    for (const item of [...token.items].reverse()) {
      if (item.value) stack.push([item.value, depth + 1]);
      if (item.key) stack.push([item.key, depth + 1]);
    }
  }
  return undefined;
}

/**
 * Offset where block collections first nest deeper than MAX_DEPTH, from the lines alone (for a
 * file the parser could not take): a line indented further than the open levels opens one, and
 * so does each further `- `, `? ` or `: ` that starts it (`- - x` is a list in a list).
 */
function blockTooDeep(text: string): number | undefined {
  /** The indentation of each open level. */
  const open: number[] = [];
  let start = 0;
  for (const line of text.split("\n")) {
    const indent = /^ */.exec(line)?.[0].length ?? 0;
    const rest = line.slice(indent);
    if (rest.trim() !== "" && !rest.startsWith("#")) {
      while ((open.at(-1) ?? -1) >= indent) open.pop();
      open.push(indent);
      if (open.length > MAX_DEPTH) return start + indent;
      const chain = /^(?:[-?:](?:[ \t]+|$))+/.exec(rest)?.[0] ?? "";
      for (const m of chain.matchAll(/[-?:]/g)) {
        if (m.index === 0) continue; // the level the line opened
        open.push(indent + m.index);
        if (open.length > MAX_DEPTH) return start + indent + m.index;
      }
    }
    start += line.length + 1;
  }
  return undefined;
}

export function parseYamlSource(file: string, text: string): YamlSource {
  const lineCounter = new LineCounter();
  const at = (offset: number): SourcePosition => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col };
  };
  // Lines are counted here, not by the parser's callback: that one misses a line break in some
  // broken flow collections (`{ a: ;{ }` then a plain scalar over two lines, `r\0` and
  // `\0b: 1`), and every problem after it was reported on the line above, at a column past its
  // end (found by test/fuzz/yaml.fuzz.test.ts).
  lineCounter.addNewLine(0);
  for (const m of text.matchAll(/\n/g)) lineCounter.addNewLine(m.index + 1);
  const parser = new Parser();
  let tokens: CST.Token[];
  let deep: number | undefined;
  try {
    tokens = Array.from(parser.parse(text));
    deep = tooDeep(tokens);
  } catch (e) {
    // The parser itself recurses once per level of block collections: a line of a few thousand
    // `- ` (or `? `), or lines each indented one step further, thousands of them, overflow the
    // stack before tooDeep can measure anything (found by test/fuzz/yaml.fuzz.test.ts). Such a
    // file is refused like one too deep, where its lines first pass MAX_DEPTH.
    if (!(e instanceof RangeError)) throw e;
    tokens = [];
    deep = blockTooDeep(text) ?? Math.min(parser.offset, text.length);
  }
  // Too deep, nothing is composed: the file is refused with that one problem.
  const docs = new Composer({ uniqueKeys: true }).compose(
    deep === undefined ? tokens : [],
    true,
    text.length,
  );
  // The composer makes an Error for each problem, and one broken line can hold 500,000 problems:
  // capturing their stack traces, which nobody reads, would take seconds.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  let doc: Document.Parsed;
  let second: Document.Parsed | void;
  try {
    // With forceDoc the composer yields a document even for an empty file.
    doc = docs.next().value as Document.Parsed;
    second = docs.next().value;
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  const syntaxErrors = [
    ...doc.errors.map((e) => ({ position: at(e.pos[0]), message: e.message })),
    // The yaml library only warns about these, and reads the file as YAML 1.2 anyway.
    ...doc.warnings
      .filter((w) => w.code === "BAD_DIRECTIVE")
      .map((w) => ({
        position: at(w.pos[0]),
        message: `${w.message}; write %YAML 1.2 (or 1.1), or no directive`,
      })),
  ];
  if (deep !== undefined) {
    syntaxErrors.push({
      position: at(deep),
      message: `maps and lists nest more than ${MAX_DEPTH} levels deep here`,
    });
  }
  if (second) {
    syntaxErrors.push({
      position: at(second.range[0]),
      message: "a second YAML document (after ---); a file holds one",
    });
  }

  return {
    file,
    doc,
    syntaxErrors,
    positionOfOffset: at,
    positionOf(path, key = false) {
      let node: unknown = doc.contents;
      let keyOffset: number | undefined;
      let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
      for (const seg of path) {
        if (isMap(node)) {
          const pair = node.items.find(
            (p) => isScalar(p.key) && String(p.key.value) === String(seg),
          );
          if (!pair) break;
          keyOffset = (pair.key as Node).range?.[0];
          node = pair.value;
          offset = (pair.value as Node | null)?.range?.[0] ?? keyOffset ?? offset;
        } else if (isSeq(node) && typeof seg === "number") {
          const item = node.items[seg];
          if (!item) break;
          keyOffset = undefined;
          node = item;
          offset = (item as Node).range?.[0] ?? offset;
        } else break;
      }
      return at(key && keyOffset !== undefined ? keyOffset : offset);
    },
  };
}

export interface ValueProblem {
  readonly code: ErrorCode;
  readonly position: SourcePosition;
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** A value with what the schema will walk through: its values, aliases expanded, and levels. */
interface Converted {
  readonly value: unknown;
  readonly size: number;
  readonly height: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && Object.getPrototypeOf(v) === null;

/**
 * The document as plain data for the schemas, in place of Document.toJS(). Maps become
 * null-prototype objects, so `constructor` or `toString` is only ever a key the file wrote, and
 * what toJS would drop, stringify or throw on is refused with its position: `__proto__` keys
 * (which a record silently skips), map or list keys, keys that collide once made strings,
 * unresolved or self-containing aliases, and aliases that expand beyond MAX_ALIASED_VALUES or
 * MAX_DEPTH. A refused value becomes null; `voided` lists where, so the schema does not report
 * the same place again.
 */
export function plainValue(src: YamlSource): {
  value: unknown;
  problems: ValueProblem[];
  voided: SourcePosition[];
} {
  const problems: ValueProblem[] = [];
  const voided: SourcePosition[] = [];
  /** The last node of each anchor name so far, in document order, as an alias resolves it. */
  const anchors = new Map<string, Node>();
  /** Anchored nodes once converted; one named but not yet converted contains the alias. */
  const converted = new Map<Node, Converted>();
  let aliasedValues = 0;
  const NULL: Converted = { value: null, size: 1, height: 0 };
  const positionOf = (node: Node | null): SourcePosition =>
    src.positionOfOffset(node?.range?.[0] ?? 0);
  const problem = (
    node: Node | null,
    path: readonly (string | number)[],
    message: string,
    code: ErrorCode = ErrorCodes.CONFIG_YAML,
  ): void => {
    problems.push({ code, position: positionOf(node), path, message });
  };
  const refuse = (node: Node, path: readonly (string | number)[], message?: string): Converted => {
    if (message !== undefined) problem(node, path, message);
    voided.push(positionOf(node));
    return NULL;
  };

  const alias = (node: Alias, path: readonly (string | number)[], level: number): Converted => {
    const target = anchors.get(node.source);
    if (!target) {
      return refuse(
        node,
        path,
        `*${node.source} names no anchor; write &${node.source} on a value above it`,
      );
    }
    const done = converted.get(target);
    if (!done) {
      return refuse(node, path, `*${node.source} is inside the value it names, an endless loop`);
    }
    if (level + done.height - 1 > MAX_DEPTH) {
      return refuse(node, path, `*${node.source} nests maps and lists more than ${MAX_DEPTH} deep`);
    }
    const before = aliasedValues;
    aliasedValues += done.size;
    if (aliasedValues > MAX_ALIASED_VALUES) {
      // Said once, where the limit is crossed; every later alias is left out as well.
      return refuse(
        node,
        path,
        before > MAX_ALIASED_VALUES
          ? undefined
          : `aliases expand to more than ${MAX_ALIASED_VALUES} values in this file (the limit that stops alias bombs); write fewer aliases`,
      );
    }
    return done;
  };

  const map = (pairs: readonly Pair[], path: readonly (string | number)[], level: number) => {
    const out = Object.create(null) as Record<string, unknown>;
    let size = 1;
    let height = 1;
    const merges: Record<string, unknown>[] = [];
    for (const { key, value } of pairs) {
      if (!isScalar(key)) {
        problem(key as Node | null, path, "a key must be a name, not a map, a list or an alias");
        continue;
      }
      const convertValue = (at: (string | number)[]) => {
        const c = convert(value as Node | null, at, level + 1);
        size += c.size;
        height = Math.max(height, c.height + 1);
        return c.value;
      };
      // `<<` merges maps into this one under YAML 1.1, as Document.toJS() did.
      if (typeof key.value === "symbol") {
        const merged = convertValue([...path, "<<"]);
        for (const m of Array.isArray(merged) ? merged : [merged]) {
          if (isRecord(m)) merges.push(m);
          else {
            problem(
              value as Node | null,
              [...path, "<<"],
              "<< merges maps: a map, an alias of one, or a list of them",
            );
          }
        }
        continue;
      }
      const name = String(convert(key, path, level + 1).value);
      if (name === "__proto__") {
        problem(
          key,
          [...path, name],
          "__proto__ cannot be a key (JavaScript reserves it); choose another name",
          ErrorCodes.CONFIG_SCHEMA,
        );
      } else if (Object.hasOwn(out, name)) {
        problem(key, [...path, name], `${name} is a key of this map already`);
      } else out[name] = convertValue([...path, name]);
    }
    // Keys of the map itself win, then earlier merged maps over later ones.
    for (const m of merges)
      for (const k of Object.keys(m)) if (!Object.hasOwn(out, k)) out[k] = m[k];
    return { value: out, size, height };
  };

  const convert = (
    node: Node | null,
    path: readonly (string | number)[],
    level: number,
  ): Converted => {
    if (isAlias(node)) return alias(node, path, level);
    if (!isScalar(node) && !isMap(node) && !isSeq(node)) return NULL;
    if (!isScalar(node) && level > MAX_DEPTH) {
      return refuse(node, path, `maps and lists nest more than ${MAX_DEPTH} levels deep here`);
    }
    if (node.anchor) anchors.set(node.anchor, node);
    let result: Converted;
    if (isScalar(node)) result = { value: node.value, size: 1, height: 0 };
    else if (isMap(node)) result = map(node.items, path, level);
    else {
      const items = node.items.map((item, i) =>
        convert(item as Node | null, [...path, i], level + 1),
      );
      result = {
        value: items.map((c) => c.value),
        size: items.reduce((n, c) => n + c.size, 1),
        height: items.reduce((h, c) => Math.max(h, c.height + 1), 1),
      };
    }
    if (node.anchor) converted.set(node, result);
    return result;
  };

  const value = convert(src.doc.contents, [], 1).value;
  return { value, problems, voided };
}

/**
 * `${NAME}` and `${NAME:-default}` in string scalars are replaced from the environment, so that
 * secrets stay out of the files. A plain (unquoted) scalar that was only a reference takes the
 * type of its value (`port: ${PLC_PORT}` is a number). Returns the names that were missing.
 */
export function interpolateEnv(
  src: YamlSource,
  env: NodeJS.ProcessEnv,
): Array<{ position: SourcePosition; message: string }> {
  const missing: Array<{ position: SourcePosition; message: string }> = [];
  const { file } = src;
  visit(src.doc, {
    Scalar(_key, node) {
      if (typeof node.value !== "string" || !node.value.includes("${")) return;
      const whole = /^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$/.test(node.value);
      const replaced = node.value.replace(
        /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
        (_m, name: string, fallback: string | undefined) => {
          const v = env[name];
          if (v !== undefined && v !== "") return v;
          if (fallback !== undefined) return fallback;
          const pos = node.range ? src.positionOfOffset(node.range[0]) : { file, line: 1, col: 1 };
          missing.push({
            position: pos,
            message: `environment variable ${name} is not set (write \${${name}:-default} for a default)`,
          });
          return "";
        },
      );
      if (whole && node.type === "PLAIN") {
        // Only the scalar is read: toJS() would resolve an alias such as `*x`, and throw.
        const typed = parseDocument(replaced).contents;
        node.value =
          isScalar(typed) && (typeof typed.value === "number" || typeof typed.value === "boolean")
            ? typed.value
            : replaced;
      } else {
        node.value = replaced;
      }
    },
  });
  return missing;
}
