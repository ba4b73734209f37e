import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { findSocat, openPtyPair } from "../../src/sim/pty.js";
import { pymodbusRtuMissing, startPymodbusRtu } from "../helpers/pymodbus.js";
import { runCli } from "../helpers/run.js";

/**
 * `shadowgate scan` (the built CLI) against our simulator over TCP, with a hole and a silent
 * unit, and against pymodbus's RTU slave on a pty: the units that answer, their readable
 * ranges, and draft mappings that `validate` takes and `read` reads the device's values with.
 */

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const cli = (args: string[]) => runCli(args);

/** A gateway config with one source `plc1` beside the drafts in `dir`/mappings. */
async function gatewayBeside(dir: string, source: string): Promise<string> {
  const file = path.join(dir, "gateway.yaml");
  await writeFile(file, `version: 1\nsources:\n  plc1: ${source}\nmappings: ./mappings\n`);
  return file;
}

describe("shadowgate scan", () => {
  it("finds the units that answer and their readable ranges over TCP, and drafts mappings that read the device", async () => {
    const sim = new ModbusTcpSimulator({
      units: [
        1,
        { unitId: 2, holes: [{ table: "holding", from: 10, to: 19 }] },
        { unitId: 3, silent: true },
      ],
    });
    const { port } = await sim.start({ port: 0 });
    cleanups.push(() => sim.stop());
    for (let k = 0; k < 40; k++) sim.unit(2).holding[k] = 500 + k;
    sim.unit(2).input[7] = 4242;
    const target = ["--host", "127.0.0.1", "--port", String(port), "--units", "1-4"];
    const scan = ["scan", ...target, "--registers", "0-39", "--timeout", "100"];

    const json = await cli([...scan, "--json"]);
    expect(json.code).toBe(0);
    // stderr is a pipe here, as under systemd or CI: a progress line per table of each unit
    // that answers.
    expect(json.stderr.match(/^scanning 127\.0\.0\.1:\d+: unit \d, \w+ registers/gm)).toHaveLength(
      4,
    );
    const found = JSON.parse(json.stdout) as {
      units: Array<{ unitId: number; ranges: Record<string, number[][]>; incomplete: boolean }>;
    };
    expect(found.units.map((u) => [u.unitId, u.ranges, u.incomplete])).toEqual([
      [1, { holding: [[0, 40]], input: [[0, 40]] }, false],
      [
        2,
        {
          holding: [
            [0, 10],
            [20, 20],
          ],
          input: [[0, 40]],
        },
        false,
      ],
    ]);

    const dir = await mkdtemp(path.join(tmpdir(), "sg-scan-"));
    // Unit 2's draft alone (each draft names its own device; a gateway takes several).
    const only2 = scan.map((a) => (a === "1-4" ? "2" : a));
    const out = await cli([...only2, "--out", path.join(dir, "mappings")]);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("unit-2.yaml");
    const config = await gatewayBeside(
      dir,
      `{ protocol: modbus-tcp, host: 127.0.0.1, port: ${port} }`,
    );
    const valid = await cli(["validate", "-c", config]);
    expect(valid).toMatchObject({ code: 0, stdout: "ok: 1 source(s), 1 device(s), 70 point(s)\n" });
    const read = await cli(["read", "-c", config, "--json"]);
    expect(read.code).toBe(0);
    const values = (JSON.parse(read.stdout) as Record<string, Record<string, number>>)["unit-2"];
    expect(values?.["hr_0"]).toBe(500);
    expect(values?.["hr_39"]).toBe(539);
    expect(values?.["hr_10"]).toBeUndefined();
    expect(values?.["ir_7"]).toBe(4242);
  });

  it("ends with a clear message and exit 1 when nothing answers", async () => {
    const sim = new ModbusTcpSimulator({ units: [{ unitId: 5, silent: true }] });
    const { port } = await sim.start({ port: 0 });
    cleanups.push(() => sim.stop());
    const r = await cli([
      "scan",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--units",
      "1-6",
      "--timeout",
      "50",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^no unit answered on 127\.0\.0\.1:\d+ \(units 1-6, 50 ms each/);
    expect(r.stdout).toBe("");
  });

  const pymodbusMissing = pymodbusRtuMissing() || findSocat() === undefined;
  it.skipIf(pymodbusMissing && process.env.CI !== "true")(
    "scans pymodbus's RTU slave on a pty (an implementation we did not write)",
    async () => {
      const line = await openPtyPair();
      cleanups.push(() => line.close());
      const server = await startPymodbusRtu(line.a, [
        { table: "holding", address: 0, words: [11, 22, 33] },
      ]);
      cleanups.push(server.stop);
      const dir = await mkdtemp(path.join(tmpdir(), "sg-scan-rtu-"));
      const rtu = ["--rtu", line.b, "--baud", "115200", "--parity", "none"];
      const r = await cli([
        "scan",
        ...rtu,
        "--units",
        "1",
        "--registers",
        "0-29",
        "--out",
        path.join(dir, "mappings"),
      ]);
      expect(r.code).toBe(0);
      const config = await gatewayBeside(
        dir,
        `{ protocol: modbus-rtu, path: ${line.b}, baud: 115200, parity: none }`,
      );
      expect(await cli(["validate", "-c", config])).toMatchObject({
        code: 0,
        stdout: "ok: 1 source(s), 1 device(s), 60 point(s)\n",
      });
      const read = await cli(["read", "-c", config, "--json"]);
      expect(read.code).toBe(0);
      expect(JSON.parse(read.stdout)["unit-1"]).toMatchObject({
        hr_0: 11,
        hr_1: 22,
        hr_2: 33,
        hr_3: 0,
      });
    },
  );
});
