// @ts-check
/**
 * The compiled gateway (dist/, built by `npm run build`), typed from the sources it was compiled
 * from. dist/ carries no .d.ts files (declaration: false), so importing it statically would
 * leave tsc to infer weak types from the emitted JS; importing it by a computed URL and casting
 * to `typeof import("src/...")` gives the benchmarks the real types and lets `tsc -p
 * scripts/bench` run without a build. A missing build fails at run time with a pointer.
 */
import { existsSync } from "node:fs";
import { URL, fileURLToPath } from "node:url";

const DIST = new URL("../../../dist/", import.meta.url);

if (!existsSync(fileURLToPath(new URL("south/registry.js", DIST)))) {
  throw new Error(`${fileURLToPath(DIST)} is missing: run "npm run build" (npm run bench does)`);
}

/**
 * @param {string} rel  a path under dist/
 * @returns {Promise<unknown>}
 */
const load = (rel) => import(new URL(rel, DIST).href);

export const { createDriver } = /** @type {typeof import("../../../src/south/registry.js")} */ (
  await load("south/registry.js")
);
export const { sourceSchema } =
  /** @type {typeof import("../../../src/config/gateway-schema.js")} */ (
    await load("config/gateway-schema.js")
  );
export const { silentLogger } = /** @type {typeof import("../../../src/core/logger.js")} */ (
  await load("core/logger.js")
);
export const { ModbusTcpSimulator } =
  /** @type {typeof import("../../../src/sim/modbus/index.js")} */ (
    await load("sim/modbus/index.js")
  );
export const { startCloudService } =
  /** @type {typeof import("../../../src/sim/cloud/index.js")} */ (
    await load("sim/cloud/index.js")
  );
export const { SHADOW_GET_WILDCARD, SHADOW_UPDATE_WILDCARD, shadowUpdateTopic, parseShadowTopic } =
  /** @type {typeof import("../../../src/north/dialects/alibaba/topics.js")} */ (
    await load("north/dialects/alibaba/topics.js")
  );
export const { loadConfig, formatProblem } =
  /** @type {typeof import("../../../src/config/load.js")} */ (await load("config/load.js"));
export const { Gateway } = /** @type {typeof import("../../../src/daemon/gateway.js")} */ (
  await load("daemon/gateway.js")
);
export const { ModbusDriver } =
  /** @type {typeof import("../../../src/south/modbus/modbus-driver.js")} */ (
    await load("south/modbus/modbus-driver.js")
  );
export const { lineTiming } =
  /** @type {typeof import("../../../src/south/modbus/rtu-frame.js")} */ (
    await load("south/modbus/rtu-frame.js")
  );
