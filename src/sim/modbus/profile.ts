/**
 * Simulator profiles: which units the simulated PLC hosts, their faults, typed initial values
 * and the dynamics that make the values move. YAML, validated with zod; every problem is
 * reported at once as `file:line:col key.path: message`.
 *
 * ```yaml
 * responseDelay: 5ms          # optional, global; a duration (500ms, 1s, 2m) or a number of ms
 * unknownUnit: ignore         # optional: ignore (no answer, default) | exception (0x0B)
 * tick: 200ms                 # optional default for every unit's dynamics timer (200ms)
 * units:                      # at least one
 *   - unitId: 1               # 0-255
 *     holes: [ { table: holding, from: 99, to: 109 } ]   # 0-based PDU addresses, inclusive
 *     maxRegistersPerRequest: 125                        # optional, 1-125
 *     responseDelay: 20ms     # optional, overrides the global one
 *     silent: false           # optional: a dead slave that never answers
 *     tick: 200ms             # optional, overrides the top-level tick
 *     points:                 # typed values, addressed as in mapping files
 *       temperature: { register: 40001, type: float32, byteOrder: ABCD, value: 21.5 }
 *       targetTemperature: { register: 40010, type: int16, scale: 0.1, value: 60 }
 *       state: { register: 40020, type: uint16, enum: { 0: idle, 1: heating }, value: idle }
 *       alarm.overheat: { register: 40021, type: uint16, bit: 3, value: false }
 *       running: { coil: 1, value: true }
 *       doorOpen: { discreteInput: 3, value: false }
 *       flow: { table: input, offset: 12, type: uint16, value: 120 }
 *       cycles: { register: 40030, type: uint32 }
 *     dynamics:               # run in order on every tick
 *       - { kind: approach, point: temperature, target: targetTemperature, tau: 30s, when: running, ambient: 20 }
 *       - { kind: noise, point: flow, amplitude: 5, center: 120 }
 *       - { kind: counter, point: cycles, step: 1, min: 0, max: 9999 }
 *       - { kind: threshold, point: state, source: temperature, below: targetTemperature, when: running, value: heating, else: idle }
 * ```
 *
 * Points: exactly one of `register` (Modicon 4xxxx/3xxxx, 6-digit form too), `coil` or
 * `discreteInput` (1-based), or `table` + `offset` (0-based PDU address). Register points take
 * `type` (default uint16), `byteOrder`, `scale`, `valueOffset`, `bit`, `length` (strings,
 * required), `enum`, exactly as in mapping files (the same compiler checks both), plus an
 * optional initial `value` (memory stays 0 without one).
 *
 * Dynamics (`when` names a point, `!name` negates it; truthy = non-zero):
 * - approach: first-order lag toward `target` (number or point) with time constant `tau`
 *   while `when` holds, else toward `ambient` (default 20).
 * - noise: `center` (default: the point's `value`, else its value at the first tick) plus
 *   uniform noise in [-amplitude, +amplitude].
 * - counter: adds `step` (default 1) per tick; past `max` (default: the type's range) it
 *   wraps to `min` (default 0).
 * - threshold: writes `value` while `source` is above `above` and below `below` (numbers or
 *   points) and `when` holds; otherwise writes `else` when given, or leaves the point alone.
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
import { pointSchema } from "../../config/mapping-schema.js";
import { duration } from "../../core/duration.js";
import { compileModbusPoint } from "../../mapping/modbus-points.js";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { ModbusTable, PointValue } from "../../core/types.js";
import { encodeRegisters } from "../../mapping/codec.js";
import { NUMERIC_TYPES, type CodecSpec } from "../../mapping/types.js";
import type { Hole, UnitOptions } from "./memory.js";

const DEFAULT_TICK_MS = 200;
const DEFAULT_AMBIENT = 20;

const Duration = duration("A time");

const Table = z.enum(["coil", "discreteInput", "input", "holding"]);
const Address16 = z.int().min(0).max(65535);
const Value = z.union([z.number(), z.boolean(), z.string()]);
const PointRef = z.string().min(1);
const NumberOrPoint = z.union([z.number(), PointRef]);

const HoleSchema = z.strictObject({ table: Table, from: Address16, to: Address16 });

// Profile points are mapping points (same addresses, types, byte orders) plus an initial value.
const PointSchema = pointSchema.extend({ value: Value.optional() });

const DynamicSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("approach"),
    point: PointRef,
    target: NumberOrPoint,
    tau: Duration.refine((ms) => ms > 0, "tau must be longer than 0"),
    when: PointRef.optional(),
    ambient: z.number().optional(),
  }),
  z.strictObject({
    kind: z.literal("noise"),
    point: PointRef,
    amplitude: z.number().min(0),
    center: z.number().optional(),
  }),
  z.strictObject({
    kind: z.literal("counter"),
    point: PointRef,
    step: z.number().optional(),
    min: z.number().optional(),
    max: z.number().optional(),
  }),
  z.strictObject({
    kind: z.literal("threshold"),
    point: PointRef,
    source: PointRef,
    above: NumberOrPoint.optional(),
    below: NumberOrPoint.optional(),
    when: PointRef.optional(),
    value: Value,
    else: Value.optional(),
  }),
]);

const UnitSchema = z.strictObject({
  unitId: z.int().min(0).max(255),
  holes: z.array(HoleSchema).optional(),
  maxRegistersPerRequest: z.int().min(1).max(125).optional(),
  responseDelay: Duration.optional(),
  silent: z.boolean().optional(),
  tick: Duration.refine((ms) => ms > 0, "tick must be longer than 0").optional(),
  points: z.record(z.string().min(1), PointSchema).optional(),
  dynamics: z.array(DynamicSchema).optional(),
});

const ProfileSchema = z.strictObject({
  responseDelay: Duration.optional(),
  unknownUnit: z.enum(["ignore", "exception"]).optional(),
  tick: Duration.refine((ms) => ms > 0, "tick must be longer than 0").optional(),
  units: z.array(UnitSchema).min(1),
});

/** A profile as written (YAML parsed to plain data, or an object literal in a test). */
export type ProfileInput = z.input<typeof ProfileSchema>;
type ParsedProfile = z.output<typeof ProfileSchema>;
type ParsedPoint = z.output<typeof PointSchema>;
type ParsedDynamic = z.output<typeof DynamicSchema>;

/** A point resolved to its table, 0-based address and codec. */
export interface SimPoint {
  readonly name: string;
  readonly table: ModbusTable;
  readonly address: number;
  /** Words for register tables, bits (always 1) for bit tables. */
  readonly count: number;
  /** For bit tables: `{ type: "bool", byteOrder: "AB" }`. */
  readonly codec: CodecSpec;
  readonly initial?: PointValue;
}

export type SimDynamic =
  | {
      readonly kind: "approach";
      readonly point: string;
      readonly target: number | string;
      readonly tauMs: number;
      readonly when?: string;
      readonly ambient: number;
    }
  | {
      readonly kind: "noise";
      readonly point: string;
      readonly amplitude: number;
      readonly center?: number;
    }
  | {
      readonly kind: "counter";
      readonly point: string;
      readonly step: number;
      readonly min: number;
      readonly max?: number;
    }
  | {
      readonly kind: "threshold";
      readonly point: string;
      readonly source: string;
      readonly above?: number | string;
      readonly below?: number | string;
      readonly when?: string;
      readonly value: PointValue;
      readonly else?: PointValue;
    };

export interface SimUnitProfile extends UnitOptions {
  readonly points: ReadonlyMap<string, SimPoint>;
  readonly dynamics: readonly SimDynamic[];
  readonly tickMs: number;
}

/** A validated, resolved profile, ready for `new ModbusTcpSimulator({ profile })`. */
export interface SimProfile {
  /** The file it came from, or a label such as `<default profile>`. */
  readonly source: string;
  readonly responseDelayMs?: number;
  readonly unknownUnit?: "ignore" | "exception";
  readonly units: readonly SimUnitProfile[];
}

export const isBitTable = (t: ModbusTable): t is "coil" | "discreteInput" =>
  t === "coil" || t === "discreteInput";

/** True when the point holds one boolean: a coil, a discrete input, a `bit` or a bool register. */
export const isBooleanPoint = (p: SimPoint): boolean =>
  isBitTable(p.table) || p.codec.bit !== undefined || p.codec.type === "bool";

/**
 * The words for a register point's value, or the bit for a bit-table point. Booleans and
 * numbers are interchangeable for boolean points (non-zero is true).
 */
export function encodePointValue(
  p: SimPoint,
  value: PointValue,
  current: readonly number[],
): number[] {
  if (isBitTable(p.table)) {
    if (typeof value === "string") {
      throw new ShadowgateError(
        ErrorCodes.CODEC_TYPE,
        `${p.table} ${p.name} takes true or false, got ${JSON.stringify(value)}`,
      );
    }
    return [value === true || (typeof value === "number" && value !== 0) ? 1 : 0];
  }
  const boolish = p.codec.bit !== undefined || p.codec.type === "bool";
  const v = boolish && typeof value === "number" ? value !== 0 : value;
  return encodeRegisters(p.codec, !boolish && typeof v === "boolean" ? Number(v) : v, current);
}

function compileSimPoint(
  name: string,
  p: ParsedPoint,
  path: Path,
  issues: Issue[],
): SimPoint | undefined {
  const { value, ...fields } = p;
  const found: Array<[string, string]> = [];
  const compiled = compileModbusPoint(name, fields, undefined, found);
  for (const [key, message] of found) {
    issues.push({ path: key === "" ? path : [...path, key], message });
  }
  if (!compiled) return undefined;
  const { table, address, count, codec } = compiled;
  const point: SimPoint = {
    name,
    table,
    address,
    count,
    codec,
    ...(value !== undefined ? { initial: value } : {}),
  };
  if (value !== undefined) {
    try {
      encodePointValue(point, value, new Array<number>(count).fill(0));
    } catch (err) {
      if (!(err instanceof ShadowgateError)) throw err;
      issues.push({ path: [...path, "value"], message: err.message });
      return undefined;
    }
  }
  return point;
}

function compileDynamic(
  d: ParsedDynamic,
  points: ReadonlyMap<string, SimPoint>,
  path: Path,
  issues: Issue[],
): SimDynamic | undefined {
  let ok = true;
  const ref = (key: string, name: string, role: "numeric" | "any" | "writable"): void => {
    const p = points.get(name.startsWith("!") && key === "when" ? name.slice(1) : name);
    if (!p) {
      issues.push({ path: [...path, key], message: `no point named ${JSON.stringify(name)}` });
      ok = false;
    } else if (role === "numeric" && (isBooleanPoint(p) || !NUMERIC_TYPES.has(p.codec.type))) {
      issues.push({ path: [...path, key], message: `${name} is not a numeric register point` });
      ok = false;
    } else if (role === "writable" && p.codec.type === "string") {
      issues.push({ path: [...path, key], message: `${name} is a string point` });
      ok = false;
    }
  };
  switch (d.kind) {
    case "approach":
      ref("point", d.point, "numeric");
      if (typeof d.target === "string") ref("target", d.target, "any");
      if (d.when !== undefined) ref("when", d.when, "any");
      return ok
        ? {
            kind: "approach",
            point: d.point,
            target: d.target,
            tauMs: d.tau,
            ambient: d.ambient ?? DEFAULT_AMBIENT,
            ...(d.when !== undefined ? { when: d.when } : {}),
          }
        : undefined;
    case "noise":
      ref("point", d.point, "numeric");
      return ok
        ? {
            kind: "noise",
            point: d.point,
            amplitude: d.amplitude,
            ...(d.center !== undefined ? { center: d.center } : {}),
          }
        : undefined;
    case "counter":
      ref("point", d.point, "numeric");
      return ok
        ? {
            kind: "counter",
            point: d.point,
            step: d.step ?? 1,
            min: d.min ?? 0,
            ...(d.max !== undefined ? { max: d.max } : {}),
          }
        : undefined;
    case "threshold": {
      ref("point", d.point, "writable");
      ref("source", d.source, "any");
      if (typeof d.above === "string") ref("above", d.above, "any");
      if (typeof d.below === "string") ref("below", d.below, "any");
      if (d.when !== undefined) ref("when", d.when, "any");
      const target = points.get(d.point);
      if (ok && target) {
        const zeros = new Array<number>(target.count).fill(0);
        for (const key of ["value", "else"] as const) {
          const v = d[key];
          if (v === undefined) continue;
          try {
            encodePointValue(target, v, zeros);
          } catch (err) {
            if (!(err instanceof ShadowgateError)) throw err;
            issues.push({ path: [...path, key], message: err.message });
            ok = false;
          }
        }
      }
      return ok
        ? {
            kind: "threshold",
            point: d.point,
            source: d.source,
            value: d.value,
            ...(d.above !== undefined ? { above: d.above } : {}),
            ...(d.below !== undefined ? { below: d.below } : {}),
            ...(d.when !== undefined ? { when: d.when } : {}),
            ...(d.else !== undefined ? { else: d.else } : {}),
          }
        : undefined;
    }
  }
}

function compileParsed(parsed: ParsedProfile, source: string, issues: Issue[]): SimProfile {
  const seen = new Set<number>();
  const units: SimUnitProfile[] = parsed.units.map((u, i) => {
    const path: Path = ["units", i];
    if (seen.has(u.unitId)) {
      issues.push({ path: [...path, "unitId"], message: `unit ${u.unitId} is defined twice` });
    }
    seen.add(u.unitId);
    const holes: Hole[] = [];
    (u.holes ?? []).forEach((h, j) => {
      if (h.from > h.to) {
        issues.push({ path: [...path, "holes", j], message: `from ${h.from} is after to ${h.to}` });
      } else {
        holes.push(h);
      }
    });
    const points = new Map<string, SimPoint>();
    for (const [name, p] of Object.entries(u.points ?? {})) {
      const point = compileSimPoint(name, p, [...path, "points", name], issues);
      if (point) points.set(name, point);
    }
    const dynamics: SimDynamic[] = [];
    (u.dynamics ?? []).forEach((d, j) => {
      // A dynamic naming a point that failed to compile would only repeat that point's error.
      if (!points.has(d.point) && u.points?.[d.point] !== undefined) return;
      const compiled = compileDynamic(d, points, [...path, "dynamics", j], issues);
      if (compiled) dynamics.push(compiled);
    });
    return {
      unitId: u.unitId,
      holes,
      points,
      dynamics,
      tickMs: u.tick ?? parsed.tick ?? DEFAULT_TICK_MS,
      ...(u.maxRegistersPerRequest !== undefined
        ? { maxRegistersPerRequest: u.maxRegistersPerRequest }
        : {}),
      ...(u.responseDelay !== undefined ? { responseDelayMs: u.responseDelay } : {}),
      ...(u.silent !== undefined ? { silent: u.silent } : {}),
    };
  });
  return {
    source,
    units,
    ...(parsed.responseDelay !== undefined ? { responseDelayMs: parsed.responseDelay } : {}),
    ...(parsed.unknownUnit !== undefined ? { unknownUnit: parsed.unknownUnit } : {}),
  };
}

const FORMAT: ProfileFormat<ParsedProfile, SimProfile> = {
  schema: ProfileSchema,
  compile: compileParsed,
  kinds: "kind must be one of approach, noise, counter, threshold",
};

/** Validates a profile given as YAML text; `source` names it in error messages. */
export function parseProfile(text: string, source: string): SimProfile {
  return parseProfileText(FORMAT, text, source);
}

/** Reads and validates a profile file. Errors name the file and line:col. */
export function loadProfile(file: string): Promise<SimProfile> {
  return loadProfileFile(FORMAT, file);
}

/** Validates a profile given as an object. */
export function compileProfile(input: ProfileInput, source = "<profile>"): SimProfile {
  return compileProfileInput(FORMAT, input, source);
}

/**
 * The boiler of architecture.md, at the addresses of its mapping example: the temperature
 * follows the set point while `running`, `state` says heating while it is below, overheat and
 * fault above 110 degC, and the flow wobbles around 120.
 */
export const DEFAULT_PROFILE_YAML = `\
tick: 200ms
units:
  - unitId: 1
    points:
      temperature: { register: 40001, type: float32, byteOrder: ABCD, value: 21.5 }
      targetTemperature: { register: 40010, type: int16, scale: 0.1, value: 60 }
      running: { coil: 1, value: true }
      doorOpen: { discreteInput: 3, value: false }
      state: { register: 40020, type: uint16, enum: { 0: idle, 1: heating, 2: fault }, value: idle }
      alarm.overheat: { register: 40021, type: uint16, bit: 3, value: false }
      flow: { table: input, offset: 12, type: uint16, value: 120 }
    dynamics:
      - { kind: approach, point: temperature, target: targetTemperature, tau: 30s, when: running, ambient: 20 }
      - { kind: threshold, point: state, source: temperature, below: targetTemperature, when: running, value: heating, else: idle }
      - { kind: threshold, point: state, source: temperature, above: 110, value: fault }
      - { kind: threshold, point: alarm.overheat, source: temperature, above: 110, value: true, else: false }
      - { kind: noise, point: flow, amplitude: 5 }
`;

export const defaultProfile = (): SimProfile =>
  parseProfile(DEFAULT_PROFILE_YAML, "<default profile>");
