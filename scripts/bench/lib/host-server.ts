/**
 * The child's side of a helper process driven over the Node IPC channel (the parent's side is
 * lib/host-client.ts): every message `{ id, cmd, ...args }` goes to the command of that name and
 * gets exactly one reply `{ id, ok, value | error }` (an unknown command is an error). "stop" is
 * every host's: it runs `stopAll`, replies and closes the channel. If the parent goes away
 * (crash, watchdog), `stopAll` runs and the process exits, so no ports linger.
 */

/** A message from the parent: the command's name and its arguments. */
export type HostMessage = Record<string, unknown> & { id?: unknown; cmd?: unknown };

/** A host's commands by name; what one returns (or resolves with) is the reply's value. */
export type HostCommands = Record<string, (msg: HostMessage) => unknown>;

/**
 * @param script  this host's file name, for the message when run without a parent
 * @param parent  the benchmarks that spawn it
 */
export function serveHost(
  script: string,
  parent: string,
  commands: HostCommands,
  stopAll: () => Promise<void>,
): void {
  if (process.send === undefined) {
    console.error(`${script} runs as a child with an IPC channel (see ${parent})`);
    process.exit(64);
  }
  const handle = async (msg: HostMessage): Promise<unknown> => {
    if (msg.cmd === "stop") {
      await stopAll();
      return null;
    }
    const command =
      typeof msg.cmd === "string" && Object.hasOwn(commands, msg.cmd)
        ? commands[msg.cmd]
        : undefined;
    if (command === undefined) throw new Error(`unknown command ${String(msg.cmd)}`);
    return command(msg);
  };
  process.on("message", (raw) => {
    const msg = raw as HostMessage;
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
