import { formatProblem, loadConfig, type LoadedConfig } from "../config/load.js";
import { ExitCodes } from "../core/errors.js";
import { createLogger, type Logger } from "../core/logger.js";
import { Gateway } from "../daemon/gateway.js";
import { installLastResort } from "../daemon/last-resort.js";
import { loadOrReport } from "./validate.js";

function startGateway(config: LoadedConfig, log: Logger): Gateway {
  const gateway = new Gateway(config, log);
  gateway.shadow.on("update", (u) =>
    log.debug(
      { device: u.deviceName, reported: u.reported, quality: u.quality },
      "reported update",
    ),
  );
  return gateway;
}

/**
 * The daemon. SIGHUP reloads the config: a config with problems is refused and the running
 * one stays in place. Resolves once it has stopped after SIGTERM or SIGINT.
 */
export async function runCommand(o: { config: string }): Promise<number> {
  const config = await loadOrReport(o.config);
  if (!config) return ExitCodes.CONFIG;
  const log = createLogger({ level: process.env.SHADOWGATE_LOG_LEVEL ?? config.gateway.log.level });
  const uninstall = installLastResort(log);
  let gateway = startGateway(config, log);
  await gateway.start();

  let reloading = Promise.resolve();
  const reload = async (): Promise<void> => {
    const next = await loadConfig(o.config);
    if (!next.ok) {
      log.error(
        {
          problems: next.problems.map((p) => formatProblem(p)),
          ...(next.omitted > 0 && { moreProblems: next.omitted }),
        },
        "reload refused: the config has problems; the running config stays in place",
      );
      return;
    }
    await gateway.stop();
    gateway = startGateway(next.config, log);
    await gateway.start();
    log.info({ devices: next.config.devices.length }, "reloaded");
  };
  const onHup = (): void => {
    reloading = reloading.then(reload).catch((err: unknown) => log.error({ err }, "reload failed"));
  };
  process.on("SIGHUP", onHup);

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  process.off("SIGHUP", onHup);
  log.info({ signal }, "stopping");
  await reloading;
  await gateway.stop();
  log.info("stopped");
  uninstall();
  return ExitCodes.OK;
}
