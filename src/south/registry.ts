import type { ModbusSourceConfig } from "../config/gateway-schema.js";
import type { Logger } from "../core/logger.js";
import type { SouthDriver } from "./driver.js";
import { ModbusDriver, type ModbusTransport } from "./modbus/modbus-driver.js";

/** Drivers by `protocol` key. The only place that knows which driver serves which protocol. */
export function createDriver(
  sourceId: string,
  config: ModbusSourceConfig,
  log: Logger,
): SouthDriver {
  return new ModbusDriver(
    sourceId,
    {
      transport: transport(config),
      timeoutMs: config.timeout,
      ...(config.protocol === "modbus-rtu" && { turnaroundMs: config.turnaround }),
      maxRegistersPerRequest: config.maxRegistersPerRequest,
      maxBitsPerRequest: config.maxBitsPerRequest,
      maxGap: config.maxGap,
      reconnectMinMs: config.reconnect.min,
      reconnectMaxMs: config.reconnect.max,
      unitBackoffMs: config.unitBackoff,
      demoteAfter: config.demoteAfter,
    },
    log.child({ component: "south.modbus", source: sourceId }),
  );
}

function transport(config: ModbusSourceConfig): ModbusTransport {
  switch (config.protocol) {
    case "modbus-tcp":
      return { kind: "tcp", host: config.host, port: config.port };
    case "modbus-rtu-over-tcp":
      return { kind: "rtu-over-tcp", host: config.host, port: config.port };
    case "modbus-rtu":
      return {
        kind: "rtu",
        path: config.path,
        line: {
          baud: config.baud,
          parity: config.parity,
          dataBits: config.dataBits,
          stopBits: config.stopBits,
        },
      };
  }
}
