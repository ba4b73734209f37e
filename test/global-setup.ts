import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { scanLogs, testSecrets } from "./helpers/secret-scan.js";

/**
 * vitest's global setup: a folder for the gateways' logs of the whole run (test/helpers/logs.ts),
 * and at the end the secrets scan over it: every line any gateway under test logged is searched
 * for every secret the tests use. A leak fails the run (exit code 1) and names the file and line.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), "shadowgate-test-logs-"));
  // Inherited by the worker processes, which vitest starts after this.
  process.env.SHADOWGATE_TEST_LOG_DIR = dir;
  return () => {
    const secrets = testSecrets(path.resolve(import.meta.dirname));
    const { lines, leaks } = scanLogs(dir, secrets);
    if (leaks.length === 0) {
      process.stdout.write(
        `secrets scan: ${lines} log lines, ${secrets.size} secrets, none found\n`,
      );
      rmSync(dir, { recursive: true, force: true });
      return;
    }
    // Kept for whoever reads the report.
    process.stderr.write(
      `secrets scan: ${leaks.length} secret(s) in the gateways' logs (kept in ${dir}):\n${leaks
        .slice(0, 50)
        .map((l) => `  ${l.file}:${l.line}: ${l.what}`)
        .join("\n")}\n`,
    );
    // A teardown that throws is reported but leaves the exit code alone.
    process.exitCode = 1;
  };
}
