import { readFile } from "node:fs/promises";
import { isMap } from "yaml";
import { formatProblem, type LoadedConfig, type Problem } from "../config/load.js";
import type { Override } from "../config/override.js";
import { parseYamlSource } from "../config/yaml-source.js";
import { ErrorCodes, ExitCodes } from "../core/errors.js";
import { startSourceSimulators } from "../sim/from-config.js";
import { SimSourceError, SimValueError, type SourceSimulator } from "../sim/source-simulator.js";
import { unknownName } from "./scenario/schema.js";
import { loadOrReport } from "./validate.js";

/** Values for `--values`: by device, by point, in engineering units. */
type Values = Record<string, Record<string, unknown>>;

/**
 * `shadowgate sim --from-config gateway.yaml [--values values.yaml]`: one simulator per source
 * of the config, each hosting every unit and every mapped point, and the `--override` lines
 * that point the gateway at them. Runs until SIGINT or SIGTERM.
 */
export async function simFromConfigCommand(o: {
  fromConfig: string;
  values?: string;
  /** RTU sources served on a serial device instead of a pty pair: source id to path. */
  line?: Readonly<Record<string, string>>;
  override?: readonly Override[];
}): Promise<number | undefined> {
  const config = await loadOrReport(o.fromConfig, o.override);
  if (!config) return ExitCodes.CONFIG;
  for (const id of Object.keys(o.line ?? {}))
    if (config.gateway.sources[id]?.protocol !== "modbus-rtu") {
      process.stderr.write(`--line ${id}=...: the config has no modbus-rtu source ${id}\n`);
      return ExitCodes.USAGE;
    }
  const values = o.values === undefined ? {} : await readValues(o.values, config);
  if (values === undefined) return ExitCodes.CONFIG;

  let started: SourceSimulator[];
  try {
    started = await startSourceSimulators(config, values, { lines: o.line ?? {} });
  } catch (e) {
    if (e instanceof SimValueError) {
      process.stderr.write(`${o.values ?? "a plausible value"}: ${e.message}\n`);
      return ExitCodes.CONFIG;
    }
    if (e instanceof SimSourceError) {
      for (const line of e.message.split("\n")) process.stderr.write(`cannot simulate ${line}\n`);
      return ExitCodes.CONFIG;
    }
    throw e;
  }
  if (started.length === 0) {
    process.stderr.write("the config maps no device to any of its sources: nothing to simulate\n");
    return ExitCodes.RUNTIME;
  }
  const lines = started.flatMap(({ source, protocol, hosts, where, overrides }) => [
    `${source} (${protocol}, ${hosts}): ${where}`,
    overrides.length === 0
      ? "  (no override: the gateway's config reaches it as it is)"
      : `  ${overrides.map((o) => `--override ${shellWord(o)}`).join(" ")}`,
  ]);
  const stopAll = () => Promise.all(started.map((s) => s.close()));
  process.stdout.write(`${lines.join("\n")}\nCtrl-C stops.\n`);
  const stop = (): void => {
    void stopAll().then(() => process.exit(ExitCodes.OK));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}

/** A word as a shell takes it: quoted when it holds a space, braces or quotes. */
const shellWord = (w: string): string =>
  /^[\w.,:/@=+-]+$/.test(w) ? w : `'${w.replaceAll("'", "'\\''")}'`;

/**
 * The values file: `device: { point: value }`, every device and point one of the config's.
 * Problems are printed as file:line:col; undefined when there are any.
 */
async function readValues(file: string, config: LoadedConfig): Promise<Values | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    process.stderr.write(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? e}\n`);
    return undefined;
  }
  const src = parseYamlSource(file, text);
  const problems: Problem[] = src.syntaxErrors.map((e) => ({
    code: ErrorCodes.CONFIG_YAML,
    position: e.position,
    keyPath: "",
    message: e.message,
  }));
  const values: Values = {};
  const at = (path: string[], message: string): void =>
    void problems.push({
      code: ErrorCodes.CONFIG_SCHEMA,
      position: src.positionOf(path, true),
      keyPath: path.join("."),
      message,
    });
  if (problems.length === 0) {
    const root: unknown = src.doc.toJS({ maxAliasCount: 100 });
    if (
      root !== null &&
      (typeof root !== "object" || Array.isArray(root) || !isMap(src.doc.contents))
    )
      at([], "the values file is a map of device names to maps of point values");
    else
      for (const [device, points] of Object.entries((root ?? {}) as Record<string, unknown>)) {
        const noDevice = unknownName(config.devices, device);
        if (noDevice !== undefined) {
          at([device], noDevice);
          continue;
        }
        if (points === null || typeof points !== "object" || Array.isArray(points)) {
          at([device], "a map of point names to values");
          continue;
        }
        for (const point of Object.keys(points)) {
          const noPoint = unknownName(config.devices, device, point);
          if (noPoint !== undefined) at([device, point], noPoint);
        }
        values[device] = points as Record<string, unknown>;
      }
  }
  for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
  return problems.length === 0 ? values : undefined;
}
