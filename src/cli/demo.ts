import { fileURLToPath } from "node:url";
import { loadConfig, formatProblem } from "../config/load.js";
import { ExitCodes } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { Gateway } from "../daemon/gateway.js";
import { startSimulator } from "../sim/modbus/index.js";

/** The embedded defaults: the example config and mappings shipped with the package. */
const EXAMPLE_CONFIG = fileURLToPath(new URL("../../config/gateway.yaml", import.meta.url));

/**
 * A simulated boiler PLC on a free loopback port and the gateway polling it, with the live
 * shadow on screen: the whole uplink path on one laptop with no hardware.
 */
export async function demoCommand(o: { once?: boolean }): Promise<number | undefined> {
  const sim = await startSimulator({ port: 0 });
  const loaded = await loadConfig(EXAMPLE_CONFIG, {
    ...process.env,
    PLC_HOST: "127.0.0.1",
    PLC_PORT: String(sim.port),
  });
  if (!loaded.ok) {
    for (const p of loaded.problems) process.stderr.write(`${formatProblem(p)}\n`);
    await sim.close();
    return ExitCodes.CONFIG;
  }
  const log = createLogger({ level: process.env.SHADOWGATE_LOG_LEVEL ?? "warn" });
  const gateway = new Gateway(loaded.config, log);
  const names = gateway.shadow.deviceNames();
  const snapshot = (): string =>
    JSON.stringify(
      Object.fromEntries(names.map((n) => [n, gateway.shadow.document(n)?.state.reported])),
      null,
      2,
    );

  if (o.once) {
    await gateway.pollOnce();
    process.stdout.write(`${snapshot()}\n`);
    await gateway.stop();
    await sim.close();
    return ExitCodes.OK;
  }

  const tty = process.stdout.isTTY;
  const header =
    `Simulated PLC on 127.0.0.1:${sim.port}, polled every second through ${EXAMPLE_CONFIG}\n` +
    `Try in another terminal:  npx shadowgate read --raw temperature -c config/gateway.yaml  (with PLC_PORT=${sim.port})\n` +
    `Ctrl-C stops.\n`;
  if (!tty) process.stdout.write(header);
  gateway.shadow.on("update", () => {
    // On a terminal the screen is redrawn; piped output gets one line per change.
    if (tty)
      process.stdout.write(
        `\x1b[H\x1b[2J${header}\nstate.reported at ${new Date().toISOString()}\n${snapshot()}\n`,
      );
    else
      process.stdout.write(
        `${JSON.stringify(Object.fromEntries(names.map((n) => [n, gateway.shadow.document(n)?.state.reported])))}\n`,
      );
  });
  await gateway.start();
  const stop = (): void => {
    void gateway
      .stop()
      .then(() => sim.close())
      .then(() => process.exit(ExitCodes.OK));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return undefined;
}
