import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/**
 * `shadowgate validate` against files a careless editor or an attacker might write: each is
 * refused with exit 2 and `file:line:col key.path: message` lines, never a stack trace, a raw
 * JavaScript error or a Node warning. The big inputs are generated here, into temp folders.
 */

const root = path.resolve(import.meta.dirname, "../..");
const main = path.join(root, "dist/cli/main.js");

const GATEWAY =
  "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1 }\nmappings: mappings\n";
/** Lines 1-3 of a mapping file; its own lines start at 4. */
const HEAD = "version: 1\ndevice: { productKey: pk, deviceName: dev }\nsource: plc1\n";

/** The temp folders written, removed at the end: some hold a megabyte. */
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Result {
  code: number | null;
  stderr: string;
}

/** Writes gateway.yaml and mappings/* into a fresh folder and runs the built CLI's validate there. */
async function validate(mappings: Record<string, string>, gateway = GATEWAY): Promise<Result> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-hostile-"));
  dirs.push(dir);
  await mkdir(path.join(dir, "mappings"));
  await writeFile(path.join(dir, "gateway.yaml"), gateway);
  for (const [name, text] of Object.entries(mappings)) {
    await writeFile(path.join(dir, "mappings", name), text);
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, "validate", "-c", "gateway.yaml"], {
      cwd: dir,
      stdio: ["ignore", "ignore", "pipe"],
      // A safety net only: every input here is bounded, and validate answers in seconds.
      timeout: 25_000,
    });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

/** Exit 2, each of `lines` printed as a whole line, and nothing that is not a problem line. */
function expectRefused(r: Result, ...lines: string[]): string[] {
  const printed = r.stderr.trimEnd().split("\n");
  expect(r.code).toBe(2);
  for (const line of lines) expect(printed).toContain(line);
  expect(r.stderr).not.toMatch(/^\s+at /m); // a stack frame
  expect(r.stderr).not.toMatch(/ReferenceError|RangeError|Maximum call stack|Warning|\(node:/);
  return printed;
}

describe("validate refuses hostile YAML with positioned problems", () => {
  it("an alias that names no anchor", async () => {
    const r = await validate({
      "a.yaml": HEAD + "pollInterval: *nowhere\npoints:\n  t: { register: 40001 }\n",
    });
    expectRefused(
      r,
      "mappings/a.yaml:4:15 pollInterval: *nowhere names no anchor; write &nowhere on a value above it",
      "1 problem found",
    );
  });

  it("an alias bomb, at the alias where the expansion passes 5000 values", async () => {
    // a0 holds 9 strings; each further level holds 9 aliases of the one before (9^10 strings).
    const levels = ["  a0: &a0 [" + Array(9).fill("lol").join(", ") + "]"];
    for (let i = 1; i < 10; i++) {
      levels.push(
        `  a${i}: &a${i} [` +
          Array(9)
            .fill(`*a${i - 1}`)
            .join(", ") +
          "]",
      );
    }
    const r = await validate({
      "a.yaml": HEAD + "points:\n  t: { register: 40001 }\nlol:\n" + levels.join("\n") + "\n",
    });
    // a1 and a2 expand to 909 values; a3's fifth alias (820 values each) passes 5000.
    expectRefused(
      r,
      "mappings/a.yaml:10:32 lol.a3.4: aliases expand to more than 5000 values in this file (the limit that stops alias bombs); write fewer aliases",
    );
  });

  it("a list of 10,000 aliases of one anchor", async () => {
    const r = await validate({
      "a.yaml":
        HEAD +
        "points:\n  t: { register: 40001, unit: &u degC }\nlist:\n" +
        "  - *u\n".repeat(10_000),
    });
    expectRefused(
      r,
      "mappings/a.yaml:5007:5 list.5000: aliases expand to more than 5000 values in this file (the limit that stops alias bombs); write fewer aliases",
    );
  });

  it("10,000 [ in a row, at the 65th level", async () => {
    const r = await validate({ "a.yaml": HEAD + "points: " + "[".repeat(10_000) + "\n" });
    // The file is level 1, points' value level 2 at column 9: level 65 is column 72.
    expectRefused(
      r,
      "mappings/a.yaml:4:72 maps and lists nest more than 64 levels deep here",
      "1 problem found",
    );
  });

  it("a block mapping 1,000 levels deep, at the 65th level", async () => {
    const nested = Array.from({ length: 1000 }, (_, i) => `${"  ".repeat(i + 1)}k${i}:\n`);
    const r = await validate({ "a.yaml": HEAD + "points:\n" + nested.join("") });
    // k0 opens level 2 on line 5, so k63 opens level 65 on line 68, indented 128 spaces.
    expectRefused(
      r,
      "mappings/a.yaml:68:129 maps and lists nest more than 64 levels deep here",
      "1 problem found",
    );
  });

  it("__proto__ as a point, source or enum key, like constructor and toString", async () => {
    const gateway =
      "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1 }\n" +
      "  __proto__: { protocol: modbus-tcp, host: 127.0.0.1, port: 99999 }\nmappings: mappings\n";
    const r = await validate(
      {
        "a.yaml":
          HEAD +
          "points:\n" +
          "  __proto__: { register: 40001, type: float33 }\n" + // line 5
          "  constructor: { register: 40003, type: float33 }\n" +
          "  state: { register: 40005, enum: { 0: idle, __proto__: 5 } }\n",
        "b.yaml":
          "version: 1\ndevice: { productKey: pk, deviceName: b }\nsource: toString\npoints:\n  x: { register: 40010 }\n",
      },
      gateway,
    );
    const reserved = "__proto__ cannot be a key (JavaScript reserves it); choose another name";
    expectRefused(
      r,
      `gateway.yaml:4:3 sources.__proto__: ${reserved}`,
      `mappings/a.yaml:5:3 points.__proto__: ${reserved}`,
      'mappings/a.yaml:6:41 points.constructor.type: "float33" is not allowed here; did you mean float32? (one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string)',
      `mappings/a.yaml:7:46 points.state.enum.__proto__: ${reserved}`,
      'mappings/b.yaml:3:9 source: unknown source "toString"; the gateway config defines plc1',
      "5 problems found",
    );
  });

  it("a map or a list as a key", async () => {
    const r = await validate({
      "a.yaml": HEAD + "points:\n  ? [a, b]\n  : { register: 40001 }\n",
      "b.yaml": HEAD.replace("deviceName: dev", "deviceName: b") + "points:\n  {a: 1}: 2\n",
    });
    expectRefused(
      r,
      "mappings/a.yaml:5:5 points: a key must be a name, not a map, a list or an alias",
      "mappings/b.yaml:5:3 points: a key must be a name, not a map, a list or an alias",
      "2 problems found",
    );
  });

  it("a missing or wrong version says what to write", async () => {
    const points = "points:\n  t: { register: 40001 }\n";
    const r = await validate({
      "a.yaml": HEAD.replace("version: 1\n", "") + points,
      "b.yaml": HEAD.replace("version: 1", "version: 2") + points,
    });
    expectRefused(
      r,
      "mappings/a.yaml:1:1 version: missing; write version: 1",
      "mappings/b.yaml:1:10 version: 2 is not allowed here; must be 1",
      "2 problems found",
    );
  });

  it("a %YAML directive other than 1.1 or 1.2", async () => {
    const r = await validate({
      "a.yaml": "%YAML 9.9\n---\n" + HEAD + "points:\n  t: { register: 40001 }\n",
      "b.yaml":
        "%YAML 1.1\n---\n" +
        HEAD.replace("deviceName: dev", "deviceName: b") +
        "points:\n  t: { register: 40002 }\n",
    });
    expectRefused(
      r,
      "mappings/a.yaml:1:7 Unsupported YAML version 9.9; write %YAML 1.2 (or 1.1), or no directive",
      "1 problem found",
    );
  });

  it("a line of a million quotes lists 50 problems and counts the rest", async () => {
    const r = await validate({ "a.yaml": HEAD + "points:\n  t: " + '"'.repeat(1_000_000) + "\n" });
    const printed = expectRefused(
      r,
      "mappings/a.yaml:5:8 Unexpected double-quoted-scalar at node end",
      "... and 499949 more problems",
      "499999 problems found",
    );
    expect(printed).toHaveLength(52);
  });

  it("lists at most 100 problems over several files", async () => {
    const quotes = HEAD + "points:\n  t: " + '"'.repeat(1000) + "\n"; // 499 problems each
    const r = await validate({ "a.yaml": quotes, "b.yaml": quotes, "c.yaml": quotes });
    const printed = expectRefused(r, "... and 1397 more problems", "1497 problems found");
    expect(printed.filter((l) => l.startsWith("mappings/a.yaml:"))).toHaveLength(50);
    expect(printed.filter((l) => l.startsWith("mappings/b.yaml:"))).toHaveLength(50);
    expect(printed.filter((l) => l.startsWith("mappings/c.yaml:"))).toHaveLength(0);
  });
});
