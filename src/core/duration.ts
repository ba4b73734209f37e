import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parse a duration as field engineers write it: `500ms`, `1s`, `1.5s`, `2m`, `1h`, `7d`, or a bare
 * number of milliseconds. Returns undefined when the text is not a duration.
 */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? input : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(input);
  if (!m) return undefined;
  const value = Number(m[1]) * (UNITS[m[2] ?? "ms"] ?? 1);
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

/** A zod schema for a duration in a user's file: the value in milliseconds, or an issue. */
export const duration = (what: string) =>
  z
    .union([z.string(), z.number()])
    .describe(`${what}: a duration such as 500ms, 1s, 2m, or a number of milliseconds`)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: `"${v}" is not a duration (try 500ms, 1s, 2m)` });
        return z.NEVER;
      }
      return ms;
    });

/** A connection's `reconnect: { min, max }`: the backoff between its first and longest delays. */
export const reconnectSchema = (minMs: number, maxMs: number) =>
  z
    .object({
      min: duration("First delay before reconnecting").default(minMs),
      max: duration("Longest delay between reconnects").default(maxMs),
    })
    .strict()
    .default({ min: minMs, max: maxMs });
