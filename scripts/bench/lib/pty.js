// @ts-check
/**
 * A virtual serial line for the RTU benchmark, the plain-JS counterpart of test/helpers/pty.ts:
 * socat joins two ptys (raw, no echo), and whatever is written to one end is read at the other.
 * The ends are symlinks `<dir>/a` and `<dir>/b` to the /dev/pts devices. A pty has no baud
 * rate: the timing of the line is up to the two ends (the simulator sleeps the wire time).
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { lstat, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { clearTimeout, setTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";

/** How long socat may take to create its links; a bound, not a timing assumption. */
const START_LIMIT_MS = 10_000;
const POLL_MS = 10;
/** After SIGTERM, SIGKILL follows if socat has not exited by then. */
const KILL_AFTER_MS = 5_000;

/**
 * socat processes still running: killed when this process exits, even through process.exit()
 * from a watchdog, so that no pty pair outlives the benchmark.
 * @type {Set<import("node:child_process").ChildProcess>}
 */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** @returns {string | undefined} the socat binary: $SOCAT_BIN, or socat on PATH */
export function findSocat() {
  const candidates = [
    process.env["SOCAT_BIN"],
    ...(process.env["PATH"] ?? "")
      .split(delimiter)
      .filter((d) => d !== "")
      .map((d) => join(d, "socat")),
  ];
  for (const file of candidates) {
    if (file === undefined || file === "") continue;
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * @typedef {object} PtyPair
 * @property {string} a     one end of the line (a symlink to a /dev/pts device)
 * @property {string} b     the other end
 * @property {number} pid   socat's process id
 * @property {() => string} output  what socat logged, for failure messages
 * @property {() => Promise<void>} close  kills socat, waits for it, removes the folder; idempotent
 */

/**
 * @param {string} file
 * @returns {Promise<boolean>}
 */
async function exists(file) {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens a pty pair in a new temporary folder.
 * @returns {Promise<PtyPair>}
 */
export async function openPtyPair() {
  const bin = findSocat();
  if (bin === undefined) throw new Error("socat not found (set SOCAT_BIN or install socat)");
  const dir = await mkdtemp(join(tmpdir(), "shadowgate-bench-pty-"));
  const a = join(dir, "a");
  const b = join(dir, "b");
  const child = spawn(bin, ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.add(child);
  let output = "";
  child.stderr?.on("data", (/** @type {Buffer} */ chunk) => (output += chunk.toString()));
  let gone = false;
  /** @type {Promise<void>} */
  const exited = new Promise((resolve) => {
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
  /** @type {Promise<void> | undefined} */
  let closing;
  const close = () => {
    closing ??= (async () => {
      if (!gone) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return closing;
  };
  const deadline = Date.now() + START_LIMIT_MS;
  while (!((await exists(a)) && (await exists(b)))) {
    if (gone || Date.now() > deadline) {
      await close();
      throw new Error(
        `socat did not create ${a} and ${b}${gone ? " (it exited)" : ` in ${START_LIMIT_MS} ms`}:\n${output}`,
      );
    }
    await sleep(POLL_MS);
  }
  return { a, b, pid: child.pid ?? -1, output: () => output, close };
}
