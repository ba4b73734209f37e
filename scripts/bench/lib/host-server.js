// @ts-check
/**
 * The child's side of a helper process driven over the Node IPC channel (the parent's side is
 * lib/host-client.js): every message `{ id, cmd, ...args }` goes to `handle` and gets exactly
 * one reply `{ id, ok, value | error }`. After "stop" the channel is closed; if the parent
 * goes away (crash, watchdog), `stopAll` runs and the process exits, so no ports linger.
 */

/**
 * @template {{ cmd?: unknown }} M
 * @param {string} script  this host's file name, for the message when run without a parent
 * @param {string} parent  the benchmark that spawns it
 * @param {(msg: M) => Promise<unknown>} handle
 * @param {() => Promise<void>} stopAll
 */
export function serveHost(script, parent, handle, stopAll) {
  if (process.send === undefined) {
    console.error(`${script} runs as a child with an IPC channel (see ${parent})`);
    process.exit(64);
  }
  process.on("message", (raw) => {
    const msg = /** @type {M & { id?: unknown }} */ (raw);
    handle(msg).then(
      (value) => {
        process.send?.({ id: msg.id, ok: true, value }, () => {
          if (msg.cmd === "stop") process.disconnect();
        });
      },
      (err) => {
        process.send?.({
          id: msg.id,
          ok: false,
          error: err instanceof Error ? err.message : String(err),
        });
      },
    );
  });
  process.on("disconnect", () => {
    void stopAll().then(() => process.exit(0));
  });
}
