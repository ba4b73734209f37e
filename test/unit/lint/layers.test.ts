import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";

/**
 * The layer rules in eslint.config.js, tested on fixtures: each file under
 * test/fixtures/layers is linted as if it stood where its first line says (`// as: src/...`),
 * and every one but allowed.txt must be reported by no-restricted-imports.
 */
const root = path.resolve(import.meta.dirname, "../../..");
const dir = path.join(root, "test/fixtures/layers");
const eslint = new ESLint({ cwd: root });

async function importProblems(file: string): Promise<string[]> {
  const text = readFileSync(path.join(dir, file), "utf8");
  const as = /^\/\/ as: (\S+)/.exec(text)?.[1];
  if (!as) throw new Error(`${file}: the first line must say "// as: src/..."`);
  const [result] = await eslint.lintText(text, { filePath: path.join(root, as) });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === "no-restricted-imports")
    .map((m) => m.message);
}

describe("layer rules (eslint no-restricted-imports)", () => {
  const breaches = readdirSync(dir).filter((f) => f !== "allowed.txt");

  it.each(breaches)("reports %s", async (file) => {
    const problems = await importProblems(file);
    expect(problems).toHaveLength(1);
  });

  it("lets the daemon import the tables, the contracts and the layers below", async () => {
    expect(await importProblems("allowed.txt")).toEqual([]);
  });

  it("names the rule in its message", async () => {
    expect(await importProblems("mapping-imports-south.txt")).toEqual([
      "'../south/modbus/modbus-driver.js' import is restricted from being used by a pattern. src/mapping may import only from core (docs/architecture.md)",
    ]);
  });
});
