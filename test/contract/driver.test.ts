/**
 * One driver suite, run against every transport through the protocol table (south/registry.ts),
 * as the daemon uses it: a source opened from a gateway config, a device channel from a mapping
 * file. Each rig is a real peer on a real line: the Modbus simulator over TCP, on a pty (RTU,
 * timing-true), behind socat as a serial device server (RTU over TCP), and the OPC UA simulator.
 * Whatever the transport, a channel must deliver the device's values, read and write a point for
 * a command, refuse a value the point cannot hold without touching the device, turn an outage
 * into bad quality (never a throw) and come back by itself.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { ShadowgateError } from "../../src/core/errors.js";
import { testLogger } from "../helpers/logs.js";
import type { PointValue } from "../../src/core/types.js";
import type { DevicePlan, PointReading } from "../../src/mapping/types.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { startOpcuaSimulator } from "../../src/sim/opcua/index.js";
import type { DeviceChannel, Source } from "../../src/south/protocol.js";
import { protocolOf, type SourceConfig } from "../../src/south/registry.js";
import { findSocat, openPtyPair } from "../../src/sim/pty.js";
import { freePort } from "../helpers/ports.js";
import { until } from "../helpers/until.js";

/** A peer device with one writable numeric point, `level`, and the means to take it away. */
interface Rig {
  /** The gateway config's `sources.dev` entry, as YAML flow. */
  readonly source: string;
  /** The mapping file's lines after `source: dev` (unit id, interval, points). */
  readonly mapping: string;
  /** The device's own value of `level` (what the gateway should read). */
  level(): number;
  setLevel(value: number): void;
  /**
   * A value `level` cannot take, and who refuses it: the codec before anything is sent
   * (`prepare`), or the device (the write throws).
   */
  readonly refused: { readonly value: unknown; readonly by: "prepare" | "device" };
  /**
   * The peer goes away and comes back: `link` drops the connection (the source reconnects),
   * `silence` keeps the line and the device stops answering (its requests time out).
   */
  readonly outageKind: "link" | "silence";
  outage(): Promise<void>;
  restore(): Promise<void>;
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const modbusMapping = `unitId: 3
pollInterval: 100ms
points:
  level: { register: 40001, type: uint16, writable: true }
  total: { register: 40010, type: uint32 }
`;

async function modbusTcp(): Promise<Rig> {
  const sim = new ModbusTcpSimulator({ units: [3] });
  const { port } = await sim.start({ port: 0 });
  cleanups.push(() => sim.stop());
  return {
    source: `{ protocol: modbus-tcp, host: 127.0.0.1, port: ${port}, timeout: 300ms, reconnect: { min: 50ms, max: 200ms } }`,
    mapping: modbusMapping,
    level: () => sim.unit(3).holding[0] ?? NaN,
    setLevel: (v) => void (sim.unit(3).holding[0] = v),
    refused: { value: -1, by: "prepare" },
    outageKind: "link",
    outage: () => sim.stop(),
    restore: async () => void (await sim.start({ port })),
  };
}

/** The simulator on one end of a pty pair: the RTU slave of an RS-485 line. */
async function rtuLine() {
  const line = await openPtyPair();
  cleanups.push(() => line.close());
  const sim = new ModbusTcpSimulator({ units: [3] });
  await sim.startRtu({ path: line.a, baud: 115_200 });
  cleanups.push(() => sim.stop());
  return { line, sim };
}

async function modbusRtu(): Promise<Rig> {
  const { line, sim } = await rtuLine();
  return {
    source: `{ protocol: modbus-rtu, path: ${line.b}, baud: 115200, timeout: 100ms, unitBackoff: 200ms }`,
    mapping: modbusMapping,
    level: () => sim.unit(3).holding[0] ?? NaN,
    setLevel: (v) => void (sim.unit(3).holding[0] = v),
    refused: { value: 70_000, by: "prepare" },
    // A serial line has no connection to lose: its slave falls silent.
    outageKind: "silence",
    outage: async () => void (sim.unit(3).silent = true),
    restore: async () => void (sim.unit(3).silent = false),
  };
}

/** socat as the serial device server (a DTU): TCP on one side, the line on the other. */
async function modbusRtuOverTcp(): Promise<Rig> {
  const { line, sim } = await rtuLine();
  const port = await freePort();
  const socat = findSocat() ?? "socat";
  let bridge: ReturnType<typeof spawn> | undefined;
  const startBridge = () => {
    bridge = spawn(
      socat,
      [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `FILE:${line.b},raw,echo=0`],
      { stdio: "ignore", detached: true },
    );
  };
  // The bridge and the children it forked for each connection: the link is cut.
  const stopBridge = async () => {
    const b = bridge;
    bridge = undefined;
    if (!b?.pid || b.exitCode !== null) return;
    const exited = new Promise((r) => b.once("exit", r));
    process.kill(-b.pid, "SIGTERM");
    await exited;
  };
  startBridge();
  cleanups.push(stopBridge);
  return {
    source: `{ protocol: modbus-rtu-over-tcp, host: 127.0.0.1, port: ${port}, timeout: 300ms, reconnect: { min: 50ms, max: 200ms } }`,
    mapping: modbusMapping,
    level: () => sim.unit(3).holding[0] ?? NaN,
    setLevel: (v) => void (sim.unit(3).holding[0] = v),
    refused: { value: 1.5, by: "prepare" },
    outageKind: "link",
    outage: stopBridge,
    restore: async () => startBridge(),
  };
}

async function opcua(): Promise<Rig> {
  const opc = await startOpcuaSimulator({ port: 0 });
  cleanups.push(() => opc.close());
  opc.stopDynamics(); // values change only when the suite says so
  return {
    source: `{ protocol: opcua, endpoint: "${opc.endpoint}", reconnect: { min: 100ms, max: 500ms } }`,
    mapping: `pollInterval: 100ms
points:
  level: { node: "ns=1;s=Boiler.Setpoint", writable: true }
  temperature: { node: "ns=1;s=Boiler.Temperature" }
`,
    level: () => opc.get("Boiler.Setpoint") as number,
    setLevel: (v) => opc.set("Boiler.Setpoint", v),
    refused: { value: "hot", by: "device" }, // a string for a Double node
    outageKind: "link",
    outage: () => opc.pause(),
    restore: () => opc.resume(),
  };
}

const RIGS: ReadonlyArray<readonly [string, () => Promise<Rig>]> = [
  ["Modbus TCP", modbusTcp],
  ["Modbus RTU on a pty", modbusRtu],
  ["Modbus RTU over TCP", modbusRtuOverTcp],
  ["OPC UA", opcua],
];

/** The rig's source opened through the protocol table, and its device's channel. */
async function open(rig: Rig): Promise<{ source: Source; channel: DeviceChannel }> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-contract-"));
  await mkdir(path.join(dir, "mappings"));
  const configFile = path.join(dir, "gateway.yaml");
  await writeFile(
    configFile,
    `version: 1\ngateway: { name: contract, dataDir: ./data }\nsources:\n  dev: ${rig.source}\nmappings: ./mappings\n`,
  );
  await writeFile(
    path.join(dir, "mappings", "dev.yaml"),
    `version: 1\ndevice: { productKey: a1Contract, deviceName: dev }\nsource: dev\n${rig.mapping}`,
  );
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const config = loaded.config.gateway.sources.dev as SourceConfig;
  const device = loaded.config.devices[0] as DevicePlan;
  const source = await protocolOf(config).open("dev", config, {
    dataDir: loaded.config.dataDir,
    configDir: dir,
    log: testLogger(),
  });
  cleanups.push(() => source.stop());
  await source.start();
  return { source, channel: source.channel(device) };
}

const level = (readings: readonly PointReading[]) => readings.find((r) => r.point.name === "level");
const good = (r: PointReading | undefined): PointValue | undefined =>
  r?.quality.status === "good" ? r.value : undefined;

describe.each(RIGS)("driver contract: %s", (_name, makeRig) => {
  it("delivers the device's values, polled or monitored", async () => {
    const rig = await makeRig();
    rig.setLevel(41);
    const { source, channel } = await open(rig);
    await until("online", () => source.health().state === "online");

    const readings = await channel.poll();
    expect(readings.map((r) => r.point.name).sort()).toEqual(
      channel.monitored ? ["level", "temperature"] : ["level", "total"],
    );
    expect(readings.every((r) => r.quality.status === "good")).toBe(true);
    expect(good(level(readings))).toBe(41);

    rig.setLevel(42);
    if (channel.monitored) {
      const seen: PointValue[] = [];
      const stop = await channel.monitor((rs) => {
        const v = good(level(rs));
        if (v !== undefined) seen.push(v);
      });
      cleanups.push(stop);
      await until("the change monitored", () => seen.includes(42));
      expect(seen).toEqual([42]); // the current value once, no replay
    } else {
      await expect(channel.monitor(() => undefined)).rejects.toThrow(/polled/);
      expect(good(level(await channel.poll()))).toBe(42);
    }
  });

  it("reads and writes a point for a command; refuses a value it cannot hold, writing nothing", async () => {
    const rig = await makeRig();
    rig.setLevel(10);
    const { source, channel } = await open(rig);
    await until("online", () => source.health().state === "online");
    expect(channel.access("no-such-point")).toBeUndefined();
    const access = channel.access("level");
    if (!access) throw new Error("no access to level");

    expect(await access.read()).toMatchObject({ value: 10, quality: { status: "good" } });
    const prepared = await access.prepare(77);
    if (!("write" in prepared)) throw new Error(JSON.stringify(prepared));
    await prepared.write();
    expect(rig.level()).toBe(77);
    expect(await access.read()).toMatchObject({ value: 77, quality: { status: "good" } });

    const refused = await access.prepare(rig.refused.value);
    if (rig.refused.by === "prepare") expect(refused).toHaveProperty("rejected");
    else {
      if (!("write" in refused)) throw new Error(JSON.stringify(refused));
      await expect(refused.write()).rejects.toBeInstanceOf(ShadowgateError);
    }
    expect(rig.level()).toBe(77);
  });

  it("turns an outage into bad quality, never a throw, and comes back by itself", async () => {
    const rig = await makeRig();
    rig.setLevel(5);
    const { source, channel } = await open(rig);
    await until("online", () => source.health().state === "online");
    expect(good(level(await channel.poll()))).toBe(5);

    await rig.outage();
    await until("bad quality", async () => {
      const readings = await channel.poll();
      return readings.length > 0 && readings.every((r) => r.quality.status === "bad");
    });
    const during = await channel.access("level")?.read();
    expect(during?.quality.status).toBe("bad");

    rig.setLevel(6); // changed while the gateway could not see it
    await rig.restore();
    await until("the value after the outage", async () => good(level(await channel.poll())) === 6);
    const health = source.health();
    expect(health).toMatchObject({ sourceId: "dev", state: "online" });
    if (rig.outageKind === "link") expect(health.reconnects).toBeGreaterThanOrEqual(1);
    else expect(health.timeouts).toBeGreaterThanOrEqual(1);

    await source.stop();
    expect(source.health().state).not.toBe("online");
    const after = await channel.poll();
    expect(after.every((r) => r.quality.status === "bad")).toBe(true);
  });
});
