/**
 * node-opcua costs ~80 MB of RSS once loaded: a gateway without an OPC UA source must never load
 * it. Checked in a fresh process on the built code (`npm run build` first), where the CommonJS
 * module cache shows what was loaded.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");

const probe = `
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { loadConfig } = await import(${JSON.stringify(path.join(root, "dist/config/load.js"))});
const { Gateway } = await import(${JSON.stringify(path.join(root, "dist/daemon/gateway.js"))});
const { createLogger } = await import(${JSON.stringify(path.join(root, "dist/core/logger.js"))});
const loaded = await loadConfig(process.argv[1], {});
if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
const gateway = new Gateway(loaded.config, createLogger({ level: "silent" }));
await gateway.pollOnce();
await gateway.stop();
process.stdout.write(String(Object.keys(require.cache).some((k) => k.includes("node-opcua"))));
`;

async function loadsOpcua(source: string, point: string): Promise<boolean> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-lazy-"));
  await mkdir(path.join(dir, "mappings"));
  await writeFile(
    path.join(dir, "gateway.yaml"),
    `version: 1\ngateway: { dataDir: ./data }\nsources:\n  s1:\n${source}\nmappings: ./mappings\n`,
  );
  await writeFile(
    path.join(dir, "mappings/d.yaml"),
    `version: 1\ndevice: { productKey: pk, deviceName: d }\nsource: s1\npoints:\n  x: ${point}\n`,
  );
  const out = execFileSync(
    process.execPath,
    ["--input-type=module", "-e", probe, path.join(dir, "gateway.yaml")],
    { encoding: "utf8" },
  );
  return out.trim().endsWith("true");
}

it("loads node-opcua only when a device uses an OPC UA source", async () => {
  // Nothing listens on port 1 of loopback: each source fails fast and the poll finds bad quality.
  const modbus = "    protocol: modbus-tcp\n    host: 127.0.0.1\n    port: 1\n    timeout: 200ms";
  const opcua = "    protocol: opcua\n    endpoint: opc.tcp://127.0.0.1:1\n    timeout: 500ms";
  expect(await loadsOpcua(modbus, "{ register: 40001 }")).toBe(false);
  expect(await loadsOpcua(opcua, "{ node: 'ns=1;s=X' }")).toBe(true);
}, 60_000);
