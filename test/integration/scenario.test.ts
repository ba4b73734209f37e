/**
 * `shadowgate test` (issue 18): the shipped example scenarios pass against simulators of the
 * example mappings and the local cloud service; a mapping with the wrong byte order makes a
 * scenario fail naming the step, the point, the expected and the actual value; the JUnit report
 * parses (Python's own XML parser, not ours); a scenario naming an unknown device or point is a
 * validation error at its file:line:col, and nothing starts.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CLI_MAIN } from "../helpers/gateway-process.js";
import { keepLog } from "../helpers/logs.js";
import { run, runCli, type Finished } from "../helpers/run.js";
import { writeSite } from "../helpers/site.js";

const root = path.resolve(import.meta.dirname, "../..");
/** Debian's python3 (the one on PATH may be pyenv's), for its XML parser. */
const PYTHON = "/usr/bin/python3";

/** The JUnit report's tests, failures and failure messages, as Python's ElementTree reads it. */
async function parseJunit(file: string): Promise<{ tests: number; failures: string[] }> {
  const r = await run(PYTHON, [
    "-c",
    "import sys, json, xml.etree.ElementTree as T; s = T.parse(sys.argv[1]).getroot().find('testsuite'); print(json.dumps({'tests': int(s.get('tests')), 'failures': [f.get('message') for f in s.iter('failure')]}))",
    file,
  ]);
  if (r.code !== 0) throw new Error(`not XML: ${r.stderr}`);
  return JSON.parse(r.stdout) as { tests: number; failures: string[] };
}

/**
 * The log of the gateway a scenario ran, from the folder `shadowgate test` named in its output,
 * added to the run's secrets scan (the daemon logs into that folder, not to the CLI's stderr);
 * the folder is removed then, unless a check failed (`failed`): it is what explains the failure.
 */
async function collect(stdout: string, failed = false): Promise<string> {
  const folder = /the gateway's log and data: (\S+)\)$/m.exec(stdout)?.[1];
  if (folder === undefined) return "";
  const log = await readFile(path.join(folder, "gateway.log"), "utf8").catch(() => "");
  keepLog("scenario-gateway", log);
  if (!failed) await rm(folder, { recursive: true, force: true });
  return log;
}

/** `shadowgate test ... --keep`, with the gateway's log as `gatewayLog` (see collect). */
async function testCli(args: readonly string[]): Promise<Finished & { gatewayLog: string }> {
  const r = await runCli(["test", ...args, "--keep"]);
  return { ...r, gatewayLog: await collect(r.stdout, / steps failed /.test(r.stdout)) };
}

describe("shadowgate test", () => {
  it.each(["boiler-outage.yaml", "boiler-commands.yaml"])(
    "the example scenario %s passes, and its JUnit report parses",
    async (name) => {
      const report = path.join(await mkdtemp(path.join(tmpdir(), "sg-scenario-")), "junit.xml");
      const r = await testCli([path.join(root, "test/scenarios", name), "--junit", report]);
      expect(r.stdout).toContain(`${name}: every check held`);
      expect(r.code).toBe(0);
      // --keep kept the folder of a run that passed, and named it.
      expect(r.gatewayLog).toContain("local API listening");
      const junit = await parseJunit(report);
      expect(junit.failures).toEqual([]);
      expect(junit.tests).toBeGreaterThanOrEqual(10);
    },
    // The outage's first check after the restore may wait out a reconnect backoff of up to 60 s.
    150_000,
  );

  it("fails on a mapping with the wrong byte order, naming the step, the point, the expected and the actual value", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sg-scenario-"));
    await cp(path.join(root, "config"), path.join(dir, "config"), { recursive: true });
    await cp(path.join(root, "mappings"), path.join(dir, "mappings"), { recursive: true });
    const mapping = path.join(dir, "mappings", "boiler-01.yaml");
    const text = await readFile(mapping, "utf8");
    await writeFile(mapping, text.replace("byteOrder: ABCD", "byteOrder: CDAB"));
    const scenario = path.join(dir, "wrong-order.yaml");
    await writeFile(
      scenario,
      `version: 1
config: config/gateway.yaml
steps:
  - plc: { set: boiler-01.temperature, words: [0x41c4, 0x0000] }
  - expect: { edge: boiler-01.temperature, equals: 24.5, within: 2s }
`,
    );
    const report = path.join(dir, "junit.xml");
    const r = await runCli(["test", scenario, "--junit", report]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /FAIL step 2 \(line 5\) expect edge boiler-01\.temperature = 24\.5: expected 24\.5, got [-\d.e]+ within 2000 ms/,
    );
    // The gateway's log and data folder are kept for whoever reads the failure.
    const kept = /1 of 2 steps failed \(the gateway's log and data: (\S+)\)/.exec(r.stdout)?.[1];
    expect(kept, r.stdout).toBeDefined();
    expect(await readFile(path.join(kept ?? "", "gateway.log"), "utf8")).toContain(
      "local API listening",
    );
    await collect(r.stdout);
    expect((await parseJunit(report)).failures).toEqual([
      expect.stringMatching(/^expected 24\.5, got /),
    ]);
  });

  it("refuses a scenario naming an unknown device or point, at its file:line:col, before anything starts", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sg-scenario-"));
    const scenario = path.join(dir, "bad.yaml");
    await writeFile(
      scenario,
      `version: 1
config: ${path.join(root, "config/gateway.yaml")}
steps:
  - plc: { set: boiler-02.temperature, to: 1 }
  - expect: { cloud: boiler-01.nope, equals: 1 }
  - wait: soon
  - source: { stop: plc9 }
`,
    );
    const r = await runCli(["test", scenario]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml:6:\d+ steps\.2\.wait: "soon" is not a duration/);
    await writeFile(scenario, (await readFile(scenario, "utf8")).replace("wait: soon", "wait: 1s"));
    const names = await runCli(["test", scenario]);
    expect(names.code).toBe(2);
    expect(names.stderr).toMatch(
      /bad\.yaml:4:\d+ steps\.0\.plc\.set: no device boiler-02 in the config/,
    );
    expect(names.stderr).toMatch(
      /bad\.yaml:5:\d+ steps\.1\.expect\.cloud: boiler-01 has no point nope/,
    );
    expect(names.stderr).toMatch(/bad\.yaml:7:\d+ steps\.3\.source\.stop: no source plc9/);
    expect(names.stdout).toBe("");
  });

  it("runs a plant of an RTU line and an OPC UA server: values, a command to each, a PLC switched off and on", async () => {
    const dir = await writeSite("sg-scenario-", {
      "gateway.yaml": `version: 1
sources:
  line1: { protocol: modbus-rtu, path: /dev/ttyUSB0, baud: 38400, timeout: 300ms }
  ua1: { protocol: opcua, endpoint: "opc.tcp://10.0.0.20:4840" }
cloud: { url: "mqtt://127.0.0.1:1883", productKey: a1Gateway, deviceName: edge-01 }
mappings: ./mappings
`,
      "mappings/tank.yaml": `version: 1
device: { productKey: a1Plant, deviceName: tank-1 }
source: line1
unitId: 5
pollInterval: 200ms
points:
  level: { register: 40001, type: float32, byteOrder: CDAB }
  valve: { register: 40003, type: uint16, writable: true, min: 0, max: 100 }
`,
      "mappings/press.yaml": `version: 1
device: { productKey: a1Plant, deviceName: press-1 }
source: ua1
points:
  force: { node: "/2:Press/2:Force", scale: 0.01 }
  stroke: { node: "ns=2;s=Press.Stroke", writable: true, min: 10, max: 90 }
`,
      "plant.yaml": `version: 1
config: gateway.yaml
values:
  tank-1: { level: 1.25 }
steps:
  - expect: { edge: tank-1.level, equals: 1.25, within: 10s }
  - plc: { set: tank-1.level, to: 3.75 }
  - plc: { set: press-1.force, to: 12.5 }
  - expect: { cloud: tank-1.level, equals: 3.75, within: 10s }
  - expect: { cloud: press-1.force, equals: 12.5, within: 10s }
  - desired: { set: tank-1.valve, to: 40 }
  - desired: { set: press-1.stroke, to: 55 }
  - expect: { command: tank-1.valve, outcome: applied, within: 10s }
  - expect: { command: press-1.stroke, outcome: applied, within: 10s }
  - expect: { register: tank-1.valve, words: [40] }
  - expect: { written: press-1.stroke, times: 1, within: 0s }
  - source: { stop: line1 }
  - expect: { quality: tank-1.level, is: stale, within: 10s }
  - expect: { quality: press-1.force, is: good, within: 1s }
  - source: { start: line1 }
  - expect: { quality: tank-1.level, is: good, within: 20s }
`,
    });
    const scenario = path.join(dir, "plant.yaml");
    const report = path.join(dir, "junit.xml");
    const r = await testCli([scenario, "--junit", report]);
    expect(r.stdout).toContain("plant.yaml: every check held");
    expect(r.code).toBe(0);
    expect((await parseJunit(report)).tests).toBe(16);
  }, 120_000);

  it("runs against the local AWS IoT shadow service when the config's cloud is AWS", async () => {
    const dir = await writeSite("sg-scenario-", {
      "gateway.yaml": `version: 1
sources:
  plc1: { protocol: modbus-tcp, host: 10.0.0.9 }
cloud:
  dialect: aws
  url: "mqtts://example-ats.iot.eu-west-1.amazonaws.com:8883"
  clientId: edge-01
  tls: { cert: thing.pem, key: thing.key, ca: AmazonRootCA1.pem }
mappings: ./mappings
`,
      "mappings/pump.yaml": `version: 1
device: { thingName: pump-7 }
source: plc1
pollInterval: 200ms
points:
  pressure: { register: 40001, type: int16, scale: 0.01 }
  speed: { register: 40002, type: uint16, writable: true, max: 3000 }
`,
      // A named shadow of the same thing: the scenario knows it as pump-7.motor.
      "mappings/motor.yaml": `version: 1
device: { thingName: pump-7, shadowName: motor }
source: plc1
pollInterval: 200ms
points:
  rpm: { register: 40003, type: uint16, writable: true, max: 3000 }
`,
      "aws.yaml": `version: 1
config: gateway.yaml
steps:
  - plc: { set: pump-7.motor.rpm, to: 900 }
  - expect: { cloud: pump-7.motor.rpm, equals: 900, within: 10s }
  - desired: { set: pump-7.motor.rpm, to: 1500 }
  - expect: { command: pump-7.motor.rpm, outcome: applied, within: 10s }
  - expect: { register: pump-7.motor.rpm, words: [1500] }
  - plc: { set: pump-7.pressure, to: 2.35 }
  - expect: { cloud: pump-7.pressure, equals: 2.35, within: 10s }
  - desired: { set: pump-7.speed, to: 1200 }
  - expect: { command: pump-7.speed, outcome: applied, within: 10s }
  - expect: { register: pump-7.speed, words: [1200] }
  - desired: { set: pump-7.speed, to: 5000 }
  - expect: { command: pump-7.speed, outcome: rejected, within: 10s }
  - expect: { written: pump-7.speed, times: 1, within: 1s }
`,
    });
    // The thing's files as AWS gave them; the scenario's local service does without them.
    for (const f of ["thing.pem", "thing.key", "AmazonRootCA1.pem"])
      await writeFile(path.join(dir, f), "", { mode: 0o600 });
    const scenario = path.join(dir, "aws.yaml");
    const r = await testCli([scenario]);
    expect(r.stdout).toContain("aws.yaml: every check held (13 steps");
    expect(r.code).toBe(0);
  }, 60_000);

  it("the README's walkthrough (a copy of the config and mappings, a scenario, one command) runs as written", async () => {
    const readme = await readFile(path.join(root, "README.md"), "utf8");
    const script = /^mkdir my-plant[\s\S]*?^npx shadowgate test .*$/m.exec(readme)?.[0];
    expect(script, "the walkthrough in README.md").toBeDefined();
    const dir = await mkdtemp(path.join(tmpdir(), "sg-walkthrough-"));
    await cp(path.join(root, "config"), path.join(dir, "config"), { recursive: true });
    await cp(path.join(root, "mappings"), path.join(dir, "mappings"), { recursive: true });
    // npx would look for the package; the built CLI is the same program.
    const r = await run(
      "bash",
      ["-c", (script ?? "").replace(/^npx shadowgate/m, `node ${CLI_MAIN}`)],
      {
        cwd: dir,
      },
    );
    expect(r.stdout).toMatch(/check\.yaml: every check held \(6 steps/);
    expect(r.code).toBe(0);
  }, 60_000);
});
