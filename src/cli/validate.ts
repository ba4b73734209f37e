import { loadConfig, formatProblem, type Problem } from "../config/load.js";
import type { Override } from "../config/override.js";
import { ExitCodes } from "../core/errors.js";

export async function validateCommand(o: {
  config: string;
  override?: readonly Override[];
}): Promise<number> {
  const result = await loadConfig(o.config, process.env, o.override);
  if (!result.ok) {
    printProblems(result);
    const total = result.problems.length + result.omitted;
    process.stderr.write(`${total} problem${total === 1 ? "" : "s"} found\n`);
    return ExitCodes.CONFIG;
  }
  const { devices, gateway, warnings = [] } = result.config;
  for (const w of warnings) process.stderr.write(`warning: ${formatProblem(w)}\n`);
  const points = devices.reduce((n, d) => n + d.points.length, 0);
  process.stdout.write(
    `ok: ${Object.keys(gateway.sources).length} source(s), ${devices.length} device(s), ${points} point(s)\n`,
  );
  return ExitCodes.OK;
}

/** Loads the config for a command that needs it, printing problems; undefined on failure. */
export async function loadOrReport(file: string, overrides: readonly Override[] = []) {
  const result = await loadConfig(file, process.env, overrides);
  if (result.ok) return result.config;
  printProblems(result);
  return undefined;
}

/** The listed problems, one a line, and how many more were not listed. */
export function printProblems(result: { problems: readonly Problem[]; omitted: number }): void {
  for (const p of result.problems) process.stderr.write(`${formatProblem(p)}\n`);
  const { omitted } = result;
  if (omitted > 0)
    process.stderr.write(`... and ${omitted} more problem${omitted === 1 ? "" : "s"}\n`);
}
