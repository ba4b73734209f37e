import { loadConfig, formatProblem } from "../config/load.js";
import { ExitCodes } from "../core/errors.js";

export async function validateCommand(o: { config: string }): Promise<number> {
  const result = await loadConfig(o.config);
  if (!result.ok) {
    for (const p of result.problems) process.stderr.write(`${formatProblem(p)}\n`);
    process.stderr.write(
      `${result.problems.length} problem${result.problems.length === 1 ? "" : "s"} found\n`,
    );
    return ExitCodes.CONFIG;
  }
  const { devices, gateway } = result.config;
  const points = devices.reduce((n, d) => n + d.points.length, 0);
  process.stdout.write(
    `ok: ${Object.keys(gateway.sources).length} source(s), ${devices.length} device(s), ${points} point(s)\n`,
  );
  return ExitCodes.OK;
}

/** Loads the config for a command that needs it, printing problems; undefined on failure. */
export async function loadOrReport(file: string) {
  const result = await loadConfig(file);
  if (result.ok) return result.config;
  for (const p of result.problems) process.stderr.write(`${formatProblem(p)}\n`);
  return undefined;
}
