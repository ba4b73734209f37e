/**
 * The OPC UA simulator seen from a plain node-opcua client (no shadowgate code on the client
 * side): types, writes, monitored items, security, restart, the extra variables and the CLI.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { format } from "node:util";
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
  VariantArrayType,
  makeBrowsePath,
  setErrorLogger,
  setWarningLogger,
  type ClientMonitoredItem,
  type ClientSession,
  type DataValue,
  type StatusCode,
  type UserIdentityInfo,
} from "node-opcua";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../src/core/errors.js";
import {
  parseOpcuaProfile,
  startOpcuaSimulator,
  type OpcuaSimulator,
  type OpcuaSimulatorOptions,
  type OpcuaWrite,
} from "../../src/sim/opcua/index.js";

const root = path.resolve(import.meta.dirname, "../..");
const main = path.join(root, "dist/cli/main.js");

// node-opcua logs its warnings to stdout through its own logger hooks; keep them, and print
// them only for a test that fails.
const opcuaLog: string[] = [];
const capture = (_context?: unknown, ...args: unknown[]): void => {
  opcuaLog.push(format(...args));
};
setWarningLogger(capture);
setErrorLogger(capture);

let serverPki: string;
let clientPki: string;
const sims: OpcuaSimulator[] = [];
const clients: OPCUAClient[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  // One PKI for every server and one for every client: certificates are made once.
  serverPki = await mkdtemp(path.join(tmpdir(), "sg-opcua-server-pki-"));
  clientPki = await mkdtemp(path.join(tmpdir(), "sg-opcua-client-pki-"));
});

afterAll(async () => {
  await rm(serverPki, { recursive: true, force: true });
  await rm(clientPki, { recursive: true, force: true });
});

beforeEach((ctx) => {
  opcuaLog.length = 0;
  ctx.onTestFailed(() => {
    if (opcuaLog.length > 0) process.stderr.write(`node-opcua said:\n${opcuaLog.join("\n")}\n`);
  });
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.disconnect().catch(() => undefined);
  await Promise.all(sims.splice(0).map((s) => s.close()));
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function start(opts: OpcuaSimulatorOptions = {}): Promise<OpcuaSimulator> {
  const sim = await startOpcuaSimulator({ pkiDir: serverPki, ...opts });
  sims.push(sim);
  return sim;
}

interface ConnectOptions {
  secure?: boolean;
  user?: { userName: string; password: string };
  /** Keep retrying after the connection is lost (the default gives up at once). */
  reconnect?: boolean;
}

function makeClient(o: ConnectOptions): OPCUAClient {
  const client = OPCUAClient.create({
    applicationName: "shadowgate-sim-test",
    endpointMustExist: false,
    keepSessionAlive: false,
    connectionStrategy: o.reconnect
      ? { maxRetry: 100, initialDelay: 50, maxDelay: 250 }
      : { maxRetry: 0, initialDelay: 50, maxDelay: 50 },
    securityMode: o.secure ? MessageSecurityMode.SignAndEncrypt : MessageSecurityMode.None,
    securityPolicy: o.secure ? SecurityPolicy.Basic256Sha256 : SecurityPolicy.None,
    // The client decides whom it trusts: here, any server (a test's own simulator).
    clientCertificateManager: new OPCUACertificateManager({
      rootFolder: clientPki,
      automaticallyAcceptUnknownCertificate: true,
      disableFileWatchers: true,
    }),
  });
  clients.push(client);
  return client;
}

async function connect(
  endpoint: string,
  o: ConnectOptions = {},
): Promise<{ client: OPCUAClient; session: ClientSession }> {
  const client = makeClient(o);
  await client.connect(endpoint);
  const identity: UserIdentityInfo | undefined = o.user && {
    type: UserTokenType.UserName,
    userName: o.user.userName,
    password: o.user.password,
  };
  const session = await client.createSession(identity);
  return { client, session };
}

const readValue = (session: ClientSession, nodeId: string): Promise<DataValue> =>
  session.read({ nodeId, attributeId: AttributeIds.Value });

const write = (
  session: ClientSession,
  nodeId: string,
  dataType: DataType,
  value: unknown,
  arrayType = VariantArrayType.Scalar,
): Promise<StatusCode> =>
  session.write({
    nodeId,
    attributeId: AttributeIds.Value,
    value: { value: { dataType, arrayType, value } },
  });

/** Every notification of a monitored item, and a way to await the next one that matches. */
function notifications(item: ClientMonitoredItem) {
  const values: DataValue[] = [];
  let wake: (() => void) | undefined;
  item.on("changed", (dv: DataValue) => {
    values.push(dv);
    wake?.();
  });
  let seen = 0;
  return {
    values,
    async next(match: (dv: DataValue) => boolean = () => true): Promise<DataValue> {
      for (;;) {
        while (seen < values.length) {
          const dv = values[seen++]!;
          if (match(dv)) return dv;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

const number = (dv: DataValue): number => dv.value.value as number;

/** Word pairs as node-opcua hands 64-bit integers over: [high, low]. */
const words = (v: bigint): [number, number] => {
  const u = BigInt.asUintN(64, v);
  return [Number(u >> 32n), Number(u & 0xffffffffn)];
};

describe("OPC UA simulator", () => {
  it("serves every default-profile variable under Objects/Boiler with its DataType", async () => {
    const sim = await start({ dynamics: false });
    const { session } = await connect(sim.endpoint);
    const expected: Record<string, { type: DataType; value: unknown; writable: boolean }> = {
      Temperature: { type: DataType.Double, value: 21.5, writable: false },
      Setpoint: { type: DataType.Double, value: 60, writable: true },
      Running: { type: DataType.Boolean, value: true, writable: true },
      State: { type: DataType.String, value: "heating", writable: false },
      Counter: { type: DataType.UInt32, value: 0, writable: false },
      LastService: {
        type: DataType.DateTime,
        value: new Date("2026-01-15T08:30:00.000Z"),
        writable: false,
      },
      Profile: { type: DataType.Double, value: [20, 45, 60, 60, 40], writable: false },
      BigCounter: { type: DataType.UInt64, value: words(2n ** 53n + 1n), writable: false },
    };
    const names = Object.keys(expected);
    expect(sim.names()).toEqual(names.map((n) => `Boiler.${n}`));

    const paths = await session.translateBrowsePath(
      names.map((n) => makeBrowsePath("ObjectsFolder", `/1:Boiler/1:${n}`)),
    );
    expect(paths.map((p) => p.targets?.[0]?.targetId.toString())).toEqual(
      names.map((n) => `ns=1;s=Boiler.${n}`),
    );

    const attributes = [
      AttributeIds.Value,
      AttributeIds.DataType,
      AttributeIds.MinimumSamplingInterval,
      AttributeIds.AccessLevel,
      AttributeIds.UserAccessLevel,
    ];
    const results = await session.read(
      names.flatMap((n) =>
        attributes.map((attributeId) => ({ nodeId: `ns=1;s=Boiler.${n}`, attributeId })),
      ),
    );
    names.forEach((name, i) => {
      const [value, dataType, sampling, access, userAccess] = results.slice(i * 5, i * 5 + 5);
      const want = expected[name]!;
      expect(value!.statusCode, name).toBe(StatusCodes.Good);
      expect(value!.value.dataType, name).toBe(want.type);
      // Built-in DataTypes are the nodes ns=0;i=<their number>.
      expect(dataType!.value.value.toString(), name).toBe(`ns=0;i=${want.type}`);
      const v: unknown = value!.value.value;
      expect(ArrayBuffer.isView(v) ? Array.from(v as Float64Array) : v, name).toEqual(want.value);
      expect(value!.value.arrayType, name).toBe(
        name === "Profile" ? VariantArrayType.Array : VariantArrayType.Scalar,
      );
      expect(sampling!.value.value, name).toBe(50);
      // AccessLevel bits: 1 CurrentRead, 2 CurrentWrite.
      expect(access!.value.value, name).toBe(want.writable ? 3 : 1);
      expect(userAccess!.value.value, name).toBe(want.writable ? 3 : 1);
    });
  });

  it("records a write to Setpoint, and Temperature moves toward it on a monitored item", async () => {
    const sim = await start({ dynamics: false });
    const { session } = await connect(sim.endpoint);
    const written = once(sim, "write") as Promise<[OpcuaWrite]>;
    const before = Date.now();
    expect(await write(session, "ns=1;s=Boiler.Setpoint", DataType.Double, 0)).toBe(
      StatusCodes.Good,
    );
    const [event] = await written;
    expect(event).toMatchObject({
      name: "Boiler.Setpoint",
      nodeId: "ns=1;s=Boiler.Setpoint",
      value: 0,
    });
    expect(event.time.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(sim.writes).toEqual([event]);
    expect(sim.get("Setpoint")).toBe(0);
    expect(number(await readValue(session, "ns=1;s=Boiler.Setpoint"))).toBe(0);

    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 50,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 20,
      maxNotificationsPerPublish: 100,
      publishingEnabled: true,
      priority: 1,
    });
    const item = await subscription.monitor(
      { nodeId: "ns=1;s=Boiler.Temperature", attributeId: AttributeIds.Value },
      { samplingInterval: 0, queueSize: 10, discardOldest: true },
      TimestampsToReturn.Both,
    );
    // Asked for 0 (every change): the variable's MinimumSamplingInterval of 50 ms wins.
    expect(item.result?.revisedSamplingInterval).toBe(50);
    const temperature = notifications(item);
    expect(number(await temperature.next())).toBe(21.5);

    // One tick moves it 5 % of the way to the new set point.
    sim.step();
    const oneTick = 21.5 + (0 - 21.5) * 0.05;
    expect(number(await temperature.next())).toBe(oneTick);

    // The dynamics timer keeps it going down toward 0.
    sim.startDynamics();
    const later = number(await temperature.next((dv) => number(dv) < oneTick));
    expect(later).toBeGreaterThan(0);
    const seen = temperature.values.map(number);
    expect(seen).toEqual([...seen].sort((a, b) => b - a));
  });

  it("refuses writes to read-only variables with BadNotWritable, and wrong types", async () => {
    const sim = await start({ dynamics: false });
    const { session } = await connect(sim.endpoint);
    expect(await write(session, "ns=1;s=Boiler.Temperature", DataType.Double, 99)).toBe(
      StatusCodes.BadNotWritable,
    );
    expect(await write(session, "ns=1;s=Boiler.Counter", DataType.UInt32, 7)).toBe(
      StatusCodes.BadNotWritable,
    );
    expect(await write(session, "ns=1;s=Boiler.Setpoint", DataType.String, "hot")).toBe(
      StatusCodes.BadTypeMismatch,
    );
    expect(sim.writes).toEqual([]);
    expect(sim.get("Temperature")).toBe(21.5);
    expect(sim.get("Setpoint")).toBe(60);
    expect(number(await readValue(session, "ns=1;s=Boiler.Temperature"))).toBe(21.5);
  });

  it("offers only SignAndEncrypt + Basic256Sha256 when told, with username identities", async () => {
    const sim = await start({
      dynamics: false,
      securityModes: ["SignAndEncrypt"],
      users: { operator: "s3cret" },
    });
    await expect(connect(sim.endpoint)).rejects.toThrow();

    const { client, session } = await connect(sim.endpoint, { secure: true });
    const endpoints = await client.getEndpoints();
    expect(endpoints.length).toBeGreaterThan(0);
    for (const e of endpoints) {
      expect(e.securityMode).toBe(MessageSecurityMode.SignAndEncrypt);
      expect(e.securityPolicyUri).toBe(SecurityPolicy.Basic256Sha256);
    }
    expect(number(await readValue(session, "ns=1;s=Boiler.Setpoint"))).toBe(60);

    const { session: operator } = await connect(sim.endpoint, {
      secure: true,
      user: { userName: "operator", password: "s3cret" },
    });
    expect(await write(operator, "ns=1;s=Boiler.Setpoint", DataType.Double, 65)).toBe(
      StatusCodes.Good,
    );
    expect(sim.get("Setpoint")).toBe(65);
    await expect(
      connect(sim.endpoint, { secure: true, user: { userName: "operator", password: "nope" } }),
    ).rejects.toThrow();
  });

  it("restart() keeps values, the port and the write log; a client reconnects", async () => {
    const sim = await start({ dynamics: false });
    const { client, session } = await connect(sim.endpoint, { reconnect: true });
    expect(await write(session, "ns=1;s=Boiler.Setpoint", DataType.Double, 42.5)).toBe(
      StatusCodes.Good,
    );
    sim.set("Running", false);
    sim.set("BigCounter", 2n ** 64n - 1n);
    const { endpoint, port } = sim;
    const first = sim.server;

    const lost = once(client, "connection_lost");
    const restored = once(session, "session_restored");
    await sim.restart();
    expect(sim.server).not.toBe(first);
    expect(sim.endpoint).toBe(endpoint);
    expect(sim.port).toBe(port);
    await lost;
    await restored;

    const [setpoint, running, big] = await session.read(
      ["Setpoint", "Running", "BigCounter"].map((n) => ({
        nodeId: `ns=1;s=Boiler.${n}`,
        attributeId: AttributeIds.Value,
      })),
    );
    expect(setpoint!.value.value).toBe(42.5);
    expect(running!.value.value).toBe(false);
    expect(big!.value.value).toEqual([0xffffffff, 0xffffffff]);
    expect(await write(session, "ns=1;s=Boiler.Setpoint", DataType.Double, 43)).toBe(
      StatusCodes.Good,
    );
    expect(sim.writes.map((w) => w.value)).toEqual([42.5, 43]);
  });

  it("serves a profile's types and NodeIds; 64-bit writes keep every bit", async () => {
    const sim = await start({
      dynamics: false,
      profile: {
        minimumSamplingInterval: "100ms",
        objects: [
          {
            name: "Line",
            variables: [
              { name: "I16", dataType: "Int16", value: -32768 },
              { name: "U16", dataType: "UInt16", value: 65535 },
              { name: "I32", dataType: "Int32", value: -2147483648 },
              { name: "I64", dataType: "Int64", value: "-9223372036854775808", writable: true },
              { name: "F", dataType: "Float", value: 0.1, minimumSamplingInterval: 20 },
              { name: "Serial", nodeId: "ns=1;i=5001", dataType: "String", value: "B-01" },
              { name: "Speeds", dataType: "Int32", array: true, value: [1, -2], writable: true },
            ],
          },
        ],
      },
    });
    const { session } = await connect(sim.endpoint);
    const nodes = ["I16", "U16", "I32", "I64", "F"].map((n) => `ns=1;s=Line.${n}`);
    const values = await session.read(
      [...nodes, "ns=1;i=5001", "ns=1;s=Line.Speeds"].map((nodeId) => ({
        nodeId,
        attributeId: AttributeIds.Value,
      })),
    );
    expect(values.map((v) => v.value.dataType)).toEqual([
      DataType.Int16,
      DataType.UInt16,
      DataType.Int32,
      DataType.Int64,
      DataType.Float,
      DataType.String,
      DataType.Int32,
    ]);
    expect(values.map((v) => v.value.value as unknown).slice(0, 3)).toEqual([
      -32768, 65535, -2147483648,
    ]);
    expect(values[3]!.value.value).toEqual(words(-(2n ** 63n)));
    expect(values[4]!.value.value).toBe(Math.fround(0.1));
    expect(values[5]!.value.value).toBe("B-01");
    expect(Array.from(values[6]!.value.value as Int32Array)).toEqual([1, -2]);
    const sampling = await session.read(
      ["ns=1;s=Line.I16", "ns=1;s=Line.F"].map((nodeId) => ({
        nodeId,
        attributeId: AttributeIds.MinimumSamplingInterval,
      })),
    );
    expect(sampling.map((s) => s.value.value as unknown)).toEqual([100, 20]);

    expect(await write(session, "ns=1;s=Line.I64", DataType.Int64, words(-2n))).toBe(
      StatusCodes.Good,
    );
    expect(sim.get("I64")).toBe(-2n);
    expect(
      await write(session, "ns=1;s=Line.Speeds", DataType.Int32, [7, 8, 9], VariantArrayType.Array),
    ).toBe(StatusCodes.Good);
    expect(sim.get("Line.Speeds")).toEqual([7, 8, 9]);
    expect(sim.writes.map((w) => w.name)).toEqual(["Line.I64", "Line.Speeds"]);
  });

  it("adds extra variables Bench.V<i> that setMany and tickExtraVariables change", async () => {
    const sim = await start({ dynamics: false, extraVariables: 2000 });
    const { session } = await connect(sim.endpoint);
    const nodes = Array.from({ length: 2000 }, (_, i) => ({
      nodeId: `ns=1;s=Bench.V${i}`,
      attributeId: AttributeIds.Value,
    }));
    const readAll = async () => (await session.read(nodes)).map(number);
    expect(await readAll()).toEqual(nodes.map((_, i) => i));
    sim.tickExtraVariables();
    expect(await readAll()).toEqual(nodes.map((_, i) => i + 1));
    sim.setMany({ "Bench.V0": -1, "Bench.V1999": 0.5 });
    const after = await readAll();
    expect([after[0], after[1], after[1999]]).toEqual([-1, 2, 0.5]);
    expect(await write(session, "ns=1;s=Bench.V0", DataType.Double, 3)).toBe(
      StatusCodes.BadNotWritable,
    );
    expect(() => sim.setMany({ "Bench.V0": 1, "Bench.V1": "x" as unknown as number })).toThrow();
    expect(sim.get("Bench.V0")).toBe(-1);
  });

  it("reports every profile problem at once with file:line:col", () => {
    const yaml = `objects:
  - name: Boiler
    variables:
      - { name: T, dataType: Double, value: 1 }
      - { name: U, dataType: Int17 }
      - { name: V, dataType: UInt16, value: 70000 }
    dynamics:
      - { kind: approach, variable: T, target: Nope }
`;
    let message = "";
    try {
      parseOpcuaProfile(yaml, "boiler.yaml");
    } catch (e) {
      expect((e as { code?: string }).code).toBe(ErrorCodes.CONFIG_SCHEMA);
      message = (e as Error).message;
    }
    // Schema errors come first: the unknown type stops the file there.
    expect(message.split("\n")).toEqual([
      expect.stringMatching(/^boiler\.yaml:5:30 objects\[0\]\.variables\[1\]\.dataType: /),
    ]);
    const fixed = yaml.replace("Int17", "Int16");
    expect(() => parseOpcuaProfile(fixed, "boiler.yaml")).toThrow(
      /boiler\.yaml:6:45 objects\[0\]\.variables\[2\]\.value: 70000 is out of the UInt16 range\nboiler\.yaml:8:48 objects\[0\]\.dynamics\[0\]\.target: no variable named "Nope"/,
    );
  });
});

describe("shadowgate sim opcua", () => {
  /** A spawned CLI; resolves its first stdout line. */
  function spawnCli(args: string[]) {
    const child = spawn(process.execPath, [main, ...args], {
      cwd: root,
      stdio: ["pipe", "pipe", "pipe"],
    });
    children.push(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      child.on("close", (code) => resolve({ code, stdout, stderr })),
    );
    const firstLine = new Promise<string>((resolve, reject) => {
      const onData = (): void => {
        const nl = stdout.indexOf("\n");
        if (nl >= 0) {
          child.stdout.off("data", onData);
          resolve(stdout.slice(0, nl));
        }
      };
      child.stdout.on("data", onData);
      child.on("close", (code) => reject(new Error(`exited ${code} before a line: ${stderr}`)));
    });
    return { child, exited, firstLine };
  }

  it("prints its endpoint and security modes, answers a read, exits 0 on SIGTERM", async () => {
    const { child, exited, firstLine } = spawnCli([
      "sim",
      "opcua",
      "--port",
      "0",
      "--pki",
      serverPki,
    ]);
    const line = await firstLine;
    expect(line).toMatch(
      /^OPC UA simulator listening on opc\.tcp:\/\/127\.0\.0\.1:\d+ \(security: None, SignAndEncrypt Basic256Sha256; 8 variables\)$/,
    );
    const endpoint = /opc\.tcp:\/\/\S+/.exec(line)![0];
    const { client, session } = await connect(endpoint);
    expect((await readValue(session, "ns=1;s=Boiler.Setpoint")).value.value).toBe(60);
    await client.disconnect();
    child.kill("SIGTERM");
    const r = await exited;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${line}\n`);
  });

  it("exits 64 on a bad flag and 2 on a bad profile, without loading node-opcua", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "sg-opcua-cli-"));
    dirs.push(dir);
    const profile = path.join(dir, "bad.yaml");
    await writeFile(profile, "objects:\n  - name: Boiler\n    variables: []\n");
    // Reports at exit whether any node-opcua module was loaded.
    const probe = path.join(dir, "probe.mjs");
    await writeFile(
      probe,
      `import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
process.on("exit", () => {
  const loaded = Object.keys(require.cache).some((k) => k.includes("node-opcua"));
  process.stderr.write("node-opcua loaded: " + loaded + "\\n");
});
`,
    );
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ["--import", probe, main, ...args], { cwd: root });
        let stderr = "";
        child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
        child.on("close", (code) => resolve({ code, stderr }));
      });
    const badPort = await run(["sim", "opcua", "--port", "http"]);
    expect(badPort.code).toBe(64);
    expect(badPort.stderr).toBe(
      "--port http is not a whole number up to 65535\nnode-opcua loaded: false\n",
    );
    const badProfile = await run(["sim", "opcua", "--profile", profile]);
    expect(badProfile.code).toBe(2);
    expect(badProfile.stderr).toBe(
      `${profile}:3:16 objects[0].variables: Too small: expected array to have >=1 items\nnode-opcua loaded: false\n`,
    );
    // A port in use is a runtime failure, found once node-opcua is loaded (the probe sees it).
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = busy.address() as AddressInfo;
      const r = await run(["sim", "opcua", "--port", String(port), "--pki", serverPki]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^cannot start the OPC UA simulator: /m);
      expect(r.stderr).toMatch(/node-opcua loaded: true\n$/);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});
