import path from "node:path";
import { formatAddress } from "../mapping/address.js";
import type { CompiledPoint, DevicePlan } from "../mapping/types.js";
import { MAX_ATTRIBUTES } from "../north/dialects/alibaba/messages.js";
import type { GatewayConfig } from "./gateway-schema.js";
import type { YamlSource } from "./yaml-source.js";

export interface CrossProblem {
  readonly src: YamlSource;
  readonly path: readonly (string | number)[];
  readonly message: string;
}

const describe = (p: CompiledPoint): string =>
  p.codec.type === "string"
    ? `string(${p.count})`
    : p.count > 1
      ? `${p.codec.type} ${p.codec.byteOrder}`
      : p.codec.type;

/** Two points read the same words the same way, or at least one reads single bits. */
function compatible(a: CompiledPoint, b: CompiledPoint): boolean {
  if (a.codec.bit !== undefined || b.codec.bit !== undefined) return true;
  if (a.table === "coil" || a.table === "discreteInput") return true;
  return (
    a.address === b.address &&
    a.count === b.count &&
    a.codec.type === b.codec.type &&
    a.codec.byteOrder === b.codec.byteOrder
  );
}

/** Checks that need more than one file: sources, devices, and points sharing addresses. */
export function crossCheck(
  gateway: GatewayConfig,
  devices: ReadonlyArray<{ plan: DevicePlan; src: YamlSource }>,
): CrossProblem[] {
  const found: CrossProblem[] = [];
  const known = Object.keys(gateway.sources);
  const seen = new Map<string, { plan: DevicePlan; src: YamlSource }>();

  for (const d of devices) {
    // Own keys only: `in` would take a mapping's `source: toString` for a source.
    const source = Object.hasOwn(gateway.sources, d.plan.sourceId)
      ? gateway.sources[d.plan.sourceId]
      : undefined;
    if (!source) {
      found.push({
        src: d.src,
        path: ["source"],
        message: `unknown source "${d.plan.sourceId}"; the gateway config defines ${known.length ? known.join(", ") : "none"}`,
      });
    }
    // Shadows, `read --json` and the CLI name devices by deviceName, so it must be unique.
    const id = d.plan.deviceName;
    // A cloud shadow holds at most 128 top-level reported attributes; nest points with dots.
    const attributes = new Set(d.plan.points.map((p) => p.path[0]));
    if (gateway.cloud && attributes.size + 1 > MAX_ATTRIBUTES) {
      found.push({
        src: d.src,
        path: ["points"],
        message: `${attributes.size} top-level points (plus _commands) exceed the cloud shadow's ${MAX_ATTRIBUTES} attributes; group them with dotted names (line1.speed)`,
      });
    }
    // A mapping's points must be of its source's kind: registers for Modbus, nodes for OPC UA.
    const sourceKind = source && (source.protocol === "opcua" ? "opcua" : "modbus");
    if (sourceKind !== undefined && sourceKind !== d.plan.protocol) {
      found.push({
        src: d.src,
        path: ["source"],
        message:
          sourceKind === "opcua"
            ? `${d.plan.sourceId} is an OPC UA source; its points need node, not register addresses`
            : `${d.plan.sourceId} is a Modbus source; its points need register addresses, not node`,
      });
    }
    if (source && source.protocol !== "opcua" && d.plan.protocol === "modbus") {
      for (const p of d.plan.points) {
        const bits = p.table === "coil" || p.table === "discreteInput";
        const cap = bits ? source.maxBitsPerRequest : source.maxRegistersPerRequest;
        if (p.count > cap) {
          found.push({
            src: d.src,
            path: ["points", p.name],
            message: `${p.count} registers exceed maxRegistersPerRequest ${cap} of source ${d.plan.sourceId}; no single read can fetch it`,
          });
        }
      }
    }
    const first = seen.get(id);
    if (first) {
      const pos = first.src.positionOf(["device"]);
      const file = path.relative(path.dirname(d.src.file), first.src.file);
      found.push({
        src: d.src,
        path: ["device"],
        message: `deviceName ${id} is already described by ${file}:${pos.line}; one mapping file per device`,
      });
    } else seen.set(id, d);
  }

  // Points of every device behind one source, unit and table, in address order.
  const groups = new Map<string, Array<{ point: CompiledPoint; d: (typeof devices)[number] }>>();
  for (const d of devices) {
    if (d.plan.protocol !== "modbus") continue;
    for (const point of d.plan.points) {
      const key = `${d.plan.sourceId}/${d.plan.unitId}/${point.table}`;
      let list = groups.get(key);
      if (!list) groups.set(key, (list = []));
      list.push({ point, d });
    }
  }
  for (const list of groups.values()) {
    list.sort((x, y) => x.point.address - y.point.address);
    for (let i = 0; i < list.length; i++) {
      const a = list[i];
      if (!a) continue;
      for (let j = i + 1; j < list.length; j++) {
        const b = list[j];
        if (!b || b.point.address >= a.point.address + a.point.count) break;
        if (compatible(a.point, b.point)) continue;
        const file = path.relative(path.dirname(b.d.src.file), a.d.src.file);
        const where = a.point.position
          ? `${a.d.src.file === b.d.src.file ? "line " : `${file}:`}${a.point.position.line}`
          : file;
        found.push({
          src: b.d.src,
          path: ["points", b.point.name],
          message:
            `overlaps point ${a.point.name} (${where}) at ${formatAddress(b.point.table, b.point.address)} ` +
            `with a conflicting type: ${describe(b.point)} vs ${describe(a.point)}`,
        });
      }
    }
  }
  return found;
}
