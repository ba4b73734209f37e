import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes, ShadowgateError } from "../../../src/core/errors.js";
import {
  DEFAULT_PROFILE_YAML,
  compileProfile,
  defaultProfile,
  loadProfile,
  parseProfile,
} from "../../../src/sim/modbus/profile.js";

function errorOf(fn: () => unknown): ShadowgateError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ShadowgateError) return err;
    throw err;
  }
  throw new Error("expected a ShadowgateError");
}

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe("profile", () => {
  it("resolves every addressing form to table and 0-based address", () => {
    const profile = parseProfile(
      `
units:
  - unitId: 2
    points:
      a: { register: 40001, type: float32 }
      b: { register: 400100, type: uint16 }
      c: { register: 30005, type: int32, byteOrder: CDAB }
      d: { coil: 1 }
      e: { discreteInput: 3 }
      f: { table: input, offset: 12 }
      g: { table: holding, offset: 65535, type: int16 }
      h: { register: 40005, type: string, length: 4, value: "PLC" }
`,
      "p.yaml",
    );
    const points = profile.units[0]!.points;
    const where = (n: string) => {
      const p = points.get(n)!;
      return [p.table, p.address, p.count];
    };
    expect(where("a")).toEqual(["holding", 0, 2]);
    expect(where("b")).toEqual(["holding", 99, 1]);
    expect(where("c")).toEqual(["input", 4, 2]);
    expect(where("d")).toEqual(["coil", 0, 1]);
    expect(where("e")).toEqual(["discreteInput", 2, 1]);
    expect(where("f")).toEqual(["input", 12, 1]);
    expect(where("g")).toEqual(["holding", 65535, 1]);
    expect(where("h")).toEqual(["holding", 4, 4]);
    expect(points.get("a")!.codec.byteOrder).toBe("ABCD");
    expect(points.get("c")!.codec.byteOrder).toBe("CDAB");
    expect(points.get("f")!.codec).toEqual({ type: "uint16", byteOrder: "AB" });
  });

  it("parses durations, faults and defaults", () => {
    const profile = parseProfile(
      `
responseDelay: 5ms
unknownUnit: exception
tick: 1s
units:
  - unitId: 1
    holes: [ { table: holding, from: 99, to: 109 } ]
    maxRegistersPerRequest: 32
    silent: true
    responseDelay: 1.5s
  - unitId: 2
    tick: 50
`,
      "p.yaml",
    );
    expect(profile.responseDelayMs).toBe(5);
    expect(profile.unknownUnit).toBe("exception");
    const [u1, u2] = profile.units;
    expect(u1).toMatchObject({
      unitId: 1,
      holes: [{ table: "holding", from: 99, to: 109 }],
      maxRegistersPerRequest: 32,
      silent: true,
      responseDelayMs: 1500,
      tickMs: 1000,
    });
    expect(u2!.tickMs).toBe(50);
  });

  it("compiles the embedded default profile (the boiler of architecture.md)", () => {
    const profile = defaultProfile();
    const u = profile.units[0]!;
    expect(u.unitId).toBe(1);
    expect(u.points.get("temperature")).toMatchObject({ table: "holding", address: 0, count: 2 });
    expect(u.points.get("targetTemperature")!.codec).toMatchObject({ type: "int16", scale: 0.1 });
    expect(u.points.get("state")).toMatchObject({ table: "holding", address: 19 });
    expect(u.points.get("alarm.overheat")!.codec.bit).toBe(3);
    expect(u.points.get("flow")).toMatchObject({ table: "input", address: 12 });
    expect(u.dynamics.map((d) => d.kind)).toContain("approach");
    expect(DEFAULT_PROFILE_YAML).toContain("40010");
  });

  it("reports schema errors with file:line:col and key path, all at once", () => {
    const err = errorOf(() =>
      parseProfile(
        `units:
  - unitId: 1
    holes: [ { table: holdings, from: 1, to: 2 } ]
    points:
      u: { register: 40001, type: float33 }
      y: { register: 40002, bogus: 1 }
    dynamics:
      - { kind: wobble, point: u }
      - { kind: approach, point: u, target: 3, tau: 1x }
`,
        "bad.yaml",
      ),
    );
    expect(err.code).toBe(ErrorCodes.CONFIG_SCHEMA);
    const lines = err.message.split("\n");
    expect(lines).toEqual([
      expect.stringMatching(/^bad\.yaml:3:23 units\[0\]\.holes\[0\]\.table: /),
      expect.stringMatching(/^bad\.yaml:5:35 units\[0\]\.points\.u\.type: /),
      "bad.yaml:6:36 units[0].points.y.bogus: unknown key",
      "bad.yaml:8:17 units[0].dynamics[0].kind: kind must be one of approach, noise, counter, threshold",
      expect.stringMatching(
        /^bad\.yaml:9:53 units\[0\]\.dynamics\[1\]\.tau: "1x" is not a duration/,
      ),
    ]);
  });

  it("reports semantic errors (addresses, types, values, references) with positions", () => {
    const err = errorOf(() =>
      parseProfile(
        `units:
  - unitId: 1
    points:
      t: { register: 50001 }
      v: { register: 40001, type: float32, byteOrder: AB }
      w: { coil: 0 }
      x: { register: 40002, type: int16, scale: 0.1, value: 1.23 }
      s: { register: 40003, type: uint16, enum: { 0: idle }, value: busy }
      z: { register: 40004, coil: 4 }
      b: { coil: 2, type: int16 }
      ok: { register: 40050, type: int16 }
      c: { coil: 3 }
    dynamics:
      - { kind: approach, point: ok, target: nope, tau: 1s }
      - { kind: noise, point: c, amplitude: 1 }
      - { kind: noise, point: x, amplitude: 1 }
  - unitId: 1
`,
        "sem.yaml",
      ),
    );
    expect(err.code).toBe(ErrorCodes.CONFIG_SCHEMA);
    const lines = err.message.split("\n");
    expect(lines).toContain(
      "sem.yaml:4:22 units[0].points.t.register: register 50001 is not a Modicon number " +
        "(40001-49999 or 400001-465536 for holding, 30001-39999 or 300001-365536 for input); " +
        "use table + offset for 0-based PDU addresses",
    );
    expect(lines).toContain(
      "sem.yaml:5:55 units[0].points.v.byteOrder: float32 takes ABCD, CDAB, BADC, DCBA, not AB",
    );
    expect(lines).toContain(
      "sem.yaml:6:18 units[0].points.w.coil: coil 0 must be 1-65536 (1-based)",
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^sem\.yaml:7:61 units\[0\]\.points\.x\.value: 1\.23 is not a multiple/,
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(/^sem\.yaml:8:69 units\[0\]\.points\.s\.value: "busy"/),
    );
    expect(lines).toContain(
      "sem.yaml:9:35 units[0].points.z.coil: names two addresses (register and coil); keep one",
    );
    expect(lines).toContain(
      "sem.yaml:10:27 units[0].points.b.type: int16 needs registers; a coil holds one bit (use a register)",
    );
    expect(lines).toContain('sem.yaml:14:46 units[0].dynamics[0].target: no point named "nope"');
    expect(lines).toContain(
      "sem.yaml:15:31 units[0].dynamics[1].point: c is not a numeric register point",
    );
    expect(lines).toContain("sem.yaml:17:13 units[1].unitId: unit 1 is defined twice");
    // The noise on x would only repeat x's own error.
    expect(lines).toHaveLength(10);
  });

  it("reports YAML syntax errors with positions", () => {
    const err = errorOf(() =>
      parseProfile("units:\n  - unitId: 1\n    points: { a: [\n", "y.yaml"),
    );
    expect(err.code).toBe(ErrorCodes.CONFIG_YAML);
    expect(err.message).toMatch(/^y\.yaml:\d+:\d+: /);
  });

  it("refuses an unresolved alias and __proto__ with positions, not a stack trace", () => {
    const err = errorOf(() =>
      parseProfile("units:\n  - unitId: *nowhere\n    __proto__: {}\n", "a.yaml"),
    );
    expect(err.code).toBe(ErrorCodes.CONFIG_YAML);
    expect(err.message.split("\n")).toEqual([
      "a.yaml:2:13 units[0].unitId: *nowhere names no anchor; write &nowhere on a value above it",
      "a.yaml:3:5 units[0].__proto__: __proto__ cannot be a key (JavaScript reserves it); choose another name",
    ]);
  });

  it("loads a file and names it in errors", async () => {
    dir = await mkdtemp(join(tmpdir(), "sg-profile-"));
    const good = join(dir, "good.yaml");
    await writeFile(good, "units:\n  - unitId: 4\n");
    expect((await loadProfile(good)).units[0]!.unitId).toBe(4);

    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "units:\n  - unitId: 1\n    maxRegistersPerRequest: 200\n");
    await expect(loadProfile(bad)).rejects.toThrow(
      new RegExp(
        `^${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3:29 units\\[0\\]\\.maxRegistersPerRequest: `,
      ),
    );
    await expect(loadProfile(join(dir, "missing.yaml"))).rejects.toMatchObject({
      code: ErrorCodes.CONFIG_READ,
    });
  });

  it("validates object profiles too, naming the key without a position", () => {
    const err = errorOf(() => compileProfile({ units: [{ unitId: 1, tick: "fast" }] }, "<test>"));
    expect(err.message).toBe('<test> units[0].tick: "fast" is not a duration (try 500ms, 1s, 2m)');
  });
});
