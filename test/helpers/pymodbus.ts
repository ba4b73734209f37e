import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";

/** Debian's interpreter, which carries python3-pymodbus; the `python3` on PATH may be another. */
export const PYTHON = "/usr/bin/python3";
const SERVER = path.resolve(import.meta.dirname, "../fixtures/pymodbus/server.py");

/** Whether pymodbus and its serial support import under Debian's python3. */
export const pymodbusRtuMissing = (): boolean =>
  spawnSync(PYTHON, ["-c", "import pymodbus.server, serial_asyncio"]).status !== 0;

/**
 * pymodbus's RTU slave (test/fixtures/pymodbus/server.py) on a serial device at 115200 8N1,
 * serving `spec` (what to place where); resolves once it says it is ready, with its stop.
 */
export async function startPymodbusRtu(
  device: string,
  spec: readonly object[],
): Promise<{ stop: () => Promise<unknown> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-pymodbus-rtu-"));
  const file = path.join(dir, "spec.json");
  await writeFile(file, JSON.stringify(spec));
  const child = spawn(
    PYTHON,
    [SERVER, "--stop-on-stdin-eof", "--rtu", device, "--baud", "115200", "0", file],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      child.once("exit", resolve);
      child.kill("SIGTERM");
    });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on("line", (l) => {
        if (l === "ready rtu") resolve();
      });
      child.once("exit", (code) => reject(new Error(`server.py exited ${code}: ${stderr}`)));
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}
