/**
 * The one door to the OPC UA driver. node-opcua is large (~90 MB of RSS once loaded), so it is
 * loaded only when a source needs it: this module imports the driver dynamically and nothing
 * else in the gateway may import ./opcua-driver.js (or node-opcua) statically.
 */
import { isAbsolute, resolve } from "node:path";
import type { OpcuaSourceConfig } from "../../config/gateway-schema.js";
import type { Logger } from "../../core/logger.js";
import type { NodeDriver } from "../driver.js";

export interface OpcuaDriverPaths {
  /** The client PKI folder: `<dataDir>/pki/opcua`. */
  readonly pkiDir: string;
  /** The gateway config's folder: identity files named relative to it are resolved from it. */
  readonly configDir: string;
}

export async function createOpcuaDriver(
  sourceId: string,
  config: OpcuaSourceConfig,
  opts: OpcuaDriverPaths,
  log: Logger,
): Promise<NodeDriver> {
  // node-opcua prints a warning on stdout while it loads (about an RSA padding that none of the
  // supported security policies uses); the driver then routes its logs to stderr.
  const quiet = process.env.NODEOPCUA_LOG_LEVEL === undefined;
  if (quiet) process.env.NODEOPCUA_LOG_LEVEL = "3"; // errors only
  const { OpcuaDriver } = await import("./opcua-driver.js").finally(() => {
    if (quiet) delete process.env.NODEOPCUA_LOG_LEVEL;
  });
  const fromConfig = (p: string): string => (isAbsolute(p) ? p : resolve(opts.configDir, p));
  const id = config.identity;
  const identity =
    id.type === "certificate"
      ? {
          type: "certificate" as const,
          certificate: fromConfig(id.certificate),
          privateKey: fromConfig(id.privateKey),
        }
      : id;
  return new OpcuaDriver(
    sourceId,
    {
      endpoint: config.endpoint,
      securityMode: config.securityMode,
      ...(config.securityPolicy !== undefined && { securityPolicy: config.securityPolicy }),
      identity,
      timeoutMs: config.timeout,
      reconnectMinMs: config.reconnect.min,
      reconnectMaxMs: config.reconnect.max,
      pkiDir: resolve(opts.pkiDir),
    },
    log,
  );
}
