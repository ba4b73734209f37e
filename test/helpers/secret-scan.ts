import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/**
 * The secrets scan over the run's gateway logs (issue 17). The secrets are found where the tests
 * write them, so that a new test's secret is scanned for without being listed anywhere: a string
 * under a key that names a secret (deviceSecret, password, token, API_TOKEN, ...) in the test
 * sources and fixtures, quoted or as a YAML value. Short ones ("nope", "wrong") are left out:
 * they would match ordinary words in a log.
 */

const KEY = String.raw`[A-Za-z_]*(?:secret|password|passwd|passphrase|token)`;
/** key, optional closing quote, `:` or `=`, then the value (quoted or a bare YAML scalar). */
const ASSIGNED = new RegExp(
  String.raw`\b(${KEY})["']?\s*[:=]\s*(?:"([^"\n]*)"|'([^'\n]*)'|\x60([^\x60\n]*)\x60|([^\s"'\x60,}\]#]+))`,
  "gi",
);
const MIN_LENGTH = 6;
/** Values that name where a secret comes from, or what it looks like, not a secret. */
const NOT_A_SECRET =
  /\$\{|\\|^\[redacted\]$|^(string|undefined|null|true|false|secret|password|token)$/i;
/**
 * A bare value is a YAML scalar, or code (SECRETS.gateway, createHmac(...)) when the key is a
 * TypeScript one: only a word with a digit or a dash, and no dot, is taken for a secret.
 */
const BARE_SECRET = /^(?=.*[0-9-])[A-Za-z0-9_+/=-]+$/;

/** Every secret assigned in `text`. */
export function secretsIn(text: string): Set<string> {
  const found = new Set<string>();
  for (const m of text.matchAll(ASSIGNED)) {
    // A shadow message's clientToken correlates a reply with its request: not a secret.
    if (/clienttoken$/i.test(m[1] ?? "")) continue;
    const bare = m[5];
    const value = m[2] ?? m[3] ?? m[4] ?? bare ?? "";
    if (bare !== undefined && !BARE_SECRET.test(bare)) continue;
    if (value.length >= MIN_LENGTH && !NOT_A_SECRET.test(value)) found.add(value);
  }
  return found;
}

/** Every file under `dir` (recursively) whose name ends with one of `exts`. */
function filesUnder(dir: string, exts: readonly string[]): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((f) => path.join(dir, f))
    .filter((f) => exts.some((e) => f.endsWith(e)) && statSync(f).isFile());
}

/** The secrets the tests use: those assigned in test/**\/*.ts and the fixtures' YAML and JSON. */
export function testSecrets(testDir: string): Set<string> {
  const secrets = new Set<string>();
  for (const file of filesUnder(testDir, [".ts", ".yaml", ".yml", ".json"]))
    for (const s of secretsIn(readFileSync(file, "utf8"))) secrets.add(s);
  return secrets;
}

/** One secret (or private key) seen in a log line. */
export interface Leak {
  readonly file: string;
  readonly line: number;
  /** The secret, its middle masked, so that the report does not become the leak. */
  readonly what: string;
}

const mask = (s: string): string => (s.length <= 4 ? "****" : `${s.slice(0, 2)}…${s.slice(-2)}`);

/** Every line of the logs in `logDir` that holds one of `secrets` or a PEM private key. */
export function scanLogs(
  logDir: string,
  secrets: ReadonlySet<string>,
): { lines: number; leaks: Leak[] } {
  const leaks: Leak[] = [];
  let lines = 0;
  for (const file of filesUnder(logDir, [".log"])) {
    readFileSync(file, "utf8")
      .split("\n")
      .forEach((text, i) => {
        if (text === "") return;
        lines++;
        for (const s of secrets)
          if (text.includes(s)) leaks.push({ file, line: i + 1, what: mask(s) });
        if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text))
          leaks.push({ file, line: i + 1, what: "a PEM private key" });
      });
  }
  return { lines, leaks };
}
