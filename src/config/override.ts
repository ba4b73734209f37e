/**
 * A key of the gateway config set from the command line, `sources.plc1.port=5020`: the value is
 * read as YAML (a number, a string, a flow map), and checked as if the file said it. Nothing
 * after the `=` (`cloud.tls=`) takes the key out.
 */
export interface Override {
  readonly path: readonly string[];
  readonly value: string;
  /** As given, for messages. */
  readonly text: string;
}

/** `key.path=value`, or why it is not one. */
export function parseOverride(text: string): Override | string {
  const eq = text.indexOf("=");
  const key = text.slice(0, Math.max(eq, 0)).trim();
  const keys = key.split(".");
  if (eq <= 0 || keys.some((k) => k === ""))
    return `--override ${text}: write key.path=value (e.g. sources.plc1.port=5020)`;
  return { path: keys, value: text.slice(eq + 1), text };
}
