import { spawn, type ChildProcess } from "node:child_process";
import { lstat, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { findExecutable } from "../core/executables.js";

/**
 * A virtual serial line for `sim --from-config` and `shadowgate test` (an RTU source's
 * simulator on one end, the gateway on the other), the RTU tests and the RTU benchmark (B2):
 * socat joins two ptys, and
 * whatever is written to one end is read at the other (raw, no echo). The ends are symlinks
 * `<dir>/a` and `<dir>/b` to the /dev/pts devices, stable across restart(). A pty has no baud
 * rate: the timing of the line is up to the two ends (the simulator sleeps the wire time).
 *
 *   const socat = findSocat();
 *   describe.skipIf(socat === undefined && process.env.CI !== "true")(...)
 *
 * Under CI a missing socat fails the suite (openPtyPair throws) instead of skipping it.
 */

const CANDIDATES = ["/usr/bin/socat", "/usr/local/bin/socat", "/opt/homebrew/bin/socat"];

/** How long socat may take to create its links; a bound, not a timing assumption. */
const START_LIMIT_MS = 10_000;
const POLL_MS = 10;
/** After SIGTERM, SIGKILL follows if socat has not exited by then. */
const KILL_AFTER_MS = 5_000;

/**
 * socat processes still running: killed when this process exits, even through process.exit()
 * (a benchmark's watchdog), so that no pty pair outlives the process that opened it.
 */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** The socat binary: $SOCAT_BIN, a usual install path, or one on PATH. */
export function findSocat(): string | undefined {
  return findExecutable("socat", [process.env.SOCAT_BIN, ...CANDIDATES]);
}

export interface PtyPair {
  /** One end of the line (a symlink to a /dev/pts device). */
  readonly a: string;
  /** The other end. */
  readonly b: string;
  readonly dir: string;
  /** What socat logged, for failure messages. */
  output(): string;
  /** Kills socat and waits for it to exit: both ends vanish. Idempotent. */
  close(): Promise<void>;
  /** Closes the line if it is open and creates a new one under the same two names. */
  restart(): Promise<void>;
}

/** Opens a pty pair in `dir` (default: a new temporary folder, removed by close()). */
export async function openPtyPair(dir?: string): Promise<PtyPair> {
  const bin = findSocat();
  if (bin === undefined) throw new Error("socat not found (set SOCAT_BIN or install socat)");
  const ownDir = dir === undefined;
  const base = dir ?? (await mkdtemp(path.join(tmpdir(), "shadowgate-pty-")));
  const a = path.join(base, "a");
  const b = path.join(base, "b");
  let current: { child: ChildProcess; exited: Promise<void>; output: () => string } | undefined;
  let lastOutput = "";

  const start = async (): Promise<void> => {
    await mkdir(base, { recursive: true });
    // Links left by a socat that was killed hard would look like a line that is ready.
    await Promise.all([rm(a, { force: true }), rm(b, { force: true })]);
    const child = spawn(bin, ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    running.add(child);
    let output = "";
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    let gone = false;
    const exited = new Promise<void>((resolve) => {
      child.once("error", (e) => {
        output += `${e.message}\n`;
        gone = true;
        running.delete(child);
        resolve();
      });
      child.once("exit", () => {
        gone = true;
        running.delete(child);
        resolve();
      });
    });
    current = { child, exited, output: () => output };
    const deadline = Date.now() + START_LIMIT_MS;
    while (!((await exists(a)) && (await exists(b)))) {
      if (gone || Date.now() > deadline) {
        await stop();
        throw new Error(
          `socat did not create ${a} and ${b}${gone ? " (it exited)" : ` in ${START_LIMIT_MS} ms`}:\n${output}`,
        );
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  };

  const stop = async (): Promise<void> => {
    const running = current;
    current = undefined;
    if (!running) return;
    lastOutput = running.output();
    const { child } = running;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
      await running.exited;
      clearTimeout(timer);
    }
    await Promise.all([rm(a, { force: true }), rm(b, { force: true })]);
  };

  try {
    await start();
  } catch (e) {
    if (ownDir) await rm(base, { recursive: true, force: true });
    throw e;
  }
  return {
    a,
    b,
    dir: base,
    output: () => current?.output() ?? lastOutput,
    close: async () => {
      await stop();
      if (ownDir) await rm(base, { recursive: true, force: true });
    },
    restart: async () => {
      await stop();
      await start();
    },
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
}
