/**
 * `shadowgate sim --from-config` (issue 18): a Modbus slave built from the mappings holds each
 * point's value at its address, type and byte order, encoded by the gateway's codec; the real
 * driver reads every value back as given, for every type and byte order; read-only registers
 * refuse writes (seen by modbus-serial, a client we did not write); and the CLI prints the
 * overrides that point `read` at it, or names a bad values file's line.
 */
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import Modbus from "modbus-serial";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { testLogger } from "../helpers/logs.js";
import { Gateway } from "../../src/daemon/gateway.js";
import type { ModbusDevicePlan } from "../../src/mapping/types.js";
import { loadDevice } from "../../src/sim/modbus/from-mapping.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { openPtyPair } from "../../src/sim/pty.js";
import { CLI_MAIN } from "../helpers/gateway-process.js";
import { run, runCli } from "../helpers/run.js";
import { writeSite } from "../helpers/site.js";

const running: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop().catch(() => undefined);
});

/** Every type and byte order the codec has, with a value that tells the orders apart. */
const POINTS: Array<[string, string, unknown]> = [
  ["i16_ab", "{ register: 40001, type: int16, byteOrder: AB }", -1234],
  ["i16_ba", "{ register: 40002, type: int16, byteOrder: BA }", -1234],
  ["u16_ab", "{ register: 40003, type: uint16, byteOrder: AB, writable: true }", 51234],
  ["u16_ba", "{ register: 40004, type: uint16, byteOrder: BA }", 51234],
  ...["ABCD", "CDAB", "BADC", "DCBA"].flatMap((o, i): Array<[string, string, unknown]> => [
    [`i32_${o}`, `{ register: ${40011 + i * 2}, type: int32, byteOrder: ${o} }`, -123456789],
    [`u32_${o}`, `{ register: ${40021 + i * 2}, type: uint32, byteOrder: ${o} }`, 3123456789],
    [`f32_${o}`, `{ register: ${40031 + i * 2}, type: float32, byteOrder: ${o} }`, -273.25],
    [`i64_${o}`, `{ register: ${40041 + i * 4}, type: int64, byteOrder: ${o} }`, -1234567890123],
    [`u64_${o}`, `{ register: ${40061 + i * 4}, type: uint64, byteOrder: ${o} }`, 9876543210123],
    [`f64_${o}`, `{ register: ${40081 + i * 4}, type: float64, byteOrder: ${o} }`, 6.02214076e23],
  ]),
  [
    "scaled",
    "{ register: 40101, type: int16, scale: 0.1, valueOffset: -40, min: -40, max: 100 }",
    21.5,
  ],
  ["label", "{ register: 40102, type: uint16, enum: { 0: idle, 1: heating, 2: fault } }", "fault"],
  ["bit3", "{ register: 40103, type: uint16, bit: 3 }", true],
  ["bit5", "{ register: 40103, type: uint16, bit: 5, writable: true }", true],
  ["text", "{ register: 40111, type: string, length: 4 }", "PUMP-7"],
  ["in_f32", "{ register: 30001, type: float32 }", 12.5],
  ["coil_on", "{ coil: 1, writable: true }", true],
  ["input_bit", "{ discreteInput: 2 }", true],
];

async function site(mapping: string, port = 1): Promise<{ dir: string; configFile: string }> {
  const dir = await writeSite("sg-simcfg-", {
    "mappings/plant.yaml": mapping,
    "gateway.yaml": `version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1, port: ${port}, timeout: 1s }\nmappings: ./mappings\n`,
  });
  return { dir, configFile: path.join(dir, "gateway.yaml") };
}

const mappingOf = (points: ReadonlyArray<[string, string, unknown]>) =>
  `version: 1\ndevice: { productKey: pk, deviceName: plant }\nsource: plc1\nunitId: 3\npoints:\n${points
    .map(([name, def]) => `  ${name}: ${def}\n`)
    .join("")}`;

/** The POINTS mapping loaded, and a simulator (unit 3) built from it, serving on a free port. */
async function slave(values?: Record<string, unknown>) {
  const { configFile } = await site(mappingOf(POINTS));
  const loaded = await loadConfig(configFile, {});
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const [plan] = loaded.config.devices as ModbusDevicePlan[];
  if (!plan) throw new Error("no device");
  const sim = new ModbusTcpSimulator({ units: [3] });
  loadDevice(sim.unit(3), plan, values);
  const { port } = await sim.start({ port: 0 });
  running.push(() => sim.stop());
  return { loaded: loaded.config, sim, port };
}

/**
 * `shadowgate sim --from-config` with these arguments, until it has printed every source (its
 * last line, "Ctrl-C stops."); stopped after the test. Resolves with what it printed.
 */
async function simFromConfig(args: readonly string[], env = process.env): Promise<string> {
  const child = spawn(process.execPath, [CLI_MAIN, "sim", "--from-config", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  running.push(async () => void child.kill("SIGTERM"));
  return new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout.on("data", (b: Buffer) => {
      text += b.toString();
      if (text.includes("Ctrl-C stops.")) resolve(text);
    });
    child.on("exit", (code) => reject(new Error(`sim exited ${code}: ${text}`)));
  });
}

/** The words of the printed `--override` lines, as a shell splits them (some are quoted). */
const overridesIn = (out: string): string[] =>
  [...out.matchAll(/^ {2}(--override .*)$/gm)].flatMap((line) =>
    [...(line[1] ?? "").matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? ""),
  );

describe("a Modbus slave built from the mappings", () => {
  it("holds every type and byte order as given, read back by the real driver", async () => {
    const { loaded, sim, port } = await slave(Object.fromEntries(POINTS.map(([n, , v]) => [n, v])));
    const gateway = new Gateway(
      {
        ...loaded,
        gateway: {
          ...loaded.gateway,
          sources: { plc1: { ...loaded.gateway.sources.plc1!, port } as never },
        },
      },
      testLogger(),
    );
    running.push(() => gateway.stop());
    await gateway.pollOnce();
    const reported = gateway.shadow.document("plant")?.state.reported ?? {};
    for (const [name, , value] of POINTS) expect(reported[name], name).toEqual(value);
    // Words differ by byte order: the orders are really applied, not all read alike.
    expect(sim.unit(3).holding[10]).not.toBe(sim.unit(3).holding[12]);
  });

  it("gives plausible values inside min..max, and refuses writes to read-only registers", async () => {
    const { sim, port } = await slave();
    const client = new Modbus.default();
    await client.connectTCP("127.0.0.1", { port });
    running.push(() => new Promise<void>((r) => client.close(() => r())));
    client.setID(3);
    client.setTimeout(1000);
    // scaled: -40..100 in tenths with offset -40 -> 30 -> raw 700.
    expect((await client.readHoldingRegisters(100, 1)).data).toEqual([700]);
    await expect(client.writeRegister(0, 7)).rejects.toMatchObject({ modbusCode: 2 });
    await client.writeRegister(2, 7); // u16_ab is writable
    expect(sim.unit(3).holding[2]).toBe(7);
    // Register 40103 holds a read-only bit and a writable one: it stays writable.
    await client.writeRegister(102, 0);
    expect(sim.unit(3).holding[102]).toBe(0);
    await expect(client.writeCoil(0, false)).resolves.toBeDefined();
  });

  it("sim --from-config prints the overrides that point read at it; a bad values file is named at its line", async () => {
    const { dir, configFile } = await site(mappingOf(POINTS.slice(0, 4)));
    const values = path.join(dir, "values.yaml");
    await writeFile(values, "plant:\n  i16_ab: -7\n  u16_ba: 9\n");
    const overrides = overridesIn(await simFromConfig([configFile, "--values", values]));
    const read = await runCli(["read", "-c", configFile, "--json", ...overrides]);
    expect(read.code).toBe(0);
    expect(JSON.parse(read.stdout)).toEqual({
      plant: { i16_ab: -7, i16_ba: 10, u16_ab: 10, u16_ba: 9 },
    });

    await writeFile(values, "plant:\n  i16_ab: -7\n  nope: 1\nother: {}\n");
    const bad = await runCli(["sim", "--from-config", configFile, "--values", values]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/values\.yaml:3:3 plant\.nope: plant has no point nope/);
    expect(bad.stderr).toMatch(/values\.yaml:4:1 other: no device other in the config/);
    await writeFile(values, "plant:\n  i16_ab: 99999\n");
    const range = await runCli(["sim", "--from-config", configFile, "--values", values]);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(/plant i16_ab = 99999: /);
  });

  it("stands in for every Modbus transport of a config: TCP, RTU on a pty pair, RTU over TCP behind a device server", async () => {
    const device = (name: string, source: string, unit: number) =>
      `version: 1\ndevice: { productKey: pk, deviceName: ${name} }\nsource: ${source}\nunitId: ${unit}\npoints:\n  level: { register: 40001, type: uint16 }\n  flow: { register: 40002, type: float32, byteOrder: CDAB }\n`;
    const dir = await writeSite("sg-simcfg-", {
      "gateway.yaml": `version: 1
sources:
  plc1: { protocol: modbus-tcp, host: 10.0.0.9, port: 502 }
  line1: { protocol: modbus-rtu, path: /dev/ttyUSB7, baud: 19200, parity: even }
  dtu1: { protocol: modbus-rtu-over-tcp, host: 10.0.0.10, port: 8899 }
mappings: ./mappings
`,
      "mappings/a.yaml": device("tank-a", "plc1", 1),
      "mappings/b.yaml": device("tank-b", "line1", 7),
      "mappings/c.yaml": device("tank-c", "dtu1", 9),
      "values.yaml":
        "tank-a: { level: 11, flow: 1.5 }\ntank-b: { level: 22, flow: 2.5 }\ntank-c: { level: 33, flow: 3.5 }\n",
    });
    const configFile = path.join(dir, "gateway.yaml");
    const values = path.join(dir, "values.yaml");
    const out = await simFromConfig([configFile, "--values", values]);
    expect(out).toMatch(/^plc1 \(modbus-tcp, unit 1, 2 points\): 127\.0\.0\.1:\d+$/m);
    expect(out).toMatch(
      /^line1 \(modbus-rtu, unit 7, 2 points\): \S+\/b \(a pty pair; .* 19200 baud\)$/m,
    );
    expect(out).toMatch(/^dtu1 \(modbus-rtu-over-tcp, unit 9, 2 points\): 127\.0\.0\.1:\d+ /m);
    const overrides = overridesIn(out);
    // The gateway's end of the line is the one printed.
    expect(overrides).toContain(`sources.line1.path=${/^line1 .*?: (\S+) /m.exec(out)?.[1]}`);

    const read = await runCli(["read", "-c", configFile, "--json", ...overrides]);
    expect(read.stderr).toBe("");
    expect(JSON.parse(read.stdout)).toEqual({
      "tank-a": { level: 11, flow: 1.5 },
      "tank-b": { level: 22, flow: 2.5 },
      "tank-c": { level: 33, flow: 3.5 },
    });

    // mbpoll, a master we did not write, on the same serial line: 19200 8E1, unit 7.
    const linePath = /^ {2}--override sources\.line1\.path=(\S+)$/m.exec(out)?.[1] ?? "";
    const mbpoll = await run("mbpoll", [
      ...["-m", "rtu", "-a", "7", "-b", "19200", "-P", "even", "-t", "4", "-r", "1", "-c", "1"],
      ...["-1", linePath],
    ]);
    expect(mbpoll.stdout).toMatch(/\[1\]:\s+22\b/);
  });

  it("stands in for an OPC UA source: NodeIds in any namespace, browse paths, labels, scales, booleans and strings", async () => {
    const dir = await writeSite("sg-simcfg-", {
      "gateway.yaml": `version: 1
sources:
  ua1:
    protocol: opcua
    endpoint: opc.tcp://10.0.0.20:4840
    securityMode: SignAndEncrypt
    identity: { type: username, username: operator, password: "\${UA_PASSWORD}" }
mappings: ./mappings
`,
      "mappings/line.yaml": `version: 1
device: { productKey: pk, deviceName: line-1 }
source: ua1
points:
  temperature: { node: "ns=2;s=Line1.Temperature", scale: 0.1, min: 0, max: 200 }
  counter: { node: "ns=3;i=1002" }
  vendor: { node: "nsu=urn:acme:plc;s=Info.Vendor" }
  speed: { node: "/2:Plant/2:Line1/2:Speed", writable: true }
  running: { node: "/2:Plant/2:Line1/2:Running" }
  mode: { node: "ns=2;s=Line1.Mode", enum: { 0: auto, 1: manual, 2: service } }
`,
      "values.yaml":
        "line-1: { temperature: 72.5, vendor: ACME, running: true, mode: service, speed: 1450 }\n",
    });
    const configFile = path.join(dir, "gateway.yaml");
    const values = path.join(dir, "values.yaml");
    const env = { ...process.env, UA_PASSWORD: "s3cret-ua-password-77" };
    const out = await simFromConfig([configFile, "--values", values], env);
    expect(out).toMatch(
      /^ua1 \(opcua, \d+ objects, 6 variables\): opc\.tcp:\/\/127\.0\.0\.1:\d+$/m,
    );
    const overrides = overridesIn(out);
    // The simulator serves without security to anonymous sessions: the overrides say so.
    expect(overrides).toContain("sources.ua1.securityMode=None");
    expect(out).toContain("--override 'sources.ua1.identity={type: anonymous}'");

    const read = await runCli(["read", "-c", configFile, "--json", ...overrides], { env });
    expect(read.stderr).toBe("");
    expect(JSON.parse(read.stdout)).toEqual({
      "line-1": {
        temperature: 72.5,
        counter: 10,
        vendor: "ACME",
        speed: 1450,
        running: true,
        mode: "service",
      },
    });
  }, 60_000);

  it("names every OPC UA node it cannot host, at once, and starts nothing", async () => {
    const dir = await writeSite("sg-simcfg-", {
      "gateway.yaml":
        'version: 1\nsources:\n  ua1: { protocol: opcua, endpoint: "opc.tcp://10.0.0.1:4840" }\nmappings: ./mappings\n',
      "mappings/d.yaml": `version: 1
device: { productKey: pk, deviceName: d1 }
source: ua1
points:
  time: { node: "i=2258" }
  blob: { node: "ns=3;b=AAAA" }
  bare: { node: "/2:Temp" }
  fine: { node: "ns=2;s=Fine" }
`,
    });
    const r = await runCli(["sim", "--from-config", path.join(dir, "gateway.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toEqual([
      "cannot simulate d1.time: i=2258: a node of OPC UA's own namespace (0) is the server's, not a device's",
      expect.stringMatching(
        /^cannot simulate d1\.blob: ns=3;b=AAAA: a simulator hosts NodeIds of the form /,
      ),
      "cannot simulate d1.bare: /2:Temp: a variable straight under Objects; give it an object (/2:Device/2:Temp)",
    ]);
  });

  it("serves an RTU source on the serial device --line names, as on a bench wired to the gateway's line", async () => {
    const wire = await openPtyPair();
    running.push(() => wire.close());
    // The gateway's config names its end of the wire, as on the gateway's own box.
    const dir = await writeSite("sg-simcfg-", {
      "gateway.yaml": `version: 1\nsources:\n  line1: { protocol: modbus-rtu, path: ${wire.b}, baud: 115200 }\nmappings: ./mappings\n`,
      "mappings/m.yaml":
        "version: 1\ndevice: { productKey: pk, deviceName: meter }\nsource: line1\nunitId: 2\npoints:\n  kwh: { register: 40001, type: uint32, min: 0, max: 2000 }\n",
    });
    const configFile = path.join(dir, "gateway.yaml");
    const out = await simFromConfig([configFile, "--line", `line1=${wire.a}`]);
    expect(out).toContain(`line1 (modbus-rtu, unit 2, 1 point): ${wire.a} at 115200 baud`);
    expect(out).toContain("(no override: the gateway's config reaches it as it is)");
    const read = await runCli(["read", "-c", configFile, "--json"]);
    expect(JSON.parse(read.stdout)).toEqual({ meter: { kwh: 1000 } });

    const bad = await runCli(["sim", "--from-config", configFile, "--line", "plc9=/dev/null"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("--line plc9=...: the config has no modbus-rtu source plc9");
  });
});
