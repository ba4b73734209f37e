import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig, type LoadedConfig } from "../../src/config/load.js";
import { testLogger } from "./logs.js";
import { Gateway } from "../../src/daemon/gateway.js";

/**
 * Writes `gateway.yaml` and `mappings/<name>.yaml` files into a new temporary folder, loads the
 * config (throwing its problems if it is invalid), and starts a gateway on it, in process. The
 * caller stops it.
 */
export async function startGateway(
  gatewayYaml: string,
  mappings: Readonly<Record<string, string>>,
): Promise<{ gateway: Gateway; config: LoadedConfig }> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-gateway-"));
  await mkdir(path.join(dir, "mappings"));
  await writeFile(path.join(dir, "gateway.yaml"), gatewayYaml);
  for (const [name, text] of Object.entries(mappings))
    await writeFile(path.join(dir, "mappings", `${name}.yaml`), text);
  const loaded = await loadConfig(path.join(dir, "gateway.yaml"));
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const gateway = new Gateway(loaded.config, testLogger());
  await gateway.start();
  return { gateway, config: loaded.config };
}
