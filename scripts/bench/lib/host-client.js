// @ts-check
/**
 * The parent's side of a helper process driven over the Node IPC channel (lib/sim-host.js,
 * lib/plant-host.js): every call is `{ id, cmd, ...args }` and gets exactly one reply
 * `{ id, ok, value | error }`. Also the clock calibration between the two processes, for the
 * few measurements whose start is stamped in one process and whose end in the other.
 */
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { clearTimeout, setTimeout } from "node:timers";
import { helperCommand } from "./common.js";

/**
 * Wall-clock milliseconds with sub-millisecond resolution: the process's time origin plus the
 * monotonic clock. Comparable across processes up to an offset that `calibrateClock` measures.
 * @returns {number}
 */
export const wallNow = () => performance.timeOrigin + performance.now();

export class HostClient {
  /**
   * Starts `script` under Node with an IPC channel, pinned to the helper core when pinning is on.
   * @param {string} script
   * @param {import("./common.js").PinInfo} pin
   * @returns {HostClient}
   */
  static spawn(script, pin) {
    const { command, args } = helperCommand(pin, [script]);
    return new HostClient(spawn(command, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  }

  /** @param {import("node:child_process").ChildProcess} child */
  constructor(child) {
    this.child = child;
    this.nextId = 1;
    /** @type {Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>} */
    this.pending = new Map();
    /** @type {string | undefined} */
    this.gone = undefined;
    child.on("message", (raw) => {
      const msg = /** @type {{ id: number, ok: boolean, value?: unknown, error?: string }} */ (raw);
      const call = this.pending.get(msg.id);
      if (call === undefined) return;
      this.pending.delete(msg.id);
      if (msg.ok) call.resolve(msg.value);
      else call.reject(new Error(`helper: ${msg.error ?? "failed"}`));
    });
    child.on("exit", (code, signal) => {
      this.gone = `helper exited (code ${String(code)}, signal ${String(signal)})`;
      for (const call of this.pending.values()) call.reject(new Error(this.gone));
      this.pending.clear();
    });
  }

  /**
   * @param {string} cmd
   * @param {Record<string, unknown>} [args]
   * @returns {Promise<unknown>}
   */
  call(cmd, args = {}) {
    if (this.gone !== undefined) return Promise.reject(new Error(this.gone));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, ...args });
    });
  }

  /** Asks the helper to stop and waits for it to leave (killed after 5 s). */
  async close() {
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

  kill() {
    if (this.gone === undefined) this.child.kill("SIGKILL");
  }
}

/**
 * How far the helper's wallNow() is ahead of ours: NTP-style, from the round trip with the
 * smallest delay (its reply stamped somewhere inside it), so the error is at most half that
 * round trip. The helper must answer `{ cmd: "clock" }` with its wallNow().
 * @param {HostClient} host
 * @param {number} [rounds]
 * @returns {Promise<{ offsetMs: number, uncertaintyMs: number, rounds: number }>}
 */
export async function calibrateClock(host, rounds = 40) {
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
