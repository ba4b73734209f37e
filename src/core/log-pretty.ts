/**
 * `run --log-format pretty`: one readable line per log record, for a person at a terminal.
 * It formats pino's JSON lines after pino has serialized (and so redacted) them, so it never
 * sees a secret that the JSON output would not show. No dependency: pino-pretty is not one.
 *
 *   2026-12-03T06:14:10.123Z INFO  source.plc1 connected to=online attempts=1
 */

const LEVELS: Readonly<Record<number, string>> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};

/** Fields every record carries that a person does not need on each line. */
const DROPPED = new Set(["level", "time", "msg", "pid", "hostname", "name", "v"]);

/** Fields that say who speaks, shown before the message in this order. */
const WHO = ["component", "source", "device"] as const;

/** One pino JSON line as one readable line (with its newline); a line that is not JSON as is. */
export function prettyLine(json: string): string {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch {
    return json.endsWith("\n") ? json : `${json}\n`;
  }
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    return `${json.trimEnd()}\n`;
  }
  return `${formatRecord(record as Record<string, unknown>)}\n`;
}

export function formatRecord(r: Record<string, unknown>): string {
  const parts: string[] = [];
  parts.push(typeof r.time === "number" ? new Date(r.time).toISOString() : "-");
  const level = typeof r.level === "number" ? (LEVELS[r.level] ?? String(r.level)) : "?";
  parts.push(level.padEnd(5));
  const who = WHO.map((k) => r[k])
    .filter((v) => v !== undefined)
    .map(String);
  if (who.length > 0) parts.push(who.join("/"));
  if (r.msg !== undefined) parts.push(String(r.msg));
  for (const [k, v] of Object.entries(r)) {
    if (DROPPED.has(k) || (WHO as readonly string[]).includes(k) || v === undefined) continue;
    parts.push(`${k}=${formatValue(k, v)}`);
  }
  return parts.join(" ");
}

function formatValue(key: string, v: unknown): string {
  // pino's error serializer: type, message, stack. The line keeps type and message; the stack
  // is in the JSON format (journald) for whoever needs it.
  if (key === "err" && typeof v === "object" && v !== null && "message" in v) {
    const e = v as { type?: unknown; message?: unknown; code?: unknown };
    const text = `${typeof e.type === "string" ? `${e.type}: ` : ""}${String(e.message)}`;
    return JSON.stringify(e.code === undefined ? text : `${text} (${String(e.code)})`);
  }
  if (typeof v === "string") return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}
