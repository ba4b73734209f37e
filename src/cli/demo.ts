import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import { ExitCodes } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { Service } from "../daemon/service.js";
import type { DevicePlan } from "../mapping/types.js";
import { startAwsCloudService } from "../sim/cloud/aws/index.js";
import { startCloudService } from "../sim/cloud/index.js";
import { startSimulator, type RunningSimulator } from "../sim/modbus/index.js";
import { printProblems } from "./validate.js";

/** The demo's device secrets: known to the demo's own cloud service only. */
const demoSecret = (d: { productKey: string; deviceName: string }): string =>
  `demo-${d.productKey}-${d.deviceName}`;

/** The embedded defaults: the example config and mappings shipped with the package. */
const EXAMPLE_CONFIG = fileURLToPath(new URL("../../config/gateway.yaml", import.meta.url));

/** The local cloud service the demo runs, whichever dialect. */
interface DemoCloud {
  readonly mqttUrl: string;
  /** The example config's cloud section for this cloud. */
  readonly section: Record<string, unknown>;
  /** How a mapping file names its device to this cloud. */
  device(d: DevicePlan): Record<string, unknown>;
  /** The cloud's copy of a device's shadow. */
  shadow(
    d: DevicePlan,
  ): { version: number; state: { desired?: unknown; reported?: unknown } } | undefined;
  /** What the screen says about the cloud: its addresses, how to set a desired value. */
  readonly lines: readonly string[];
  close(): Promise<void>;
}

/**
 * The whole plant on one laptop: a simulated boiler PLC, the local cloud shadow service and the
 * daemon between them, each on a free loopback port, the daemon with its local API and web
 * console. The example config and mappings are written into a folder of their own (the demo's
 * addresses and secrets in place), which the daemon watches: edit a mapping there and it
 * reloads, and the console shows the outcome. The screen shows the PLC's set point, the edge
 * shadow and the cloud shadow, and how to set a desired value over HTTP.
 */
export async function demoCommand(o: {
  once?: boolean;
  dialect?: string;
}): Promise<number | undefined> {
  if (o.dialect !== undefined && o.dialect !== "alibaba" && o.dialect !== "aws") {
    process.stderr.write(`--dialect ${o.dialect}: alibaba or aws\n`);
    return ExitCodes.USAGE;
  }
  const log = createLogger({ level: process.env.SHADOWGATE_LOG_LEVEL ?? "warn" });
  const sim = await startSimulator({ port: 0 });
  // The cloud service must know the example's devices before the site's config can name it.
  const example = await loadConfig(EXAMPLE_CONFIG, {
    ...process.env,
    PLC_HOST: "127.0.0.1",
    PLC_PORT: String(sim.port),
  });
  if (!example.ok) {
    printProblems(example);
    await sim.close();
    return ExitCodes.CONFIG;
  }
  const cloud =
    o.dialect === "aws" ? await awsCloud(example.config) : await alibabaCloud(example.config);
  const close = async (): Promise<void> => {
    await cloud.close();
    await sim.close();
  };
  const site = await writeSite(example.config, sim.port, cloud);
  const loaded = await loadConfig(site.configFile);
  if (!loaded.ok) {
    printProblems(loaded);
    await close();
    return ExitCodes.CONFIG;
  }
  const service = new Service(site.configFile, loaded.config, log);
  const devices = loaded.config.devices;
  const state = () => plantState(sim, service, devices, cloud);
  if (o.once) {
    await service.current.pollOnce();
    process.stdout.write(`${JSON.stringify(state().edge, null, 2)}\n`);
    await service.current.stop();
    await close();
    return ExitCodes.OK;
  }
  await service.start();
  service.watch();
  const port = service.api?.address?.port;
  return show(
    service,
    state,
    close,
    [
      `Web console        ${port === undefined ? "(the API did not start; see the log)" : `http://127.0.0.1:${port}/`}`,
      `Simulated PLC      modbus-tcp://127.0.0.1:${sim.port}`,
      ...cloud.lines,
      `Gateway config     ${site.configFile}`,
      `                   (edit its mappings/ there: the gateway reloads them, the console shows the outcome)`,
    ],
    site.dir,
  );
}

/**
 * The example config and its mappings in a folder of the demo's own, with the demo's addresses
 * (the PLC, the cloud, the API on a free port) and secrets in place of the placeholders.
 */
async function writeSite(
  example: LoadedConfig,
  plcPort: number,
  cloud: DemoCloud,
): Promise<{ dir: string; configFile: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), "shadowgate-demo-"));
  await mkdir(path.join(dir, "mappings"));
  // The example's header comment (its schema path, its placeholders) does not hold for the copy.
  const config = parseDocument(dropHeader(await readFile(EXAMPLE_CONFIG, "utf8")));
  config.setIn(["gateway", "dataDir"], "./data");
  for (const id of Object.keys(example.gateway.sources)) {
    config.setIn(["sources", id, "host"], "127.0.0.1");
    config.setIn(["sources", id, "port"], plcPort);
  }
  config.set("cloud", config.createNode(cloud.section));
  config.set("api", config.createNode({ listen: "127.0.0.1:0" }));
  config.set("mappings", "./mappings");
  config.commentBefore =
    " The demo's copy of config/gateway.yaml (shadowgate demo): its addresses and secrets in place.\n" +
    " The daemon watches this file and mappings/: a change is reloaded, or refused and named.";
  const configFile = path.join(dir, "gateway.yaml");
  // The files hold the demo's device secrets: the owner's alone, as real ones must be.
  await writeFile(configFile, config.toString(), { mode: 0o600 });
  for (const d of example.devices) {
    const mapping = parseDocument(dropHeader(await readFile(d.file, "utf8")));
    mapping.set("device", mapping.createNode(cloud.device(d)));
    mapping.commentBefore = ` The demo's copy of ${path.basename(d.file)}, named to the demo's cloud.`;
    await writeFile(path.join(dir, "mappings", path.basename(d.file)), mapping.toString(), {
      mode: 0o600,
    });
  }
  return { dir, configFile };
}

const dropHeader = (yaml: string): string => yaml.replace(/^(#.*\n)+/, "");

/**
 * Alibaba with strict sessions, as on the platform itself: the gateway signs its CONNECT, adds
 * the boiler to its topology and logs it in before the boiler's shadow is taken.
 */
async function alibabaCloud(example: LoadedConfig): Promise<DemoCloud> {
  const gw = example.gateway.cloud;
  const gateway =
    gw?.dialect === "alibaba" ? gw : { productKey: "a1Gateway", deviceName: "edge-01" };
  const secrets = [gateway, ...example.devices].map((d) => ({
    productKey: d.productKey,
    deviceName: d.deviceName,
    deviceSecret: demoSecret(d),
  }));
  const cloud = await startCloudService({
    mqttPort: 0,
    httpPort: 0,
    deviceSecrets: secrets,
    strictSessions: true,
  });
  const [first] = example.devices;
  const target = first
    ? `${cloud.httpUrl}/shadows/${first.productKey}/${first.deviceName}`
    : cloud.httpUrl;
  return {
    mqttUrl: cloud.mqttUrl,
    section: {
      url: cloud.mqttUrl,
      productKey: gateway.productKey,
      deviceName: gateway.deviceName,
      deviceSecret: demoSecret(gateway),
      subDevices: { register: "static", login: "batch" },
    },
    device: (d) => ({
      productKey: d.productKey,
      deviceName: d.deviceName,
      deviceSecret: demoSecret(d),
    }),
    shadow: (d) => cloud.service.getShadow(d.productKey, d.deviceName),
    lines: [
      `Cloud shadow       ${cloud.mqttUrl} (MQTT), ${cloud.httpUrl} (HTTP)`,
      ...howToSet(
        target,
        '{"ShadowMessage":{"method":"update","state":{"desired":{"targetTemperature":80}}},"DeltaUpdate":true}',
        `${target}?format=json`,
      ),
    ],
    close: () => cloud.close(),
  };
}

/** `demo --dialect aws`: the local AWS IoT shadow service; the devices become things. */
async function awsCloud(example: LoadedConfig): Promise<DemoCloud> {
  const cloud = await startAwsCloudService({ mqttPort: 0, httpPort: 0 });
  const target = `${cloud.httpUrl}/things/${example.devices[0]?.deviceName ?? "boiler-01"}/shadow`;
  return {
    mqttUrl: cloud.mqttUrl,
    section: { dialect: "aws", url: cloud.mqttUrl, clientId: "edge-01" },
    device: (d) => ({ thingName: d.deviceName }),
    shadow: (d) => cloud.service.getShadow(d.deviceName),
    lines: [
      `Cloud shadow       ${cloud.mqttUrl} (MQTT, AWS IoT Device Shadow), ${cloud.httpUrl} (HTTP)`,
      ...howToSet(target, '{"state":{"desired":{"targetTemperature":80}}}', target),
    ],
    close: () => cloud.close(),
  };
}

/** The screen's lines on setting a desired value over the cloud's HTTP API and reading it. */
const howToSet = (target: string, body: string, read: string): string[] => [
  "",
  "Set a desired value (the gateway writes it to the PLC, reads it back, reports it):",
  `  curl -s -X POST ${target} -H 'content-type: application/json' \\`,
  `    -d '${body}'`,
  `Read the cloud shadow:  curl -s '${read}'`,
  "",
];

/** What the screen shows: the PLC's set point, the edge shadows and the cloud shadows. */
function plantState(
  sim: RunningSimulator,
  service: Service,
  devices: readonly DevicePlan[],
  cloud: DemoCloud,
) {
  return {
    plc: {
      targetTemperature: (sim.sim.unit(1).holding[9] ?? 0) / 10,
      running: sim.sim.unit(1).coil[0] === 1,
    },
    edge: Object.fromEntries(
      devices.map((d) => [
        d.deviceName,
        service.current.shadow.document(d.deviceName)?.state.reported,
      ]),
    ),
    cloud: Object.fromEntries(
      devices.map((d) => {
        const doc = cloud.shadow(d);
        return [
          d.deviceName,
          { version: doc?.version, desired: doc?.state.desired, reported: doc?.state.reported },
        ];
      }),
    ),
  };
}

/** Shows the plant, redrawn on every change until Ctrl-C. */
function show(
  service: Service,
  state: () => unknown,
  close: () => Promise<void>,
  lines: readonly string[],
  dir: string,
): undefined {
  const header = [...lines, "Ctrl-C stops.", ""].join("\n");
  const tty = process.stdout.isTTY;
  if (!tty) process.stdout.write(`${header}\n`);
  let last = "";
  const render = (): void => {
    const s = state();
    const line = JSON.stringify(s);
    if (line === last) return;
    last = line;
    // A terminal is redrawn; piped output gets one JSON line per change.
    if (tty)
      process.stdout.write(
        `\x1b[H\x1b[2J${header}\n${new Date().toISOString()}\n${JSON.stringify(s, null, 2)}\n`,
      );
    else process.stdout.write(`${line}\n`);
  };
  const timer = setInterval(render, 250);
  const stop = (): void => {
    clearInterval(timer);
    void service
      .stop()
      .then(close)
      .then(() => {
        process.stderr.write(`The demo's config and data stay in ${dir}\n`);
        process.exit(ExitCodes.OK);
      });
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}
