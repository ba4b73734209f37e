import { ShadowgateError } from "../../core/errors.js";
import type { NodeDevicePlan, NodePoint } from "../../mapping/types.js";
import type { OpcuaSourceConfig } from "../../south/opcua/schema.js";
import {
  SimSourceError,
  SimValueError,
  type PreparedSource,
  type SimValues,
} from "../source-simulator.js";
import type { OpcuaObjectDef, OpcuaSimProfile, OpcuaVariableDef } from "./profile.js";
import { DEFAULT_MINIMUM_SAMPLING_INTERVAL_MS, DEFAULT_TICK_MS } from "./profile.js";
import { startOpcuaSimulator } from "./simulator.js";
import { coerceValue, type OpcuaDataType, type OpcuaSimValue } from "./values.js";

/**
 * An OPC UA server built from mapping files (`shadowgate sim --from-config`): every mapped node
 * at its NodeId (in its namespace, `ns=N` or `nsu=URI`) or at the end of its browse path (each
 * step an object, in the step's namespace), holding a value given in engineering units (turned
 * raw through the point's scale, offset or labels) or a plausible one inside min..max.
 *
 * The mapping does not type a node (the server does): a point's variable is Boolean or String
 * when its value is a boolean or a string, Int32 with labels, Double otherwise. Writable where
 * the mapping says so; a write elsewhere is refused by the server (BadNotWritable).
 */

/** One step of a browse path: its namespace index (or URI) and browse name. */
interface Step {
  readonly ns: number | string;
  readonly name: string;
}

/** A node the simulator can host: a NodeId in namespace 1 and up, or a browse path. */
type Node =
  | { readonly kind: "id"; readonly ns: number | string; readonly id: string }
  | { readonly kind: "path"; readonly steps: readonly Step[] };

/** `ns=2;s=X`, `nsu=urn:x;i=5`, `/2:Plant/2:Line1.2:Temp`: where the point's node is. */
function parseNode(text: string): Node | string {
  if (text.startsWith("/") || text.startsWith(".")) {
    const steps: Step[] = [];
    for (const part of text.split(/[/.]/).slice(1)) {
      const m = /^(?:(\d+):)?(.+)$/.exec(part);
      if (!m?.[2]) return `${text}: an empty step in the browse path`;
      const ns = Number(m[1] ?? 0);
      if (ns === 0) return `${text}: ${part} is a name of OPC UA's own namespace (0)`;
      steps.push({ ns, name: m[2] });
    }
    return steps.length === 0 ? `${text}: an empty browse path` : { kind: "path", steps };
  }
  const m = /^(?:ns=(\d+);|nsu=([^;]+);)?([sig])=(.+)$/.exec(text);
  if (!m)
    return `${text}: a simulator hosts NodeIds of the form ns=N;s=..., ns=N;i=..., ns=N;g=... or nsu=URI;s=...`;
  const ns = m[2] ?? Number(m[1] ?? 0);
  if (ns === 0)
    return `${text}: a node of OPC UA's own namespace (0) is the server's, not a device's`;
  return { kind: "id", ns, id: `${m[3]}=${m[4]}` };
}

/** The raw value and the variable's type for a point's value in engineering units. */
function rawValue(point: NodePoint, value: unknown): { dataType: OpcuaDataType; raw: unknown } {
  if (typeof value === "boolean") return { dataType: "Boolean", raw: value };
  if (point.enum !== undefined) {
    const raw = Object.entries(point.enum).find(([, label]) => label === value)?.[0];
    if (raw !== undefined) return { dataType: "Int32", raw: Number(raw) };
    if (typeof value === "number") return { dataType: "Int32", raw: value };
    throw new SimValueError(
      `${JSON.stringify(value)} is none of ${Object.values(point.enum).join(", ")}`,
    );
  }
  if (typeof value === "string") return { dataType: "String", raw: value };
  if (typeof value === "number")
    return { dataType: "Double", raw: (value - (point.valueOffset ?? 0)) / (point.scale ?? 1) };
  throw new SimValueError(`${JSON.stringify(value)} is not a number, boolean or string`);
}

/** A value a test engineer would take for the point's own: mid-range, its first label. */
function plausible(point: NodePoint): unknown {
  const [label] = Object.values(point.enum ?? {});
  if (label !== undefined) return label;
  const { min, max } = point;
  return min !== undefined && max !== undefined
    ? (min + max) / 2
    : (min ?? max ?? 10 * (point.scale ?? 1) + (point.valueOffset ?? 0));
}

/**
 * The server for one OPC UA source, its address space built from the source's devices (a node
 * it cannot host, or a value a point cannot hold, throws here, before anything starts); on
 * start() it serves on a free port of 127.0.0.1, without security and to anonymous sessions:
 * the overrides turn the source's security and identity off, as the mappings are what is tested
 * here, not the certificates and users (node-opcua offers user names on secure endpoints only,
 * and a secure one would need the gateway to trust the simulator's certificate first).
 */
export function prepareOpcuaSource(
  id: string,
  source: OpcuaSourceConfig,
  devices: readonly NodeDevicePlan[],
  values: SimValues,
): PreparedSource {
  // Namespaces: every index the nodes name up to the highest, then each URI they name.
  const uris: string[] = [];
  const indexOf = (ns: number | string): number => {
    if (typeof ns === "number") return ns;
    const at = uris.indexOf(ns);
    return at >= 0 ? at + 2 : uris.push(ns) + 1;
  };
  // Every node no simulator can host is named at once, as the config's own problems are.
  const unhosted: string[] = [];
  const parsed = devices.flatMap((d) =>
    d.points.flatMap((p) => {
      const node = parseNode(p.node);
      if (typeof node !== "string") return [{ d, p, node }];
      unhosted.push(`${d.deviceName}.${p.name}: ${node}`);
      return [];
    }),
  );
  const highest = Math.max(
    1,
    ...parsed.flatMap(({ node }) =>
      node.kind === "id"
        ? [typeof node.ns === "number" ? node.ns : 1]
        : node.steps.map((s) => (typeof s.ns === "number" ? s.ns : 1)),
    ),
  );
  for (let i = 2; i <= highest; i++) uris.push(`urn:shadowgate:sim:${id}:ns${i}`);

  const objects = new Map<
    string,
    { def: Omit<OpcuaObjectDef, "variables">; vars: OpcuaVariableDef[] }
  >();
  const object = (name: string, def: Omit<OpcuaObjectDef, "variables" | "name">) => {
    let o = objects.get(name);
    if (!o) objects.set(name, (o = { def: { name, ...def }, vars: [] }));
    return o;
  };
  /** Each point (device.point) and its variable's key (two points may read one node). */
  const hosted = new Map<string, { readonly key: string; readonly point: NodePoint }>();
  const variables = new Map<string, OpcuaVariableDef>();
  for (const { d, p, node } of parsed) {
    let where: { object: string; name: string; nodeId: string };
    if (node.kind === "id") {
      const ns = indexOf(node.ns);
      const holder = object(`${d.deviceName}@ns${ns}`, {
        browseName: d.deviceName,
        nodeId: `ns=${ns};s=shadowgate-sim/${d.deviceName}`,
      });
      where = { object: holder.def.name, name: p.name, nodeId: `ns=${ns};${node.id}` };
    } else {
      let parent: string | undefined;
      let pathText = "";
      for (const step of node.steps.slice(0, -1)) {
        const ns = indexOf(step.ns);
        pathText += `/${ns}:${step.name}`;
        object(pathText, {
          browseName: step.name,
          nodeId: `ns=${ns};s=${pathText}`,
          ...(parent !== undefined && { parent }),
        });
        parent = pathText;
      }
      const last = node.steps[node.steps.length - 1]!;
      const ns = indexOf(last.ns);
      if (parent === undefined) {
        unhosted.push(
          `${d.deviceName}.${p.name}: ${p.node}: a variable straight under Objects; give it an object (/${ns}:Device/${ns}:${last.name})`,
        );
        continue;
      }
      where = {
        object: parent,
        name: last.name,
        nodeId: `ns=${ns};s=${pathText}/${ns}:${last.name}`,
      };
    }
    const pointKey = `${d.deviceName}.${p.name}`;
    const same = variables.get(where.nodeId);
    if (same) {
      hosted.set(pointKey, { key: same.key, point: p });
      continue;
    }
    const given = values[d.deviceName] ?? {};
    const value = Object.hasOwn(given, p.name) ? given[p.name] : plausible(p);
    const { dataType, raw } = guarded(pointKey, value, () => rawValue(p, value));
    const def: OpcuaVariableDef = {
      key: pointKey,
      object: where.object,
      name: where.name,
      nodeId: where.nodeId,
      dataType,
      array: false,
      initial: guarded(pointKey, value, () => coerceValue({ dataType, array: false }, raw)),
      writable: p.writable,
      minimumSamplingIntervalMs: DEFAULT_MINIMUM_SAMPLING_INTERVAL_MS,
    };
    variables.set(where.nodeId, def);
    hosted.set(pointKey, { key: def.key, point: p });
    objects.get(where.object)?.vars.push(def);
  }
  if (unhosted.length > 0) throw new SimSourceError(unhosted.join("\n"));
  // Parents before children (a path's objects were made in order), every object listed even
  // when only other objects sit under it.
  const profile: OpcuaSimProfile = {
    source: `the mappings of ${id}`,
    tickMs: DEFAULT_TICK_MS,
    minimumSamplingIntervalMs: DEFAULT_MINIMUM_SAMPLING_INTERVAL_MS,
    objects: [...objects.values()].map((o) => ({ ...o.def, variables: o.vars })),
    namespaces: uris,
    dynamics: [],
  };
  return {
    async start() {
      const sim = await startOpcuaSimulator({
        profile,
        securityModes: ["None"],
        dynamics: false,
      });
      const find = (device: string, point: string) => {
        const h = hosted.get(`${device}.${point}`);
        if (h === undefined)
          throw new RangeError(`opcua source ${id} has no point ${device}.${point}`);
        return h;
      };
      const secure = source.securityMode !== "None";
      return {
        source: id,
        protocol: source.protocol,
        hosts: `${profile.objects.length} objects, ${variables.size} variables`,
        where: sim.endpoint,
        overrides: [
          `sources.${id}.endpoint=${sim.endpoint}`,
          ...(secure
            ? [`sources.${id}.securityMode=None`, `sources.${id}.securityPolicy=None`]
            : []),
          ...(source.identity.type !== "anonymous"
            ? [`sources.${id}.identity={type: anonymous}`]
            : []),
        ],
        devices,
        set(device, point, value) {
          const { key, point: p } = find(device, point);
          const name = `${device}.${point}`;
          const { raw } = guarded(name, value, () => rawValue(p, value));
          // The simulator checks the raw value against the variable's type.
          guarded(name, value, () => sim.set(key, raw as OpcuaSimValue));
        },
        words: () => undefined,
        setWords: () => false,
        writes(device, point) {
          const { key } = find(device, point);
          return sim.writes.filter((w) => w.name === key).length;
        },
        pause: () => sim.pause(),
        resume: () => sim.resume(),
        close: () => sim.close(),
      };
    },
  };
}

/** `run()`, with a value its point cannot hold reported as SimValueError naming both. */
function guarded<T>(point: string, value: unknown, run: () => T): T {
  try {
    return run();
  } catch (e) {
    if (!(e instanceof ShadowgateError) && !(e instanceof SimValueError)) throw e;
    throw new SimValueError(`${point} = ${JSON.stringify(value)}: ${e.message}`);
  }
}
