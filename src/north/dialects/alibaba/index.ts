import { isNewByTimestamp, type Dialect, type Inbound } from "../../dialect.js";
import {
  decodeShadowMessage,
  encodeClearDesired,
  encodeGet,
  encodeUpdate,
  isConflict,
  isPermanentError,
  isSuccessCode,
} from "./codec.js";
import { alibabaConnection, checkAlibabaCloud, type AlibabaCloudConfig } from "./config.js";
import { MAX_ATTRIBUTES, type MetadataSection } from "./messages.js";
import { alibabaSession } from "./session.js";
import { SubDeviceCodes } from "./subdevices.js";
import { shadowGetTopic, shadowUpdateTopic } from "./topics.js";

/** Top-level desired attribute -> its metadata timestamp (seconds). */
function timestamps(meta: MetadataSection | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [attr, m] of Object.entries(meta ?? {})) {
    if (typeof m.timestamp === "number") out[attr] = m.timestamp;
  }
  return out;
}

/**
 * The Alibaba Cloud IoT shadow dialect (shadow-protocol.md 1): requests on /shadow/update,
 * replies and control pushes on /shadow/get, versions strictly greater than the cloud's,
 * desired cleared with the string "null", 407 counted as success as iotkit-embedded does. The
 * gateway's own login is the signed CONNECT; its PLCs are sub-devices with a session step
 * (session.ts, 2.3): topology, then login before their shadow topics are used.
 */
export const alibabaDialect: Dialect<AlibabaCloudConfig> = {
  name: "alibaba",
  connection: alibabaConnection,
  check: checkAlibabaCloud,
  session: alibabaSession,
  // Nothing documents a size, a depth or a cap on requests in flight (shadow-protocol.md 1.5).
  limits: { maxAttributes: MAX_ATTRIBUTES },
  topics(productKey, deviceName) {
    // Requests, get included, go to the topic named update; replies and pushes come on get.
    const request = shadowUpdateTopic(productKey, deviceName);
    return {
      subscriptions: [shadowGetTopic(productKey, deviceName)],
      requests: { get: request, report: request, clear: request },
    };
  },
  versionRule: "above",
  encodeReport: encodeUpdate,
  // Alibaba clears the whole section: "desired":"null".
  encodeClearDesired: (_points, version, clientToken) => encodeClearDesired(version, clientToken),
  encodeGet,
  nextVersion: (lastKnown) => lastKnown + 1,
  // Alibaba's metadata timestamps are whole seconds.
  timestampMs: (ts) => ts * 1000,
  isNewCommand: isNewByTimestamp,
  classify: (code) =>
    isSuccessCode(code)
      ? "success"
      : isConflict(code)
        ? "conflict"
        : code === SubDeviceCodes.SESSION
          ? "session"
          : isPermanentError(code)
            ? "permanent"
            : "retry",
  decode(topic, payload) {
    const r = decodeShadowMessage(topic, payload);
    if (!r.ok) return r;
    const m = r.message;
    let message: Inbound;
    if (m.kind === "control") {
      message = {
        kind: "control",
        version: m.version,
        shadow: {
          desired: m.desired,
          desiredTimestamps: Object.fromEntries(
            Object.entries(m.desiredMetadata).map(([k, v]) => [k, v.timestamp]),
          ),
          reported: m.reported ?? {},
        },
      };
    } else if (m.status === "success") {
      message = {
        kind: "reply",
        status: "success",
        version: m.version,
        ...(m.clientToken !== undefined && { clientToken: m.clientToken }),
        ...(m.state && {
          shadow: {
            desired: typeof m.state.desired === "object" ? m.state.desired : {},
            desiredTimestamps: timestamps(m.metadata?.desired),
            reported: typeof m.state.reported === "object" ? m.state.reported : {},
          },
        }),
      };
    } else {
      message = {
        kind: "reply",
        status: "error",
        code: m.code,
        message: m.message,
        ...(m.version !== undefined && { version: m.version }),
        ...(m.clientToken !== undefined && { clientToken: m.clientToken }),
      };
    }
    return { ok: true, productKey: r.productKey, deviceName: r.deviceName, message };
  },
};
