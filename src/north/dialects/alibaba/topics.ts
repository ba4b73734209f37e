/**
 * Alibaba Cloud IoT shadow topics (doc-detail 53964). Requests, `get` included, go to the topic
 * named update; every reply and every control push arrives on the topic named get.
 */
export const shadowUpdateTopic = (productKey: string, deviceName: string): string =>
  `/shadow/update/${productKey}/${deviceName}`;

export const shadowGetTopic = (productKey: string, deviceName: string): string =>
  `/shadow/get/${productKey}/${deviceName}`;

/** Every device's replies and pushes, for a gateway or a service that serves many. */
export const SHADOW_GET_WILDCARD = "/shadow/get/+/+";
export const SHADOW_UPDATE_WILDCARD = "/shadow/update/+/+";

/** productKey and deviceName from a shadow topic, or undefined when it is not one. */
export function parseShadowTopic(
  topic: string,
): { kind: "update" | "get"; productKey: string; deviceName: string } | undefined {
  const m = /^\/shadow\/(update|get)\/([^/]+)\/([^/]+)$/.exec(topic);
  if (!m) return undefined;
  return { kind: m[1] as "update" | "get", productKey: m[2] ?? "", deviceName: m[3] ?? "" };
}
