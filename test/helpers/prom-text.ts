/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: it
 * throws, naming the line, on anything a scraper could refuse or misread — a malformed HELP or
 * TYPE, a sample outside its family, a bad name, label or escape, a duplicate series, and a
 * histogram whose buckets are not cumulative or whose +Inf bucket differs from its _count.
 */
import { spawnSync } from "node:child_process";
import { PYTHON } from "./notify-socket.js";

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  help?: string;
  type?: MetricType;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<string>(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parsePromText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the text must end with a newline");
  const lines = text.split("\n");
  lines.pop(); // after the final newline
  lines.forEach((line, i) => {
    const fail = (why: string): never => {
      throw new Error(`line ${i + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // any other comment is allowed
      const [, kind, name = "", rest = ""] = m;
      if (!METRIC_NAME.test(name)) fail("bad metric name");
      let family = families.get(name);
      if (!family) {
        family = { name, samples: [] };
        families.set(name, family);
      } else if (family !== current) fail("family split");
      current = family;
      if (kind === "HELP") {
        if (family.help !== undefined) fail("second HELP");
        family.help = unescapeHelp(rest, fail);
      } else {
        if (family.type !== undefined) fail("second TYPE");
        if (family.samples.length > 0) fail("TYPE after samples");
        if (!TYPES.has(rest)) fail("unknown type");
        family.type = rest as MetricType;
      }
      return;
    }
    const sample = parseSample(line, fail);
    if (!current || !belongs(sample.name, current)) fail("sample outside its family");
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) fail("duplicate series");
    seen.add(key);
    current?.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function belongs(sample: string, family: Family): boolean {
  if (family.type === "histogram")
    return ["_bucket", "_sum", "_count"].some((s) => sample === family.name + s);
  if (family.type === "summary")
    return [family.name, `${family.name}_sum`, `${family.name}_count`].includes(sample);
  return sample === family.name;
}

function unescapeHelp(text: string, fail: (why: string) => never): string {
  return text.replace(/\\(.?)/g, (_, c: string) =>
    c === "\\" ? "\\" : c === "n" ? "\n" : fail(`bad escape \\${c} in HELP`),
  );
}

function parseSample(line: string, fail: (why: string) => never): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) return fail("no metric name");
  const name = nameMatch[0];
  let pos = name.length;
  const labels: Record<string, string> = {};
  if (line[pos] === "{") {
    pos++;
    while (line[pos] !== "}") {
      const ln = /^[^=]*/.exec(line.slice(pos))?.[0] ?? "";
      if (!LABEL_NAME.test(ln)) fail(`bad label name ${JSON.stringify(ln)}`);
      if (ln in labels) fail(`label ${ln} twice`);
      pos += ln.length;
      if (line.slice(pos, pos + 2) !== '="') fail(`no ="..." after label ${ln}`);
      pos += 2;
      let value = "";
      for (;;) {
        const c = line[pos];
        if (c === undefined) return fail("unterminated label value");
        pos++;
        if (c === '"') break;
        if (c === "\\") {
          const e = line[pos++];
          if (e === "\\") value += "\\";
          else if (e === '"') value += '"';
          else if (e === "n") value += "\n";
          else fail(`bad escape \\${e ?? ""} in a label value`);
        } else value += c;
      }
      labels[ln] = value;
      if (line[pos] === ",") pos++;
      else if (line[pos] !== "}") fail("expected , or } after a label");
    }
    pos++;
  }
  const rest = line.slice(pos);
  const m = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (!m) return fail("expected one space, a value and an optional timestamp");
  const text = m[1] ?? "";
  const value =
    text === "+Inf"
      ? Infinity
      : text === "-Inf"
        ? -Infinity
        : text === "NaN"
          ? NaN
          : /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)
            ? Number(text)
            : fail(`bad value ${text}`);
  return { name, labels, value };
}

/** Per series (labels without le): buckets ascending in le and count, +Inf last and = _count. */
function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      const bound = le === "+Inf" ? Infinity : Number(le);
      if (Number.isNaN(bound)) throw new Error(`${f.name}: le=${le} is not a number`);
      entry.buckets.push([bound, s.value]);
    } else if (le !== undefined) throw new Error(`${f.name}: le on ${s.name}`);
    else if (s.name.endsWith("_sum")) entry.sum = s.value;
    else entry.count = s.value;
  }
  for (const [key, e] of series) {
    const where = `${f.name}${key}`;
    if (e.sum === undefined || e.count === undefined)
      throw new Error(`${where}: no _sum or _count`);
    const last = e.buckets.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${where}: the last bucket is not +Inf`);
    if (last[1] !== e.count)
      throw new Error(`${where}: +Inf bucket ${last[1]} != _count ${e.count}`);
    e.buckets.forEach(([bound, n], i) => {
      const prev = e.buckets[i - 1];
      if (prev && (bound <= prev[0] || n < prev[1]))
        throw new Error(`${where}: bucket le=${bound} is not after le=${prev[0]} or counts less`);
    });
  }
}

/** The value of the one sample of `name` whose labels include `labels`; throws unless one. */
export function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const all = [...families.values()].flatMap((f) => f.samples);
  const hits = all.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (hits.length !== 1)
    throw new Error(`${hits.length} samples of ${name}${JSON.stringify(labels)}, wanted one`);
  return hits[0]?.value ?? NaN;
}

/**
 * The same text through Prometheus's own parser (the Python client's, from Debian's
 * python3-prometheus-client), an implementation we did not write: each sample as
 * `name{labels sorted} value`, sorted, so that ours can be compared with it line by line.
 */
export function samplesByPrometheus(text: string): string[] {
  const script = [
    "import sys",
    "from prometheus_client.parser import text_string_to_metric_families",
    "out = []",
    "for f in text_string_to_metric_families(sys.stdin.read()):",
    "    for s in f.samples:",
    "        labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))",
    "        out.append(f'{s.name}{{{labels}}} {float(s.value)!r}')",
    "print('\\n'.join(sorted(out)))",
  ].join("\n");
  const r = spawnSync(PYTHON ?? "/usr/bin/python3", ["-c", script], {
    input: text,
    encoding: "utf8",
    env: { ...process.env, PYENV_VERSION: "system" },
  });
  if (r.status !== 0) throw new Error(`prometheus_client refused the text: ${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Our parse in the form samplesByPrometheus prints. */
export function samplesByUs(families: Map<string, Family>): string[] {
  const fmt = (v: number) =>
    Number.isInteger(v) && Math.abs(v) < 1e16 ? `${v}.0` : Number.isNaN(v) ? "nan" : pyFloat(v);
  return [...families.values()]
    .flatMap((f) => f.samples)
    .map((s) => {
      const labels = Object.entries(s.labels)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => `${k}=${v}`)
        .join(",");
      return `${s.name}{${labels}} ${fmt(s.value)}`;
    })
    .sort();
}

/** Python's repr of a float, for the values JavaScript and Python print alike or nearly. */
function pyFloat(v: number): string {
  if (v === Infinity) return "inf";
  if (v === -Infinity) return "-inf";
  const s = String(v);
  // JavaScript writes 1e-7 and 1e+21, Python 1e-07 and 1e+21.
  return s.replace(/e([+-])(\d)$/, "e$10$2");
}
