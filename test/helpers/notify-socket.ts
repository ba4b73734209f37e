import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { findExecutable } from "../../src/core/executables.js";

/**
 * A stand-in for systemd's notification socket: an AF_UNIX datagram socket on a temp path
 * (NOTIFY_SOCKET for the daemon under test) that records every message. Node has no unix
 * datagram sockets, so Debian's python3 holds it. Like PID 1, it closes the file descriptors a
 * message carries: systemd-notify sends BARRIER=1 with a pipe and waits until the receiver has
 * closed it (sd_notify_barrier), so a receiver that kept them would stall every message.
 *
 *   const socket = await startNotifySocket();
 *   spawn(..., { env: { NOTIFY_SOCKET: socket.path } });
 *   await until("READY=1", () => socket.has("READY=1"));
 */

/** Debian's interpreter: the `python3` on PATH may be a pyenv shim. */
export const PYTHON = findExecutable("python3", ["/usr/bin/python3"]);

const LISTENER = String.raw`
import array, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps({"listening": sys.argv[1]}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    print(json.dumps({"message": msg.decode("utf-8", "replace")}), flush=True)
`;

export interface NotifySocket {
  readonly path: string;
  /** Every message received, in order, each as its lines (READY=1, STATUS=...). */
  readonly messages: readonly (readonly string[])[];
  /** Whether a message received at or after `from` carries `line`. */
  has(line: string, from?: number): boolean;
  /** The index of the first message at or after `from` carrying `line`, or -1. */
  indexOf(line: string, from?: number): number;
  close(): Promise<void>;
}

export async function startNotifySocket(): Promise<NotifySocket> {
  if (PYTHON === undefined) throw new Error("python3 not found (Debian's /usr/bin/python3)");
  const dir = await mkdtemp(path.join(tmpdir(), "sg-notify-"));
  const socketPath = path.join(dir, "notify.sock");
  const child: ChildProcess = spawn(PYTHON, ["-u", "-c", LISTENER, socketPath], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const messages: string[][] = [];
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let partial = "";
    child.once("exit", (code) =>
      reject(new Error(`the notify socket listener exited (${String(code)}): ${stderr}`)),
    );
    child.stdout?.on("data", (b: Buffer) => {
      const lines = (partial + b.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        const event = JSON.parse(line) as { listening?: string; message?: string };
        if (event.listening !== undefined) resolve();
        if (event.message !== undefined) messages.push(event.message.split("\n"));
      }
    });
  });
  const indexOf = (line: string, from = 0): number =>
    messages.findIndex((m, i) => i >= from && m.includes(line));
  return {
    path: socketPath,
    messages,
    indexOf,
    has: (line, from) => indexOf(line, from) >= 0,
    async close() {
      child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
