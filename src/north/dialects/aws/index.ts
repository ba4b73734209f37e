import { isNewByTimestamp, type Dialect, type ReplyClass } from "../../dialect.js";
import {
  AwsErrorCodes,
  decodeShadowMessage,
  encodeClearDesired,
  encodeGet,
  encodeReport,
  MAX_DEPTH,
  MAX_DOCUMENT_BYTES,
  MAX_IN_FLIGHT,
  splitReport,
} from "./codec.js";
import { awsConnection, checkAwsCloud, type AwsCloudConfig } from "./config.js";
import { replyFilters, shadowOf, shadowPrefix } from "./topics.js";

/**
 * The AWS IoT Device Shadow dialect (shadow-protocol.md 3): one topic per operation, replies
 * on /accepted and /rejected, desired changes on /update/delta, versions by equality, JSON null
 * to clear, 8 KB documents, depth 6 and 10 requests in flight per connection. Things log in by
 * certificate on the connection: no per-device session step.
 */
export const awsDialect: Dialect<AwsCloudConfig> = {
  name: "aws",
  connection: awsConnection,
  check: checkAwsCloud,
  limits: {
    maxDocumentBytes: MAX_DOCUMENT_BYTES,
    maxDepth: MAX_DEPTH,
    maxInFlight: MAX_IN_FLIGHT,
  },
  versionRule: "equal",
  topics(thingName, localName) {
    const { shadowName } = shadowOf(thingName, localName);
    const p = shadowPrefix(thingName, shadowName);
    return {
      subscriptions: replyFilters(thingName, shadowName),
      requests: { get: `${p}/get`, report: `${p}/update`, clear: `${p}/update` },
    };
  },
  encodeReport: (reported, _version, clientToken) => encodeReport(reported, clientToken),
  splitReport,
  encodeClearDesired,
  encodeGet,
  decode: decodeShadowMessage,
  // The update names the cloud's current version; the cloud adds one.
  nextVersion: (lastKnown) => lastKnown,
  // AWS metadata timestamps are whole seconds.
  timestampMs: (ts) => ts * 1000,
  isNewCommand: isNewByTimestamp,
  classify: classifyAws,
};

/**
 * 409 re-reads (reported: local wins, desired: cloud wins, as Greengrass's shadow manager
 * merges); 404 on a get means no shadow yet, which the full report after it creates; 413 on a
 * report sends it again in smaller parts; 429 and 5xx go again after a pause; the rest (400,
 * 401, 403, 404, 413 on a clear, 415) cannot succeed as sent.
 */
export function classifyAws(code: number, kind: "get" | "report" | "clear"): ReplyClass {
  if (code === AwsErrorCodes.VERSION_CONFLICT) return "conflict";
  if (code === AwsErrorCodes.NOT_FOUND && kind === "get") return "success";
  if (code === AwsErrorCodes.TOO_LARGE && kind === "report") return "too-large";
  if (code === AwsErrorCodes.TOO_MANY_REQUESTS || code >= AwsErrorCodes.INTERNAL) return "retry";
  return "permanent";
}
