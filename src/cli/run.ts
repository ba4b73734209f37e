import { ExitCodes } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { Gateway } from "../daemon/gateway.js";
import { loadOrReport } from "./validate.js";

/** The daemon. Resolves once it has stopped after SIGTERM or SIGINT. */
export async function runCommand(o: { config: string }): Promise<number> {
  const config = await loadOrReport(o.config);
  if (!config) return ExitCodes.CONFIG;
  const log = createLogger({ level: process.env.SHADOWGATE_LOG_LEVEL ?? config.gateway.log.level });
  const gateway = new Gateway(config, log);
  gateway.shadow.on("update", (u) =>
    log.debug(
      { device: u.deviceName, reported: u.reported, quality: u.quality },
      "reported update",
    ),
  );
  await gateway.start();
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  log.info({ signal }, "stopping");
  await gateway.stop();
  log.info("stopped");
  return ExitCodes.OK;
}
