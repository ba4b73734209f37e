import { ErrorCodes, ShadowgateError } from "../core/errors.js";
import type { NodeRef, ValueSample } from "../core/samples.js";
import type { JsonValue, PointValue, Quality } from "../core/types.js";
import {
  labels,
  pointBase,
  type MappingFields,
  type MappingKind,
  type PointFields,
} from "./compile.js";
import { MODBUS_KEYS } from "./modbus-points.js";
import type { NodeDevicePlan, NodePoint } from "./types.js";

/** OPC UA points: variables the server types itself, named by NodeId or browse path. */

/** An OPC UA point's checks, as compileModbusPoint does them for Modbus. */
export function compileNodePoint(
  name: string,
  p: PointFields & { node: string },
  defaults: MappingFields["defaults"],
  issues: Array<[string, string]>,
): Omit<NodePoint, "position"> | undefined {
  for (const key of MODBUS_KEYS) {
    if (p[key] !== undefined)
      issues.push([
        key,
        key === "type"
          ? "an OPC UA node is typed by the server; drop type"
          : `${key} is a Modbus address key; an OPC UA point has node only`,
      ]);
  }
  if (p.scale === 0) issues.push(["scale", "scale 0 would make every value the same"]);
  if ((p.scale !== undefined || p.valueOffset !== undefined) && p.enum !== undefined)
    issues.push(["enum", "enum and scale exclude each other"]);
  if (p.min !== undefined && p.max !== undefined && p.min > p.max)
    issues.push(["min", `min ${p.min} is above max ${p.max}`]);
  if (issues.length > 0) return undefined;
  return {
    ...pointBase(name, p, defaults),
    node: p.node,
    ...(p.samplingInterval !== undefined && { samplingIntervalMs: p.samplingInterval }),
    ...(p.scale !== undefined && { scale: p.scale }),
    ...(p.valueOffset !== undefined && { valueOffset: p.valueOffset }),
    ...(p.enum !== undefined && { enum: labels(p.enum) }),
  };
}

export const nodePoints: MappingKind<NodePoint> = {
  kind: "opcua",
  addressing: "node",
  claims: (fields) => fields.node !== undefined,
  foreign: () => ["", "needs node: this file maps OPC UA nodes (see its first point)"],
  compilePoint: (name, fields: PointFields, defaults, issues) =>
    fields.node === undefined
      ? undefined
      : compileNodePoint(name, { ...fields, node: fields.node }, defaults, issues),
  plan: (common, m, points): NodeDevicePlan => ({
    ...common,
    kind: "opcua",
    mode: m.mode ?? "subscribe",
    points,
  }),
  describe: (point) =>
    [
      point.node,
      ...(point.scale !== undefined ? [`scale ${point.scale}`] : []),
      ...(point.valueOffset !== undefined ? [`offset ${point.valueOffset}`] : []),
    ].join(", "),
};

/** What an OPC UA driver is asked for, for one point. The deadband goes to the server in raw units. */
export function nodeRef(point: NodePoint): NodeRef {
  return {
    key: point.name,
    node: point.node,
    ...(point.samplingIntervalMs !== undefined && { samplingIntervalMs: point.samplingIntervalMs }),
    ...(point.deadband !== undefined && {
      deadband: point.deadband / Math.abs(point.scale ?? 1),
    }),
  };
}

/**
 * A typed OPC UA value -> the point's value: scaled, or its enum label. The server's source
 * timestamp, when it sent one, is the reading's time.
 */
export function decodeNodeSample(
  point: NodePoint,
  s: ValueSample,
): { value?: PointValue; quality: Quality; ts: number } {
  const ts = s.sourceTs ?? s.ts;
  if (s.quality.status !== "good" || s.value === undefined || s.value === null)
    return { quality: s.quality, ts };
  const v = s.value;
  if (typeof v === "number") {
    // As for Modbus points: a raw value without a label is reported as the number.
    if (point.enum !== undefined)
      return { value: point.enum[String(v)] ?? v, quality: s.quality, ts };
    return { value: v * (point.scale ?? 1) + (point.valueOffset ?? 0), quality: s.quality, ts };
  }
  if (typeof v === "object" && !Array.isArray(v))
    return {
      quality: {
        status: "bad",
        code: ErrorCodes.CODEC_TYPE,
        reason: `${point.name} holds a structure; map its fields as nodes of their own`,
      },
      ts,
    };
  return { value: v, quality: s.quality, ts };
}

/** The inverse of decodeNodeSample for a write: unscaled, or the enum label's number. */
export function encodeNodeValue(point: NodePoint, value: unknown): JsonValue {
  if (point.enum !== undefined && typeof value === "string") {
    const hit = Object.entries(point.enum).find(([, label]) => label === value);
    if (!hit)
      throw new ShadowgateError(
        ErrorCodes.CODEC_RANGE,
        `${JSON.stringify(value)} is not one of ${Object.values(point.enum).join(", ")}`,
      );
    return Number(hit[0]);
  }
  if (typeof value === "number") {
    // 12 significant digits undo the float noise of the division (21.3 / 0.1 is 212.99999999999997),
    // so that an integer node takes a value that lands on its resolution; one that does not
    // (21.37 at 0.1) stays fractional and the driver refuses it.
    return Number(((value - (point.valueOffset ?? 0)) / (point.scale ?? 1)).toPrecision(12));
  }
  return value as JsonValue;
}
