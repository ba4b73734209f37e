import { spawn } from "node:child_process";
import { CLI_MAIN } from "./gateway-process.js";
import { keepLog } from "./logs.js";

/** A finished process: its exit code and everything it printed. */
export interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end, with no stdin, collecting its output. */
export function run(
  file: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(opts.cwd !== undefined && { cwd: opts.cwd }),
      ...(opts.env !== undefined && { env: opts.env }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Runs the built CLI (`npm run build` first; npm test does) with these arguments. What it
 * logged (stderr) goes to the run's logs for the secrets scan (test/helpers/logs.ts).
 */
export async function runCli(
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Finished> {
  const done = await run(process.execPath, [CLI_MAIN, ...args], opts);
  keepLog("cli", done.stderr);
  return done;
}
