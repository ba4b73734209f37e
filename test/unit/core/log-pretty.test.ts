/**
 * `run --log-format pretty` (core/log-pretty.ts): one readable line per record, and the secrets
 * the JSON format redacts stay redacted.
 */
import { expect, it } from "vitest";
import { formatRecord, prettyLine } from "../../../src/core/log-pretty.js";
import { createLogger } from "../../../src/core/logger.js";

it("puts time, level, who and the message first, then the other fields as key=value", () => {
  const line = formatRecord({
    level: 40,
    time: Date.UTC(2026, 11, 3, 6, 14, 10, 123),
    pid: 42,
    hostname: "box",
    name: "shadowgate",
    msg: "connection lost",
    component: "south.modbus",
    source: "plc1",
    to: "backoff",
    attempts: 3,
    note: "two words",
    limits: { max: 5 },
  });
  expect(line).toBe(
    '2026-12-03T06:14:10.123Z WARN  south.modbus/plc1 connection lost to=backoff attempts=3 note="two words" limits={"max":5}',
  );
});

it("shows an error as its type and message on the same line", () => {
  const line = formatRecord({
    level: 50,
    time: 0,
    msg: "a component failed to start",
    err: {
      type: "Error",
      message: "connect ECONNREFUSED",
      stack: "Error: ...\n    at x",
      code: "E",
    },
  });
  expect(line).toBe(
    '1970-01-01T00:00:00.000Z ERROR a component failed to start err="Error: connect ECONNREFUSED (E)"',
  );
  expect(line).not.toContain("\n");
});

it("passes a line that is not JSON through as it is", () => {
  expect(prettyLine("not json")).toBe("not json\n");
  expect(prettyLine('{"level":30,"time":0,"msg":"hi"}\n')).toBe(
    "1970-01-01T00:00:00.000Z INFO  hi\n",
  );
});

it("writes the redacted record: the secrets never reach the pretty line", () => {
  const lines: string[] = [];
  const log = createLogger({
    level: "info",
    format: "pretty",
    destination: { write: (s: string) => void lines.push(s) },
  });
  log
    .child({ component: "north.sessions", device: "press-07" })
    .info({ deviceSecret: "s3cr3t-device", auth: { password: "hunter2" } }, "login");
  expect(lines).toHaveLength(1);
  const line = lines[0] ?? "";
  expect(line).toMatch(/ INFO {2}north\.sessions\/press-07 login deviceSecret=\[redacted\] /);
  expect(line).toContain('auth={"password":"[redacted]"}');
  expect(line).not.toContain("s3cr3t-device");
  expect(line).not.toContain("hunter2");
});
