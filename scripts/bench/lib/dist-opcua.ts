/**
 * The OPC UA side of the compiled gateway (dist/), for B10: the driver's one door
 * (createOpcuaDriver), the simulator and the source schema, typed from their sources (see
 * lib/load-dist.ts). A file of its own, and one that does not import lib/dist.ts: the process
 * B10 measures loads this, and lib/dist.ts would add the whole gateway (~40 MB of RSS: MQTT,
 * SQLite, the daemon) to what it reports. Neither module loads node-opcua until used
 * (createOpcuaDriver and startOpcuaSimulator import it).
 */
import type * as CoreLogger from "../../../src/core/logger.js";
import type * as OpcuaSim from "../../../src/sim/opcua/index.js";
import type * as OpcuaDriver from "../../../src/south/opcua/index.js";
import type * as OpcuaSchema from "../../../src/south/opcua/schema.js";
import { loadDist } from "./load-dist.js";

export const { createOpcuaDriver } = (await loadDist("south/opcua/index.js")) as typeof OpcuaDriver;
export const { startOpcuaSimulator } = (await loadDist("sim/opcua/index.js")) as typeof OpcuaSim;
export const { opcuaSource } = (await loadDist("south/opcua/schema.js")) as typeof OpcuaSchema;
export const { silentLogger } = (await loadDist("core/logger.js")) as typeof CoreLogger;
