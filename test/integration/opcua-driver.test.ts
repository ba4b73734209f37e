import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import {
  CreateMonitoredItemsRequest,
  DataChangeFilter,
  DataType,
  DeadbandType,
  MessageSecurityMode,
  nodesets,
  OPCUACertificateManager,
  OPCUAServer,
  ReadRequest,
  RegisterServerMethod,
  SecurityPolicy,
  type StatusCode,
  StatusCodes,
  type UAVariable,
  Variant,
  VariantArrayType,
} from "node-opcua";
import { pino } from "pino";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ErrorCodes, ShadowgateError } from "../../src/core/errors.js";
import { type Logger } from "../../src/core/logger.js";
import { testLogger } from "../helpers/logs.js";
import type { ConnectionState } from "../../src/core/types.js";
import type { MonitorGroup } from "../../src/south/driver.js";
import type { NodeRef, ValueSample } from "../../src/core/samples.js";
import type { NodeDevicePlan } from "../../src/mapping/types.js";
import { protocolOf, sourceSchema } from "../../src/south/registry.js";
import { OpcuaDriver, type OpcuaDriverOptions } from "../../src/south/opcua/opcua-driver.js";
import { freePort } from "../helpers/ports.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const root = await mkdtemp(join(tmpdir(), "sg-opcua-"));
afterAll(() => rm(root, { recursive: true, force: true }));
let dirs = 0;
const tempDir = () => join(root, `t${++dirs}`);

// ---- a small OPC UA server ----------------------------------------------------------------

type Values = {
  Temperature: number;
  Setpoint: number;
  Running: boolean;
  Name: string;
  Big: bigint;
  Stamp: Date;
  Levels: number[];
  Small: number;
};

const initial: Values = {
  Temperature: 21.5,
  Setpoint: 50,
  Running: false,
  Name: "boiler-01",
  Big: 2n ** 60n + 1n,
  Stamp: new Date("2024-05-01T12:00:00.000Z"),
  Levels: [1.5, 2.5, 3.5],
  Small: 7,
};

const types: Record<keyof Values, { dataType: DataType; writable: boolean; array?: boolean }> = {
  Temperature: { dataType: DataType.Double, writable: false },
  Setpoint: { dataType: DataType.Double, writable: true },
  Running: { dataType: DataType.Boolean, writable: true },
  Name: { dataType: DataType.String, writable: false },
  Big: { dataType: DataType.Int64, writable: false },
  Stamp: { dataType: DataType.DateTime, writable: false },
  Levels: { dataType: DataType.Double, writable: true, array: true },
  Small: { dataType: DataType.Byte, writable: true },
};

function variant(name: keyof Values, value: Values[keyof Values]): Variant {
  const t = types[name];
  const v =
    typeof value === "bigint"
      ? [Number(BigInt.asUintN(64, value) >> 32n), Number(value & 0xffffffffn)]
      : value;
  const arrayType = t.array ? VariantArrayType.Array : VariantArrayType.Scalar;
  return new Variant({ dataType: t.dataType, arrayType, value: v });
}

interface TestServer {
  readonly port: number;
  readonly pkiDir: string;
  set<K extends keyof Values>(name: K, value: Values[K], status?: StatusCode): void;
  /** The CreateMonitoredItems requests received (their sizes and requested parameters). */
  readonly creates: CreateMonitoredItemsRequest[];
  /** How many nodes each Read request carried. */
  readonly reads: number[];
  /** The URI of the namespace the test variables live in (ns=1). */
  readonly namespaceUri: string;
  stop(): Promise<void>;
}

async function startServer(
  opts: {
    port?: number;
    pkiDir?: string;
    values?: Partial<Values>;
    bulk?: number;
    maxMonitoredItemsPerCall?: number;
    maxNodesPerRead?: number;
    users?: Record<string, string>;
  } = {},
): Promise<TestServer> {
  const port = opts.port ?? (await freePort());
  const pkiDir = opts.pkiDir ?? join(tempDir(), "server-pki");
  const server = new OPCUAServer({
    port,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard],
    serverCertificateManager: new OPCUACertificateManager({
      rootFolder: pkiDir,
      automaticallyAcceptUnknownCertificate: true,
      disableFileWatchers: true,
    }),
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    allowAnonymous: true,
    registerServerMethod: RegisterServerMethod.HIDDEN,
    ...(opts.users && {
      userManager: {
        isValidUser: (user: string, password: string) => opts.users?.[user] === password,
      },
    }),
    serverCapabilities: {
      operationLimits: {
        maxMonitoredItemsPerCall: opts.maxMonitoredItemsPerCall ?? 0,
        maxNodesPerRead: opts.maxNodesPerRead ?? 0,
      },
    },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  if (!addressSpace) throw new Error("no address space");
  const ns = addressSpace.getOwnNamespace();
  const boiler = ns.addObject({
    organizedBy: addressSpace.rootFolder.objects,
    browseName: "Boiler",
  });
  const values: Values = { ...initial, ...opts.values };
  const variables = new Map<keyof Values, UAVariable>();
  for (const name of Object.keys(types) as (keyof Values)[]) {
    const t = types[name];
    const v = ns.addVariable({
      componentOf: boiler,
      browseName: name,
      nodeId: `s=Boiler.${name}`,
      dataType: t.dataType,
      ...(t.array && { valueRank: 1, arrayDimensions: [0] }),
      minimumSamplingInterval: 50,
      accessLevel: t.writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      userAccessLevel: t.writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
    });
    v.setValueFromSource(variant(name, values[name]));
    variables.set(name, v);
  }
  if (opts.bulk) {
    const folder = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Bulk" });
    for (let i = 0; i < opts.bulk; i++) {
      const v = ns.addVariable({
        componentOf: folder,
        browseName: `Item${i}`,
        nodeId: `s=Bulk.Item${i}`,
        dataType: DataType.Int32,
        minimumSamplingInterval: 50,
      });
      v.setValueFromSource({ dataType: DataType.Int32, value: i });
    }
  }
  const creates: CreateMonitoredItemsRequest[] = [];
  const reads: number[] = [];
  server.on("request", (request) => {
    if (request instanceof CreateMonitoredItemsRequest) creates.push(request);
    if (request instanceof ReadRequest) reads.push(request.nodesToRead?.length ?? 0);
  });
  await server.start();
  let stopped = false;
  const handle: TestServer = {
    port,
    pkiDir,
    creates,
    reads,
    namespaceUri: ns.namespaceUri,
    set(name, value, status = StatusCodes.Good) {
      variables.get(name)?.setValueFromSource(variant(name, value), status);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.shutdown(0);
    },
  };
  cleanups.push(() => handle.stop());
  return handle;
}

// ---- the driver under test --------------------------------------------------------------------

function driver(port: number, extra: Partial<OpcuaDriverOptions> = {}, log?: Logger) {
  const d = new OpcuaDriver(
    "plc1",
    {
      endpoint: `opc.tcp://127.0.0.1:${port}`,
      securityMode: "None",
      identity: { type: "anonymous" },
      timeoutMs: 2000,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      pkiDir: join(tempDir(), "client-pki"),
      ...extra,
    },
    log ?? testLogger(),
  );
  cleanups.push(() => d.stop());
  return d;
}

/** Resolves when the driver reaches `state` (at once if it is there). */
function reach(d: OpcuaDriver, state: ConnectionState): Promise<void> {
  if (d.health().state === state) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (s: ConnectionState) => {
      if (s !== state) return;
      d.off("state", on);
      resolve();
    };
    d.on("state", on);
  });
}

/** Collects the batches handed to onSamples; `until` resolves when a condition holds. */
function collector() {
  const batches: ValueSample[][] = [];
  const waiters: { cond: () => boolean; resolve: () => void }[] = [];
  const c = {
    batches,
    get samples(): ValueSample[] {
      return batches.flat();
    },
    of(key: string): ValueSample[] {
      return batches.flat().filter((s) => s.key === key);
    },
    onSamples: (samples: ValueSample[]) => {
      batches.push(samples);
      for (const w of [...waiters]) {
        if (w.cond()) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    until(cond: () => boolean): Promise<void> {
      if (cond()) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ cond, resolve }));
    },
  };
  return c;
}

const last = (samples: ValueSample[]) => samples[samples.length - 1];
const good = (s: ValueSample | undefined) => s?.quality.status === "good";
const ref = (key: string, node = `ns=1;s=Boiler.${key}`): NodeRef => ({ key, node });
const byKey = (samples: ValueSample[]) => Object.fromEntries(samples.map((s) => [s.key, s]));

/** A pino logger whose lines the test can read. */
function memoryLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  return { log: pino({ level: "debug" }, stream), lines };
}

// ---- tests -------------------------------------------------------------------------------------

describe("OpcuaDriver against a node-opcua server", () => {
  it("reads every type as JSON in one batched Read, with quality and source timestamps", async () => {
    const server = await startServer();
    const d = driver(server.port);
    await d.start();
    expect(d.health().state).toBe("online");
    const before = d.health().requests;
    const samples = await d.read([
      ref("Temperature"),
      ref("Running"),
      ref("Name"),
      ref("Big"),
      ref("Stamp"),
      ref("Levels"),
      ref("Small"),
      ref("missing", "ns=1;s=Boiler.Missing"),
      ref("invalid", "ns=1;x=what"),
    ]);
    expect(d.health().requests - before).toBe(1); // one Read for all of them
    const s = byKey(samples);
    expect(s.Temperature?.value).toBe(21.5);
    expect(s.Temperature?.quality).toEqual({ status: "good" });
    expect(typeof s.Temperature?.sourceTs).toBe("number");
    expect(s.Running?.value).toBe(false);
    expect(s.Name?.value).toBe("boiler-01");
    expect(s.Big?.value).toBe((2n ** 60n + 1n).toString()); // beyond 2^53: a decimal string
    expect(s.Stamp?.value).toBe("2024-05-01T12:00:00.000Z");
    expect(s.Levels?.value).toEqual([1.5, 2.5, 3.5]); // a Float64Array as a plain array
    expect(s.Small?.value).toBe(7);
    expect(s.missing?.quality).toEqual({
      status: "bad",
      code: ErrorCodes.OPCUA_BAD,
      reason: "BadNodeIdUnknown",
    });
    expect(s.invalid?.quality).toMatchObject({ status: "bad", reason: "BadNodeIdInvalid" });

    // Uncertain: reported good with its value (the core Quality type has no "uncertain").
    server.set("Temperature", 19, StatusCodes.UncertainLastUsableValue);
    server.set("Name", "x", StatusCodes.BadSensorFailure);
    const s2 = byKey(await d.read([ref("Temperature"), ref("Name")]));
    expect(s2.Temperature).toMatchObject({ value: 19, quality: { status: "good" } });
    expect(s2.Name?.quality).toEqual({
      status: "bad",
      code: ErrorCodes.OPCUA_BAD,
      reason: "BadSensorFailure",
    });
    expect(s2.Name?.value).toBeUndefined();
  });

  it("monitors a group: initial values in one batch, then each change once", async () => {
    const server = await startServer();
    const d = driver(server.port);
    await d.start();
    const c = collector();
    const group: MonitorGroup = {
      id: "g1",
      publishingIntervalMs: 100,
      nodes: [
        ref("Temperature"),
        { ...ref("Setpoint"), samplingIntervalMs: 50, deadband: 0.5 },
        ref("Running"),
      ],
    };
    const stop = await d.monitor(group, c.onSamples);
    await c.until(() => c.samples.length >= 3);
    expect(c.batches[0]?.map((s) => s.key).sort()).toEqual(["Running", "Setpoint", "Temperature"]);
    expect(byKey(c.batches[0] ?? [])).toMatchObject({
      Temperature: { value: 21.5, quality: { status: "good" } },
      Setpoint: { value: 50 },
      Running: { value: false },
    });

    // Per-item parameters reached the server in one CreateMonitoredItems.
    expect(server.creates).toHaveLength(1);
    const items = server.creates[0]?.itemsToCreate ?? [];
    const setpoint = items[1]?.requestedParameters;
    expect(setpoint?.samplingInterval).toBe(50);
    expect(setpoint?.queueSize).toBe(3); // ceil(100 / 50) + 1
    expect(setpoint?.discardOldest).toBe(true);
    const filter = setpoint?.filter as DataChangeFilter | null;
    expect(filter).toBeInstanceOf(DataChangeFilter);
    expect(filter?.deadbandType).toBe(DeadbandType.Absolute);
    expect(filter?.deadbandValue).toBe(0.5);
    expect(items[0]?.requestedParameters.samplingInterval).toBe(100);
    expect(items[0]?.requestedParameters.queueSize).toBe(2);
    expect(items[0]?.requestedParameters.filter).toBeNull();

    server.set("Temperature", 22.25);
    server.set("Setpoint", 50.2); // inside the deadband: not notified
    server.set("Running", true);
    await c.until(() => good(last(c.of("Running"))) && last(c.of("Running"))?.value === true);
    await c.until(() => last(c.of("Temperature"))?.value === 22.25);
    server.set("Setpoint", 51);
    await c.until(() => last(c.of("Setpoint"))?.value === 51);
    expect(c.of("Setpoint").map((s) => s.value)).toEqual([50, 51]);
    expect(c.of("Temperature").map((s) => s.value)).toEqual([21.5, 22.25]);

    // A second group with the same interval shares the subscription.
    const c2 = collector();
    const stop2 = await d.monitor(
      { id: "g2", publishingIntervalMs: 100, nodes: [ref("Name")] },
      c2.onSamples,
    );
    await c2.until(() => c2.samples.length === 1);
    expect(d.stats().subscriptions).toBe(1);
    await stop();
    expect(d.stats().subscriptions).toBe(1);
    await stop2();
    expect(d.stats().subscriptions).toBe(0);
  });

  it("splits a Read by the server's MaxNodesPerRead; maps nsu= NodeIds to the namespace index", async () => {
    const server = await startServer({ maxNodesPerRead: 2 });
    const d = driver(server.port);
    await d.start();
    expect(d.stats().maxNodesPerRead).toBe(2);
    const names = ["Temperature", "Setpoint", "Running", "Name", "Small"] as const;
    const nsu = `nsu=${server.namespaceUri};s=Boiler.Name`;
    server.reads.length = 0;
    const samples = await d.read([...names.map((n) => ref(n)), { key: "byUri", node: nsu }]);
    expect(server.reads).toEqual([2, 2, 2]);
    expect(samples.map((s) => s.value)).toEqual([21.5, 50, false, "boiler-01", 7, "boiler-01"]);
    const [unknown] = await d.read([{ key: "u", node: "nsu=urn:nowhere;s=X" }]);
    expect(unknown?.quality).toMatchObject({ status: "bad", reason: "BadNodeIdUnknown" });
    await d.write(ref("Setpoint"), 12.5); // its DataType, ValueRank and Value: 2 + 1 nodes
    expect((await d.read([ref("Setpoint")]))[0]?.value).toBe(12.5);
  });

  it("resolves browse paths from the Objects folder once per session", async () => {
    const server = await startServer();
    const d = driver(server.port);
    await d.start();
    const path = "/1:Boiler/1:Temperature";
    const before = d.health().requests;
    const [s1] = await d.read([{ key: "t", node: path }]);
    expect(s1?.value).toBe(21.5);
    expect(d.health().requests - before).toBe(2); // TranslateBrowsePaths + Read
    const [s2, bad] = await d.read([
      { key: "t", node: path },
      { key: "nope", node: "/1:Boiler/1:Nope" },
    ]);
    expect(s2?.value).toBe(21.5);
    expect(bad?.quality).toMatchObject({ status: "bad", code: ErrorCodes.OPCUA_BAD });
    expect((bad?.quality as { reason: string }).reason).toMatch(/^Bad/);

    const c = collector();
    await d.monitor(
      { id: "g", publishingIntervalMs: 100, nodes: [{ key: "t", node: path }] },
      c.onSamples,
    );
    await c.until(() => c.samples.length === 1);
    server.set("Temperature", 30);
    await c.until(() => last(c.samples)?.value === 30);
    await d.write({ key: "sp", node: "/1:Boiler/1:Setpoint" }, 61.5);
    expect((await d.read([{ key: "sp", node: "/1:Boiler/1:Setpoint" }]))[0]?.value).toBe(61.5);
  });

  it("writes with the node's DataType and refuses what the type cannot hold", async () => {
    const server = await startServer();
    const d = driver(server.port);
    await d.start();
    await d.write(ref("Setpoint"), 72.5);
    await d.write(ref("Running"), true);
    await d.write(ref("Setpoint"), 73); // an integer JSON number into a Double
    await d.write(ref("Levels"), [4, 5.5]);
    await d.write(ref("Small"), 255);
    const s = byKey(await d.read([ref("Setpoint"), ref("Running"), ref("Levels"), ref("Small")]));
    expect(s.Setpoint?.value).toBe(73);
    expect(s.Running?.value).toBe(true);
    expect(s.Levels?.value).toEqual([4, 5.5]);
    expect(s.Small?.value).toBe(255);

    const refused = async (node: NodeRef, value: Parameters<OpcuaDriver["write"]>[1]) => {
      const requests = d.health().requests;
      const err = await d.write(node, value).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ShadowgateError);
      expect(d.health().requests).toBe(requests); // refused before anything was sent
      return err as ShadowgateError;
    };
    expect((await refused(ref("Small"), 256)).code).toBe(ErrorCodes.CODEC_RANGE);
    expect((await refused(ref("Small"), 1.5)).code).toBe(ErrorCodes.CODEC_RANGE);
    expect((await refused(ref("Setpoint"), "hot")).code).toBe(ErrorCodes.CODEC_TYPE);
    expect((await refused(ref("Running"), 1)).code).toBe(ErrorCodes.CODEC_TYPE);
    expect((await refused(ref("Setpoint"), [1, 2])).code).toBe(ErrorCodes.CODEC_TYPE);
    expect((await refused(ref("Levels"), 3)).code).toBe(ErrorCodes.CODEC_TYPE);
  });

  it("a write to a read-only node throws a ShadowgateError naming BadNotWritable", async () => {
    const server = await startServer();
    const d = driver(server.port);
    await d.start();
    const err = await d.write(ref("Temperature"), 30).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ShadowgateError);
    expect((err as ShadowgateError).code).toBe(ErrorCodes.OPCUA_WRITE);
    expect((err as ShadowgateError).message).toMatch(/BadNotWritable/);
    expect((err as ShadowgateError).details.status).toBe("BadNotWritable");
    expect((await d.read([ref("Temperature")]))[0]?.value).toBe(21.5);
  });

  it("SignAndEncrypt: refuses an untrusted server until its certificate is moved as the message says", async () => {
    const server = await startServer();
    const { log, lines } = memoryLog();
    const pkiDir = join(tempDir(), "client-pki");
    const d = driver(server.port, { securityMode: "SignAndEncrypt", pkiDir }, log);
    await d.start();
    expect(d.health().state).toBe("backoff");

    const [sample] = await d.read([ref("Temperature")]);
    expect(sample?.quality).toMatchObject({ status: "bad", code: ErrorCodes.OPCUA_UNTRUSTED });
    const reason = (sample?.quality as { reason: string }).reason;
    const rejected = await readdir(join(pkiDir, "rejected"));
    expect(rejected).toHaveLength(1);
    const file = join(pkiDir, "rejected", rejected[0] ?? "");
    expect(reason).toContain(file);
    const command = `mv '${file}' '${join(pkiDir, "trusted", "certs")}/'`;
    expect(reason).toContain(command);
    expect(d.health().lastError).toEqual({ code: ErrorCodes.OPCUA_UNTRUSTED, message: reason });
    const errors = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.level === 50);
    expect(errors).toHaveLength(1); // once, not once per attempt
    expect(errors[0]).toMatchObject({ rejectedFile: file, trustWith: command });

    // A monitor set up while refused gets one bad sample per key, then the values once trusted.
    const c = collector();
    await d.monitor(
      { id: "g", publishingIntervalMs: 100, nodes: [ref("Temperature")] },
      c.onSamples,
    );
    await c.until(() => c.samples.length === 1);
    expect(c.samples[0]?.quality).toMatchObject({ code: ErrorCodes.OPCUA_UNTRUSTED });

    const online = reach(d, "online");
    execFileSync("sh", ["-c", command]);
    expect(existsSync(join(pkiDir, "trusted", "certs", rejected[0] ?? ""))).toBe(true);
    await online;
    await c.until(() => good(last(c.samples)));
    expect(c.samples.map((s) => s.quality.status)).toEqual(["bad", "good"]);
    expect(last(c.samples)?.value).toBe(21.5);
    expect((await d.read([ref("Name")]))[0]?.value).toBe("boiler-01");
    expect(d.health().lastError).toBeUndefined();
  });

  it("reconnects after a server restart: changes during the outage once, no replays, no duplicates", async () => {
    const server = await startServer();
    const d = driver(server.port);
    await d.start();
    const c = collector();
    const keys = ["Temperature", "Setpoint", "Running"];
    await d.monitor(
      { id: "g", publishingIntervalMs: 100, nodes: keys.map((k) => ref(k)) },
      c.onSamples,
    );
    await c.until(() => keys.every((k) => c.of(k).length === 1));

    const backoff = reach(d, "backoff");
    await server.stop();
    await backoff;
    await c.until(() => keys.every((k) => last(c.of(k))?.quality.status === "bad"));
    const [offline] = await d.read([ref("Temperature")]);
    expect(offline?.quality).toMatchObject({ status: "bad", code: ErrorCodes.OPCUA_DISCONNECTED });
    await expect(d.write(ref("Setpoint"), 1)).rejects.toMatchObject({
      code: ErrorCodes.OPCUA_DISCONNECTED,
    });

    // Same port, same certificate; Temperature changed while the gateway could not see it.
    const online = reach(d, "online");
    const again = await startServer({
      port: server.port,
      pkiDir: server.pkiDir,
      values: { Temperature: 25 },
    });
    await online;
    await c.until(() => keys.every((k) => good(last(c.of(k)))));
    again.set("Running", true); // a change after the reconnect, to know that all before it came
    await c.until(() => last(c.of("Running"))?.value === true);

    const seq = (k: string) =>
      c.of(k).map((s) => (s.quality.status === "good" ? s.value : s.quality.code));
    const down = ErrorCodes.OPCUA_DISCONNECTED;
    expect(seq("Temperature")).toEqual([21.5, down, 25]);
    expect(seq("Setpoint")).toEqual([50, down, 50]); // quality came back: delivered once
    expect(seq("Running")).toEqual([false, down, false, true]);
    expect(d.health().reconnects).toBeGreaterThanOrEqual(1);
  });

  it("creates 1,000 monitored items in batches of the server's MaxMonitoredItemsPerCall", async () => {
    const server = await startServer({ bulk: 1000, maxMonitoredItemsPerCall: 300 });
    const d = driver(server.port);
    await d.start();
    expect(d.stats().maxMonitoredItemsPerCall).toBe(300);
    const c = collector();
    const nodes = Array.from({ length: 1000 }, (_, i) => ref(`item${i}`, `ns=1;s=Bulk.Item${i}`));
    await d.monitor({ id: "bulk", publishingIntervalMs: 200, nodes }, c.onSamples);
    expect(server.creates.map((r) => r.itemsToCreate?.length)).toEqual([300, 300, 300, 100]);
    expect(d.stats().createMonitoredItemsCalls).toBe(4);
    expect(d.stats().monitoredItems).toBe(1000);
    await c.until(() => c.samples.length >= 1000);
    const s = byKey(c.samples);
    expect(Object.keys(s)).toHaveLength(1000);
    for (let i = 0; i < 1000; i++) expect(s[`item${i}`]?.value).toBe(i);
    expect(c.samples).toHaveLength(1000);
    expect(c.batches.length).toBeLessThan(1000); // per publish, not per item
  });

  it("logs in with a username, never logging the password; a wrong one is a session error", async () => {
    const server = await startServer({ users: { operator: "s3cret-pw" } });
    const { log, lines } = memoryLog();
    const d = driver(
      server.port,
      { identity: { type: "username", username: "operator", password: "s3cret-pw" } },
      log,
    );
    await d.start();
    expect(d.health().state).toBe("online");
    expect((await d.read([ref("Temperature")]))[0]?.value).toBe(21.5);

    const { log: log2, lines: lines2 } = memoryLog();
    const wrong = driver(
      server.port,
      { identity: { type: "username", username: "operator", password: "wrong-pw" } },
      log2,
    );
    await wrong.start();
    const [s] = await wrong.read([ref("Temperature")]);
    expect(s?.quality).toMatchObject({ status: "bad", code: ErrorCodes.OPCUA_SESSION });
    for (const l of [...lines, ...lines2]) expect(l).not.toMatch(/s3cret-pw|wrong-pw/);
  });

  it("the protocol table opens an OPC UA source from its config, loading the driver on demand", async () => {
    const server = await startServer();
    const config = sourceSchema.parse({
      protocol: "opcua",
      endpoint: `opc.tcp://127.0.0.1:${server.port}`,
      timeout: 2000,
      reconnect: { min: 20, max: 200 },
    });
    const source = await protocolOf(config).open("plc9", config, {
      dataDir: tempDir(),
      configDir: root,
      log: testLogger(),
    });
    cleanups.push(() => source.stop());
    await source.start();
    expect(source.health()).toMatchObject({
      sourceId: "plc9",
      state: "online",
      badFrames: 0,
      illegal: [],
    });
    const device: NodeDevicePlan = {
      kind: "opcua",
      file: join(root, "plc9.yaml"),
      productKey: "pk",
      deviceName: "plc9",
      sourceId: "plc9",
      pollIntervalMs: 1000,
      mode: "poll",
      points: [
        {
          name: "sp",
          path: ["sp"],
          node: "ns=1;s=Boiler.Setpoint",
          writable: true,
          onChange: true,
        },
      ],
    };
    const [reading] = await source.channel(device).poll();
    expect(reading).toMatchObject({ quality: { status: "good" }, value: 50 });
  });
});
