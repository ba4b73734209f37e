/**
 * The node-opcua side of the OPC UA simulator: the server with its endpoints, security and
 * users, its address space bound to the simulator's values, and Variants to and from those
 * values. node-opcua itself is passed in (`ua`), loaded by startOpcuaSimulator().
 */
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
// Types only: node-opcua takes about a second to load, so it is imported when a simulator
// starts (startOpcuaSimulator), never by the modules that merely name it.
import type * as UA from "node-opcua";
import type { OpcuaObjectDef, OpcuaVariableDef } from "./profile.js";
import { coerceValue, type OpcuaSimValue } from "./values.js";

export type NodeOpcua = typeof UA;

export type OpcuaSecurityMode = "None" | "Sign" | "SignAndEncrypt";

/** The only secure policy offered: the one every current client and server speaks. */
export const SECURE_POLICY = "Basic256Sha256";

export interface ServerSettings {
  readonly host: string;
  /** 0 picks a free one. */
  readonly port: number;
  readonly securityModes: readonly OpcuaSecurityMode[];
  readonly pkiDir: string;
  readonly users: Readonly<Record<string, string>> | undefined;
  readonly allowAnonymous: boolean;
}

/** How node-opcua reaches one variable's value. */
export interface VariableAccess {
  /** The value as served now. */
  readonly get: () => UA.DataValue;
  /**
   * A client wrote `value` (already checked against the variable), stamped `sourceTimestamp`
   * when the client stamped it: records it and returns what announces it. The write is answered
   * Good even when the announcement throws.
   */
  readonly written: (value: OpcuaSimValue, sourceTimestamp: Date | null) => () => void;
}

export const isWildcard = (host: string): boolean => host === "0.0.0.0" || host === "::";

async function freePort(host: string): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen(0, host, resolve);
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Starts a server with these objects in its address space; each variable bound by `bind`. */
export async function startServer(
  ua: NodeOpcua,
  settings: ServerSettings,
  space: AddressSpaceDef,
  bind: (def: OpcuaVariableDef) => VariableAccess,
): Promise<UA.OPCUAServer> {
  const certificateManager = (folder: string) =>
    new ua.OPCUACertificateManager({
      rootFolder: path.join(settings.pkiDir, folder),
      automaticallyAcceptUnknownCertificate: true,
      // Tests start many servers; file watchers would pile up in libuv's thread pool.
      disableFileWatchers: true,
    });
  const modes = settings.securityModes.map((m) => ua.MessageSecurityMode[m]);
  const policies = [
    ...(settings.securityModes.includes("None") ? [ua.SecurityPolicy.None] : []),
    ...(settings.securityModes.some((m) => m !== "None") ? [ua.SecurityPolicy.Basic256Sha256] : []),
  ];
  const users = settings.users;
  const server = new ua.OPCUAServer({
    port: settings.port === 0 ? await freePort(settings.host) : settings.port,
    host: settings.host,
    ...(isWildcard(settings.host) ? {} : { hostname: settings.host }),
    securityModes: modes,
    securityPolicies: policies,
    allowAnonymous: settings.allowAnonymous,
    serverCertificateManager: certificateManager("server"),
    userCertificateManager: certificateManager("user"),
    ...(users && {
      userManager: {
        isValidUser: (username: string, password: string) =>
          Object.hasOwn(users, username) && users[username] === password,
      },
    }),
    buildInfo: { productName: "shadowgate-sim-opcua", manufacturerName: "shadowgate" },
    serverInfo: { applicationName: { text: "Shadowgate OPC UA simulator" } },
    maxConnectionsPerEndpoint: 100,
    serverCapabilities: { maxSessions: 100 },
    isAuditing: false,
  });
  try {
    await server.initialize();
    populate(ua, server, space, bind);
    await server.start();
  } catch (err) {
    await server.shutdown(0).catch(() => undefined);
    throw err;
  }
  return server;
}

/** What the server hosts: objects (under Objects, or under one another) and their namespaces. */
export interface AddressSpaceDef {
  readonly objects: readonly OpcuaObjectDef[];
  /** URIs of namespaces 2, 3, ... (see OpcuaSimProfile.namespaces). */
  readonly namespaces?: readonly string[];
}

/** The namespace index a NodeId string names (ns=N;...), 1 without one. */
const namespaceOf = (nodeId: string): number => Number(/^ns=(\d+);/.exec(nodeId)?.[1] ?? 1);

function populate(
  ua: NodeOpcua,
  server: UA.OPCUAServer,
  space: AddressSpaceDef,
  bind: (def: OpcuaVariableDef) => VariableAccess,
): void {
  const addressSpace = server.engine.addressSpace;
  if (!addressSpace) throw new Error("node-opcua has no address space after initialize()");
  // After initialize() the server has 0 (OPC UA's) and 1 (its own): the rest in order.
  for (const uri of space.namespaces ?? []) addressSpace.registerNamespace(uri);
  const namespace = (nodeId: string) => {
    const index = namespaceOf(nodeId);
    if (index < 1 || index >= addressSpace.getNamespaceArray().length)
      throw new RangeError(`${nodeId}: the simulator hosts no namespace ${index}`);
    return addressSpace.getNamespace(index);
  };
  const created = new Map<string, UA.UAObject>();
  for (const o of space.objects) {
    const parent = o.parent === undefined ? undefined : created.get(o.parent);
    if (o.parent !== undefined && !parent)
      throw new RangeError(`${o.name}: its parent ${o.parent} comes later or not at all`);
    const ns = namespace(o.nodeId);
    const object = ns.addObject({
      browseName: o.browseName ?? o.name,
      nodeId: o.nodeId,
      organizedBy: parent ?? addressSpace.rootFolder.objects,
    });
    created.set(o.name, object);
    for (const def of o.variables) {
      const access = bind(def);
      const accessLevel = def.writable ? "CurrentRead | CurrentWrite" : "CurrentRead";
      const setter: UA.VariableDataValueSetterWithCallback = (dataValue, callback) => {
        let value: OpcuaSimValue;
        try {
          value = fromVariant(def, dataValue.value);
        } catch {
          callback(null, ua.StatusCodes.BadTypeMismatch);
          return;
        }
        const announce = access.written(value, dataValue.sourceTimestamp);
        try {
          announce();
        } finally {
          callback(null, ua.StatusCodes.Good);
        }
      };
      namespace(def.nodeId).addVariable({
        componentOf: object,
        browseName: def.name,
        nodeId: def.nodeId,
        dataType: def.dataType,
        valueRank: def.array ? 1 : -1,
        ...(def.array && { arrayDimensions: [0] }),
        minimumSamplingInterval: def.minimumSamplingIntervalMs,
        accessLevel,
        userAccessLevel: accessLevel,
        ...(def.description !== undefined && { description: def.description }),
        value: {
          timestamped_get: access.get,
          ...(def.writable && { timestamped_set: setter }),
        },
      });
    }
  }
}

export function toDataValue(
  ua: NodeOpcua,
  def: OpcuaVariableDef,
  value: OpcuaSimValue,
  time: Date,
): UA.DataValue {
  return new ua.DataValue({
    value: toVariant(ua, def, value),
    statusCode: ua.StatusCodes.Good,
    sourceTimestamp: time,
    serverTimestamp: time,
  });
}

function toVariant(ua: NodeOpcua, def: OpcuaVariableDef, value: OpcuaSimValue): UA.Variant {
  let v: unknown = value;
  if (typeof value === "bigint") {
    // node-opcua carries 64-bit integers as [high, low] 32-bit words, two's complement.
    const u = BigInt.asUintN(64, value);
    v = [Number(u >> 32n), Number(u & 0xffffffffn)];
  } else if (Array.isArray(value)) {
    v = [...(value as readonly number[])];
  }
  return new ua.Variant({
    dataType: ua.DataType[def.dataType],
    arrayType: def.array ? ua.VariantArrayType.Array : ua.VariantArrayType.Scalar,
    value: v,
  });
}

/** A client's Variant as our value; throws when it does not fit the variable. */
function fromVariant(def: OpcuaVariableDef, variant: UA.Variant): OpcuaSimValue {
  const raw: unknown = variant.value;
  if (def.dataType === "Int64" || def.dataType === "UInt64") {
    if (!Array.isArray(raw) || raw.length !== 2) throw new TypeError("not a 64-bit integer");
    const u = (BigInt(raw[0] as number) << 32n) | BigInt(raw[1] as number);
    return def.dataType === "Int64" ? BigInt.asIntN(64, u) : u;
  }
  if (def.dataType === "String" && raw === null) return "";
  return coerceValue(def, raw);
}
