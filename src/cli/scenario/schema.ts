import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import type { Problem } from "../../config/load.js";
import { parseYamlSource, type YamlSource } from "../../config/yaml-source.js";
import { duration } from "../../core/duration.js";
import { ErrorCodes } from "../../core/errors.js";
import type { DevicePlan } from "../../mapping/types.js";

/**
 * A scenario file for `shadowgate test`: the config to test, the PLC's first values, then
 * steps and checks in order. Device and point names are checked against the config's mappings
 * before anything starts: a wrong name is a validation error at its file:line:col, not a failed
 * run.
 */

const target = z
  .string()
  .regex(/^[^.]+\.[^\s]+$/, "write device.point, e.g. boiler-01.targetTemperature");
const value = z.union([z.number(), z.boolean(), z.string()]);

/** Each kind of step, by its one key: a step is checked by the schema its key names. */
const STEPS = {
  plc: z.strictObject({
    plc: z
      .strictObject({
        set: target,
        /** In engineering units, encoded by the mapping's codec. */
        to: value.optional(),
        /** Raw register words, as the device would hold them: the mapping is not consulted. */
        words: z.array(z.number().int().min(0).max(65535)).min(1).optional(),
      })
      .refine((p) => (p.to === undefined) !== (p.words === undefined), {
        message: "give the value as to: (engineering units) or as words: (raw registers)",
      }),
  }),
  desired: z.strictObject({ desired: z.strictObject({ set: target, to: value }) }),
  wait: z.strictObject({ wait: duration("How long to wait") }),
  uplink: z.strictObject({ uplink: z.enum(["cut", "restore"]) }),
  /**
   * The gateway stops (restart: SIGTERM, as systemd stops it; kill: SIGKILL, as a power cut)
   * and starts again on its data folder (its journal and outbox kept).
   */
  gateway: z.strictObject({ gateway: z.enum(["restart", "kill"]) }),
  /** A source's simulator goes away (its connections closed, new ones refused) or comes back. */
  source: z.strictObject({
    source: z.union([
      z.strictObject({ stop: z.string().min(1) }),
      z.strictObject({ start: z.string().min(1) }),
    ]),
  }),
  expect: z.strictObject({
    expect: z.strictObject({
      /** A path of the edge shadow (device.point), or of the cloud's reported state. */
      edge: target.optional(),
      cloud: target.optional(),
      equals: value.optional(),
      tolerance: z.number().nonnegative().optional(),
      /** A command's `_commands` outcome: applied, rejected or failed. */
      command: target.optional(),
      outcome: z.enum(["applied", "rejected", "failed"]).optional(),
      /** The PLC's raw words at a point's address. */
      register: target.optional(),
      words: z.array(z.number().int().min(0).max(65535)).min(1).optional(),
      /** A point's quality in the edge shadow: good, or stale or bad (its reason is shown). */
      quality: target.optional(),
      is: z.enum(["good", "stale", "bad", "uncertain"]).optional(),
      /**
       * How many writes reached a point's address since the scenario began (0: none), counted
       * at the end of `within`.
       */
      written: target.optional(),
      times: z.number().int().nonnegative().optional(),
      within: duration("How long the check may take to hold").default(5000),
    }),
  }),
} as const;

type StepKind = keyof typeof STEPS;
export type Step = z.output<(typeof STEPS)[StepKind]>;

/** The file's frame; its steps are checked one by one, each by its own kind. */
const frameSchema = z.strictObject({
  version: z.literal(1),
  /** The gateway config to test, relative to the scenario file. */
  config: z.string().min(1),
  /** First values in the PLC, by device and point, in engineering units. */
  values: z.record(z.string(), z.record(z.string(), value)).optional(),
  steps: z.array(z.unknown()).min(1),
});

export type Scenario = Omit<z.output<typeof frameSchema>, "steps"> & { steps: Step[] };

/**
 * The JSON Schema of a scenario file, for editors (yaml-language-server): the frame with each
 * step one of the kinds above. `readScenario` checks the same rules, and the names.
 */
export function scenarioJsonSchema(): Record<string, unknown> {
  const file = frameSchema.extend({
    steps: z.array(z.union(Object.values(STEPS))).min(1),
  });
  return {
    ...z.toJSONSchema(file, { io: "input", unrepresentable: "any" }),
    title: "Shadowgate scenario (shadowgate test)",
  };
}

/** The scenario as read, with where each step is (for messages), or every problem. */
export type ScenarioRead =
  | {
      ok: true;
      scenario: Scenario;
      configFile: string;
      lines: number[];
      /** The file as parsed, with its positions, for checkNames. */
      source: YamlSource;
    }
  | { ok: false; problems: Problem[] };

export async function readScenario(file: string): Promise<ScenarioRead> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const problem = `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
    return { ok: false, problems: [at(file, 1, 1, "", problem, ErrorCodes.CONFIG_READ)] };
  }
  const src = parseYamlSource(file, text);
  if (src.syntaxErrors.length > 0)
    return {
      ok: false,
      problems: src.syntaxErrors.map((e) =>
        at(file, e.position.line, e.position.col, "", e.message, ErrorCodes.CONFIG_YAML),
      ),
    };
  const problems: Problem[] = [];
  const issue = (where: readonly PropertyKey[], message: string): void => {
    const keys = where.map((k) => (typeof k === "number" ? k : String(k)));
    const p = src.positionOf(keys);
    problems.push(at(file, p.line, p.col, keys.join("."), message, ErrorCodes.CONFIG_SCHEMA));
  };
  const frame = frameSchema.safeParse(src.doc.toJS({ maxAliasCount: 100 }));
  if (!frame.success) for (const i of frame.error.issues) issue(i.path, i.message);
  const steps: Step[] = [];
  for (const [i, raw] of (frame.data?.steps ?? []).entries()) {
    const keys = raw !== null && typeof raw === "object" ? Object.keys(raw) : [];
    const kind =
      keys.length === 1 && Object.hasOwn(STEPS, keys[0] ?? "") ? (keys[0] as StepKind) : undefined;
    if (kind === undefined) {
      issue(["steps", i], `a step is one of ${Object.keys(STEPS).join(", ")}, alone`);
      continue;
    }
    const parsed = STEPS[kind].safeParse(raw);
    if (parsed.success) steps.push(parsed.data);
    else for (const x of parsed.error.issues) issue(["steps", i, ...x.path], x.message);
  }
  if (!frame.success || problems.length > 0) return { ok: false, problems };
  const lines = steps.map((_, i) => src.positionOf(["steps", i]).line);
  return {
    ok: true,
    scenario: { ...frame.data, steps },
    configFile: path.resolve(path.dirname(file), frame.data.config),
    lines,
    source: src,
  };

  function at(
    f: string,
    line: number,
    col: number,
    keyPath: string,
    message: string,
    code: Problem["code"],
  ): Problem {
    return { code, position: { file: f, line, col }, keyPath, message };
  }
}

/**
 * Why a device (or one of its points) is not one of the config's, or undefined when it is: for
 * a scenario's names and for `sim --from-config --values`.
 */
export function unknownName(
  devices: readonly DevicePlan[],
  device: string,
  point?: string,
): string | undefined {
  const plan = devices.find((d) => d.deviceName === device);
  if (!plan) return `no device ${device} in the config`;
  if (point === undefined || plan.points.some((p) => p.name === point)) return undefined;
  return `${device} has no point ${point}`;
}

/**
 * A scenario's `device.point`, split after the device: the first dot is not always the one, as
 * a named AWS shadow's device is `thing.shadow` and a point may be a path (`alarm.overheat`).
 * The longest device name that holds the point wins; with none, the first dot splits (and
 * `plan` is undefined).
 */
export function splitName(
  devices: readonly DevicePlan[],
  name: string,
): { device: string; point: string; plan?: DevicePlan } {
  const candidates = devices
    .filter((d) => name.startsWith(`${d.deviceName}.`))
    .sort((a, b) => b.deviceName.length - a.deviceName.length);
  const point = (d: DevicePlan): string => name.slice(d.deviceName.length + 1);
  const plan = candidates.find((d) => d.points.some((p) => p.name === point(d))) ?? candidates[0];
  if (plan) return { device: plan.deviceName, point: point(plan), plan };
  const dot = name.indexOf(".");
  return { device: name.slice(0, dot), point: name.slice(dot + 1) };
}

/** Names in the scenario that the config does not have, as positioned problems. */
export function checkNames(
  { scenario, source: src }: { scenario: Scenario; source: YamlSource },
  devices: readonly DevicePlan[],
  sources: readonly string[],
): Problem[] {
  const problems: Problem[] = [];
  const known = (name: string): string | undefined => {
    const { device, point } = splitName(devices, name);
    return unknownName(devices, device, point);
  };
  const check = (keyPath: Array<string | number>, name: string | undefined): void => {
    if (name === undefined) return;
    const why = known(name);
    if (why === undefined) return;
    const p = src.positionOf(keyPath);
    problems.push({
      code: ErrorCodes.CONFIG_CROSS,
      position: p,
      keyPath: keyPath.join("."),
      message: why,
    });
  };
  for (const [device, points] of Object.entries(scenario.values ?? {}))
    for (const point of Object.keys(points)) check(["values", device, point], `${device}.${point}`);
  scenario.steps.forEach((s, i) => {
    if ("plc" in s) check(["steps", i, "plc", "set"], s.plc.set);
    if ("desired" in s) check(["steps", i, "desired", "set"], s.desired.set);
    if ("source" in s) {
      const [key, id] = "stop" in s.source ? ["stop", s.source.stop] : ["start", s.source.start];
      if (!sources.includes(id))
        problems.push({
          code: ErrorCodes.CONFIG_CROSS,
          position: src.positionOf(["steps", i, "source", key]),
          keyPath: `steps.${i}.source.${key}`,
          message: `no source ${id} in the config (${sources.join(", ")})`,
        });
    }
    if ("expect" in s) {
      const e = s.expect;
      check(["steps", i, "expect", "edge"], e.edge);
      check(["steps", i, "expect", "cloud"], e.cloud);
      check(["steps", i, "expect", "command"], e.command);
      check(["steps", i, "expect", "register"], e.register);
      check(["steps", i, "expect", "written"], e.written);
      check(["steps", i, "expect", "quality"], e.quality);
      const kinds = [e.edge, e.cloud, e.command, e.register, e.written, e.quality].filter(
        (x) => x !== undefined,
      ).length;
      const paired =
        (e.command !== undefined) === (e.outcome !== undefined) &&
        (e.register !== undefined) === (e.words !== undefined) &&
        (e.written !== undefined) === (e.times !== undefined) &&
        (e.quality !== undefined) === (e.is !== undefined) &&
        ((e.edge === undefined && e.cloud === undefined) || e.equals !== undefined);
      if (kinds !== 1 || !paired)
        problems.push({
          code: ErrorCodes.CONFIG_SCHEMA,
          position: src.positionOf(["steps", i, "expect"]),
          keyPath: `steps.${i}.expect`,
          message:
            "an expect checks one thing: edge or cloud with equals (and tolerance), command with outcome, register with words, written with times, or quality with is",
        });
    }
  });
  return problems;
}
