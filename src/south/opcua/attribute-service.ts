/**
 * Read and Write of Value attributes on a live session.
 *
 * **Reads** are one batched Read, split by the server's MaxNodesPerRead; a node that cannot be
 * resolved or read gets a bad sample, never an exception.
 *
 * **Writes** use the node's own DataType and ValueRank (read once per session), refuse what the
 * type cannot hold before anything is sent, and throw SG_OPCUA_WRITE naming the status code
 * (BadNotWritable, BadTypeMismatch, ...) when the server refuses.
 */
import { AttributeIds, type StatusCode } from "node-opcua";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { NodeRef, ValueSample } from "../../core/samples.js";
import type { JsonValue } from "../../core/types.js";
import { resolveNodes, typeOf } from "./address-space.js";
import { badSample, dataValueSample } from "./samples.js";
import type { LiveSession } from "./session.js";
import { jsonToVariant, severity, statusName } from "./values.js";

export async function readValues(
  live: LiveSession,
  nodes: readonly NodeRef[],
  now: () => number,
): Promise<ValueSample[]> {
  const resolved = await resolveNodes(live, nodes);
  const out: (ValueSample | undefined)[] = nodes.map((ref, i) => {
    const r = resolved[i];
    return r && "error" in r ? badSample(ref.key, ErrorCodes.OPCUA_BAD, r.error, now()) : undefined;
  });
  const wanted = nodes.flatMap((ref, i) => {
    const r = resolved[i];
    return r && "nodeId" in r ? [{ index: i, ref, nodeId: r.nodeId }] : [];
  });
  const per = live.limits.maxNodesPerRead > 0 ? live.limits.maxNodesPerRead : wanted.length;
  for (let from = 0; from < wanted.length; from += per) {
    const chunk = wanted.slice(from, from + per);
    try {
      const values = await live.call(
        live.session.read(
          chunk.map((w) => ({ nodeId: w.nodeId, attributeId: AttributeIds.Value })),
          0,
        ),
      );
      const at = now();
      chunk.forEach((w, j) => {
        const dv = values[j];
        out[w.index] = dv
          ? dataValueSample(w.ref.key, dv, at)
          : badSample(w.ref.key, ErrorCodes.OPCUA_BAD, "no result in the Read response", now());
      });
    } catch (err) {
      const e = live.failure(err);
      for (const w of chunk) out[w.index] = badSample(w.ref.key, e.code, e.message, now());
    }
  }
  return out.map(
    (s, i) => s ?? badSample(nodes[i]?.key ?? "", ErrorCodes.OPCUA_BAD, "not read", now()),
  );
}

export async function writeValue(
  live: LiveSession,
  node: NodeRef,
  value: JsonValue,
): Promise<void> {
  const [resolved] = await resolveNodes(live, [node]);
  if (!resolved || "error" in resolved) {
    throw new ShadowgateError(
      ErrorCodes.OPCUA_WRITE,
      `cannot write ${node.node}: ${resolved && "error" in resolved ? resolved.error : "unresolved"}`,
      { node: node.node, status: resolved && "error" in resolved ? resolved.error : undefined },
    );
  }
  const type = await typeOf(live, resolved.nodeId, node.node);
  let variant;
  try {
    variant = jsonToVariant(type, value);
  } catch (err) {
    if (err instanceof ShadowgateError) {
      throw new ShadowgateError(err.code, `${node.node}: ${err.message}`, {
        ...err.details,
        node: node.node,
      });
    }
    throw err;
  }
  let status: StatusCode;
  try {
    status = await live.call(
      live.session.write({
        nodeId: resolved.nodeId,
        attributeId: AttributeIds.Value,
        value: { value: variant },
      }),
    );
  } catch (err) {
    const e = live.failure(err);
    throw new ShadowgateError(e.code, `write to ${node.node} failed: ${e.message}`, {
      node: node.node,
    });
  }
  if (severity(status) === "bad") {
    const name = statusName(status);
    throw new ShadowgateError(ErrorCodes.OPCUA_WRITE, `write to ${node.node} refused: ${name}`, {
      node: node.node,
      status: name,
    });
  }
}
