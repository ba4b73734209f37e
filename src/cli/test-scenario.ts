import { writeFile } from "node:fs/promises";
import path from "node:path";
import { loadConfig } from "../config/load.js";
import type { Override } from "../config/override.js";
import { ExitCodes } from "../core/errors.js";
import { SimSourceError, SimValueError } from "../sim/source-simulator.js";
import { GatewayStartError } from "./scenario/gateway-child.js";
import { runScenario, unsupported, type StepResult } from "./scenario/runner.js";
import { checkNames, readScenario } from "./scenario/schema.js";
import { printProblems } from "./validate.js";

/**
 * `shadowgate test scenario.yaml [--junit report.xml] [--keep]`: the scenario's config runs against
 * simulators built from its own mappings and the local cloud service, one process; the steps
 * run in order, and the exit code is 0 only when every check held. Every problem of the
 * scenario (its schema, an unknown device or point) is reported before anything starts.
 */
export async function testScenarioCommand(o: {
  scenario: string;
  junit?: string;
  /** Keep the gateway's log and data folder when every check held too (a failure keeps it). */
  keep?: boolean;
  override?: readonly Override[];
}): Promise<number> {
  const read = await readScenario(o.scenario);
  if (!read.ok) {
    printProblems({ problems: read.problems, omitted: 0 });
    return ExitCodes.CONFIG;
  }
  const loaded = await loadConfig(read.configFile, process.env, o.override);
  if (!loaded.ok) {
    printProblems(loaded);
    return ExitCodes.CONFIG;
  }
  const problems = [
    ...checkNames(read, loaded.config.devices, Object.keys(loaded.config.gateway.sources)),
    ...unsupported(loaded.config),
  ];
  if (problems.length > 0) {
    printProblems({ problems, omitted: 0 });
    return ExitCodes.CONFIG;
  }
  const name = path.basename(o.scenario);
  process.stdout.write(`${name}: ${read.scenario.steps.length} steps\n`);
  const t0 = Date.now();
  let results: StepResult[];
  let folder: string;
  try {
    ({ results, folder } = await runScenario(
      read.configFile,
      loaded.config,
      read.scenario,
      read.lines,
      (r) =>
        process.stdout.write(
          `  ${r.ok ? "ok  " : "FAIL"} step ${r.index + 1} (line ${r.line}) ${r.what}${r.failure ? `: ${r.failure}` : ""}\n`,
        ),
      o.keep,
    ));
  } catch (e) {
    if (e instanceof GatewayStartError) {
      process.stderr.write(`${o.scenario}: ${e.message}\n`);
      return ExitCodes.RUNTIME;
    }
    // A value the scenario gives that its point cannot hold, or a node no simulator can host.
    if (!(e instanceof SimValueError) && !(e instanceof SimSourceError)) throw e;
    for (const line of e.message.split("\n"))
      process.stderr.write(`${o.scenario}: cannot simulate ${line}\n`);
    return ExitCodes.CONFIG;
  }
  const failed = results.filter((r) => !r.ok);
  const kept = `the gateway's log and data: ${folder}`;
  process.stdout.write(
    failed.length === 0
      ? `${name}: every check held (${results.length} steps, ${((Date.now() - t0) / 1000).toFixed(1)} s${o.keep ? `; ${kept}` : ""})\n`
      : `${name}: ${failed.length} of ${results.length} steps failed (${kept})\n`,
  );
  if (o.junit !== undefined) await writeFile(o.junit, junit(name, results, Date.now() - t0));
  return failed.length === 0 ? ExitCodes.OK : ExitCodes.RUNTIME;
}

const xml = (s: string): string =>
  s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c,
  );

/** The JUnit XML that CI systems read: one suite, one test case per step. */
export function junit(suite: string, results: readonly StepResult[], ms: number): string {
  const failures = results.filter((r) => !r.ok).length;
  const cases = results.map((r) => {
    const head = `    <testcase classname="${xml(suite)}" name="${xml(`step ${r.index + 1} (line ${r.line}): ${r.what}`)}" time="${(r.ms / 1000).toFixed(3)}"`;
    return r.ok
      ? `${head}/>`
      : `${head}>\n      <failure message="${xml(r.failure ?? "failed")}">${xml(r.failure ?? "")}</failure>\n    </testcase>`;
  });
  const time = (ms / 1000).toFixed(3);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites tests="${results.length}" failures="${failures}" time="${time}">`,
    `  <testsuite name="${xml(suite)}" tests="${results.length}" failures="${failures}" time="${time}">`,
    ...cases,
    "  </testsuite>",
    "</testsuites>",
    "",
  ].join("\n");
}
