/**
 * `shadowgate run` as systemd runs it: the built CLI against a simulated PLC, with a unix
 * datagram socket standing in for systemd's NOTIFY_SOCKET (test/helpers/notify-socket.ts). It
 * must say READY=1 once started, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 then READY=1
 * around a SIGHUP, STOPPING=1 on SIGTERM; with a socket that is not there it must run and stop
 * as usual. And `--log-format pretty` prints readable lines instead of JSON.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startSimulator, type RunningSimulator } from "../../src/sim/modbus/index.js";
import { findExecutable } from "../../src/core/executables.js";
import { CLI_MAIN } from "../helpers/gateway-process.js";
import { PYTHON, startNotifySocket, type NotifySocket } from "../helpers/notify-socket.js";
import { until } from "../helpers/until.js";
import { keepLog } from "../helpers/logs.js";

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of cleanup.splice(0).reverse()) await stop().catch(() => undefined);
});

/** A gateway config with one simulated PLC and one mapping, no cloud. */
async function plant(): Promise<string> {
  const sim: RunningSimulator = await startSimulator({ port: 0 });
  cleanup.push(() => sim.close());
  const dir = await mkdtemp(path.join(tmpdir(), "sg-run-service-"));
  await mkdir(path.join(dir, "mappings"));
  await writeFile(
    path.join(dir, "mappings/boiler.yaml"),
    `version: 1
device: { productKey: a1Plant, deviceName: boiler }
source: plc
pollInterval: 100ms
points:
  level: { register: 40001, type: uint16 }
`,
  );
  const config = path.join(dir, "gateway.yaml");
  await writeFile(
    config,
    `version: 1
gateway: { name: svc, dataDir: ./data }
sources:
  plc: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port} }
mappings: ./mappings
`,
  );
  return config;
}

interface Daemon {
  readonly child: ChildProcess;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

function runGateway(args: string[], env: NodeJS.ProcessEnv): Daemon {
  // Whatever the test runner's own environment says about systemd does not leak in.
  const base = { ...process.env };
  for (const key of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) delete base[key];
  const child = spawn(process.execPath, [CLI_MAIN, "run", ...args], {
    env: { ...base, SHADOWGATE_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (c) => {
      keepLog("cli", stderr);
      resolve(c);
    }),
  );
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  return { child, stderr: () => stderr, exited };
}

const systemdNotify = findExecutable("systemd-notify", ["/usr/bin/systemd-notify"]);
const missing = [PYTHON === undefined && "python3", systemdNotify === undefined && "systemd-notify"]
  .filter((m) => m !== false)
  .join(", ");

// Skipped only on a developer machine without them; under CI their absence is a failure.
describe.skipIf(missing !== "" && process.env.CI !== "true")("run under systemd", () => {
  let socket: NotifySocket;

  it("notifies READY, WATCHDOG, RELOADING/READY around SIGHUP, and STOPPING on SIGTERM", async () => {
    if (missing !== "") throw new Error(`CI=true and ${missing} is missing`);
    socket = await startNotifySocket();
    cleanup.push(() => socket.close());
    const gw = runGateway(["-c", await plant()], {
      NOTIFY_SOCKET: socket.path,
      // 300 ms: a ping every 150 ms.
      WATCHDOG_USEC: "300000",
    });
    const failure = () => `${JSON.stringify(socket.messages)}\n${gw.stderr()}`;

    await until("READY=1", () => socket.has("READY=1"), 20_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${failure()}`);
    });
    const ready = socket.indexOf("READY=1");
    expect(socket.messages[ready]).toContain("STATUS=running: 1 device(s)");
    // Nothing before READY=1 but its own STATUS: the watchdog starts once the gateway runs.
    expect(socket.messages.slice(0, ready).flat()).not.toContain("WATCHDOG=1");
    expect(gw.stderr()).toContain('"msg":"gateway started"');

    await until("WATCHDOG=1 after READY=1", () => socket.has("WATCHDOG=1", ready + 1));
    const pings = socket.messages.length;
    await until("a second WATCHDOG=1", () => socket.has("WATCHDOG=1", pings));

    gw.child.kill("SIGHUP");
    await until("RELOADING=1", () => socket.has("RELOADING=1"));
    const reloading = socket.indexOf("RELOADING=1");
    await until("READY=1 after the reload", () => socket.has("READY=1", reloading + 1));
    const reloaded = socket.indexOf("READY=1", reloading + 1);
    expect(socket.messages[reloaded]?.join("\n")).toMatch(/STATUS=running; config reloaded at /);
    expect(gw.stderr()).toContain('"msg":"reloaded in place"');

    gw.child.kill("SIGTERM");
    expect(await gw.exited).toBe(0);
    await until("STOPPING=1", () => socket.has("STOPPING=1", reloaded + 1));
    const stopping = socket.indexOf("STOPPING=1", reloaded + 1);
    // The watchdog stops with the gateway: no ping after STOPPING=1.
    expect(socket.messages.slice(stopping + 1).flat()).not.toContain("WATCHDOG=1");
    expect(gw.stderr()).toContain('"msg":"stopped"');
    expect(gw.stderr()).not.toContain("systemd-notify failed");
  });

  it("runs and stops as usual when the notify socket is not there, warning once", async () => {
    if (missing !== "") throw new Error(`CI=true and ${missing} is missing`);
    const dir = await mkdtemp(path.join(tmpdir(), "sg-no-notify-"));
    const gw = runGateway(["-c", await plant()], {
      NOTIFY_SOCKET: path.join(dir, "absent.sock"),
      WATCHDOG_USEC: "200000",
    });
    await until("gateway started", () => gw.stderr().includes('"msg":"gateway started"'), 20_000);
    await until("the warning", () => gw.stderr().includes("systemd-notify failed"));
    gw.child.kill("SIGTERM");
    expect(await gw.exited).toBe(0);
    // READY=1, the pings and STOPPING=1 all failed; one warning says so.
    expect(gw.stderr().split("systemd-notify failed")).toHaveLength(2);
    expect(gw.stderr()).toContain('"msg":"stopped"');
  });
});

describe("run --log-format", () => {
  it("pretty prints one readable line per record and no JSON", async () => {
    const gw = runGateway(["-c", await plant(), "--log-format", "pretty"], {
      SHADOWGATE_LOG_LEVEL: "debug",
    });
    // A poll's update logged after "gateway started": by then run() has its SIGTERM handler
    // (the start and the handler are one chain of microtasks, a poll's answer is I/O after it).
    await until(
      "a reported update after the start",
      () => /gateway started[^]*\n\S+ DEBUG boiler reported update/.test(gw.stderr()),
      20_000,
    );
    gw.child.kill("SIGTERM");
    expect(await gw.exited).toBe(0);
    const lines = gw.stderr().trim().split("\n");
    expect(lines.filter((l) => l.startsWith("{"))).toEqual([]);
    // The device speaks: it comes before the message, not among the fields.
    expect(lines.find((l) => l.includes("reported update"))).toMatch(
      / DEBUG boiler reported update reported={"level":\d+} quality={}$/,
    );
    const started = lines.find((l) => l.includes(" gateway started"));
    expect(started).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}gateway started devices=1 sources=1 gateway=svc$/,
    );
    expect(lines.at(-1)).toMatch(/ INFO {2}stopped$/);
  });

  it("refuses a format it does not know", async () => {
    const gw = runGateway(["-c", await plant(), "--log-format", "xml"], {});
    expect(await gw.exited).toBe(64);
    expect(gw.stderr()).toMatch(/Allowed choices are json, pretty/);
  });
});
