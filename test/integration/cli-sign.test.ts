import { createHmac } from "node:crypto";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli, type Finished } from "../helpers/run.js";

const root = path.resolve(import.meta.dirname, "../..");

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  // The secret must come from the test alone, never from the shell that runs it.
  const inherited = { ...process.env };
  delete inherited["SHADOWGATE_DEVICE_SECRET"];
  return runCli(args, { cwd: root, env: { ...inherited, ...env } });
}

const PK = "a1Boiler";
const DN = "boiler-01";
const SECRET = "fieldSecret-0123456789abcdefABCD";
const device = ["--product-key", PK, "--device-name", DN];

describe("shadowgate sign", () => {
  it("prints host, port, clientId, username and password, one per line", async () => {
    const r = await cli([
      "sign",
      ...device,
      "--device-secret",
      SECRET,
      "--client-id",
      "SN1928339",
      "--sign-method",
      "hmacsha1",
      "--secure-mode",
      "3",
      "--timestamp",
      "1539421321846",
      "--region",
      "ap-southeast-1",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const password = createHmac("sha1", SECRET)
      .update(`clientIdSN1928339deviceName${DN}productKey${PK}timestamp1539421321846`)
      .digest("hex");
    expect(r.stdout).toBe(
      [
        `host      ${PK}.iot-as-mqtt.ap-southeast-1.aliyuncs.com`,
        "port      1883",
        "tls       no (securemode=3)",
        "clientId  SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
        `username  ${DN}&${PK}`,
        `password  ${password}`,
        "",
      ].join("\n"),
    );
    expect(r.stdout).not.toContain(SECRET);
  });

  it("--json prints one object; defaults are hmacsha256, TLS on 443, cn-shanghai, no timestamp", async () => {
    const r = await cli(["sign", ...device, "--device-secret", SECRET, "--json"]);
    expect(r.code).toBe(0);
    const password = createHmac("sha256", SECRET)
      .update(`clientId${PK}.${DN}deviceName${DN}productKey${PK}`)
      .digest("hex");
    expect(JSON.parse(r.stdout)).toEqual({
      host: `${PK}.iot-as-mqtt.cn-shanghai.aliyuncs.com`,
      port: 443,
      tls: true,
      clientId: `${PK}.${DN}|securemode=2,signmethod=hmacsha256|`,
      username: `${DN}&${PK}`,
      password,
    });
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
  });

  it("takes the secret from SHADOWGATE_DEVICE_SECRET", async () => {
    const r = await cli(["sign", ...device, "--sign-method", "hmacmd5", "--json"], {
      SHADOWGATE_DEVICE_SECRET: SECRET,
    });
    expect(r.code).toBe(0);
    const password = createHmac("md5", SECRET)
      .update(`clientId${PK}.${DN}deviceName${DN}productKey${PK}`)
      .digest("hex");
    expect((JSON.parse(r.stdout) as { password: string }).password).toBe(password);
  });

  it("exits 64 on a missing secret or an unknown sign method", async () => {
    const missing = await cli(["sign", ...device]);
    expect(missing.code).toBe(64);
    expect(missing.stderr).toMatch(/--device-secret/);
    const method = await cli([
      "sign",
      ...device,
      "--device-secret",
      SECRET,
      "--sign-method",
      "sha256",
    ]);
    expect(method.code).toBe(64);
    expect(method.stderr).toMatch(/Allowed choices are hmacsha256, hmacsha1, hmacmd5/);
    expect(method.stderr).not.toContain(SECRET);
  });

  it("exits 64 on a bad timestamp without echoing the secret", async () => {
    const r = await cli(["sign", ...device, "--device-secret", SECRET, "--timestamp", "soon"]);
    expect(r.code).toBe(64);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      'shadowgate sign: SG_SIGN_INPUT: timestamp "soon" is not a whole number of milliseconds\n',
    );
  });

  it("prints a sub-device's login through its gateway with --gateway", async () => {
    const args = ["sign", ...device, "--device-secret", SECRET, "--timestamp", "1700000000000"];
    const r = await cli([...args, "--gateway", "a1Gateway/edge-01", "--json"]);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout) as { login: { topic: string; payload: string } };
    expect(out.login.topic).toBe("/ext/session/a1Gateway/edge-01/combine/login");
    const content = `clientId${PK}&${DN}deviceName${DN}productKey${PK}timestamp1700000000000`;
    expect(JSON.parse(out.login.payload)).toEqual({
      id: "1",
      version: "1.0",
      method: "combine.login",
      params: {
        productKey: PK,
        deviceName: DN,
        clientId: `${PK}&${DN}`,
        timestamp: "1700000000000",
        signMethod: "hmacsha256",
        sign: createHmac("sha256", SECRET).update(content).digest("hex"),
        cleanSession: "true",
      },
    });
    const text = await cli([...args, "--gateway", "a1Gateway/edge-01"]);
    expect(text.stdout).toContain("login     /ext/session/a1Gateway/edge-01/combine/login\n");
    const bad = await cli([...args, "--gateway", "edge-01"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('--gateway "edge-01" is not productKey/deviceName');
  });
});
