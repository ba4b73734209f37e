/**
 * The server's address space as the driver needs it: NodeRefs resolved to NodeIds (NodeId
 * strings parsed, `nsu=` mapped to the session's namespace index, browse paths translated) and
 * the DataType and ValueRank of the nodes it writes. Both are learned once per session.
 */
import {
  AttributeIds,
  type DataValue,
  DataType,
  findBasicDataType,
  makeBrowsePath,
  NodeId,
  NodeIdType,
  resolveNodeId,
} from "node-opcua";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { NodeRef } from "../../core/samples.js";
import type { LiveSession, Resolved } from "./session.js";
import { type NodeType, severity, statusName } from "./values.js";

/** NodeIds of the refs: NodeId strings parsed, browse paths translated (cached per session). */
export async function resolveNodes(
  live: LiveSession,
  refs: readonly NodeRef[],
): Promise<Resolved[]> {
  const paths = new Map<string, ReturnType<typeof makeBrowsePath>>();
  for (const ref of refs) {
    const node = ref.node;
    if (live.nodes.has(node)) continue;
    if (!node.startsWith("/")) {
      live.nodes.set(node, parseNodeId(node, live.namespaces));
      continue;
    }
    try {
      paths.set(node, makeBrowsePath(resolveNodeId("ObjectsFolder"), node));
    } catch {
      live.nodes.set(node, { error: "BadBrowseNameInvalid" });
    }
  }
  const todo = [...paths.entries()];
  const per = live.limits.maxNodesPerTranslate > 0 ? live.limits.maxNodesPerTranslate : todo.length;
  for (let from = 0; from < todo.length; from += per) {
    const chunk = todo.slice(from, from + per);
    try {
      const results = await live.call(live.session.translateBrowsePath(chunk.map(([, p]) => p)));
      chunk.forEach(([node], j) => {
        const r = results[j];
        const target = r?.targets?.[0]?.targetId;
        if (r && severity(r.statusCode) === "good" && target) {
          live.nodes.set(node, {
            nodeId: new NodeId(target.identifierType, target.value, target.namespace),
          });
        } else {
          live.nodes.set(node, { error: r ? statusName(r.statusCode) : "BadNoMatch" });
        }
      });
    } catch (err) {
      // Not cached: a later call tries again.
      const e = live.failure(err);
      return refs.map((ref) => live.nodes.get(ref.node) ?? { error: e.message });
    }
  }
  return refs.map((ref) => live.nodes.get(ref.node) ?? { error: "BadNodeIdUnknown" });
}

/** DataType (as a built-in type) and ValueRank of a node, read once per session. */
export function typeOf(live: LiveSession, nodeId: NodeId, name: string): Promise<NodeType> {
  const key = nodeId.toString();
  let p = live.types.get(key);
  if (!p) {
    p = readType(live, nodeId, name);
    live.types.set(key, p);
    p.catch(() => live.types.delete(key));
  }
  return p;
}

async function readType(live: LiveSession, nodeId: NodeId, name: string): Promise<NodeType> {
  let values: DataValue[];
  try {
    const attributes = [AttributeIds.DataType, AttributeIds.ValueRank, AttributeIds.Value];
    const per = live.limits.maxNodesPerRead > 0 ? live.limits.maxNodesPerRead : 3;
    values = [];
    for (let from = 0; from < attributes.length; from += per) {
      const chunk = attributes.slice(from, from + per).map((attributeId) => ({
        nodeId,
        attributeId,
      }));
      values.push(...(await live.call(live.session.read(chunk))));
    }
  } catch (err) {
    const e = live.failure(err);
    throw new ShadowgateError(e.code, `cannot read the DataType of ${name}: ${e.message}`);
  }
  const [dt, rank, current] = values;
  if (!dt || severity(dt.statusCode) !== "good") {
    const status = dt ? statusName(dt.statusCode) : "BadNoData";
    throw new ShadowgateError(
      ErrorCodes.OPCUA_WRITE,
      `cannot read the DataType of ${name}: ${status}`,
      { node: name, status },
    );
  }
  const typeId = dt.value.value as NodeId;
  let dataType = builtInType(typeId);
  if (dataType === undefined) {
    const counters = live.calls.counters;
    try {
      counters.requests++;
      dataType = await live.calls.bounded(
        findBasicDataType(live.session, typeId),
        "browse DataType",
      );
    } catch (err) {
      counters.errors++;
      throw new ShadowgateError(
        ErrorCodes.OPCUA_WRITE,
        `cannot find the built-in type of ${name}'s DataType ${typeId.toString()}: ${(err as Error).message}`,
      );
    }
  }
  if (dataType === DataType.Variant || dataType === DataType.Null) {
    // An abstract DataType (BaseDataType): write what the node holds now, if anything.
    const held = current && severity(current.statusCode) !== "bad" ? current.value : undefined;
    dataType = held && held.dataType !== DataType.Null ? held.dataType : undefined;
  }
  const vr: unknown = rank && severity(rank.statusCode) === "good" ? rank.value.value : -1;
  return { dataType, valueRank: typeof vr === "number" ? vr : -1 };
}

/** A ns=0 numeric DataType NodeId as a built-in type; undefined for others (browse for it). */
function builtInType(id: NodeId): DataType | undefined {
  if (id.namespace !== 0 || id.identifierType !== NodeIdType.NUMERIC) return undefined;
  const n = id.value as number;
  if (n >= 1 && n <= 25) return n as DataType;
  switch (n) {
    case 26: // Number
      return DataType.Double;
    case 27: // Integer
      return DataType.Int64;
    case 28: // UInteger
      return DataType.UInt64;
    case 29: // Enumeration
      return DataType.Int32;
    default:
      return undefined;
  }
}

/** A NodeId string; `nsu=<uri>;...` is mapped to the session's namespace index. */
function parseNodeId(node: string, namespaces: readonly string[]): Resolved {
  let text = node;
  const nsu = /^nsu=([^;]+);(.+)$/.exec(node);
  if (nsu) {
    const index = namespaces.indexOf(nsu[1] ?? "");
    if (index < 0) return { error: "BadNodeIdUnknown" };
    text = `ns=${index};${nsu[2]}`;
  }
  try {
    return { nodeId: resolveNodeId(text) };
  } catch {
    return { error: "BadNodeIdInvalid" };
  }
}
