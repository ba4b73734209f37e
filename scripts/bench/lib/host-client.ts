/**
 * The parent's side of a helper process driven over the Node IPC channel (lib/sim-host.ts,
 * lib/plant-host.ts; the child's side is lib/host-server.ts): every call is `{ id, cmd, ...args }`
 * and gets exactly one reply `{ id, ok, value | error }`. Also the clock calibration between
 * the two processes, for the few measurements whose start is stamped in one process and whose
 * end in the other.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { clearTimeout, setTimeout } from "node:timers";
import { BENCH_DIR, helperCommand, type PinInfo } from "./common.js";

/**
 * Wall-clock milliseconds with sub-millisecond resolution: the process's time origin plus the
 * monotonic clock. Comparable across processes up to an offset that `calibrateClock` measures.
 */
export const wallNow = (): number => performance.timeOrigin + performance.now();

/** What a helper sends back for each call (lib/host-server.ts). */
export interface HostReply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

export class HostClient {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  /** Why the helper is gone, once it is. */
  private gone: string | undefined = undefined;

  /**
   * Starts a helper (lib/<host>.ts, from its transpiled copy) under Node with an IPC channel,
   * pinned to the helper core when pinning is on.
   */
  static spawn(host: "sim-host" | "plant-host", pin: PinInfo): HostClient {
    const { command, args } = helperCommand(pin, [join(BENCH_DIR, "lib", `${host}.js`)]);
    return new HostClient(spawn(command, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  }

  constructor(private readonly child: ChildProcess) {
    child.on("message", (raw) => {
      const msg = raw as HostReply;
      const call = this.pending.get(msg.id);
      if (call === undefined) return;
      this.pending.delete(msg.id);
      if (msg.ok) call.resolve(msg.value);
      else call.reject(new Error(`helper: ${msg.error ?? "failed"}`));
    });
    child.on("exit", (code, signal) => {
      const gone = `helper exited (code ${String(code)}, signal ${String(signal)})`;
      this.gone = gone;
      for (const call of this.pending.values()) call.reject(new Error(gone));
      this.pending.clear();
    });
  }

  call(cmd: string, args: Record<string, unknown> = {}): Promise<unknown> {
    if (this.gone !== undefined) return Promise.reject(new Error(this.gone));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, ...args });
    });
  }

  /** Asks the helper to stop and waits for it to leave (killed after 5 s). */
  async close(): Promise<void> {
    if (this.gone !== undefined) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    const timer = setTimeout(() => this.kill(), 5000);
    try {
      await this.call("stop");
    } catch {
      // It may already be on its way out; the exit below is what counts.
    }
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.gone === undefined) this.child.kill("SIGKILL");
  }
}

/**
 * How far the helper's wallNow() is ahead of ours: NTP-style, from the round trip with the
 * smallest delay (its reply stamped somewhere inside it), so the error is at most half that
 * round trip. The helper must answer `{ cmd: "clock" }` with its wallNow().
 */
export async function calibrateClock(
  host: HostClient,
  rounds = 40,
): Promise<{ offsetMs: number; uncertaintyMs: number; rounds: number }> {
  let best = { offsetMs: NaN, uncertaintyMs: Infinity };
  for (let i = 0; i < rounds; i++) {
    const a = wallNow();
    const theirs = Number(await host.call("clock"));
    const b = wallNow();
    const half = (b - a) / 2;
    if (half < best.uncertaintyMs) best = { offsetMs: theirs - (a + b) / 2, uncertaintyMs: half };
  }
  return { ...best, rounds };
}
