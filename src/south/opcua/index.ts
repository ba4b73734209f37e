/**
 * The one door to the OPC UA driver. node-opcua is large (~90 MB of RSS once loaded), so it is
 * loaded only when a source needs it: this module imports the driver dynamically and nothing
 * else in the gateway may import ./opcua-driver.js (or node-opcua) statically.
 */
import path from "node:path";
import { nodePoints } from "../../mapping/node-points.js";
import type { DevicePlan, NodeDevicePlan } from "../../mapping/types.js";
import type { NodeDriver } from "../driver.js";
import type { ConfigProblem, Protocol, SourceContext } from "../protocol.js";
import { nodeChannel } from "./device-channel.js";
import type { OpcuaSourceConfig } from "./schema.js";

export const opcuaProtocol: Protocol<OpcuaSourceConfig> = {
  kind: "opcua",
  keys: ["opcua"],
  label: "OPC UA",
  points: nodePoints,

  checkSources(sources) {
    const found: ConfigProblem[] = [];
    for (const [id, source] of sources) {
      if (source.securityMode !== "None" && source.securityPolicy === "None")
        found.push({
          path: ["sources", id, "securityPolicy"],
          message: `securityMode ${source.securityMode} needs a security policy; use Basic256Sha256 (or leave securityPolicy out)`,
        });
    }
    return found;
  },

  async open(id, config, context) {
    const driver = await createOpcuaDriver(id, config, context);
    return {
      id,
      start: () => driver.start(),
      stop: () => driver.stop(),
      health: () => driver.health(),
      channel: (device) => nodeChannel(nodePlan(device), driver),
    };
  },
};

/**
 * The driver for a source config, loading node-opcua now (the first time). The source's door
 * (open above) and B10, which measures the driver itself, use it.
 */
export async function createOpcuaDriver(
  id: string,
  config: OpcuaSourceConfig,
  { dataDir, configDir, log }: SourceContext,
): Promise<NodeDriver> {
  // node-opcua prints a warning on stdout while it loads (about an RSA padding that none of the
  // supported security policies uses); the driver then routes its logs to stderr.
  const quiet = process.env.NODEOPCUA_LOG_LEVEL === undefined;
  if (quiet) process.env.NODEOPCUA_LOG_LEVEL = "3"; // errors only
  const { OpcuaDriver } = await import("./opcua-driver.js").finally(() => {
    if (quiet) delete process.env.NODEOPCUA_LOG_LEVEL;
  });
  const fromConfig = (p: string): string => path.resolve(configDir, p);
  const identity = config.identity;
  return new OpcuaDriver(
    id,
    {
      endpoint: config.endpoint,
      securityMode: config.securityMode,
      ...(config.securityPolicy !== undefined && { securityPolicy: config.securityPolicy }),
      identity:
        identity.type === "certificate"
          ? {
              type: "certificate" as const,
              certificate: fromConfig(identity.certificate),
              privateKey: fromConfig(identity.privateKey),
            }
          : identity,
      timeoutMs: config.timeout,
      reconnectMinMs: config.reconnect.min,
      reconnectMaxMs: config.reconnect.max,
      // The client's PKI lives in the data directory; one for every OPC UA source.
      pkiDir: path.resolve(dataDir, "pki", "opcua"),
    },
    log.child({ component: "south.opcua", source: id }),
  );
}

/** The plans this protocol is handed are its own: the table pairs sources and files by kind. */
function nodePlan(device: DevicePlan): NodeDevicePlan {
  if (device.kind !== "opcua") throw new Error(`${device.deviceName} is not an OPC UA device`);
  return device as NodeDevicePlan;
}
