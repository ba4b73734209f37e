import type { SourceConfig } from "../config/gateway-schema.js";
import type { Logger } from "../core/logger.js";
import type { SouthDriver } from "./driver.js";
import { ModbusTcpDriver } from "./modbus/tcp-driver.js";

/** Drivers by `protocol` key. The only place that knows which driver serves which protocol. */
export function createDriver(sourceId: string, config: SourceConfig, log: Logger): SouthDriver {
  switch (config.protocol) {
    case "modbus-tcp":
      return new ModbusTcpDriver(
        sourceId,
        {
          host: config.host,
          port: config.port,
          timeoutMs: config.timeout,
          maxRegistersPerRequest: config.maxRegistersPerRequest,
          maxBitsPerRequest: config.maxBitsPerRequest,
          maxGap: config.maxGap,
          reconnectMinMs: config.reconnect.min,
          reconnectMaxMs: config.reconnect.max,
          unitBackoffMs: config.unitBackoff,
        },
        log.child({ component: "south.modbus", source: sourceId }),
      );
  }
}
