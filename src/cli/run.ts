import { ExitCodes } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { installLastResort } from "../daemon/last-resort.js";
import { Service } from "../daemon/service.js";
import { loadOrReport } from "./validate.js";

/** `shadowgate run`: the daemon until SIGTERM or SIGINT (daemon/service.ts handles the signals). */
export async function runCommand(o: { config: string; watch?: boolean }): Promise<number> {
  const config = await loadOrReport(o.config);
  if (!config) return ExitCodes.CONFIG;
  const log = createLogger({ level: process.env.SHADOWGATE_LOG_LEVEL ?? config.gateway.log.level });
  const uninstall = installLastResort(log);
  const service = new Service(o.config, config, log);
  await service.start();
  if (o.watch) service.watch();
  await service.run(process);
  uninstall();
  return ExitCodes.OK;
}
