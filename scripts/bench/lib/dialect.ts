/** What differs between the dialects for a benchmark (DIALECT in lib/common.ts picks one). */
import { DIALECT } from "./common.js";
import { shadowPrefix, shadowUpdateTopic } from "./dist.js";

export { DIALECT, named } from "./common.js";

/** The gateway config's cloud section for a broker URL; `gateway` names the gateway itself. */
export function cloudSection(url: string, gateway: string): Record<string, unknown> {
  return DIALECT === "aws"
    ? { dialect: "aws", url, clientId: gateway }
    : { url, productKey: "a1Gateway", deviceName: gateway };
}

/** Where a script publishes a device's reported update without the gateway, and how. */
export function naiveUpdate(
  productKey: string,
  deviceName: string,
  reported: Record<string, unknown>,
): { topic: string; body: string } {
  return DIALECT === "aws"
    ? { topic: `${shadowPrefix(deviceName)}/update`, body: JSON.stringify({ state: { reported } }) }
    : {
        topic: shadowUpdateTopic(productKey, deviceName),
        body: JSON.stringify({ method: "update", state: { reported } }),
      };
}
