import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import { ExitCodes } from "../core/errors.js";
import { createLogger, type Logger } from "../core/logger.js";
import { Gateway } from "../daemon/gateway.js";
import type { DevicePlan } from "../mapping/types.js";
import { cloudSchema } from "../north/dialects/index.js";
import { startAwsCloudService } from "../sim/cloud/aws/index.js";
import { startCloudService } from "../sim/cloud/index.js";
import { startSimulator, type RunningSimulator } from "../sim/modbus/index.js";
import { printProblems } from "./validate.js";

/** The demo's device secrets: known to the demo's own cloud service only. */
const demoSecret = (d: { productKey: string; deviceName: string }): string =>
  `demo-${d.productKey}-${d.deviceName}`;

/** The embedded defaults: the example config and mappings shipped with the package. */
const EXAMPLE_CONFIG = fileURLToPath(new URL("../../config/gateway.yaml", import.meta.url));

/**
 * The whole plant on one laptop: a simulated boiler PLC, the local cloud shadow service (strict
 * sessions: the boiler is a sub-device the gateway logs in) and the gateway between them, each
 * on a free loopback port. The screen shows the PLC's set point, the
 * edge shadow and the cloud shadow, and how to set a desired value over HTTP.
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
  // The cloud service is loaded before it starts (its address goes into the config), so the
  // devices it must know come from the example config read with a placeholder URL first.
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
  if (o.dialect === "aws") return awsDemo(sim, example.config, o.once === true, log);
  const gw = example.config.gateway.cloud;
  const secrets = [
    ...(gw?.dialect === "alibaba"
      ? [{ productKey: gw.productKey, deviceName: gw.deviceName }]
      : []),
    ...example.config.devices,
  ].map((d) => ({
    productKey: d.productKey,
    deviceName: d.deviceName,
    deviceSecret: demoSecret(d),
  }));
  // Strict sessions, as on Alibaba itself: the gateway signs its CONNECT, adds the boiler to its
  // topology and logs it in before the boiler's shadow is taken.
  const cloud = await startCloudService({
    mqttPort: 0,
    httpPort: 0,
    logger: log,
    deviceSecrets: secrets,
    strictSessions: true,
  });
  const close = async (): Promise<void> => {
    await cloud.close();
    await sim.close();
  };
  const loaded = await loadConfig(EXAMPLE_CONFIG, {
    ...process.env,
    PLC_HOST: "127.0.0.1",
    PLC_PORT: String(sim.port),
    CLOUD_URL: cloud.mqttUrl,
  });
  if (!loaded.ok || loaded.config.gateway.cloud?.dialect !== "alibaba") {
    if (!loaded.ok) printProblems(loaded);
    await close();
    return ExitCodes.CONFIG;
  }
  // The demo keeps its journal out of the working tree.
  const dataDir = await mkdtemp(path.join(tmpdir(), "shadowgate-demo-"));
  const cloudConfig = loaded.config.gateway.cloud;
  const devices = loaded.config.devices.map((d) => ({ ...d, deviceSecret: demoSecret(d) }));
  const gateway = new Gateway(
    {
      ...loaded.config,
      dataDir,
      devices,
      gateway: {
        ...loaded.config.gateway,
        cloud: {
          ...cloudConfig,
          deviceSecret: demoSecret(cloudConfig),
          subDevices: { register: "static", login: "batch" },
        },
      },
    },
    log,
  );

  const state = () =>
    plantState(sim, gateway, devices, (d) => cloud.service.getShadow(d.productKey, d.deviceName));

  const [first] = devices;
  const target = first
    ? `${cloud.httpUrl}/shadows/${first.productKey}/${first.deviceName}`
    : cloud.httpUrl;
  return show(gateway, state, close, o.once === true, [
    `Simulated PLC      modbus-tcp://127.0.0.1:${sim.port}`,
    `Cloud shadow       ${cloud.mqttUrl} (MQTT), ${cloud.httpUrl} (HTTP)`,
    `Gateway config     ${EXAMPLE_CONFIG}`,
    "",
    "Set a desired value (the gateway writes it to the PLC, reads it back, reports it):",
    `  curl -s -X POST ${target} -H 'content-type: application/json' \\`,
    `    -d '{"ShadowMessage":{"method":"update","state":{"desired":{"targetTemperature":80}}},"DeltaUpdate":true}'`,
    `Read the cloud shadow:  curl -s '${target}?format=json'`,
  ]);
}

/** What the screen shows: the PLC's set point, the edge shadows and the cloud shadows. */
function plantState(
  sim: RunningSimulator,
  gateway: Gateway,
  devices: readonly DevicePlan[],
  cloudShadow: (
    d: DevicePlan,
  ) => { version: number; state: { desired?: unknown; reported?: unknown } } | undefined,
) {
  return {
    plc: {
      targetTemperature: (sim.sim.unit(1).holding[9] ?? 0) / 10,
      running: sim.sim.unit(1).coil[0] === 1,
    },
    edge: Object.fromEntries(
      devices.map((d) => [d.deviceName, gateway.shadow.document(d.deviceName)?.state.reported]),
    ),
    cloud: Object.fromEntries(
      devices.map((d) => {
        const doc = cloudShadow(d);
        return [
          d.deviceName,
          { version: doc?.version, desired: doc?.state.desired, reported: doc?.state.reported },
        ];
      }),
    ),
  };
}

/**
 * `demo --dialect aws`: the same plant with the local AWS IoT shadow service; the example's
 * devices become things of the same names.
 */
async function awsDemo(
  sim: RunningSimulator,
  example: LoadedConfig,
  once: boolean,
  log: Logger,
): Promise<number | undefined> {
  const cloud = await startAwsCloudService({ mqttPort: 0, httpPort: 0, logger: log });
  const close = async (): Promise<void> => {
    await cloud.close();
    await sim.close();
  };
  const dataDir = await mkdtemp(path.join(tmpdir(), "shadowgate-demo-"));
  const devices = example.devices.map((d) => ({
    ...d,
    addressing: "aws" as const,
    productKey: d.deviceName,
  }));
  const gateway = new Gateway(
    {
      ...example,
      dataDir,
      devices,
      gateway: {
        ...example.gateway,
        cloud: cloudSchema.parse({ dialect: "aws", url: cloud.mqttUrl, clientId: "edge-01" }),
      },
    },
    log,
  );
  const state = () =>
    plantState(sim, gateway, devices, (d) => cloud.service.getShadow(d.deviceName));
  const target = `${cloud.httpUrl}/things/${devices[0]?.deviceName ?? "boiler-01"}/shadow`;
  return show(gateway, state, close, once, [
    `Simulated PLC      modbus-tcp://127.0.0.1:${sim.port}`,
    `Cloud shadow       ${cloud.mqttUrl} (MQTT, AWS IoT Device Shadow), ${cloud.httpUrl} (HTTP)`,
    `Gateway config     ${EXAMPLE_CONFIG} (its devices as AWS things)`,
    "",
    "Set a desired value (the gateway writes it to the PLC, reads it back, reports it):",
    `  curl -s -X POST ${target} -H 'content-type: application/json' \\`,
    `    -d '{"state":{"desired":{"targetTemperature":80}}}'`,
    `Read the cloud shadow:  curl -s '${target}'`,
  ]);
}

/** Runs the gateway and shows the plant: once, or redrawn until Ctrl-C. */
async function show(
  gateway: Gateway,
  state: () => { edge: unknown },
  close: () => Promise<void>,
  once: boolean,
  lines: readonly string[],
): Promise<number | undefined> {
  if (once) {
    await gateway.pollOnce();
    process.stdout.write(`${JSON.stringify(state().edge, null, 2)}\n`);
    await gateway.stop();
    await close();
    return ExitCodes.OK;
  }
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
  await gateway.start();
  const stop = (): void => {
    clearInterval(timer);
    void gateway
      .stop()
      .then(close)
      .then(() => process.exit(ExitCodes.OK));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}
