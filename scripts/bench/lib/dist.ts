/**
 * The compiled gateway (dist/) as the benchmarks use it, typed from its sources (see
 * lib/load-dist.ts). Drivers are built from their class (ModbusDriver), not through the driver
 * registry: the benchmarks measure a driver, whatever table the daemon picks it from.
 */
import type * as SystemdUnit from "../../../src/cli/systemd-unit.js";
import type * as ConfigLoad from "../../../src/config/load.js";
import type * as CoreJson from "../../../src/core/json.js";
import type * as CoreLogger from "../../../src/core/logger.js";
import type * as DaemonGateway from "../../../src/daemon/gateway.js";
import type * as DaemonService from "../../../src/daemon/service.js";
import type * as AlibabaTopics from "../../../src/north/dialects/alibaba/topics.js";
import type * as AlibabaSign from "../../../src/north/dialects/alibaba/sign.js";
import type * as AlibabaSubDevices from "../../../src/north/dialects/alibaba/subdevices.js";
import type * as EdgeShadowModule from "../../../src/shadow/edge-shadow.js";
import type * as CloudService from "../../../src/sim/cloud/index.js";
import type * as AwsCloudService from "../../../src/sim/cloud/aws/index.js";
import type * as AwsTopics from "../../../src/north/dialects/aws/topics.js";
import type * as ModbusSim from "../../../src/sim/modbus/index.js";
import type * as PtyModule from "../../../src/sim/pty.js";
import type * as TcpProxyModule from "../../../src/sim/tcp-proxy.js";
import type * as ModbusDriverModule from "../../../src/south/modbus/modbus-driver.js";
import type * as ModbusProtocol from "../../../src/south/modbus/protocol.js";
import type * as RtuFrame from "../../../src/south/modbus/rtu-frame.js";
import type * as SouthRegistry from "../../../src/south/registry.js";
import type * as Database from "../../../src/store/database.js";
import type * as OutboxModule from "../../../src/store/outbox.js";
import type * as ReportCodecModule from "../../../src/store/report-codec.js";
import { loadDist } from "./load-dist.js";

export const { sourceSchema } = (await loadDist("south/registry.js")) as typeof SouthRegistry;
export const { modbusDriverOptions } = (await loadDist(
  "south/modbus/protocol.js",
)) as typeof ModbusProtocol;
export const { silentLogger } = (await loadDist("core/logger.js")) as typeof CoreLogger;
export const { ModbusTcpSimulator } = (await loadDist("sim/modbus/index.js")) as typeof ModbusSim;
export const { startCloudService } = (await loadDist("sim/cloud/index.js")) as typeof CloudService;
export const { SHADOW_GET_WILDCARD, SHADOW_UPDATE_WILDCARD, shadowUpdateTopic, parseShadowTopic } =
  (await loadDist("north/dialects/alibaba/topics.js")) as typeof AlibabaTopics;
// The AWS dialect's service and topics, for the benchmarks that run in either dialect.
export const { startAwsCloudService } = (await loadDist(
  "sim/cloud/aws/index.js",
)) as typeof AwsCloudService;
export const { parseShadowTopic: parseAwsTopic, shadowPrefix } = (await loadDist(
  "north/dialects/aws/topics.js",
)) as typeof AwsTopics;
export const { loadConfig, formatProblem } = (await loadDist(
  "config/load.js",
)) as typeof ConfigLoad;
export const { Gateway } = (await loadDist("daemon/gateway.js")) as typeof DaemonGateway;
export const { Service } = (await loadDist("daemon/service.js")) as typeof DaemonService;
export const { ModbusDriver } = (await loadDist(
  "south/modbus/modbus-driver.js",
)) as typeof ModbusDriverModule;
export const { lineTiming } = (await loadDist("south/modbus/rtu-frame.js")) as typeof RtuFrame;
// The store side, for the outbox benchmarks (B5, B6).
export const { Outbox } = (await loadDist("store/outbox.js")) as typeof OutboxModule;
export const { ReportCodec } = (await loadDist(
  "store/report-codec.js",
)) as typeof ReportCodecModule;
export const { openDatabase, openReadOnly } = (await loadDist(
  "store/database.js",
)) as typeof Database;
export const { EdgeShadow } = (await loadDist("shadow/edge-shadow.js")) as typeof EdgeShadowModule;
export const { mergeReported } = (await loadDist("core/json.js")) as typeof CoreJson;
// The fault-injecting TCP proxy the fault-injection suite uses too, for B7.
export const { TcpProxy } = (await loadDist("sim/tcp-proxy.js")) as typeof TcpProxyModule;
// The socat pty pair the RTU tests use too, for B2's serial line.
export const { findSocat, openPtyPair } = (await loadDist("sim/pty.js")) as typeof PtyModule;
// Alibaba's signed logins and sub-device messages, for B13's naive baseline.
export const { alibabaCredentials } = (await loadDist(
  "north/dialects/alibaba/sign.js",
)) as typeof AlibabaSign;
export const {
  encodeRequest,
  loginParams,
  replyTopic,
  requestTopic,
  signedEntry,
  topoAddParams,
  decodeReply,
  gatewaySubscriptions,
} = (await loadDist("north/dialects/alibaba/subdevices.js")) as typeof AlibabaSubDevices;
// The service unit's node flags, for B4's capped case (run as the unit runs the gateway).
export const { SEMI_SPACE_MB } = (await loadDist("cli/systemd-unit.js")) as typeof SystemdUnit;
