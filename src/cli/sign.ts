import { ErrorCodes, ExitCodes, ShadowgateError } from "../core/errors.js";
import {
  alibabaCredentials,
  alibabaHost,
  alibabaPort,
  type SecureMode,
  type SignMethod,
} from "../north/dialects/alibaba/sign.js";
import {
  encodeRequest,
  loginParams,
  requestTopic,
  signedEntry,
} from "../north/dialects/alibaba/subdevices.js";

export interface SignOptions {
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  clientId?: string;
  signMethod: string;
  secureMode: string;
  timestamp?: string;
  region: string;
  json?: boolean;
  /** `pk/dn` of the gateway: the device is its sub-device, and its login message is printed too. */
  gateway?: string;
}

/** What a field engineer types into MQTTX or mosquitto_pub, in the order those tools ask. */
export interface SignOutput {
  host: string;
  port: number;
  tls: boolean;
  clientId: string;
  username: string;
  password: string;
  /** With --gateway: the sub-device's login, as the gateway publishes it. */
  login?: { topic: string; payload: string };
}

/**
 * `shadowgate sign`: the CONNECT parameters for one device. The secret goes into the HMAC and
 * nowhere else: not into the output, not into error messages.
 */
export function signCommand(o: SignOptions): number {
  const secureMode = Number(o.secureMode) as SecureMode;
  let out: SignOutput;
  try {
    const creds = alibabaCredentials({
      productKey: o.productKey,
      deviceName: o.deviceName,
      deviceSecret: o.deviceSecret,
      ...(o.clientId === undefined ? {} : { clientId: o.clientId }),
      signMethod: o.signMethod as SignMethod,
      secureMode,
      ...(o.timestamp === undefined ? {} : { timestamp: o.timestamp }),
    });
    out = {
      host: alibabaHost(o.productKey, o.region),
      port: alibabaPort(secureMode),
      tls: secureMode === 2,
      ...creds,
      ...(o.gateway !== undefined && { login: subDeviceLogin(o, o.gateway) }),
    };
  } catch (e) {
    if (!(e instanceof ShadowgateError)) throw e;
    process.stderr.write(`shadowgate sign: ${e.code}: ${e.message}\n`);
    return ExitCodes.USAGE;
  }
  process.stdout.write(o.json ? `${JSON.stringify(out)}\n` : formatSign(out));
  return ExitCodes.OK;
}

/**
 * The sub-device's `combine/login` through the gateway (shadow-protocol.md 2.3): signed with the
 * sub-device's own secret; the timestamp is --timestamp or now (the login needs one).
 */
function subDeviceLogin(o: SignOptions, gateway: string): { topic: string; payload: string } {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(gateway);
  if (!m)
    throw new ShadowgateError(
      ErrorCodes.SIGN_INPUT,
      `--gateway "${gateway}" is not productKey/deviceName`,
    );
  const method = o.signMethod as SignMethod;
  const entry = signedEntry(
    { productKey: o.productKey, deviceName: o.deviceName, deviceSecret: o.deviceSecret },
    method,
    o.timestamp === undefined ? Date.now() : Number(o.timestamp),
  );
  return {
    topic: requestTopic("combine.login", m[1] ?? "", m[2] ?? ""),
    payload: encodeRequest("1", "combine.login", loginParams(entry, method)),
  };
}

/** One `name  value` line per field, the value last so it can be selected to the line end. */
export function formatSign(out: SignOutput): string {
  const rows: Array<[string, string]> = [
    ["host", out.host],
    ["port", String(out.port)],
    ["tls", out.tls ? "yes (securemode=2)" : "no (securemode=3)"],
    ["clientId", out.clientId],
    ["username", out.username],
    ["password", out.password],
    ...(out.login
      ? [
          ["login", out.login.topic] as [string, string],
          ["payload", out.login.payload] as [string, string],
        ]
      : []),
  ];
  return rows.map(([k, v]) => `${k.padEnd(9)} ${v}\n`).join("");
}
