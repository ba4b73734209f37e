import { mkdtemp, readFile, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatProblem, loadConfig } from "../../../src/config/load.js";
import { scenarioJsonSchema } from "../../../src/cli/scenario/schema.js";
import { jsonSchemas } from "../../../src/config/json-schema.js";
import { parseOverride } from "../../../src/config/override.js";

const root = path.resolve(import.meta.dirname, "../../..");

/** Writes a gateway config and mapping files into a fresh folder; returns the config path. */
async function workspace(mappings: Record<string, string>, gateway?: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "sg-config-"));
  await mkdir(path.join(dir, "mappings"));
  const config = path.join(dir, "gateway.yaml");
  await writeFile(
    config,
    gateway ??
      "version: 1\nsources:\n  plc1:\n    protocol: modbus-tcp\n    host: 127.0.0.1\n    maxRegistersPerRequest: 100\nmappings: mappings\n",
  );
  for (const [name, text] of Object.entries(mappings)) {
    await writeFile(path.join(dir, "mappings", name), text);
  }
  return config;
}

const head = "version: 1\ndevice: { productKey: pk, deviceName: dev }\nsource: plc1\npoints:\n";

async function problemsOf(config: string): Promise<string[]> {
  const r = await loadConfig(config, {});
  return r.ok ? [] : r.problems.map((p) => formatProblem(p, path.dirname(config)));
}

describe("loadConfig", () => {
  it("accepts the shipped example and resolves every point", async () => {
    const r = await loadConfig(path.join(root, "config/gateway.yaml"), {});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const [boiler] = r.config.devices;
    expect(boiler?.deviceName).toBe("boiler-01");
    const byName = Object.fromEntries(boiler?.points.map((p) => [p.name, p]) ?? []);
    expect(byName.temperature).toMatchObject({ table: "holding", address: 0, count: 2 });
    expect(byName.running).toMatchObject({ table: "coil", address: 0, writable: true });
    expect(byName.doorOpen).toMatchObject({ table: "discreteInput", address: 2 });
    expect(byName["alarm.overheat"]).toMatchObject({
      path: ["alarm", "overheat"],
      codec: { bit: 3 },
    });
    expect(byName.flow).toMatchObject({ table: "input", address: 12 });
    expect(r.config.gateway.sources.plc1).toMatchObject({
      host: "127.0.0.1",
      port: 5020,
      timeout: 1000,
    });
  });

  it("reports a wrong type, an unknown source and a YAML syntax error in one run, with file:line:col", async () => {
    const config = path.join(root, "test/fixtures/broken/gateway.yaml");
    const problems = await problemsOf(config);
    expect(problems).toEqual([
      'mappings/a-wrong-type.yaml:7:11 points.temperature.type: "float33" is not allowed here; did you mean float32? (one of bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string)',
      'mappings/b-unknown-source.yaml:3:9 source: unknown source "plc9"; the gateway config defines plc1',
      "mappings/c-syntax.yaml:6:3 Flow map in block collection must be sufficiently indented and end with a }",
    ]);
  });

  it("checks points across keys and files", async () => {
    const config = await workspace({
      "a.yaml":
        head +
        "  temp: { register: 40001, type: float32 }\n" + // line 5
        "  clash: { register: 40002, type: int16 }\n" + // overlaps temp's second word
        "  setpoint: { register: 30001, writable: true }\n" + // input registers are read-only
        "  motor: { coil: 5, type: float32 }\n" + // a multi-register type on a coil
        "  far: { register: 465536, type: uint32 }\n" + // runs past 65535
        "  alarm: { register: 40100 }\n" + // line 10
        "  alarm.hi: { register: 40101 }\n" + // alarm is a value and an object
        "  word: { register: 40003, type: float32, byteOrder: AB }\n" + // 16-bit order on 32-bit
        "  name: { register: 40010, type: string }\n" + // no length
        "  pdu: { offset: 5 }\n" + // offset without table
        "  bits: { register: 40020, bit: 3, type: float32 }\n" + // line 15
        "  big: { register: 40200, type: string, length: 110 }\n", // beyond the source's cap
      "b.yaml":
        "version: 1\ndevice: { productKey: pk, deviceName: dev }\nsource: plc1\npoints:\n  x: { register: 40001, type: uint32, byteOrder: CDAB }\n",
    });
    expect(await problemsOf(config)).toEqual([
      "mappings/a.yaml:6:3 points.clash: overlaps point temp (line 5) at 40002 with a conflicting type: int16 vs float32 ABCD",
      "mappings/a.yaml:6:3 points.clash: overlaps point x (b.yaml:5) at 40002 with a conflicting type: int16 vs uint32 CDAB",
      "mappings/a.yaml:7:42 points.setpoint.writable: input registers are read-only; writable needs a holding register or a coil",
      "mappings/a.yaml:8:27 points.motor.type: float32 needs registers; a coil holds one bit (use a register)",
      "mappings/a.yaml:9:20 points.far.register: occupies addresses 65535-65536; the last address is 65535",
      "mappings/a.yaml:11:3 points.alarm.hi: state.reported.alarm.hi needs alarm to be an object, but point alarm is a value",
      "mappings/a.yaml:12:54 points.word.byteOrder: float32 takes ABCD, CDAB, BADC, DCBA, not AB",
      "mappings/a.yaml:13:34 points.name.type: a string point needs length, its size in registers",
      "mappings/a.yaml:14:18 points.pdu.offset: offset is the 0-based address and goes with table (for value = raw * scale + c, use valueOffset)",
      "mappings/a.yaml:15:33 points.bits.bit: bit applies to 16-bit registers (type uint16), not float32",
      "mappings/a.yaml:16:3 points.big: 110 registers exceed maxRegistersPerRequest 100 of source plc1; no single read can fetch it",
      "mappings/b.yaml:2:9 device: deviceName dev is already described by a.yaml:2; one mapping file per device",
      "mappings/b.yaml:5:3 points.x: overlaps point temp (a.yaml:5) at 40001 with a conflicting type: uint32 CDAB vs float32 ABCD",
    ]);
  });

  it("reads serial sources with their defaults, and refuses two sources on one serial port", async () => {
    const serial =
      "version: 1\nsources:\n" +
      "  line1:\n    protocol: modbus-rtu\n    path: /dev/ttyUSB0\n" + // lines 3-5
      "  line2:\n    protocol: modbus-rtu\n    path: /dev/ttyUSB0\n    baud: 19200\n" + // 6-9 (the path on 8)
      "  dtu:\n    protocol: modbus-rtu-over-tcp\n    host: 10.0.0.9\n    port: 8899\n" +
      "mappings: mappings\n";
    const mapping =
      "version: 1\ndevice: { productKey: pk, deviceName: m1 }\nsource: line1\nunitId: 3\npoints:\n  t: { register: 40001 }\n";
    const bad = await workspace({ "a.yaml": mapping }, serial);
    expect(await problemsOf(bad)).toEqual([
      "gateway.yaml:8:11 sources.line2.path: /dev/ttyUSB0 is already the line of source line1; put every slave of one line (one unitId per mapping file) under one source",
    ]);
    const good = await workspace(
      { "a.yaml": mapping },
      serial.replace("path: /dev/ttyUSB0\n    baud", "path: /dev/ttyUSB1\n    baud"),
    );
    const r = await loadConfig(good, {});
    expect(r.ok && r.config.gateway.sources).toMatchObject({
      line1: {
        baud: 9600,
        parity: "none",
        dataBits: 8,
        stopBits: 1,
        timeout: 500,
        turnaround: 0,
        demoteAfter: 3,
        unitBackoff: 5000,
      },
      line2: { path: "/dev/ttyUSB1", baud: 19200 },
      dtu: { host: "10.0.0.9", port: 8899, timeout: 1500, demoteAfter: 3 },
    });
  });

  it("compiles OPC UA points, and says when a file mixes kinds or meets the wrong source", async () => {
    const gateway =
      "version: 1\nsources:\n" +
      "  plc1:\n    protocol: modbus-tcp\n    host: 127.0.0.1\n" +
      "  opc1:\n    protocol: opcua\n    endpoint: opc.tcp://127.0.0.1:4840\n" +
      "mappings: mappings\n";
    const opc = (source: string, points: string) =>
      `version: 1\ndevice: { productKey: pk, deviceName: ${source}-dev }\nsource: ${source}\n` +
      `pollInterval: 500ms\npoints:\n${points}`;
    const good = await workspace(
      {
        "a.yaml":
          opc(
            "opc1",
            "  temp: { node: 'ns=1;s=Boiler.Temperature', deadband: 0.5, samplingInterval: 100ms }\n" +
              "  sp: { node: /1:Boiler/1:Setpoint, writable: true, min: 0, max: 90, scale: 0.1 }\n" +
              "  state: { node: 'ns=1;s=Boiler.StateCode', enum: { 0: idle, 1: heating } }\n",
          ) + "mode: poll\n",
      },
      gateway,
    );
    const r = await loadConfig(good, {});
    expect(r.ok && r.config.devices[0]).toMatchObject({
      kind: "opcua",
      mode: "poll",
      pollIntervalMs: 500,
      points: [
        { name: "temp", node: "ns=1;s=Boiler.Temperature", deadband: 0.5, samplingIntervalMs: 100 },
        { name: "sp", node: "/1:Boiler/1:Setpoint", writable: true, min: 0, max: 90, scale: 0.1 },
        { name: "state", enum: { 0: "idle", 1: "heating" } },
      ],
    });
    const bad = await workspace(
      {
        "a.yaml": opc(
          "opc1",
          "  temp: { node: 'ns=1;s=T', type: float32 }\n" + // line 6
            "  level: { register: 40001 }\n", // line 7: a Modbus point in an OPC UA file
        ),
        "b.yaml": opc("plc1", "  temp: { node: 'ns=1;s=T' }\n"), // nodes on a Modbus source
        "c.yaml":
          "version: 1\ndevice: { productKey: pk, deviceName: c }\nsource: opc1\npoints:\n  x: { register: 40001 }\n",
      },
      gateway,
    );
    expect(await problemsOf(bad)).toEqual([
      "mappings/a.yaml:6:35 points.temp.type: an OPC UA node is typed by the server; drop type",
      "mappings/a.yaml:7:3 points.level: needs node: this file maps OPC UA nodes (see its first point)",
      "mappings/b.yaml:3:9 source: plc1 is a Modbus source; its points need register addresses, not node",
      "mappings/c.yaml:3:9 source: opc1 is an OPC UA source; its points need node, not register addresses",
    ]);
  });

  it("reports unknown keys at the key, and schema errors of the gateway file too", async () => {
    const config = await workspace(
      { "a.yaml": head + "  t: { register: 40001, scael: 0.1 }\n" },
      "version: 1\nsources:\n  plc1:\n    protocol: modbus-tcp\n    host: 127.0.0.1\n    port: 99999\nmappings: mappings\n",
    );
    expect(await problemsOf(config)).toEqual([
      "gateway.yaml:6:11 sources.plc1.port: Too big: expected number to be <=65535",
      "mappings/a.yaml:5:25 points.t.scael: unknown key (check the spelling; the JSON Schema in config/schemas lists them)",
    ]);
  });

  it("interpolates ${ENV} with types and defaults, and names a missing variable", async () => {
    const gateway =
      "version: 1\nsources:\n  plc1:\n    protocol: modbus-tcp\n    host: ${PLC_HOST}\n    port: ${PLC_PORT:-1502}\nmappings: mappings\n";
    const config = await workspace({ "a.yaml": head + "  t: { register: 40001 }\n" }, gateway);
    const ok = await loadConfig(config, { PLC_HOST: "10.0.0.5" });
    expect(ok.ok && ok.config.gateway.sources.plc1).toMatchObject({ host: "10.0.0.5", port: 1502 });
    const withPort = await loadConfig(config, { PLC_HOST: "h", PLC_PORT: "2502" });
    expect(withPort.ok && withPort.config.gateway.sources.plc1).toMatchObject({ port: 2502 });
    expect(await problemsOf(config)).toEqual([
      "gateway.yaml:5:11 environment variable PLC_HOST is not set (write ${PLC_HOST:-default} for a default)",
    ]);
  });

  it("asks for a deviceSecret when the cloud section names no broker URL, and checks keepalive", async () => {
    const config = await workspace(
      { "a.yaml": head + "  t: { register: 40001 }\n" },
      "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: h }\ncloud:\n  productKey: gw\n  deviceName: edge\n  keepalive: 10s\nmappings: mappings\n",
    );
    expect(await problemsOf(config)).toEqual([
      "gateway.yaml:7:14 cloud.keepalive: keepalive must lie within 30s-1200s",
    ]);
    const noSecret = await workspace(
      { "a.yaml": head + "  t: { register: 40001 }\n" },
      "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: h }\ncloud:\n  productKey: gw\n  deviceName: edge\nmappings: mappings\n",
    );
    expect(await problemsOf(noSecret)).toEqual([
      "gateway.yaml:4:1 cloud: Alibaba Cloud needs deviceSecret to log in (write ${DEVICE_SECRET}); for another broker give url",
      // On Alibaba itself the mapping devices are sub-devices: each needs its own secret.
      "mappings/a.yaml:2:1 device: sub-device pk/dev has no deviceSecret to log in through gateway gw/edge: write device.deviceSecret: ${ENV_NAME}, list it in cloud.subDevices.secrets, or set cloud.subDevices.register: dynamic",
    ]);
  });

  describe("sub-devices (Alibaba topology)", () => {
    const gatewayWith = (subDevices: string) =>
      "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: h }\ncloud:\n  url: mqtt://127.0.0.1:1883\n  productKey: gw\n  deviceName: edge\n" +
      subDevices +
      "mappings: mappings\n";
    const point = "  t: { register: 40001 }\n";

    it("finds a secret in the mapping file (through the environment) or the secrets file", async () => {
      const config = await workspace(
        {
          "a.yaml":
            head.replace("deviceName: dev }", `deviceName: dev, deviceSecret: "\${DEV_SECRET}" }`) +
            point,
          "b.yaml": head.replace("deviceName: dev }", "deviceName: dev2 }") + point,
          // The gateway itself: synced on its own connection, no login, no secret.
          "c.yaml":
            "version: 1\ndevice: { productKey: gw, deviceName: edge }\nsource: plc1\npoints:\n  u: { register: 40002 }\n",
        },
        gatewayWith("  subDevices: { secrets: secrets.yaml }\n"),
      );
      const secrets = path.join(path.dirname(config), "secrets.yaml");
      await writeFile(secrets, '"pk/dev2": s2\n', { mode: 0o600 });
      const r = await loadConfig(config, { DEV_SECRET: "s1" });
      expect(r.problems).toEqual([]);
      expect(r.ok && r.config.devices.map((d) => [d.deviceName, d.deviceSecret])).toEqual([
        ["dev", "s1"],
        ["dev2", undefined],
        ["edge", undefined],
      ]);
    });

    it("refuses a secrets file others can read, and names each sub-device without a secret", async () => {
      const config = await workspace(
        { "a.yaml": head + point },
        gatewayWith("  subDevices: { secrets: secrets.yaml }\n"),
      );
      const secrets = path.join(path.dirname(config), "secrets.yaml");
      await writeFile(secrets, '"pk/dev": s\n', { mode: 0o644 });
      expect(await problemsOf(config)).toEqual([
        `gateway.yaml:8:17 cloud.subDevices.secrets: ${secrets} is readable by others (mode 644): it holds device secrets; run chmod 600 ${secrets}`,
        "mappings/a.yaml:2:1 device: sub-device pk/dev has no deviceSecret to log in through gateway gw/edge: write device.deviceSecret: ${ENV_NAME}, list it in cloud.subDevices.secrets, or set cloud.subDevices.register: dynamic",
      ]);
      await writeFile(secrets, "- not a map\n", { mode: 0o600 });
      const { chmod } = await import("node:fs/promises");
      await chmod(secrets, 0o600);
      expect((await problemsOf(config))[0]).toContain(
        'must map "productKey/deviceName" to its deviceSecret',
      );
    });

    it("takes a sub-device without a secret when it registers dynamically; none without subDevices and a url", async () => {
      const dynamic = await workspace(
        { "a.yaml": head + point },
        gatewayWith("  subDevices: { register: dynamic }\n"),
      );
      expect(await problemsOf(dynamic)).toEqual([]);
      const plain = await workspace({ "a.yaml": head + point }, gatewayWith(""));
      expect(await problemsOf(plain)).toEqual([]);
    });
  });

  it("refuses more than 128 top-level attributes for a cloud shadow", async () => {
    const points = Array.from(
      { length: 128 },
      (_, i) => `  p${i}: { register: ${40001 + i} }\n`,
    ).join("");
    const gateway =
      "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: h }\ncloud: { url: 'mqtt://h', productKey: gw, deviceName: edge }\nmappings: mappings\n";
    expect(await problemsOf(await workspace({ "a.yaml": head + points }, gateway))).toEqual([
      "mappings/a.yaml:5:3 points: 128 top-level points (plus _commands) exceed the cloud shadow's 128 attributes; group them with dotted names (line1.speed)",
    ]);
    const nested = points.replace(/^ {2}p/gm, "  line.p");
    expect(await problemsOf(await workspace({ "a.yaml": head + nested }, gateway))).toEqual([]);
  });

  it("reads anchors and aliases, keys named like Object's methods, and YAML 1.1 merge keys", async () => {
    const config = await workspace({
      "a.yaml":
        "version: 1\ndevice: { productKey: pk, deviceName: a }\nsource: plc1\n" +
        "pollInterval: &every 2s\ndefaults: { heartbeat: *every }\npoints:\n" +
        "  state: { register: 40001, enum: &states { 0: idle, 1: run } }\n" +
        "  mode: { register: 40002, enum: *states }\n" +
        "  constructor: { register: 40003 }\n",
      "b.yaml":
        "%YAML 1.1\n---\nversion: 1\ndevice: { productKey: pk, deviceName: b }\nsource: plc1\n" +
        "points:\n  t: &t { register: 40010, type: float32, unit: degC }\n" +
        "  u: { <<: *t, register: 40012 }\n",
    });
    const r = await loadConfig(config, {});
    expect(r.ok && r.config.devices).toMatchObject([
      {
        deviceName: "a",
        pollIntervalMs: 2000,
        points: [
          { name: "state", heartbeatMs: 2000, codec: { enum: { 0: "idle", 1: "run" } } },
          { name: "mode", heartbeatMs: 2000, codec: { enum: { 0: "idle", 1: "run" } } },
          { name: "constructor", address: 2 },
        ],
      },
      {
        deviceName: "b",
        points: [
          { name: "t", address: 9, unit: "degC", codec: { type: "float32" } },
          { name: "u", address: 11, unit: "degC", codec: { type: "float32" } },
        ],
      },
    ]);
  });

  it("reads maps and lists nested 64 levels deep, and refuses a 65th", async () => {
    const nested = (levels: number) =>
      workspace({
        "a.yaml":
          head.replace("points:\n", "points: ") + "[".repeat(levels) + "]".repeat(levels) + "\n",
      });
    // The file is level 1 and points' value level 2, at column 9.
    expect(await problemsOf(await nested(63))).toEqual([
      "mappings/a.yaml:4:9 points: Invalid input: expected record, received array",
    ]);
    expect(await problemsOf(await nested(64))).toEqual([
      "mappings/a.yaml:4:72 maps and lists nest more than 64 levels deep here",
    ]);
  });

  it("refuses an alias inside its own anchor, one that nests too deep, and colliding keys", async () => {
    const config = await workspace({
      "a.yaml": head + "  t: &t { register: 40001, description: *t }\n",
      "b.yaml":
        head.replace("deviceName: dev", "deviceName: b") +
        "  t: { register: 40001 }\n" +
        `deep: &d ${"[".repeat(62)}${"]".repeat(62)}\n` + // levels 2 to 63
        "more: [[*d]]\n", // *d at level 4 would reach level 65
      "c.yaml":
        head.replace("deviceName: dev", "deviceName: c") +
        "  t: { register: 40001, enum: { 1: a, '1': b } }\n",
    });
    expect(await problemsOf(config)).toEqual([
      "mappings/a.yaml:5:41 points.t.description: *t is inside the value it names, an endless loop",
      "mappings/b.yaml:6:1 deep: unknown key (check the spelling; the JSON Schema in config/schemas lists them)",
      "mappings/b.yaml:7:1 more: unknown key (check the spelling; the JSON Schema in config/schemas lists them)",
      "mappings/b.yaml:7:9 more.0.0: *d nests maps and lists more than 64 deep",
      "mappings/c.yaml:5:39 points.t.enum.1: 1 is a key of this map already",
    ]);
  });

  it("names a missing mappings folder and an unreadable file", async () => {
    const config = await workspace(
      {},
      "version: 1\nsources: {}\nmappings: [nowhere, also-missing.yaml]\n",
    );
    const problems = await problemsOf(config);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^gateway\.yaml:3:12 mappings\.0: .*nowhere does not exist$/);
    expect(problems[1]).toMatch(
      /^gateway\.yaml:3:21 mappings\.1: .*also-missing\.yaml does not exist$/,
    );
  });
});

describe("the api section", () => {
  const gw = (api: string) =>
    `version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1 }\nmappings: mappings\n${api}`;
  const dev = { "a.yaml": `${head}  t: { register: 40001 }\n` };

  it("serves loopback without a token, with defaults, and takes a token from the environment", async () => {
    const plain = await loadConfig(await workspace(dev, gw("api: {}\n")), {});
    expect(plain.ok && plain.config.gateway.api).toEqual({ listen: "127.0.0.1:8080" });
    const v6 = await loadConfig(await workspace(dev, gw("api: { listen: '[::1]:9000' }\n")), {});
    expect(v6.ok).toBe(true);
    const wide = await loadConfig(
      await workspace(dev, gw("api:\n  listen: 0.0.0.0:8080\n  token: ${SG_TEST_TOKEN}\n")),
      { SG_TEST_TOKEN: "0123456789abcdef-token" },
    );
    expect(wide.ok && wide.config.gateway.api?.token).toBe("0123456789abcdef-token");
  });

  it("refuses a reachable address without a token, a short token and a bad address, at file:line:col", async () => {
    expect(await problemsOf(await workspace(dev, gw("api: { listen: 0.0.0.0:8080 }\n")))).toEqual([
      "gateway.yaml:5:16 api.listen: 0.0.0.0:8080 is reachable from other hosts: set api.token (e.g. ${SHADOWGATE_API_TOKEN}) or listen on 127.0.0.1",
    ]);
    const problems = await problemsOf(
      await workspace(dev, gw("api:\n  listen: 8080\n  token: short\n")),
    );
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^gateway\.yaml:6:11 api\.listen: /);
    expect(problems[1]).toBe(
      "gateway.yaml:7:10 api.token: an API token has at least 16 characters",
    );
  });
});

describe("JSON Schemas", () => {
  it("config/schemas matches the zod schemas (run `npx shadowgate schemas` after changing them)", async () => {
    const schemas = { ...jsonSchemas(), "scenario.schema.json": scenarioJsonSchema() };
    for (const [name, schema] of Object.entries(schemas)) {
      const committed = JSON.parse(
        await readFile(path.join(root, "config/schemas", name), "utf8"),
      ) as unknown;
      expect(committed).toEqual(schema);
    }
  });
});

describe("loadConfig with an AWS cloud", () => {
  const gateway = (extra = "") =>
    "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1 }\n" +
    `cloud: { dialect: aws, url: "mqtt://127.0.0.1:1883", clientId: edge-01${extra} }\nmappings: mappings\n`;
  const thing = (device: string, points: string) =>
    `version: 1\ndevice: ${device}\nsource: plc1\npoints:\n${points}`;

  it("compiles things and named shadows to their local names", async () => {
    const config = await workspace(
      {
        "a.yaml": thing("{ thingName: plc-01 }", "  t: { register: 40001 }\n"),
        "b.yaml": thing("{ thingName: plc-01, shadowName: boiler }", "  t: { register: 40002 }\n"),
      },
      gateway(),
    );
    const r = await loadConfig(config, {});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.devices.map((d) => [d.addressing, d.productKey, d.deviceName])).toEqual([
      ["aws", "plc-01", "plc-01"],
      ["aws", "plc-01", "plc-01.boiler"],
    ]);
  });

  it("names each bad device by file and line: names, mixed forms, the wrong dialect, depth", async () => {
    const config = await workspace(
      {
        "a.yaml": thing("{ thingName: plc.01 }", "  t: { register: 40001 }\n"),
        "b.yaml": thing("{ thingName: plc-02, productKey: pk }", "  t: { register: 40001 }\n"),
        "c.yaml": thing("{ productKey: pk, deviceName: dn }", "  t: { register: 40001 }\n"),
        "d.yaml": thing("{ thingName: plc-04 }", "  a.b.c.d.e.f.g: { register: 40001 }\n"),
        "e.yaml": thing("{ thingName: plc-05, shadowName: x/y }", "  t: { register: 40001 }\n"),
      },
      gateway(),
    );
    expect(await problemsOf(config)).toEqual([
      expect.stringMatching(/^mappings\/a\.yaml:2:\d+ device\.thingName: a thing name is 1-128 of/),
      expect.stringMatching(/^mappings\/b\.yaml:2:\d+ device: name either an Alibaba device/),
      expect.stringMatching(
        /^mappings\/c\.yaml:2:\d+ device: cloud\.dialect is aws: the device needs thingName/,
      ),
      expect.stringMatching(
        /^mappings\/d\.yaml:5:\d+ points\.a\.b\.c\.d\.e\.f\.g: a\.b\.c\.d\.e\.f\.g nests 7 deep/,
      ),
      expect.stringMatching(
        /^mappings\/e\.yaml:2:\d+ device\.shadowName: a shadow name is 1-64 of/,
      ),
    ]);
  });

  it("warns, with its estimate, about a device whose document could outgrow 8 KB, and still loads", async () => {
    const points = Array.from(
      { length: 200 },
      (_, i) => `  register_number_${i}: { register: ${40001 + i}, writable: true }\n`,
    ).join("");
    const config = await workspace({ "big.yaml": thing("{ thingName: big }", points) }, gateway());
    const r = await loadConfig(config, {});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.warnings?.map((w) => formatProblem(w, path.dirname(config)))).toEqual([
      expect.stringMatching(
        /^mappings\/big\.yaml:4:1 points: the reported document of big could reach about \d+ bytes/,
      ),
    ]);
    expect(r.config.warnings?.[0]?.code).toBe("SG_CONFIG_WARNING");
  });

  it("warns when the broker's certificate is not verified, at the line that turns it off", async () => {
    const config = await workspace(
      { "a.yaml": `${head}  t: { register: 40001 }\n` },
      "version: 1\nsources:\n  plc1: { protocol: modbus-tcp, host: 127.0.0.1 }\ncloud:\n  url: mqtts://broker.example:8883\n  productKey: pk\n  deviceName: gw\n  deviceSecret: s\n  tls:\n    rejectUnauthorized: false\nmappings: mappings\n",
    );
    const r = await loadConfig(config, {});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.warnings?.map((w) => formatProblem(w, path.dirname(config)))).toEqual([
      expect.stringMatching(
        /^gateway\.yaml:10:5 cloud\.tls\.rejectUnauthorized: the broker's certificate is not verified/,
      ),
    ]);
  });

  it("applies --override keys as if the file said them, and names the override in a problem", async () => {
    const config = await workspace({ "a.yaml": `${head}  t: { register: 40001 }\n` });
    const set = (...texts: string[]) =>
      texts.map((t) => {
        const o = parseOverride(t);
        if (typeof o === "string") throw new Error(o);
        return o;
      });
    const r = await loadConfig(
      config,
      {},
      set("sources.plc1.port=5020", "sources.plc1.host=10.0.0.9", "gateway.name=edge-7"),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.gateway.sources.plc1).toMatchObject({ host: "10.0.0.9", port: 5020 });
    expect(r.config.gateway.gateway.name).toBe("edge-7");
    expect(r.config.overrides?.map((o) => o.text)).toHaveLength(3);

    // Nothing after "=" takes the key out: here the host, which the schema then asks for.
    const gone = await loadConfig(config, {}, set("sources.plc1.host="));
    expect(gone.ok).toBe(false);
    if (gone.ok) return;
    expect(gone.problems.map((p) => `${p.keyPath}: ${p.message}`)).toEqual([
      expect.stringMatching(/^sources\.plc1\.host: /),
    ]);

    const bad = await loadConfig(
      config,
      {},
      set("sources.plc1.port=abc", "sources.plc1.host.x=1", "nope=1"),
    );
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.problems.map((p) => formatProblem(p, path.dirname(config)))).toEqual([
      expect.stringMatching(/^--override nope=1: nope: unknown key/),
      expect.stringMatching(
        /^--override sources\.plc1\.host\.x=1: sources\.plc1\.host\.x: cannot be set/,
      ),
      expect.stringMatching(/^--override sources\.plc1\.port=abc: sources\.plc1\.port: /),
    ]);
    expect(parseOverride("port")).toMatch(/write key\.path=value/);
    expect(parseOverride("a..b=1")).toMatch(/write key\.path=value/);
    expect(parseOverride("=1")).toMatch(/write key\.path=value/);
  });
});
