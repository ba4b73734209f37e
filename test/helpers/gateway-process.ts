import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, existsSync } from "node:fs";
import path from "node:path";
import { keepLog } from "./logs.js";

/**
 * The built gateway daemon (`node dist/cli/main.js run -c FILE`) as a child process that a test
 * can SIGKILL and start again on the same config and data directory. Every line it logs goes to
 * `logFile` (prefixed with the generation: g1, g2, ... one per start) and the last few are kept
 * for failure messages; the run's secrets scan reads them too (test/helpers/logs.ts).
 *
 *   const gw = new GatewayProcess({ configFile, logFile });
 *   gw.start();
 *   await gw.kill();      // SIGKILL, awaited
 *   gw.start();           // same dataDir: the journal and outbox carry over
 *   await gw.stop();      // SIGTERM, awaited (SIGKILL after a bound)
 */

const root = path.resolve(import.meta.dirname, "../..");
export const CLI_MAIN = path.join(root, "dist/cli/main.js");

/** Lines of log kept in memory for failure messages. */
const TAIL_LINES = 200;

export interface GatewayProcessOptions {
  readonly configFile: string;
  readonly logFile: string;
  /** SHADOWGATE_LOG_LEVEL for the child; default info. */
  readonly logLevel?: string;
  /** Node options ahead of the script, e.g. ["--import", preload]. */
  readonly nodeArgs?: readonly string[];
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class GatewayProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<ExitInfo> | undefined;
  private readonly tailLines: string[] = [];
  private partial = "";
  /** How many times the gateway was started, and killed. */
  generation = 0;
  kills = 0;

  constructor(private readonly opts: GatewayProcessOptions) {
    if (!existsSync(CLI_MAIN)) {
      throw new Error(`${CLI_MAIN} is missing: run "npm run build" first (npm test does)`);
    }
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): void {
    if (this.child) throw new Error("the gateway is already running");
    this.generation++;
    const gen = `g${this.generation}`;
    const args = [...(this.opts.nodeArgs ?? []), CLI_MAIN, "run", "-c", this.opts.configFile];
    const child = spawn(process.execPath, args, {
      env: { ...process.env, SHADOWGATE_LOG_LEVEL: this.opts.logLevel ?? "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    this.partial = "";
    child.stderr?.on("data", (b: Buffer) => this.onLog(gen, b.toString("utf8")));
    this.exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => {
        this.onLog(gen, `\n[exit code=${String(code)} signal=${String(signal)}]\n`);
        if (this.child === child) this.child = undefined;
        resolve({ code, signal });
      });
    });
  }

  /**
   * SIGKILL now (synchronously, so a caller can kill at an exact moment) and resolve once the
   * process is gone.
   */
  kill(): Promise<ExitInfo | undefined> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited) return Promise.resolve(undefined);
    this.kills++;
    child.kill("SIGKILL");
    return exited;
  }

  /** SIGTERM, awaited; SIGKILL if it has not exited within `limitMs`. */
  async stop(limitMs = 15_000): Promise<ExitInfo | undefined> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited) return undefined;
    child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), limitMs);
    });
    const r = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (r !== "late") return r;
    child.kill("SIGKILL");
    await exited;
    return undefined;
  }

  /** The last lines the gateway logged, over all its generations. */
  tail(lines = 60): string {
    return this.tailLines.slice(-lines).join("\n");
  }

  private onLog(gen: string, text: string): void {
    const parts = (this.partial + text).split("\n");
    this.partial = parts.pop() ?? "";
    const lines = parts.filter((l) => l !== "").map((l) => `${gen} ${l}`);
    if (lines.length === 0) return;
    this.tailLines.push(...lines);
    if (this.tailLines.length > TAIL_LINES) {
      this.tailLines.splice(0, this.tailLines.length - TAIL_LINES);
    }
    keepLog("gateway-process", `${lines.join("\n")}\n`);
    try {
      appendFileSync(this.opts.logFile, `${lines.join("\n")}\n`);
    } catch {
      // The log file is a convenience; losing it must not fail the test.
    }
  }
}
