/**
 * `shadowgate test` (issue 18): the shipped example scenarios pass against simulators of the
 * example mappings and the local cloud service; a mapping with the wrong byte order makes a
 * scenario fail naming the step, the point, the expected and the actual value; the JUnit report
 * parses (Python's own XML parser, not ours); a scenario naming an unknown device or point is a
 * validation error at its file:line:col, and nothing starts.
 */
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { run, runCli } from "../helpers/run.js";

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

describe("shadowgate test", () => {
  it.each(["boiler-outage.yaml", "boiler-commands.yaml"])(
    "the example scenario %s passes, and its JUnit report parses",
    async (name) => {
      const report = path.join(await mkdtemp(path.join(tmpdir(), "sg-scenario-")), "junit.xml");
      const r = await runCli(["test", path.join(root, "test/scenarios", name), "--junit", report]);
      expect(r.stdout).toContain(`${name}: every check held`);
      expect(r.code).toBe(0);
      const junit = await parseJunit(report);
      expect(junit.failures).toEqual([]);
      expect(junit.tests).toBeGreaterThanOrEqual(10);
    },
    60_000,
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
    expect(r.stdout).toContain("wrong-order.yaml: 1 of 2 steps failed");
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
});
