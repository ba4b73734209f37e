/**
 * OPC UA simulator profiles: the objects under the Objects folder, their typed variables and
 * the dynamics that move them. YAML or an object, validated with zod; every problem is
 * reported at once as `file:line:col key.path: message`.
 *
 * ```yaml
 * tick: 100ms                    # how often the dynamics run (default 100ms)
 * minimumSamplingInterval: 50ms  # default for every variable (default 50ms)
 * objects:                       # at least one; each is Objects/<name> (ns=1;s=<name>)
 *   - name: Boiler
 *     variables:                 # browse path /1:Boiler/1:<name>, NodeId ns=1;s=Boiler.<name>
 *       - { name: Temperature, dataType: Double, value: 21.5 }
 *       - { name: Setpoint, dataType: Double, value: 60, writable: true }
 *       - { name: Serial, nodeId: "ns=1;i=5001", dataType: String, value: B-01 }
 *       - { name: Profile, dataType: Double, array: true, value: [20, 40] }
 *       - { name: Fast, dataType: Int32, minimumSamplingInterval: 10ms }
 *     dynamics:                  # run in order on every tick
 *       - { kind: approach, variable: Temperature, target: Setpoint, fraction: 0.05, when: Running }
 *       - { kind: counter, variable: Counter, step: 1 }
 *       - { kind: threshold, variable: State, source: Temperature, below: Setpoint, value: heating, else: idle }
 * ```
 *
 * Variables: `name`, `dataType` (Boolean, Int16, UInt16, Int32, UInt32, Int64, UInt64, Float,
 * Double, String, DateTime), `array: true` for arrays of a numeric type up to 32 bits, Float or
 * Double, an optional initial `value` (64-bit integers may be decimal strings, DateTime an ISO
 * string), `writable` (default false: clients get BadNotWritable), `nodeId` (ns=1;s=... or
 * ns=1;i=..., the server's own namespace), `minimumSamplingInterval` and `description`.
 *
 * Dynamics name variables of their object (`Temperature`) or of any object (`Boiler.Temperature`);
 * `when` may start with `!` to negate it (true = true, or non-zero). Every step is a fixed
 * function of the current values: the same ticks give the same values.
 * - approach: moves `variable` by `fraction` (default 0.05) of its distance to `target` (a
 *   number or a variable) while `when` holds, else toward `ambient` (default 20); within
 *   `settle` (default 0.001) it takes the goal exactly. Integer variables move at least 1.
 * - counter: adds `step` (default 1) to an integer variable; past `max` it wraps to `min`
 *   (defaults: the type's range).
 * - threshold: writes `value` while `source` is above `above` and below `below` (numbers or
 *   variables) and `when` holds; otherwise writes `else` when given.
 */
import { z } from "zod";
import {
  compileProfileInput,
  loadProfileFile,
  parseProfileText,
  type Issue,
  type Path,
  type ProfileFormat,
} from "../profile-file.js";
import { parseDuration } from "../../core/duration.js";
import {
  ARRAY_DATA_TYPES,
  OPCUA_DATA_TYPES,
  coerceValue,
  defaultValue,
  integerRange,
  isIntegerType,
  isNumberType,
  type OpcuaDataType,
  type OpcuaSimValue,
} from "./values.js";

export const DEFAULT_TICK_MS = 100;
export const DEFAULT_MINIMUM_SAMPLING_INTERVAL_MS = 50;
const DEFAULT_FRACTION = 0.05;
const DEFAULT_SETTLE = 0.001;
const DEFAULT_AMBIENT = 20;

const Ms = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: `"${v}" is not a duration (try 50ms, 1s)` });
    return z.NEVER;
  }
  return ms;
});
// node-opcua turns a monitored item on a variable whose MinimumSamplingInterval is 0 into an
// exception-based one, fed by value_changed events that a getter-bound variable never raises:
// it would never report a change.
const SamplingInterval = Ms.refine((ms) => ms > 0, "must be longer than 0");

const Name = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]*$/, "a name starts with a letter; then letters, digits, _ or -");
const NodeIdText = z
  .string()
  .regex(
    /^ns=1;(s=\S.*|i=\d+)$/,
    "a NodeId in the server's own namespace: ns=1;s=... or ns=1;i=...",
  );
const Ref = z.string().min(1);
const NumberOrRef = z.union([z.number(), Ref]);
const IntegerText = z.union([z.number(), z.string()]);

const VariableSchema = z.strictObject({
  name: Name,
  nodeId: NodeIdText.optional(),
  dataType: z.enum(OPCUA_DATA_TYPES),
  array: z.boolean().optional(),
  value: z.unknown().optional(),
  writable: z.boolean().optional(),
  minimumSamplingInterval: SamplingInterval.optional(),
  description: z.string().optional(),
});

const DynamicSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("approach"),
    variable: Ref,
    target: NumberOrRef,
    fraction: z.number().gt(0).max(1).optional(),
    settle: z.number().min(0).optional(),
    when: Ref.optional(),
    ambient: z.number().optional(),
  }),
  z.strictObject({
    kind: z.literal("counter"),
    variable: Ref,
    step: IntegerText.optional(),
    min: IntegerText.optional(),
    max: IntegerText.optional(),
  }),
  z.strictObject({
    kind: z.literal("threshold"),
    variable: Ref,
    source: Ref,
    above: NumberOrRef.optional(),
    below: NumberOrRef.optional(),
    when: Ref.optional(),
    value: z.unknown(),
    else: z.unknown().optional(),
  }),
]);

const ObjectSchema = z.strictObject({
  name: Name,
  nodeId: NodeIdText.optional(),
  variables: z.array(VariableSchema).min(1),
  dynamics: z.array(DynamicSchema).optional(),
});

const ProfileSchema = z.strictObject({
  tick: Ms.refine((ms) => ms > 0, "tick must be longer than 0").optional(),
  minimumSamplingInterval: SamplingInterval.optional(),
  objects: z.array(ObjectSchema).min(1),
});

/** A profile as written (YAML parsed to plain data, or an object literal in a test). */
export type OpcuaProfileInput = z.input<typeof ProfileSchema>;
type ParsedProfile = z.output<typeof ProfileSchema>;
type ParsedDynamic = z.output<typeof DynamicSchema>;

export interface OpcuaVariableDef {
  /** `Object.Name`: how the simulator's get/set/write log name it. */
  readonly key: string;
  readonly object: string;
  /** The browse name (in namespace 1). */
  readonly name: string;
  readonly nodeId: string;
  readonly dataType: OpcuaDataType;
  readonly array: boolean;
  readonly initial: OpcuaSimValue;
  readonly writable: boolean;
  readonly minimumSamplingIntervalMs: number;
  readonly description?: string;
}

export interface OpcuaObjectDef {
  readonly name: string;
  /** In any namespace of the server: ns=1 (its own), or one of `namespaces` (ns=2 on). */
  readonly nodeId: string;
  readonly variables: readonly OpcuaVariableDef[];
  /** Its browse name when not `name` (in the namespace of its NodeId). */
  readonly browseName?: string;
  /** The object it sits under (its `name`); default the Objects folder. */
  readonly parent?: string;
}

/** A variable key, optionally negated: `!Boiler.Running`. */
export interface Condition {
  readonly key: string;
  readonly negate: boolean;
}

export type OpcuaDynamic =
  | {
      readonly kind: "approach";
      readonly variable: string;
      /** A number, or a variable key. */
      readonly target: number | string;
      readonly fraction: number;
      readonly settle: number;
      readonly ambient: number;
      readonly when?: Condition;
    }
  | {
      readonly kind: "counter";
      readonly variable: string;
      readonly step: bigint;
      readonly min: bigint;
      readonly max: bigint;
    }
  | {
      readonly kind: "threshold";
      readonly variable: string;
      readonly source: string;
      readonly above?: number | string;
      readonly below?: number | string;
      readonly when?: Condition;
      readonly value: OpcuaSimValue;
      readonly else?: OpcuaSimValue;
    };

/** A validated profile, ready for `startOpcuaSimulator({ profile })`. */
export interface OpcuaSimProfile {
  /** The file it came from, or a label such as `<default profile>`. */
  readonly source: string;
  readonly tickMs: number;
  /** The profile's default for its variables (and for the simulator's extra variables). */
  readonly minimumSamplingIntervalMs: number;
  readonly objects: readonly OpcuaObjectDef[];
  /**
   * The URIs of namespaces 2, 3, ... that the objects' and variables' NodeIds may name (a
   * profile file has only its own, ns=1; a simulator built from mappings hosts theirs).
   */
  readonly namespaces?: readonly string[];
  /** Every object's dynamics, in order, with variables resolved to keys. */
  readonly dynamics: readonly OpcuaDynamic[];
}

const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function compileDynamic(
  d: ParsedDynamic,
  objectName: string,
  vars: ReadonlyMap<string, OpcuaVariableDef>,
  path: Path,
  issues: Issue[],
): OpcuaDynamic | undefined {
  let ok = true;
  const fail = (key: string, message: string): undefined => {
    issues.push({ path: [...path, key], message });
    ok = false;
    return undefined;
  };
  const resolve = (key: string, ref: string): OpcuaVariableDef | undefined => {
    const v = vars.get(ref.includes(".") ? ref : `${objectName}.${ref}`);
    return v ?? fail(key, `no variable named ${JSON.stringify(ref)}`);
  };
  const scalar = (key: string, ref: string): OpcuaVariableDef | undefined => {
    const v = resolve(key, ref);
    if (v?.array) return fail(key, `${ref} is an array`);
    if (v?.dataType === "DateTime") return fail(key, `${ref} is a DateTime`);
    return v;
  };
  const condition = (ref: string | undefined): Condition | undefined => {
    if (ref === undefined) return undefined;
    const negate = ref.startsWith("!");
    const v = scalar("when", negate ? ref.slice(1) : ref);
    return v && { key: v.key, negate };
  };
  const operand = (key: string, x: number | string | undefined) =>
    typeof x === "string" ? scalar(key, x)?.key : x;
  const bigOf = (key: string, x: number | string): bigint | undefined => {
    if (typeof x === "number" && Number.isSafeInteger(x)) return BigInt(x);
    if (typeof x === "string" && /^-?\d+$/.test(x.trim())) return BigInt(x.trim());
    return fail(key, `${JSON.stringify(x)} is not an integer`);
  };

  const target = scalar("variable", d.variable);
  switch (d.kind) {
    case "approach": {
      if (target && !isNumberType(target.dataType)) {
        fail(
          "variable",
          `${d.variable} is ${target.dataType}: approach moves Float, Double or 16-32 bit integers`,
        );
      }
      const goal = operand("target", d.target);
      const when = condition(d.when);
      if (!ok || !target || goal === undefined) return undefined;
      return {
        kind: "approach",
        variable: target.key,
        target: goal,
        fraction: d.fraction ?? DEFAULT_FRACTION,
        settle: d.settle ?? DEFAULT_SETTLE,
        ambient: d.ambient ?? DEFAULT_AMBIENT,
        ...(when && { when }),
      };
    }
    case "counter": {
      if (!target) return undefined;
      if (!isIntegerType(target.dataType)) {
        return fail(
          "variable",
          `${d.variable} is ${target.dataType}: a counter needs an integer type`,
        );
      }
      const [lo, hi] = integerRange(target.dataType);
      const step = d.step === undefined ? 1n : bigOf("step", d.step);
      const min = d.min === undefined ? lo : bigOf("min", d.min);
      const max = d.max === undefined ? hi : bigOf("max", d.max);
      if (min !== undefined && (min < lo || min > hi))
        fail("min", `out of the ${target.dataType} range`);
      if (max !== undefined && (max < lo || max > hi))
        fail("max", `out of the ${target.dataType} range`);
      if (ok && min !== undefined && max !== undefined && min > max)
        fail("max", "max is below min");
      if (!ok || step === undefined || min === undefined || max === undefined) return undefined;
      return { kind: "counter", variable: target.key, step, min, max };
    }
    case "threshold": {
      const source = scalar("source", d.source);
      const above = operand("above", d.above);
      const below = operand("below", d.below);
      const when = condition(d.when);
      if (!target) return undefined;
      const typed = (key: "value" | "else", v: unknown): OpcuaSimValue | undefined => {
        try {
          return coerceValue(target, v);
        } catch (e) {
          return fail(key, errorMessage(e));
        }
      };
      const value = typed("value", d.value);
      const otherwise = d.else === undefined ? undefined : typed("else", d.else);
      if (!ok || !source || value === undefined) return undefined;
      return {
        kind: "threshold",
        variable: target.key,
        source: source.key,
        value,
        ...(above !== undefined && { above }),
        ...(below !== undefined && { below }),
        ...(when && { when }),
        ...(otherwise !== undefined && { else: otherwise }),
      };
    }
  }
}

function compileParsed(parsed: ParsedProfile, source: string, issues: Issue[]): OpcuaSimProfile {
  const samplingDefault = parsed.minimumSamplingInterval ?? DEFAULT_MINIMUM_SAMPLING_INTERVAL_MS;
  const vars = new Map<string, OpcuaVariableDef>();
  const nodeIds = new Map<string, string>();
  const claimNodeId = (nodeId: string, owner: string, path: Path): void => {
    const other = nodeIds.get(nodeId);
    if (other !== undefined) issues.push({ path, message: `NodeId ${nodeId} is also ${other}'s` });
    else nodeIds.set(nodeId, owner);
  };
  const objectNames = new Set<string>();
  const objects: OpcuaObjectDef[] = parsed.objects.map((o, i) => {
    const path: Path = ["objects", i];
    if (objectNames.has(o.name)) {
      issues.push({ path: [...path, "name"], message: `object ${o.name} is defined twice` });
    }
    objectNames.add(o.name);
    const nodeId = o.nodeId ?? `ns=1;s=${o.name}`;
    claimNodeId(nodeId, o.name, [...path, o.nodeId === undefined ? "name" : "nodeId"]);
    const variables: OpcuaVariableDef[] = [];
    o.variables.forEach((v, j) => {
      const vpath: Path = [...path, "variables", j];
      const key = `${o.name}.${v.name}`;
      if (vars.has(key)) {
        issues.push({ path: [...vpath, "name"], message: `variable ${key} is defined twice` });
        return;
      }
      const array = v.array ?? false;
      if (array && !ARRAY_DATA_TYPES.has(v.dataType)) {
        issues.push({
          path: [...vpath, "array"],
          message: `arrays of ${v.dataType} are not supported (Float, Double, 16-32 bit integers)`,
        });
        return;
      }
      let initial: OpcuaSimValue;
      try {
        initial =
          v.value === undefined
            ? defaultValue({ dataType: v.dataType, array })
            : coerceValue({ dataType: v.dataType, array }, v.value);
      } catch (e) {
        issues.push({ path: [...vpath, "value"], message: errorMessage(e) });
        return;
      }
      const varNodeId = v.nodeId ?? `ns=1;s=${key}`;
      claimNodeId(varNodeId, key, [...vpath, v.nodeId === undefined ? "name" : "nodeId"]);
      const def: OpcuaVariableDef = {
        key,
        object: o.name,
        name: v.name,
        nodeId: varNodeId,
        dataType: v.dataType,
        array,
        initial,
        writable: v.writable ?? false,
        minimumSamplingIntervalMs: v.minimumSamplingInterval ?? samplingDefault,
        ...(v.description !== undefined && { description: v.description }),
      };
      vars.set(key, def);
      variables.push(def);
    });
    return { name: o.name, nodeId, variables };
  });
  const dynamics: OpcuaDynamic[] = [];
  parsed.objects.forEach((o, i) => {
    (o.dynamics ?? []).forEach((d, j) => {
      const compiled = compileDynamic(d, o.name, vars, ["objects", i, "dynamics", j], issues);
      if (compiled) dynamics.push(compiled);
    });
  });
  return {
    source,
    tickMs: parsed.tick ?? DEFAULT_TICK_MS,
    minimumSamplingIntervalMs: samplingDefault,
    objects,
    dynamics,
  };
}

const FORMAT: ProfileFormat<ParsedProfile, OpcuaSimProfile> = {
  schema: ProfileSchema,
  compile: compileParsed,
  kinds: "kind must be one of approach, counter, threshold",
};

/** Validates a profile given as YAML text; `source` names it in error messages. */
export function parseOpcuaProfile(text: string, source: string): OpcuaSimProfile {
  return parseProfileText(FORMAT, text, source);
}

/** Reads and validates a profile file. Errors name the file and line:col. */
export function loadOpcuaProfile(file: string): Promise<OpcuaSimProfile> {
  return loadProfileFile(FORMAT, file);
}

/** Validates a profile given as an object. */
export function compileOpcuaProfile(
  input: OpcuaProfileInput,
  source = "<profile>",
): OpcuaSimProfile {
  return compileProfileInput(FORMAT, input, source);
}

/**
 * The boiler of the Modbus simulator as an OPC UA server shows it: the temperature follows the
 * set point while it runs (toward 20 degC when stopped), the state says heating while it is
 * below, and two counters count ticks, one past 2^53 to prove 64-bit integers survive.
 */
export const DEFAULT_OPCUA_PROFILE_YAML = `\
tick: 100ms
minimumSamplingInterval: 50ms
objects:
  - name: Boiler
    variables:
      - { name: Temperature, dataType: Double, value: 21.5, description: "process value, degC" }
      - { name: Setpoint, dataType: Double, value: 60, writable: true, description: degC }
      - { name: Running, dataType: Boolean, value: true, writable: true }
      - { name: State, dataType: String, value: heating }
      - { name: Counter, dataType: UInt32, value: 0 }
      - { name: LastService, dataType: DateTime, value: "2026-01-15T08:30:00.000Z" }
      - { name: Profile, dataType: Double, array: true, value: [20, 45, 60, 60, 40] }
      - { name: BigCounter, dataType: UInt64, value: "9007199254740993" }
    dynamics:
      - { kind: approach, variable: Temperature, target: Setpoint, fraction: 0.05, when: Running, ambient: 20 }
      - { kind: threshold, variable: State, source: Temperature, below: Setpoint, when: Running, value: heating, else: idle }
      - { kind: counter, variable: Counter }
      - { kind: counter, variable: BigCounter }
`;

export const defaultOpcuaProfile = (): OpcuaSimProfile =>
  parseOpcuaProfile(DEFAULT_OPCUA_PROFILE_YAML, "<default profile>");

const isCompiled = (p: OpcuaProfileInput | OpcuaSimProfile): p is OpcuaSimProfile =>
  "source" in p && "tickMs" in p;

/**
 * A profile file path or object (raw or compiled) as a compiled profile; undefined: the boiler.
 * Errors are ShadowgateErrors (SG_CONFIG_*).
 */
export async function resolveOpcuaProfile(
  given: string | OpcuaProfileInput | OpcuaSimProfile | undefined,
): Promise<OpcuaSimProfile> {
  if (given === undefined) return defaultOpcuaProfile();
  if (typeof given === "string") return loadOpcuaProfile(given);
  if (isCompiled(given)) return given;
  return compileOpcuaProfile(given);
}
