// @ts-check
/**
 * The OPC UA side of the compiled gateway (dist/), for B10: the driver's one door
 * (createOpcuaDriver), the simulator and the source schema, typed from their sources the way
 * lib/dist.js types the rest. A file of its own, and one that does not import lib/dist.js: the
 * process B10 measures loads this, and lib/dist.js would add the whole gateway (~40 MB of RSS:
 * MQTT, SQLite, the daemon) to what it reports. Neither module loads node-opcua until used
 * (createOpcuaDriver and startOpcuaSimulator import it).
 */
import { existsSync } from "node:fs";
import { URL, fileURLToPath } from "node:url";

const DIST = new URL("../../../dist/", import.meta.url);

if (!existsSync(fileURLToPath(new URL("south/opcua/index.js", DIST)))) {
  throw new Error(`${fileURLToPath(DIST)} is missing: run "npm run build" (npm run bench does)`);
}

/**
 * @param {string} rel  a path under dist/
 * @returns {Promise<unknown>}
 */
const load = (rel) => import(new URL(rel, DIST).href);

export const { createOpcuaDriver } =
  /** @type {typeof import("../../../src/south/opcua/index.js")} */ (
    await load("south/opcua/index.js")
  );
export const { startOpcuaSimulator } =
  /** @type {typeof import("../../../src/sim/opcua/index.js")} */ (
    await load("sim/opcua/index.js")
  );
export const { sourceSchema } =
  /** @type {typeof import("../../../src/config/gateway-schema.js")} */ (
    await load("config/gateway-schema.js")
  );
export const { silentLogger } = /** @type {typeof import("../../../src/core/logger.js")} */ (
  await load("core/logger.js")
);
