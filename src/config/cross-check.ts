import path from "node:path";
import type { DevicePlan } from "../mapping/types.js";
import { dialectFor } from "../north/dialects/index.js";
import { protocolOf, protocolOfKind, protocols } from "../south/registry.js";
import type { GatewayConfig } from "./gateway-schema.js";
import type { YamlSource } from "./yaml-source.js";

export interface CrossProblem {
  readonly src: YamlSource;
  readonly path: readonly (string | number)[];
  readonly message: string;
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
    // A cloud shadow holds a limited number of top-level reported attributes (Alibaba: 128);
    // nest points with dots.
    const attributes = new Set(d.plan.points.map((p) => p.path[0]));
    const maxAttributes = gateway.cloud && dialectFor(gateway.cloud.dialect).limits.maxAttributes;
    if (maxAttributes !== undefined && attributes.size + 1 > maxAttributes) {
      found.push({
        src: d.src,
        path: ["points"],
        message: `${attributes.size} top-level points (plus _commands) exceed the cloud shadow's ${maxAttributes} attributes; group them with dotted names (line1.speed)`,
      });
    }
    // A mapping's points must be of its source's kind: registers for Modbus, nodes for OPC UA.
    const protocol = source && protocolOf(source);
    if (protocol && protocol.kind !== d.plan.kind) {
      found.push({
        src: d.src,
        path: ["source"],
        message: `${d.plan.sourceId} is a${/^[AEIOU]/.test(protocol.label) ? "n" : ""} ${protocol.label} source; its points need ${protocol.points.addressing}, not ${protocolOfKind(d.plan.kind).points.addressing}`,
      });
    } else if (protocol && source) {
      for (const c of protocol.checkDevice?.(d.plan, source) ?? [])
        found.push({ src: d.src, ...c });
    }
    const first = seen.get(id);
    if (first) {
      const pos = first.src.positionOf(["device"]);
      const file = path.relative(path.dirname(d.src.file), first.src.file);
      found.push({
        src: d.src,
        path: ["device"],
        message: `${d.plan.addressing === "aws" ? "shadow" : "deviceName"} ${id} is already described by ${file}:${pos.line}; one mapping file per device`,
      });
    } else seen.set(id, d);
  }

  // Checks across the devices of one protocol (Modbus points reading the same words differently).
  for (const protocol of protocols()) {
    const own = devices.filter((d) => d.plan.kind === protocol.kind);
    for (const { device, ...c } of protocol.checkDevices?.(own.map((d) => d.plan)) ?? []) {
      const d = own.find((x) => x.plan === device);
      if (d) found.push({ src: d.src, ...c });
    }
  }
  return found;
}
