/**
 * The secrets scan over the run's gateway logs (issue 17; test/global-setup.ts runs it at the
 * end of every `npm test`): what it takes for a secret in the test sources, that it finds one in
 * a log and masks it in its report, and that the gateways under test do log into the folder it
 * reads, through the production logger's redaction.
 */
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { testLogger } from "../../helpers/logs.js";
import { scanLogs, secretsIn, testSecrets } from "../../helpers/secret-scan.js";

describe("secrets scan", () => {
  it("takes quoted, YAML and environment-style secrets, and leaves placeholders, code and clientTokens", () => {
    const text = [
      `deviceSecret: "quoted-Secret-01"`,
      `  password: 'single-quoted-pw'`,
      "  token: `template-token-01`",
      `    deviceSecret: bare-yaml-secret-9`,
      `SHADOWGATE_API_TOKEN=env-token-42`,
      `deviceSecret: "\${DEVICE_SECRET}"`,
      `password: "[redacted]"`,
      `deviceSecret: SECRETS.gateway,`,
      `"clientToken":"a1Boiler.boiler-01-1"`,
      `password: "nope"`,
    ].join("\n");
    expect([...secretsIn(text)].sort()).toEqual(
      [
        "bare-yaml-secret-9",
        "env-token-42",
        "quoted-Secret-01",
        "single-quoted-pw",
        "template-token-01",
      ].sort(),
    );
  });

  it("finds the tests' own secrets in their sources", () => {
    const secrets = testSecrets(path.resolve(import.meta.dirname, "../.."));
    // One from a TypeScript object, one from a mapping written by a test, one env-style.
    expect(secrets).toContain("api-Token-3c2b1a0f9e8d7c6b");
    expect(secrets).toContain("s3cr3t-Plc1");
    expect(secrets.size).toBeGreaterThanOrEqual(15);
  });

  it("names the file and line of a leak, its secret masked, and a PEM private key", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sg-scan-"));
    await writeFile(
      path.join(dir, "worker-1.log"),
      [
        `{"msg":"connected","device":"edge-01"}`,
        `{"msg":"login","deviceSecret":"[redacted]"}`,
        `{"msg":"oops","detail":"signed with leaky-Secret-77"}`,
        `{"msg":"key","pem":"-----BEGIN EC PRIVATE KEY-----"}`,
      ].join("\n"),
    );
    const { lines, leaks } = scanLogs(dir, new Set(["leaky-Secret-77", "never-logged-1"]));
    expect(lines).toBe(4);
    expect(leaks).toEqual([
      { file: path.join(dir, "worker-1.log"), line: 3, what: "le…77" },
      { file: path.join(dir, "worker-1.log"), line: 4, what: "a PEM private key" },
    ]);
  });

  it("receives the lines of the gateways under test, redacted as in production", async () => {
    const dir = process.env.SHADOWGATE_TEST_LOG_DIR;
    expect(dir, "test/global-setup.ts sets the run's log folder").toBeDefined();
    testLogger().info({ deviceSecret: "in-process-Secret-5", probe: "scan-probe" }, "probe line");
    const files = await readdir(dir ?? "");
    const texts = await Promise.all(files.map((f) => readFile(path.join(dir ?? "", f), "utf8")));
    const line = texts
      .join("\n")
      .split("\n")
      .find((l) => l.includes("scan-probe"));
    expect(JSON.parse(line ?? "{}")).toMatchObject({
      deviceSecret: "[redacted]",
      msg: "probe line",
    });
  });
});
