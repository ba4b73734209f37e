import { readFile } from "node:fs/promises";
import { ErrorCodes, ExitCodes, ShadowgateError } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { startAwsCloudService } from "../sim/cloud/aws/index.js";
import { startCloudService, type DeviceSecret } from "../sim/cloud/index.js";

export interface CloudCommandOptions {
  mqttPort: string;
  httpPort: string;
  broker?: string;
  db?: string;
  deviceSecret: string[];
  secrets?: string;
  strictSessions?: boolean;
  dialect: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  replyDelay?: string;
}

function port(flag: string, text: string): number | undefined {
  const n = Number(text);
  if (text.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535) {
    process.stderr.write(`${flag} ${text} is not a TCP port\n`);
    return undefined;
  }
  return n;
}

/** `pk/dn=secret`; the secret may itself contain "=" or "/". */
function deviceSecret(text: string): DeviceSecret | undefined {
  const m = /^([^/=]+)\/([^/=]+)=(.+)$/.exec(text);
  if (!m) return undefined;
  return { productKey: m[1] ?? "", deviceName: m[2] ?? "", deviceSecret: m[3] ?? "" };
}

/**
 * `shadowgate cloud`: the local cloud shadow service, so that the whole loop runs without a
 * cloud account. Long-running: resolves undefined and exits on SIGINT or SIGTERM.
 */
export async function cloudCommand(o: CloudCommandOptions): Promise<number | undefined> {
  const mqttPort = port("--mqtt-port", o.mqttPort);
  const httpPort = port("--http-port", o.httpPort);
  if (mqttPort === undefined || httpPort === undefined) return ExitCodes.USAGE;
  if (o.broker !== undefined && !/^mqtts?:\/\//.test(o.broker)) {
    process.stderr.write(`--broker ${o.broker} is not an mqtt:// or mqtts:// URL\n`);
    return ExitCodes.USAGE;
  }
  if (o.dialect === "aws") return awsCloud(o, mqttPort, httpPort);
  if (o.dialect !== "alibaba") {
    process.stderr.write(`--dialect ${o.dialect}: alibaba or aws\n`);
    return ExitCodes.USAGE;
  }
  const secrets: DeviceSecret[] = [];
  for (const text of o.deviceSecret) {
    const parsed = deviceSecret(text);
    if (parsed === undefined) {
      // Only the part before "=" is echoed: the rest is a secret.
      process.stderr.write(
        `--device-secret ${text.split("=")[0] ?? ""}=… is not productKey/deviceName=secret\n`,
      );
      return ExitCodes.USAGE;
    }
    secrets.push(parsed);
  }

  let running;
  try {
    running = await startCloudService({
      mqttPort,
      httpPort,
      ...(o.broker !== undefined && { brokerUrl: o.broker }),
      ...(o.db !== undefined && { dbFile: o.db }),
      deviceSecrets: secrets,
      ...(o.secrets !== undefined && { secretsFile: o.secrets }),
      strictSessions: o.strictSessions === true,
      logger: createLogger(),
    });
  } catch (e) {
    if (e instanceof ShadowgateError) {
      process.stderr.write(`${e.message}\n`);
      return e.code === ErrorCodes.USAGE
        ? ExitCodes.USAGE
        : e.code.startsWith("SG_CONFIG")
          ? ExitCodes.CONFIG
          : ExitCodes.RUNTIME;
    }
    throw e;
  }
  const broker =
    o.broker === undefined
      ? `embedded broker, ${running.credentialsChecked ? "credentials checked against the device secrets" : "any client accepted"}`
      : "client of an external broker: control pushes go out whether or not the device listens";
  const sessions = o.strictSessions
    ? "strict: a shadow needs its device's connection or a sub-device login"
    : "sub-device requests answered; shadows served without a login";
  return serve(running, [
    "Cloud shadow service",
    `  MQTT  ${running.mqttUrl}  (${broker})`,
    `  HTTP  ${running.httpUrl}  (GET|POST /shadows/{pk}/{dn}, GET /devices/{pk}/{dn}, POST .../disable|enable, GET /healthz)`,
    `  data  ${o.db ?? "in memory"}`,
    `  sessions  ${sessions}`,
  ]);
}

/** Prints what runs where, and closes it on SIGINT or SIGTERM. */
function serve(running: { close(): Promise<void> }, lines: readonly string[]): undefined {
  process.stdout.write(`${lines.join("\n")}\n`);
  const stop = (): void => {
    void running.close().then(() => process.exit(ExitCodes.OK));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}

/** `shadowgate cloud --dialect aws`: the AWS IoT Device Shadow service, optionally over mTLS. */
async function awsCloud(
  o: CloudCommandOptions,
  mqttPort: number,
  httpPort: number,
): Promise<number | undefined> {
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    process.stderr.write("--tls-cert and --tls-key go together\n");
    return ExitCodes.USAGE;
  }
  if (o.tlsCa !== undefined && o.tlsCert === undefined) {
    process.stderr.write("--tls-ca needs --tls-cert and --tls-key: the broker must speak TLS\n");
    return ExitCodes.USAGE;
  }
  const delay = o.replyDelay === undefined ? 0 : Number(o.replyDelay);
  if (!Number.isInteger(delay) || delay < 0) {
    process.stderr.write(`--reply-delay ${o.replyDelay ?? ""} is not a whole number of ms\n`);
    return ExitCodes.USAGE;
  }
  let tls: { cert: Buffer; key: Buffer; ca?: Buffer } | undefined;
  try {
    if (o.tlsCert !== undefined && o.tlsKey !== undefined) {
      tls = {
        cert: await readFile(o.tlsCert),
        key: await readFile(o.tlsKey),
        ...(o.tlsCa !== undefined && { ca: await readFile(o.tlsCa) }),
      };
    }
  } catch (e) {
    process.stderr.write(`cannot read a TLS file: ${(e as Error).message}\n`);
    return ExitCodes.CONFIG;
  }
  let running;
  try {
    running = await startAwsCloudService({
      mqttPort,
      httpPort,
      ...(o.broker !== undefined && { brokerUrl: o.broker }),
      ...(tls && { tls }),
      replyDelayMs: delay,
      logger: createLogger(),
    });
  } catch (e) {
    if (e instanceof ShadowgateError) {
      process.stderr.write(`${e.message}\n`);
      return ExitCodes.RUNTIME;
    }
    throw e;
  }
  return serve(running, [
    "Cloud shadow service (AWS IoT Device Shadow)",
    `  MQTT  ${running.mqttUrl}  (${o.broker !== undefined ? "client of an external broker" : tls?.ca ? "mutual TLS: client certificates checked" : "any client accepted"})`,
    `  HTTP  ${running.httpUrl}  (GET|POST /things/{thing}/shadow[?name=shadow], GET /healthz)`,
    "  data  in memory",
  ]);
}
