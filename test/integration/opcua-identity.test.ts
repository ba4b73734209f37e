/**
 * The X.509 user identity against the OPC UA simulator, which refuses anonymous sessions here:
 * a certificate made by openssl (not by node-opcua) logs in, anonymous does not.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { testLogger } from "../helpers/logs.js";
import type { NodeDevicePlan } from "../../src/mapping/types.js";
import { startOpcuaSimulator } from "../../src/sim/opcua/index.js";
import type { Source } from "../../src/south/protocol.js";
import { protocolOf, sourceSchema } from "../../src/south/registry.js";

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
});

it("logs in with an X.509 user certificate where anonymous is refused", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "sg-opcua-id-"));
  execFileSync("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"],
    ...["-keyout", path.join(dir, "user.key"), "-out", path.join(dir, "user.pem")],
    ...["-subj", "/CN=shadowgate-user", "-addext", "subjectAltName=URI:urn:shadowgate:user"],
    ...["-addext", "keyUsage=digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment"],
  ]);
  const sim = await startOpcuaSimulator({
    port: 0,
    securityModes: ["SignAndEncrypt"],
    allowAnonymous: false,
    // Still values: the check compares the polled value with the simulator's.
    dynamics: false,
  });
  running.push(() => sim.close());
  // The gateway trusts this server: its certificate is put where an operator would move it.
  const pkiDir = path.join(dir, "pki", "opcua");
  const trusted = path.join(pkiDir, "trusted", "certs");
  mkdirSync(trusted, { recursive: true });
  const own = path.join(sim.pkiDir, "server", "own", "certs");
  for (const f of readdirSync(own).filter((f) => f.endsWith(".pem")))
    copyFileSync(path.join(own, f), path.join(trusted, f));

  const source = async (identity: unknown): Promise<Source> => {
    const config = sourceSchema.parse({
      protocol: "opcua",
      endpoint: sim.endpoint,
      securityMode: "SignAndEncrypt",
      identity,
      reconnect: { min: 100, max: 200 },
    });
    const s = await protocolOf(config).open("opc1", config, {
      dataDir: dir,
      configDir: dir,
      log: testLogger(),
    });
    running.push(() => s.stop());
    await s.start();
    return s;
  };
  const device: NodeDevicePlan = {
    kind: "opcua",
    file: path.join(dir, "boiler.yaml"),
    productKey: "pk",
    deviceName: "boiler",
    sourceId: "opc1",
    pollIntervalMs: 1000,
    mode: "poll",
    points: [
      {
        name: "t",
        path: ["t"],
        node: "ns=1;s=Boiler.Temperature",
        writable: false,
        onChange: true,
      },
    ],
  };

  const withCert = await source({
    type: "certificate",
    certificate: "user.pem",
    privateKey: "user.key",
  });
  const [good] = await withCert.channel(device).poll();
  expect(good).toMatchObject({ quality: { status: "good" }, value: sim.get("Temperature") });

  const anonymous = await source({ type: "anonymous" });
  const [refused] = await anonymous.channel(device).poll();
  expect(refused?.quality).toMatchObject({
    status: "bad",
    code: "SG_OPCUA_SESSION",
    reason: expect.stringContaining("refused the session as anonymous"),
  });
  expect(anonymous.health().state).not.toBe("online");
}, 60_000);
