import { z } from "zod";
import { cloudUrl, connectionKeys, isTlsUrl, syncKeys } from "../../cloud-config.js";
import type {
  CheckedDevice,
  CloudCheckContext,
  CloudConfigProblem,
  ConnectionIdentity,
} from "../../dialect.js";
import { estimateReportedBytes, MAX_DEPTH, MAX_DOCUMENT_BYTES } from "./codec.js";

/**
 * The `cloud` section for AWS IoT Core: the account's device data endpoint and the thing's
 * certificate (mutual TLS), plus the keys every dialect has.
 */
export const awsCloudSchema = z
  .object({
    dialect: z.literal("aws").describe("Cloud shadow dialect"),
    url: cloudUrl.describe(
      "mqtts://<prefix>-ats.iot.<region>.amazonaws.com:8883 (or :443, with ALPN x-amzn-mqtt-ca)",
    ),
    ...connectionKeys,
    clientId: z
      .string()
      .min(1)
      .max(128)
      .describe(
        "MQTT client id; the policy must allow iot:Connect for it (often the gateway's thing name)",
      ),
    ...syncKeys,
  })
  .strict();

export type AwsCloudConfig = z.output<typeof awsCloudSchema>;

/** AWS's own endpoints take only mutual TLS; another broker (mosquitto, the local service) may not. */
const isAwsEndpoint = (url: string): boolean =>
  /^[a-z]+:\/\/[^/]*\.amazonaws\.com(:\d+)?(\/|$)/.test(url);

/**
 * Over port 443 AWS IoT tells MQTT from HTTPS by ALPN (shadow-protocol.md 3, "x-amzn-mqtt-ca").
 */
const needsAlpn = (url: string): boolean => /^mqtts:\/\/[^/]*:443(\/|$)/.test(url);

export function awsConnection(cloud: AwsCloudConfig): ConnectionIdentity {
  return {
    url: cloud.url,
    clientId: cloud.clientId,
    ...(cloud.username !== undefined && { username: cloud.username }),
    ...(cloud.password !== undefined && { password: cloud.password }),
    ...(needsAlpn(cloud.url) && { alpn: ["x-amzn-mqtt-ca"] }),
  };
}

/**
 * Rules beyond the schema: AWS's endpoint needs the thing's certificate and key; every device
 * must name a thing (not an Alibaba triple), nest its points at most six deep, and, a warning,
 * have a reported document that fits the 8 KB the shadow holds.
 */
export function checkAwsCloud(
  cloud: AwsCloudConfig,
  { devices }: CloudCheckContext,
): CloudConfigProblem[] {
  const found: CloudConfigProblem[] = [];
  if (isAwsEndpoint(cloud.url) && (cloud.tls?.cert === undefined || cloud.tls.key === undefined)) {
    found.push({
      path: ["tls"],
      message:
        "AWS IoT takes only mutual TLS: give tls.cert and tls.key (the thing's certificate and private key) and tls.ca (AmazonRootCA1.pem)",
    });
  }
  if (!isTlsUrl(cloud.url) && isAwsEndpoint(cloud.url)) {
    found.push({ path: ["url"], message: "AWS IoT needs TLS: write mqtts://…:8883" });
  }
  devices.forEach((d, i) => found.push(...checkDevice(d, i)));
  return found;
}

function checkDevice(d: CheckedDevice, i: number): CloudConfigProblem[] {
  if (d.addressing !== "aws") {
    return [
      {
        device: i,
        path: ["device"],
        message: `cloud.dialect is aws: the device needs thingName (and shadowName for a named shadow), not productKey/deviceName`,
      },
    ];
  }
  const found: CloudConfigProblem[] = [];
  for (const p of d.points) {
    if (p.path.length > MAX_DEPTH) {
      found.push({
        device: i,
        path: ["points", p.name],
        message: `${p.name} nests ${p.path.length} deep; an AWS shadow takes at most ${MAX_DEPTH} levels below reported`,
      });
    }
  }
  const bytes = estimateReportedBytes(d.points);
  if (bytes > MAX_DOCUMENT_BYTES) {
    found.push({
      device: i,
      path: ["points"],
      warning: true,
      message: `the reported document of ${d.deviceName} could reach about ${bytes} bytes with its command outcomes; an AWS shadow holds ${MAX_DOCUMENT_BYTES} (updates are split, but the cloud refuses a document over the limit): move points to a named shadow`,
    });
  }
  return found;
}
