import { execFile, spawn } from "node:child_process";
import { cp, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { keepLog } from "../helpers/logs.js";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
const main = path.join(root, "dist/cli/main.js");

/** Preloaded into the CLI: at exit, the packages whose CommonJS files were loaded. */
const PRELOAD = `
process.on("exit", () => {
  const pkgs = new Set();
  for (const file of Object.keys(require.cache)) {
    const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(file);
    if (m) pkgs.add(m[1]);
  }
  process.stderr.write("LOADED " + JSON.stringify([...pkgs]) + "\\n");
});
`;

describe("CLI footprint", () => {
  it("loads a command's modules only when it runs: validate loads no broker, simulator or installer", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-footprint-"));
    const preload = path.join(dir, "preload.cjs");
    await writeFile(preload, PRELOAD);
    const { stderr } = await run(
      process.execPath,
      ["--require", preload, main, "validate", "-c", path.join(root, "config/gateway.yaml")],
      { cwd: root, timeout: 20_000 },
    );
    const line = stderr.split("\n").find((l) => l.startsWith("LOADED "));
    const loaded = JSON.parse(line?.slice("LOADED ".length) ?? "null") as string[];
    // The config's own parsers are there (a sanity check of the preload)...
    expect(loaded).toContain("yaml");
    // ...and none of what other commands need: the cloud simulator's broker, the local API.
    for (const pkg of ["aedes", "node-opcua", "fastify", "prom-client"]) {
      expect(loaded).not.toContain(pkg);
    }
  });

  it("run without an api section loads neither the local API's server nor its metrics", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-footprint-"));
    const preload = path.join(dir, "preload.cjs");
    await writeFile(preload, PRELOAD);
    await cp(path.join(root, "mappings"), path.join(dir, "mappings"), { recursive: true });
    // No cloud either: the daemon polls a PLC that is not there, which is enough to start.
    const config = path.join(dir, "gateway.yaml");
    await writeFile(
      config,
      `version: 1
gateway: { name: footprint, dataDir: ./data }
sources: { plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: 1, timeout: 200ms } }
mappings: ./mappings
`,
    );
    const child = spawn(process.execPath, ["--require", preload, main, "run", "-c", config], {
      cwd: dir,
      stdio: ["ignore", "ignore", "pipe"],
    });
    // The log goes to stderr (not a terminal); SIGTERM once the signal handlers are in place.
    let stderr = "";
    let asked = false;
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (!asked && stderr.includes("gateway started")) {
        asked = true;
        setTimeout(() => child.kill("SIGTERM"), 300);
      }
    });
    const code = await new Promise((resolve) => child.on("exit", resolve));
    keepLog("cli", stderr);
    expect(code).toBe(0);
    const line = stderr.split("\n").find((l) => l.startsWith("LOADED "));
    const loaded = JSON.parse(line?.slice("LOADED ".length) ?? "null") as string[];
    expect(loaded).toContain("pino");
    for (const pkg of ["aedes", "node-opcua", "fastify", "prom-client"]) {
      expect(loaded).not.toContain(pkg);
    }
  }, 20_000);
});
