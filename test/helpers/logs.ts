import { appendFileSync } from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { createLogger, silentLogger, type Logger } from "../../src/core/logger.js";

/**
 * The gateways' logs under test, kept for the secrets scan (issue 17): test/global-setup.ts
 * names a folder in SHADOWGATE_TEST_LOG_DIR, and at the end of the run reads every line in it
 * for every secret the tests use (test/helpers/secret-scan.ts). In-process gateways log into it
 * through `testLogger()`, the production logger (its redaction) at debug level; child
 * processes' stderr is appended by `keepLog()`. Outside vitest (the benchmarks) nothing is kept.
 */

const dir = (): string | undefined => process.env.SHADOWGATE_TEST_LOG_DIR;

let destination: pino.DestinationStream | undefined;

/** A debug-level production logger whose lines the secrets scan reads; silent outside a run. */
export function testLogger(): Logger {
  const d = dir();
  if (d === undefined) return silentLogger();
  // One file per worker process; sync writes, so a worker that exits loses no line.
  destination ??= pino.destination({ dest: path.join(d, `worker-${process.pid}.log`), sync: true });
  return createLogger({ level: "debug", destination });
}

/** Appends what a child process logged (its stderr) to the run's logs, for the scan. */
export function keepLog(kind: string, text: string): void {
  const d = dir();
  if (d === undefined || text === "") return;
  try {
    appendFileSync(path.join(d, `${kind}-${process.pid}.log`), text);
  } catch {
    // The folder went away (a run cut short): the scan has nothing to read either way.
  }
}
