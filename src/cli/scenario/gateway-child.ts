import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { DeviceShadowView } from "../../api/host.js";
import type { JsonObject } from "../../core/types.js";

/**
 * The gateway a scenario runs: the daemon itself (`shadowgate run`, this package's CLI) as a
 * child process, so that a step can restart it (SIGTERM: it stops as under systemd) or kill it
 * (SIGKILL: no goodbye, as a power cut or the OOM killer) and start it again on the same data
 * folder. The scenario reads its edge shadow through its local API (on a free loopback port),
 * as a local application would. Its log (JSON lines, every start) goes to `logFile`.
 */

/** The edge shadow as the local API serves it (`GET /api/v1/devices/{d}/shadow`). */
export interface EdgeShadow {
  readonly state: { readonly reported: JsonObject };
  readonly metadata: { readonly reported: DeviceShadowView["points"] };
}

/** The daemon's CLI, beside this module in the built package. */
const CLI_MAIN = fileURLToPath(new URL("../main.js", import.meta.url));
/** After SIGTERM, SIGKILL follows if the daemon has not exited by then (its own limit is less). */
const STOP_LIMIT_MS = 30_000;
/** How long a start may take before the API listens; the daemon's own start is well inside. */
const START_LIMIT_MS = 60_000;

/** The daemon did not come up (its config refused with the plant's overrides, a crash). */
export class GatewayStartError extends Error {}

export class GatewayChild {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private api: string | undefined;
  /** Starts so far (1 after the first), for the log. */
  private starts = 0;

  constructor(
    private readonly configFile: string,
    /** `key=value` overrides (the simulators' addresses, the data folder, the API). */
    private readonly overrides: readonly string[],
    private readonly logFile: string,
    /** The API's bearer token, when the config sets one. */
    private readonly token: string | undefined,
  ) {}

  /** Starts the daemon and resolves once its API listens; rejects with its last words if it exits. */
  async start(): Promise<void> {
    if (this.child) throw new Error("the gateway is already running");
    this.starts++;
    const args = [CLI_MAIN, "run", "-c", this.configFile];
    const level = process.env.SHADOWGATE_LOG_LEVEL;
    const verbose = level === "debug" || level === "trace";
    for (const o of [...this.overrides, "api.listen=127.0.0.1:0"]) args.push("--override", o);
    const child = spawn(process.execPath, args, {
      // The API's address is learnt from the log's "local API listening" line: info at least.
      env: { ...process.env, SHADOWGATE_LOG_LEVEL: verbose ? level : "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.child = child;
    this.api = undefined;
    this.exited = new Promise((resolve) =>
      child.once("exit", (code, signal) => {
        this.log(`[start ${this.starts} exited: code ${code}, signal ${signal}]\n`);
        if (this.child === child) this.child = undefined;
        resolve();
      }),
    );
    let partial = "";
    let tail: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new GatewayStartError(`the gateway's API did not listen within ${START_LIMIT_MS} ms`),
          ),
        START_LIMIT_MS,
      );
      child.stderr?.on("data", (b: Buffer) => {
        const text = b.toString("utf8");
        this.log(text);
        // Lines are read only until the API's address is known; after that they are just kept.
        if (this.api !== undefined) return;
        const lines = (partial + text).split("\n");
        partial = lines.pop() ?? "";
        tail = [...tail, ...lines].slice(-5);
        const port = lines.map(listening).find((p) => p !== undefined);
        if (port === undefined) return;
        this.api = `http://127.0.0.1:${port}`;
        clearTimeout(timer);
        resolve();
      });
      void this.exited.then(() => {
        clearTimeout(timer);
        reject(new GatewayStartError(`the gateway exited while starting: ${tail.join(" | ")}`));
      });
    });
  }

  /** SIGTERM, and waits for the daemon to stop (SIGKILL after a bound). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_LIMIT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** SIGKILL: the daemon gets no chance to finish anything. Resolves once it is gone. */
  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.exited;
  }

  /** The device's edge shadow, or undefined while the daemon cannot answer. */
  async shadow(device: string): Promise<EdgeShadow | undefined> {
    if (this.api === undefined) return undefined;
    try {
      const res = await fetch(`${this.api}/api/v1/devices/${encodeURIComponent(device)}/shadow`, {
        headers: this.token === undefined ? {} : { authorization: `Bearer ${this.token}` },
        signal: AbortSignal.timeout(5000),
      });
      return res.ok ? ((await res.json()) as EdgeShadow) : undefined;
    } catch {
      return undefined;
    }
  }

  private log(text: string): void {
    try {
      appendFileSync(this.logFile, text);
    } catch {
      // The log is for people reading a failure; losing it must not fail the scenario.
    }
  }
}

/** The API's port from a log line saying it listens, else undefined. */
function listening(line: string): number | undefined {
  if (!line.includes("local API listening")) return undefined;
  try {
    const port = (JSON.parse(line) as { port?: unknown }).port;
    return typeof port === "number" ? port : undefined;
  } catch {
    return undefined;
  }
}
