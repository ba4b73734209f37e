import { ExitCodes, ShadowgateError } from "../core/errors.js";
import {
  alibabaCredentials,
  alibabaHost,
  alibabaPort,
  type SecureMode,
  type SignMethod,
} from "../north/dialects/alibaba/sign.js";

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
}

/** What a field engineer types into MQTTX or mosquitto_pub, in the order those tools ask. */
export interface SignOutput {
  host: string;
  port: number;
  tls: boolean;
  clientId: string;
  username: string;
  password: string;
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
    };
  } catch (e) {
    if (!(e instanceof ShadowgateError)) throw e;
    process.stderr.write(`shadowgate sign: ${e.code}: ${e.message}\n`);
    return ExitCodes.USAGE;
  }
  process.stdout.write(o.json ? `${JSON.stringify(out)}\n` : formatSign(out));
  return ExitCodes.OK;
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
  ];
  return rows.map(([k, v]) => `${k.padEnd(9)} ${v}\n`).join("");
}
