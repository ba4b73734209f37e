/**
 * Issue 17, security: no secret in a log. The daemon (the Service, in process, with the
 * production logger at debug level) runs a plant whose every secret the test knows: the
 * gateway's Alibaba device secret (from the environment), a sub-device's secret (in a secrets
 * file, mode 0600), another's (in its mapping file), and the local API's token. It logs in its
 * sub-devices with strict sessions, serves the API (requests with no token, a wrong token and the
 * right one, a local command), reloads, and loses and finds its cloud link. Every line it logged
 * is then scanned for each secret, and for any key that names a secret without being redacted.
 */
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/core/logger.js";
import { Service } from "../../src/daemon/service.js";
import { startSimulator } from "../../src/sim/modbus/index.js";
import { closeCloudTestResources, httpJson, startTestCloud } from "../helpers/cloud.js";
import { until } from "../helpers/until.js";

const root = path.resolve(import.meta.dirname, "../..");
const SECRETS = {
  gateway: "gw-Secret-4f1c2a9e77d3",
  boiler: "boiler-Secret-0b6d93c1e2f4",
  pump: "pump-Secret-9a8e7d6c5b4a",
  token: "api-Token-3c2b1a0f9e8d7c6b",
};
/** Keys whose values are secrets wherever they appear in a log line. */
const SECRET_KEY = /^(password|secret|devicesecret|token|authorization|key|passphrase)$/i;

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
  await closeCloudTestResources();
});

/** Keys naming a secret whose value is not the redaction mark, with where they were. */
function unredacted(value: unknown, where: string, out: string[]): void {
  if (value === null || typeof value !== "object") return;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (SECRET_KEY.test(k) && v !== "[redacted]" && typeof v === "string")
      out.push(`${where}.${k}`);
    unredacted(v, `${where}.${k}`, out);
  }
}

describe("secrets in logs", () => {
  it("none of the plant's secrets appears in any line the daemon logs at debug level", async () => {
    const sim = await startSimulator({ port: 0 });
    running.push(() => sim.close());
    const cloud = await startTestCloud({
      strictSessions: true,
      deviceSecrets: [
        { productKey: "a1Gateway", deviceName: "edge-01", deviceSecret: SECRETS.gateway },
        { productKey: "a1Boiler", deviceName: "boiler-01", deviceSecret: SECRETS.boiler },
        { productKey: "a1Boiler", deviceName: "pump-01", deviceSecret: SECRETS.pump },
      ],
    });
    const dir = await mkdtemp(path.join(tmpdir(), "sg-secrets-"));
    await mkdir(path.join(dir, "mappings"));
    const boiler = await readFile(path.join(root, "mappings/boiler-01.yaml"), "utf8");
    await writeFile(path.join(dir, "mappings", "boiler-01.yaml"), boiler);
    // A second device on the same PLC whose secret is in its own mapping file.
    await writeFile(
      path.join(dir, "mappings", "pump-01.yaml"),
      `version: 1\ndevice: { productKey: a1Boiler, deviceName: pump-01, deviceSecret: ${SECRETS.pump} }\nsource: plc1\nunitId: 1\npoints:\n  flow: { register: 40030 }\n`,
    );
    await writeFile(path.join(dir, "secrets.yaml"), `"a1Boiler/boiler-01": ${SECRETS.boiler}\n`, {
      mode: 0o600,
    });
    const configFile = path.join(dir, "gateway.yaml");
    const config = `version: 1
gateway: { name: edge-secrets, dataDir: ./data }
sources:
  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${sim.port}, timeout: 1s }
cloud:
  url: ${cloud.mqttUrl}
  productKey: a1Gateway
  deviceName: edge-01
  deviceSecret: \${GW_SECRET}
  subDevices: { register: static, login: batch, secrets: ./secrets.yaml }
api: { listen: "127.0.0.1:0", token: "\${API_TOKEN}" }
mappings: ./mappings
`;
    await writeFile(configFile, config);
    const env = { GW_SECRET: SECRETS.gateway, API_TOKEN: SECRETS.token };
    Object.assign(process.env, env); // the reload reads the environment again
    running.push(async () => {
      delete process.env.GW_SECRET;
      delete process.env.API_TOKEN;
    });
    const loaded = await loadConfig(configFile, { ...process.env, ...env });
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));

    const lines: string[] = [];
    const log = createLogger({
      level: "debug",
      destination: { write: (l: string) => void lines.push(l) },
    });
    const service = new Service(configFile, loaded.config, log);
    await service.start();
    running.push(() => service.stop());
    const url = `http://127.0.0.1:${service.api?.address?.port ?? 0}`;
    const auth = { authorization: `Bearer ${SECRETS.token}` };

    await until(
      "both sub-devices logged in and synced",
      () =>
        cloud.service.isLoggedIn("a1Boiler", "boiler-01") &&
        cloud.service.isLoggedIn("a1Boiler", "pump-01") &&
        cloud.service.getShadow("a1Boiler", "pump-01")?.state.reported?.flow !== undefined,
    );
    // The API: no token, a wrong one (the secret with a typo), the right one, a command.
    expect((await httpJson(`${url}/api/v1/devices`)).status).toBe(401);
    expect(
      (
        await httpJson(`${url}/api/v1/devices`, {
          headers: { authorization: `Bearer ${SECRETS.token}x` },
        })
      ).status,
    ).toBe(401);
    expect((await httpJson(`${url}/api/v1/devices`, { headers: auth })).status).toBe(200);
    expect(
      (
        await httpJson(`${url}/api/v1/devices/boiler-01/points/targetTemperature`, {
          method: "PUT",
          body: { value: 61 },
          headers: auth,
        })
      ).status,
    ).toBe(200);
    // A reload, and a sub-device's session dropped by the cloud: the gateway signs a new login.
    expect((await httpJson(`${url}/api/v1/reload`, { method: "POST", headers: auth })).status).toBe(
      200,
    );
    expect(cloud.service.dropSession("a1Boiler", "boiler-01")).toBe(true);
    expect(cloud.service.isLoggedIn("a1Boiler", "boiler-01")).toBe(false);
    // The next report of the boiler is refused for want of a session; the gateway logs it in.
    sim.sim.unit(1).holding[9] = 650;
    await until("boiler-01 logged in again", () =>
      cloud.service.isLoggedIn("a1Boiler", "boiler-01"),
    );
    await service.stop();

    expect(lines.length).toBeGreaterThan(20);
    const leaks: string[] = [];
    for (const [i, line] of lines.entries()) {
      for (const [name, secret] of Object.entries(SECRETS))
        if (line.includes(secret)) leaks.push(`line ${i}: the ${name} secret`);
      unredacted(JSON.parse(line), `line ${i}`, leaks);
    }
    expect(leaks).toEqual([]);
  });
});
