import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { connectAsync } from "mqtt";
import { findExecutable } from "../../src/core/executables.js";
import { freePort } from "./ports.js";

/**
 * A real mosquitto for interop tests: started on a free 127.0.0.1 port with a throw-away
 * config, awaited by connecting to it, stopped in afterAll.
 *
 *   const mosquitto = findMosquitto();
 *   describe.skipIf(mosquitto === undefined && process.env.CI !== "true")(...)
 *
 * Under CI a missing mosquitto fails the suite (startMosquitto throws) instead of skipping it.
 */

const CANDIDATES = [
  "/usr/sbin/mosquitto",
  "/usr/bin/mosquitto",
  "/usr/local/sbin/mosquitto",
  "/usr/local/bin/mosquitto",
  "/opt/homebrew/sbin/mosquitto",
];

/** The mosquitto binary: $MOSQUITTO_BIN, a usual install path, or one on PATH. */
export function findMosquitto(): string | undefined {
  return findExecutable("mosquitto", [process.env.MOSQUITTO_BIN, ...CANDIDATES]);
}

export interface RunningMosquitto {
  readonly url: string;
  readonly port: number;
  /** Everything mosquitto logged, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** How many ports to try when another process grabs the free one first. */
const PORT_ATTEMPTS = 3;
/** Connection attempts after mosquitto says it is running. */
const CONNECT_ATTEMPTS = 50;
const CONNECT_RETRY_MS = 100;

export async function startMosquitto(): Promise<RunningMosquitto> {
  const bin = findMosquitto();
  if (bin === undefined) {
    throw new Error("mosquitto not found (set MOSQUITTO_BIN or install mosquitto)");
  }
  const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-mosquitto-"));
  try {
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      const port = await freePort();
      const conf = path.join(dir, "mosquitto.conf");
      await writeFile(
        conf,
        [
          `listener ${port} 127.0.0.1`,
          "allow_anonymous true",
          "persistence false",
          // stderr: stdout into a pipe is block-buffered by C stdio, so "running" would never show.
          "log_dest stderr",
          "",
        ].join("\n"),
      );
      const child = spawn(bin, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
      child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
      const exited = exitOf(child);
      try {
        await Promise.race([
          running(child, () => output),
          exited.then((code) => {
            throw new Error(`mosquitto exited (${String(code)}) before it ran:\n${output}`);
          }),
        ]);
        await connectable(port, exited, () => output);
      } catch (e) {
        child.kill("SIGKILL");
        await exited;
        lastError = e as Error;
        if (/address already in use/i.test(output)) continue;
        throw e;
      }
      return {
        url: `mqtt://127.0.0.1:${port}`,
        port,
        output: () => output,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill("SIGTERM");
            // A safety bound, not a timing assumption: SIGTERM normally ends it at once.
            const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
            await exited;
            clearTimeout(timer);
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    throw lastError ?? new Error("mosquitto did not start");
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

/** Resolves when mosquitto logs "... running" (it has opened its listeners by then). */
function running(child: ChildProcess, output: () => string): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (/mosquitto version \S+ running/.test(output())) {
        child.stderr?.off("data", check);
        resolve();
      }
    };
    child.stderr?.on("data", check);
    check();
  });
}

/** Connects until the broker answers CONNACK, a bounded number of times. */
async function connectable(
  port: number,
  exited: Promise<number | null>,
  output: () => string,
): Promise<void> {
  let last: unknown;
  let gone = false;
  void exited.then(() => (gone = true));
  for (let i = 0; i < CONNECT_ATTEMPTS && !gone; i++) {
    try {
      const client = await connectAsync(
        `mqtt://127.0.0.1:${port}`,
        { reconnectPeriod: 0, connectTimeout: 2000 },
        false,
      );
      await client.endAsync();
      return;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, CONNECT_RETRY_MS));
    }
  }
  throw new Error(
    `mosquitto on port ${port} never accepted a connection: ${String(last)}\n${output()}`,
  );
}
