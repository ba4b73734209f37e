import { z } from "zod";
import type { MappingKind } from "../mapping/compile.js";
import { modbusProtocol } from "./modbus/protocol.js";
import {
  modbusRtuOverTcpSource,
  modbusRtuSource,
  modbusTcpSource,
  type ModbusSourceConfig,
} from "./modbus/schema.js";
import { opcuaProtocol } from "./opcua/index.js";
import { opcuaSource, type OpcuaSourceConfig } from "./opcua/schema.js";
import type { Protocol } from "./protocol.js";

/**
 * The protocol table: the only place that knows which protocols exist. A protocol is a folder
 * under src/south (its source schemas, points, driver and device channel) and one entry here
 * and in `sourceSchema` below.
 */
const PROTOCOLS: readonly Protocol[] = [modbusProtocol as Protocol, opcuaProtocol as Protocol];

/** The gateway config's `sources.<id>`, one schema per `protocol` key. */
export const sourceSchema = z.discriminatedUnion("protocol", [
  modbusTcpSource,
  modbusRtuSource,
  modbusRtuOverTcpSource,
  opcuaSource,
]);

export type SourceConfig = ModbusSourceConfig | OpcuaSourceConfig;

/** The protocol of a source config (the schema admits only the keys the table knows). */
export function protocolOf(source: { readonly protocol: string }): Protocol {
  const found = PROTOCOLS.find((p) => p.keys.includes(source.protocol));
  if (!found) throw new Error(`no protocol serves sources of protocol ${source.protocol}`);
  return found;
}

/** The protocol that reads a kind of mapping file (DevicePlan.kind). */
export function protocolOfKind(kind: string): Protocol {
  const found = PROTOCOLS.find((p) => p.kind === kind);
  if (!found) throw new Error(`no protocol reads ${kind} devices`);
  return found;
}

/** Every protocol, in table order. */
export const protocols = (): readonly Protocol[] => PROTOCOLS;

/** The kinds of points mapping files may hold, for the compiler. */
export const mappingKinds = (): readonly MappingKind[] => PROTOCOLS.map((p) => p.points);
