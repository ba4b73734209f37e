import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { isMap, isScalar, parseDocument, type Document } from "yaml";
import type { z } from "zod";
import { ErrorCodes, type ErrorCode } from "../core/errors.js";
import { compileMapping } from "../mapping/compile.js";
import { mappingKinds, protocolOf, protocols } from "../south/registry.js";
import type { DevicePlan, SourcePosition } from "../mapping/types.js";
import type { CloudConfigProblem } from "../north/dialect.js";
import { dialectFor } from "../north/dialects/index.js";
import { crossCheck } from "./cross-check.js";
import type { Override } from "./override.js";
import { gatewayConfigSchema, type GatewayConfig } from "./gateway-schema.js";
import { mappingFileSchema } from "./mapping-schema.js";
import { interpolateEnv, parseYamlSource, plainValue, type YamlSource } from "./yaml-source.js";

/** One problem in a user's file, reported as `file:line:col key.path: message`. */
export interface Problem {
  readonly code: ErrorCode;
  readonly position: SourcePosition;
  readonly keyPath: string;
  readonly message: string;
}

export function formatProblem(p: Problem, cwd = process.cwd()): string {
  // Line 0: not in a file, but a command-line `--override key=value`, named as it was given.
  if (p.position.line === 0)
    return `${p.position.file}: ${p.keyPath ? `${p.keyPath}: ` : ""}${p.message}`;
  const rel = path.relative(cwd, p.position.file);
  const file = rel.startsWith("..") ? p.position.file : rel;
  const where = `${file}:${p.position.line}:${p.position.col}`;
  return p.keyPath ? `${where} ${p.keyPath}: ${p.message}` : `${where} ${p.message}`;
}

export interface LoadedConfig {
  readonly configFile: string;
  /** The command line's overrides, applied again at every reload. */
  readonly overrides?: readonly Override[];
  readonly gateway: GatewayConfig;
  /** Absolute. */
  readonly dataDir: string;
  readonly devices: readonly DevicePlan[];
  /** What works but is worth knowing (an AWS shadow that could outgrow 8 KB). */
  readonly warnings?: readonly Problem[];
}

export type LoadResult =
  | { ok: true; config: LoadedConfig; problems: [] }
  /** `omitted` problems were found beyond the MAX_PROBLEMS_PER_FILE and MAX_PROBLEMS listed. */
  | { ok: false; problems: Problem[]; omitted: number };

/**
 * A broken file can make hundreds of thousands of problems (a line of a million quotes); the
 * first ones of each file say what is wrong.
 */
const MAX_PROBLEMS_PER_FILE = 50;
const MAX_PROBLEMS = 100;

const keyPathOf = (p: readonly PropertyKey[]): string => p.map(String).join(".");

/**
 * Positions whose schema problems are already explained: by a missing environment variable, or
 * by a value the YAML conversion refused.
 */
const silenced = new WeakMap<YamlSource, Set<string>>();

/** A YAML file read, and its content as plain data for the schemas. */
interface YamlFile {
  readonly src: YamlSource;
  readonly value: unknown;
}

const lineCol = (p: SourcePosition): string => `${p.line}:${p.col}`;

/** Reads, parses, interpolates and converts one YAML file; problems are appended. */
async function readYaml(
  file: string,
  env: NodeJS.ProcessEnv,
  problems: Problem[],
  overrides: readonly Override[] = [],
): Promise<YamlFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    problems.push({
      code: ErrorCodes.CONFIG_READ,
      position: { file, line: 1, col: 1 },
      keyPath: "",
      message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    });
    return undefined;
  }
  const src = parseYamlSource(file, text);
  if (src.syntaxErrors.length > 0) {
    for (const e of src.syntaxErrors) {
      problems.push({
        code: ErrorCodes.CONFIG_YAML,
        position: e.position,
        keyPath: "",
        message: e.message,
      });
    }
    return undefined;
  }
  const missing = interpolateEnv(src, env);
  for (const m of missing) {
    problems.push({
      code: ErrorCodes.CONFIG_ENV,
      position: m.position,
      keyPath: "",
      message: m.message,
    });
  }
  for (const o of overrides) {
    try {
      // `key=` with nothing after it takes the key out, as if the file did not say it.
      if (o.value === "") src.doc.deleteIn(o.path);
      else setKey(src.doc, o.path, parseDocument(o.value).toJS() as unknown);
    } catch (e) {
      // A path through a value that is not a map (sources.plc1.port.x=1).
      problems.push({
        code: ErrorCodes.CONFIG_SCHEMA,
        position: overridePosition(o),
        keyPath: keyPathOf(o.path),
        message: `cannot be set: ${(e as Error).message}`,
      });
    }
  }
  const { value, problems: found, voided } = plainValue(src);
  for (const f of found) {
    problems.push({
      code: f.code,
      position: f.position,
      keyPath: keyPathOf(f.path),
      message: f.message,
    });
  }
  // A value left empty by a missing variable, or refused above, would fail its schema too; say
  // it once.
  silenced.set(src, new Set([...missing.map((m) => lineCol(m.position)), ...voided.map(lineCol)]));
  return { src, value };
}

/** The value at `path`, and whether the file wrote it at all. */
function valueAt(value: unknown, path: readonly PropertyKey[]): { found: boolean; given: unknown } {
  let given = value;
  for (const key of path) {
    if (typeof given !== "object" || given === null || !Object.hasOwn(given, key)) {
      return { found: false, given: undefined };
    }
    given = (given as Record<PropertyKey, unknown>)[key];
  }
  return { found: true, given };
}

/** Validates against a zod schema, turning each issue into a positioned problem. */
function validate<S extends z.ZodType>(
  { src, value }: YamlFile,
  schema: S,
  problems: Problem[],
): z.output<S> | undefined {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const p = [...issue.path, key] as (string | number)[];
        problems.push({
          code: ErrorCodes.CONFIG_SCHEMA,
          position: src.positionOf(p, true),
          keyPath: keyPathOf(p),
          message: "unknown key (check the spelling; the JSON Schema in config/schemas lists them)",
        });
      }
      continue;
    }
    const p = issue.path as (string | number)[];
    // A key a record refuses (a bad point name) is shown at the key, with the rule it breaks.
    const badKey = issue.code === "invalid_key";
    const position = src.positionOf(p, badKey);
    if (silenced.get(src)?.has(lineCol(position))) continue;
    const { found, given } = valueAt(value, p);
    // A literal (version: 1), an enum, or a discriminator (protocol) names what it takes.
    const values =
      issue.code === "invalid_value"
        ? issue.values
        : issue.code === "invalid_union" && "options" in issue
          ? issue.options
          : undefined;
    const options = values?.map(String);
    let message = (badKey && issue.issues[0]?.message) || issue.message;
    if (options && !found) {
      const key = String(p.at(-1) ?? "");
      const [first, ...others] = options;
      message =
        `missing; write ${key}: ${first}` + (others.length ? ` (or ${others.join(", ")})` : "");
    } else if (options && options.length === 1) {
      message = `${JSON.stringify(given)} is not allowed here; must be ${options[0]}`;
    } else if (options) {
      const near = typeof given === "string" ? closest(given, options) : undefined;
      message =
        `${JSON.stringify(given)} is not allowed here` +
        (near ? `; did you mean ${near}?` : "") +
        ` (one of ${options.join(", ")})`;
    } else if (!found && issue.code === "invalid_type") {
      message = `missing (expected ${issue.expected})`;
    }
    problems.push({
      code: ErrorCodes.CONFIG_SCHEMA,
      position,
      keyPath: keyPathOf(p),
      message,
    });
  }
  return undefined;
}

/** The option within edit distance 2 of a misspelt value, if one is that close. */
function closest(given: string, options: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const row = [i];
      for (let j = 1; j <= b.length; j++) {
        const cost = a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1;
        row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
      }
      prev = row;
    }
    return prev[b.length] ?? Infinity;
  };
  let best: string | undefined;
  let bestDistance = 3;
  for (const o of options) {
    const d = distance(given, o);
    if (d < bestDistance) [best, bestDistance] = [o, d];
  }
  return best;
}

/** Mapping entries may name files or folders; a folder contributes its *.yaml and *.yml files. */
async function mappingFiles(
  src: YamlSource,
  entries: readonly string[],
  problems: Problem[],
): Promise<string[]> {
  const base = path.dirname(src.file);
  const files: string[] = [];
  for (const [i, entry] of entries.entries()) {
    const full = path.resolve(base, entry);
    const keyPath = typeof src.doc.get("mappings") === "string" ? ["mappings"] : ["mappings", i];
    try {
      const st = await stat(full);
      if (st.isDirectory()) {
        const names = (await readdir(full)).filter((n) => /\.ya?ml$/.test(n)).sort();
        if (names.length === 0) {
          problems.push({
            code: ErrorCodes.CONFIG_READ,
            position: src.positionOf(keyPath),
            keyPath: keyPathOf(keyPath),
            message: `folder ${full} holds no .yaml mapping files`,
          });
        }
        files.push(...names.map((n) => path.join(full, n)));
      } else files.push(full);
    } catch {
      problems.push({
        code: ErrorCodes.CONFIG_READ,
        position: src.positionOf(keyPath),
        keyPath: keyPathOf(keyPath),
        message: `${full} does not exist`,
      });
    }
  }
  return files;
}

/**
 * Loads the gateway config and every mapping it names, and reports every problem in all of
 * them at once, before anything connects.
 */
export async function loadConfig(
  configFile: string,
  env: NodeJS.ProcessEnv = process.env,
  overrides: readonly Override[] = [],
): Promise<LoadResult> {
  const file = path.resolve(configFile);
  const problems: Problem[] = [];
  const read = await readYaml(file, env, problems, overrides);
  const src = read?.src;
  const gateway = read && validate(read, gatewayConfigSchema, problems);
  const entries = (() => {
    // Even when another part of the gateway file is wrong, the mappings are still checked.
    const raw = valueAt(read?.value, ["mappings"]).given;
    if (typeof raw === "string") return [raw];
    if (Array.isArray(raw)) return raw.filter((x): x is string => typeof x === "string");
    return [];
  })();
  const files = src ? await mappingFiles(src, entries, problems) : [];

  const devices: Array<{ plan: DevicePlan; src: YamlSource }> = [];
  for (const mf of files) {
    const mread = await readYaml(mf, env, problems);
    if (!mread) continue;
    const msrc = mread.src;
    const mapping = validate(mread, mappingFileSchema, problems);
    if (!mapping) continue;
    const { plan, problems: found } = compileMapping(mf, mapping, mappingKinds(), (p) =>
      msrc.positionOf(p, true),
    );
    for (const f of found) {
      problems.push({
        code: ErrorCodes.CONFIG_SCHEMA,
        position: msrc.positionOf(f.path, f.path.length === 2),
        keyPath: keyPathOf(f.path),
        message: f.message,
      });
    }
    devices.push({ plan, src: msrc });
  }

  if (src && gateway) {
    for (const c of crossCheck(gateway, devices)) {
      problems.push({
        code: ErrorCodes.CONFIG_CROSS,
        position: c.src.positionOf(c.path, c.path.length === 2),
        keyPath: keyPathOf(c.path),
        message: c.message,
      });
    }
  }

  // Checks over a protocol's sources together (two sources on one serial port).
  if (src && gateway) {
    const entries = Object.entries(gateway.sources);
    for (const protocol of protocols()) {
      const own = entries.filter(([, source]) => protocolOf(source) === protocol);
      for (const c of protocol.checkSources?.(own) ?? []) {
        problems.push({
          code: ErrorCodes.CONFIG_CROSS,
          position: src.positionOf(c.path),
          keyPath: keyPathOf(c.path),
          message: c.message,
        });
      }
    }
  }

  // The cloud dialect's own rules (Alibaba: a deviceSecret unless another broker's URL is given,
  // and a way to each sub-device's secret, reported in that device's mapping file).
  const cloud = gateway?.cloud;
  const warnings: Problem[] = [];
  if (src && cloud) {
    const context = { devices: devices.map((d) => d.plan), configDir: path.dirname(file) };
    const unverified: CloudConfigProblem[] =
      cloud.tls?.rejectUnauthorized === false
        ? [
            {
              path: ["tls", "rejectUnauthorized"],
              message:
                "the broker's certificate is not verified: anyone on the path can pose as the cloud and send commands; remove this line, or give the broker's CA as tls.ca",
              warning: true,
            },
          ]
        : [];
    for (const p of [...unverified, ...dialectFor(cloud.dialect).check(cloud, context)]) {
      const device = p.device === undefined ? undefined : devices[p.device];
      const keyPath = device ? p.path : ["cloud", ...p.path];
      (p.warning ? warnings : problems).push({
        code: p.warning ? ErrorCodes.CONFIG_WARNING : ErrorCodes.CONFIG_CROSS,
        position: (device?.src ?? src).positionOf(keyPath, true),
        keyPath: keyPathOf(keyPath),
        message: p.message,
      });
    }
  }

  // A problem at an overridden key (or below it) is the override's, not the file's.
  for (const [i, p] of problems.entries()) {
    if (p.position.file !== file) continue;
    const o = overrides.find(
      (x) => p.keyPath === keyPathOf(x.path) || p.keyPath.startsWith(`${keyPathOf(x.path)}.`),
    );
    if (o) problems[i] = { ...p, position: overridePosition(o) };
  }

  if (problems.length > 0 || !gateway) {
    const listed = capped(sortProblems(problems));
    return { ok: false, problems: listed, omitted: problems.length - listed.length };
  }
  return {
    ok: true,
    problems: [],
    config: {
      configFile: file,
      ...(overrides.length > 0 && { overrides }),
      gateway,
      dataDir: path.resolve(path.dirname(file), gateway.gateway.dataDir),
      devices: devices.map((d) => d.plan),
      ...(warnings.length > 0 && { warnings: sortProblems(warnings) }),
    },
  };
}

/**
 * Sets `path` in the document to `value`, making the maps on the way; every key made is a
 * scalar node, as the file's own keys are (the document's setIn would make plain strings).
 */
function setKey(doc: Document.Parsed, path: readonly string[], value: unknown): void {
  let node: unknown = doc.contents;
  for (const [i, key] of path.entries()) {
    if (!isMap(node)) throw new Error(`${path.slice(0, i).join(".") || "the file"} is not a map`);
    const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
    const rest = path.slice(i + 1);
    const below = rest.reduceRight<unknown>((v, k) => ({ [k]: v }), value);
    if (!pair) {
      node.items.push(doc.createPair(key, below));
      return;
    }
    if (rest.length === 0) {
      pair.value = doc.createNode(value);
      return;
    }
    node = pair.value;
  }
}

const overridePosition = (o: Override): SourcePosition => ({
  file: `--override ${o.text}`,
  line: 0,
  col: 0,
});

function sortProblems(problems: Problem[]): Problem[] {
  return [...problems].sort(
    (a, b) =>
      // localeCompare only between files: it is slow, and one file may bring 500,000 problems.
      (a.position.file === b.position.file ? 0 : a.position.file.localeCompare(b.position.file)) ||
      a.position.line - b.position.line ||
      a.position.col - b.position.col,
  );
}

/** The first MAX_PROBLEMS_PER_FILE of each file, MAX_PROBLEMS in all, of sorted problems. */
function capped(sorted: readonly Problem[]): Problem[] {
  const perFile = new Map<string, number>();
  return sorted
    .filter((p) => {
      const n = perFile.get(p.position.file) ?? 0;
      perFile.set(p.position.file, n + 1);
      return n < MAX_PROBLEMS_PER_FILE;
    })
    .slice(0, MAX_PROBLEMS);
}
