import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../../src/config/load.js";
import { Service } from "../../src/daemon/service.js";
import { testLogger } from "./logs.js";

/**
 * Writes a site's files (path relative to the site -> text: `gateway.yaml`, `mappings/a.yaml`,
 * a scenario) into a new temporary folder, and returns the folder.
 */
export async function writeSite(
  prefix: string,
  files: Readonly<Record<string, string>>,
): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
  return dir;
}

/** The shipped boiler mapping (mappings/boiler-01.yaml), for a site of its own. */
export const shippedBoilerMapping = (): Promise<string> =>
  readFile(path.resolve(import.meta.dirname, "../../mappings/boiler-01.yaml"), "utf8");

/**
 * The daemon of a site's config (the Service, in process, logging into the secrets scan),
 * started with its API bound; `running` gets its stop.
 */
export async function serveSite(
  configFile: string,
  running: Array<() => Promise<unknown>>,
): Promise<{ service: Service; port: number; url: string }> {
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const service = new Service(configFile, loaded.config, testLogger());
  await service.start();
  running.push(() => service.stop());
  const port = service.api?.address?.port;
  if (port === undefined) throw new Error("the API did not bind");
  return { service, port, url: `http://127.0.0.1:${port}` };
}
