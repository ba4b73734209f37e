import { createHmac, timingSafeEqual } from "node:crypto";
import { ErrorCodes, ShadowgateError, type ErrorCode } from "../../../core/errors.js";

/**
 * Alibaba Cloud IoT MQTT CONNECT credentials (doc-detail 73742, shadow-protocol.md 2.1).
 *
 * The password is the HMAC in lower-case hex. Alibaba's doc shows no case rule, and both cases
 * are in use against the same endpoints: iotkit-embedded hex-encodes in upper case
 * (dev_sign_mqtt.c `_hex2str`), Alibaba's Node SDK uses `digest("hex")` (lower case,
 * alibabacloud-iot-device-sdk src/utils.js), and the worked example circulated from Alibaba's
 * developer community (clientId SN1928339, password b2488041f6...) is lower case. So the cloud
 * compares case-insensitively; we emit lower case because it is what node:crypto gives and what
 * that example shows, and our verifier accepts either.
 */

export const SIGN_METHODS = ["hmacsha256", "hmacsha1", "hmacmd5"] as const;
export type SignMethod = (typeof SIGN_METHODS)[number];

/** 2 = direct TLS, 3 = direct TCP. The SDK's -1 (TLS guider) and 8 (iTLS/ID2) are not spoken. */
export const SECURE_MODES = [2, 3] as const;
export type SecureMode = (typeof SECURE_MODES)[number];

/** The doc's default when the mqttClientId names no signmethod (doc-detail 73742). */
const DEFAULT_SIGN_METHOD_ON_WIRE: SignMethod = "hmacmd5";

const NODE_ALGORITHM: Record<SignMethod, string> = {
  hmacsha256: "sha256",
  hmacsha1: "sha1",
  hmacmd5: "md5",
};

/** The doc caps the bare clientId at 64 characters. */
const MAX_CLIENT_ID = 64;

export interface AlibabaCredentialInput {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  /** Defaults to `${productKey}.${deviceName}`, as iotkit-embedded does. */
  clientId?: string;
  signMethod?: SignMethod;
  secureMode: SecureMode;
  /** Milliseconds since the epoch. Optional on the wire: omitted, it is left out of both places. */
  timestamp?: string | number;
}

export interface MqttCredentials {
  /** The full mqttClientId: `id|securemode=M,signmethod=S[,timestamp=T]|`. */
  clientId: string;
  username: string;
  password: string;
}

export const isSignMethod = (s: unknown): s is SignMethod =>
  typeof s === "string" && (SIGN_METHODS as readonly string[]).includes(s);

/** `${productKey}.iot-as-mqtt.${region}.aliyuncs.com`: the public instance's MQTT endpoint. */
export function alibabaHost(productKey: string, region: string): string {
  return `${productKey}.iot-as-mqtt.${region}.aliyuncs.com`;
}

/**
 * The doc gives port 1883 for the public endpoint; iotkit-embedded connects on 443 when built
 * with TLS (dev_sign_mqtt.c), which also passes networks that only let 443 out.
 */
export function alibabaPort(secureMode: SecureMode): number {
  return secureMode === 2 ? 443 : 1883;
}

/** Computes mqttClientId, mqttUsername and mqttPassword. Throws SG_SIGN_INPUT on bad input. */
export function alibabaCredentials(input: AlibabaCredentialInput): MqttCredentials {
  const signMethod = input.signMethod ?? "hmacsha256";
  // The types already say this; the CLI and config files reach here with plain strings.
  if (!isSignMethod(signMethod)) {
    throw signInput(
      `unknown sign method "${String(signMethod)}": expected ${SIGN_METHODS.join(", ")}`,
    );
  }
  if (!(SECURE_MODES as readonly unknown[]).includes(input.secureMode)) {
    throw signInput(
      `unknown secure mode "${String(input.secureMode)}": expected 2 (TLS) or 3 (TCP)`,
    );
  }
  for (const key of ["productKey", "deviceName", "deviceSecret"] as const) {
    if (typeof input[key] !== "string" || input[key] === "") throw signInput(`${key} is empty`);
  }
  const clientId = input.clientId ?? `${input.productKey}.${input.deviceName}`;
  checkClientId(clientId);
  const timestamp = input.timestamp === undefined ? undefined : checkTimestamp(input.timestamp);

  const extras = [`securemode=${input.secureMode}`, `signmethod=${signMethod}`];
  if (timestamp !== undefined) extras.push(`timestamp=${timestamp}`);
  return {
    clientId: `${clientId}|${extras.join(",")}|`,
    username: `${input.deviceName}&${input.productKey}`,
    password: sign(signMethod, input.deviceSecret, {
      clientId,
      deviceName: input.deviceName,
      productKey: input.productKey,
      timestamp,
    }),
  };
}

/** The parts of an mqttClientId that the password depends on. */
export interface ParsedClientId {
  /** The bare clientId, before the first `|`. */
  clientId: string;
  secureMode: SecureMode;
  signMethod: SignMethod;
  timestamp?: string;
  /** Every `k=v` pair as sent, SDK extras (`_v`, `lan`, `gw`, `ext`, `a`, `v`) included. */
  params: Record<string, string>;
}

export type ParseClientIdResult = ({ ok: true } & ParsedClientId) | { ok: false; reason: string };

/** Parses `id|k=v,k=v|`; never throws. */
export function parseAlibabaClientId(mqttClientId: string): ParseClientIdResult {
  const open = mqttClientId.indexOf("|");
  if (open < 0 || !mqttClientId.endsWith("|") || open === mqttClientId.length - 1) {
    return { ok: false, reason: "clientId has no |securemode=…,signmethod=…| part" };
  }
  const clientId = mqttClientId.slice(0, open);
  if (clientId === "") return { ok: false, reason: "clientId is empty before the |…| part" };
  const body = mqttClientId.slice(open + 1, -1);
  if (body.includes("|")) return { ok: false, reason: "clientId has more than one |…| part" };

  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const pair of body.split(",")) {
    // SDKs have been seen to leave a trailing comma; an empty pair carries nothing.
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) return { ok: false, reason: `clientId parameter "${pair}" is not key=value` };
    const key = pair.slice(0, eq);
    if (key in params) return { ok: false, reason: `clientId parameter "${key}" appears twice` };
    params[key] = pair.slice(eq + 1);
  }

  const mode = params["securemode"];
  if (mode === undefined) return { ok: false, reason: "clientId has no securemode" };
  const secureMode = Number(mode);
  if (!/^\d+$/.test(mode) || !(SECURE_MODES as readonly number[]).includes(secureMode)) {
    return { ok: false, reason: `unsupported securemode "${mode}": expected 2 or 3` };
  }
  const signMethod = params["signmethod"] ?? DEFAULT_SIGN_METHOD_ON_WIRE;
  if (!isSignMethod(signMethod)) {
    return {
      ok: false,
      reason: `unknown signmethod "${signMethod}": expected ${SIGN_METHODS.join(", ")}`,
    };
  }
  const timestamp = params["timestamp"];
  if (timestamp !== undefined && !/^\d+$/.test(timestamp)) {
    return { ok: false, reason: `timestamp "${timestamp}" is not a whole number of milliseconds` };
  }
  return {
    ok: true,
    clientId,
    secureMode: secureMode as SecureMode,
    signMethod,
    ...(timestamp === undefined ? {} : { timestamp }),
    params: { ...params },
  };
}

/** What a CONNECT packet carries; the password arrives as a Buffer from MQTT brokers. */
export interface ConnectCredentials {
  clientId: string;
  username: string | undefined;
  password: string | Buffer | undefined;
}

export type VerifyResult =
  | ({ ok: true; productKey: string; deviceName: string } & ParsedClientId)
  | { ok: false; code: ErrorCode; reason: string };

/**
 * Checks a CONNECT against the device secrets, for the local cloud service. Never throws.
 * SG_AUTH_CLIENT_ID: the clientId or username cannot be parsed (CONNACK "identifier rejected");
 * SG_AUTH_DENIED: unknown device or wrong password (CONNACK "bad user name or password").
 * Reasons never contain the secret or the expected password.
 */
export function verifyAlibabaPassword(
  connect: ConnectCredentials,
  secretOf: (productKey: string, deviceName: string) => string | undefined,
): VerifyResult {
  const parsed = parseAlibabaClientId(connect.clientId);
  if (!parsed.ok) return { ok: false, code: ErrorCodes.AUTH_CLIENT_ID, reason: parsed.reason };

  const username = connect.username ?? "";
  const amp = username.indexOf("&");
  if (amp <= 0 || amp === username.length - 1 || username.indexOf("&", amp + 1) >= 0) {
    return {
      ok: false,
      code: ErrorCodes.AUTH_CLIENT_ID,
      reason: `username "${username}" is not deviceName&productKey`,
    };
  }
  const deviceName = username.slice(0, amp);
  const productKey = username.slice(amp + 1);

  const secret = secretOf(productKey, deviceName);
  if (secret === undefined || secret === "") {
    return {
      ok: false,
      code: ErrorCodes.AUTH_DENIED,
      reason: `unknown device ${productKey}/${deviceName}`,
    };
  }
  const expected = sign(parsed.signMethod, secret, {
    clientId: parsed.clientId,
    deviceName,
    productKey,
    timestamp: parsed.timestamp,
  });
  const given =
    connect.password === undefined
      ? ""
      : typeof connect.password === "string"
        ? connect.password
        : connect.password.toString("latin1");
  // Lower-casing both sides accepts iotkit's upper-case hex; see the top of this file.
  const a = Buffer.from(expected, "latin1");
  const b = Buffer.from(given.toLowerCase(), "latin1");
  // The length of an HMAC is public (it follows from signmethod), so an early return on a length
  // mismatch leaks nothing; timingSafeEqual itself requires equal lengths.
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    return {
      ok: false,
      code: ErrorCodes.AUTH_DENIED,
      reason: `wrong password for ${productKey}/${deviceName} (${parsed.signMethod})`,
    };
  }
  return {
    ok: true,
    productKey,
    deviceName,
    clientId: parsed.clientId,
    secureMode: parsed.secureMode,
    signMethod: parsed.signMethod,
    ...(parsed.timestamp === undefined ? {} : { timestamp: parsed.timestamp }),
    params: parsed.params,
  };
}

/**
 * content = the submitted parameters sorted by name, each as name + value (doc-detail 73742);
 * the same content signs a sub-device's topology entry and login (shadow-protocol.md 2.3).
 */
export function sign(
  method: SignMethod,
  secret: string,
  p: { clientId: string; deviceName: string; productKey: string; timestamp: string | undefined },
): string {
  // Already in sorted order: clientId < deviceName < productKey < timestamp.
  let content = `clientId${p.clientId}deviceName${p.deviceName}productKey${p.productKey}`;
  if (p.timestamp !== undefined) content += `timestamp${p.timestamp}`;
  return createHmac(NODE_ALGORITHM[method], secret).update(content, "utf8").digest("hex");
}

function checkClientId(clientId: string): void {
  if (typeof clientId !== "string" || clientId === "") throw signInput("clientId is empty");
  if (clientId.length > MAX_CLIENT_ID) {
    throw signInput(`clientId is ${clientId.length} characters; at most ${MAX_CLIENT_ID}`);
  }
  // The cloud reads everything from the first `|` on as the extension part.
  if (clientId.includes("|")) throw signInput(`clientId "${clientId}" contains "|"`);
}

function checkTimestamp(ts: string | number): string {
  if (typeof ts === "number") {
    if (!Number.isSafeInteger(ts) || ts < 0) {
      throw signInput(`timestamp ${ts} is not a whole, non-negative number of milliseconds`);
    }
    return String(ts);
  }
  if (typeof ts !== "string" || !/^\d+$/.test(ts)) {
    throw signInput(`timestamp "${String(ts)}" is not a whole number of milliseconds`);
  }
  return ts;
}

function signInput(message: string): ShadowgateError {
  return new ShadowgateError(ErrorCodes.SIGN_INPUT, message);
}
