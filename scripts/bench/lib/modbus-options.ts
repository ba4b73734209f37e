/**
 * A Modbus source as the gateway config gives it, and the ModbusDriver options the daemon
 * derives from it (the same function: the benchmarks build their drivers from the class).
 */
import type { ModbusSourceConfig } from "../../../src/south/modbus/schema.js";
import { modbusDriverOptions, sourceSchema } from "./dist.js";

export { modbusDriverOptions };

/** `source` through the gateway config schema, which fills in every default (maxGap 8, ...). */
export function modbusSourceConfig(source: Record<string, unknown>): ModbusSourceConfig {
  const c = sourceSchema.parse(source);
  if (c.protocol === "opcua") throw new Error("a Modbus source was expected");
  return c;
}
