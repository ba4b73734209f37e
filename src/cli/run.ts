import { ExitCodes } from "../core/errors.js";
import { createLogger, type LogFormat } from "../core/logger.js";
import { installLastResort } from "../daemon/last-resort.js";
import { Service } from "../daemon/service.js";
import { SystemdNotifier } from "../daemon/systemd.js";
import { loadOrReport } from "./validate.js";
import type { Override } from "../config/override.js";

/** `shadowgate run`: the daemon until SIGTERM or SIGINT (daemon/service.ts handles the signals). */
export async function runCommand(o: {
  config: string;
  override?: readonly Override[];
  logFormat?: LogFormat;
  watch?: boolean;
}): Promise<number> {
  const config = await loadOrReport(o.config, o.override);
  if (!config) return ExitCodes.CONFIG;
  const log = createLogger({
    level: process.env.SHADOWGATE_LOG_LEVEL ?? config.gateway.log.level,
    format: o.logFormat ?? "json",
  });
  const uninstall = installLastResort(log);
  const service = new Service(o.config, config, log);
  // Under systemd (Type=notify), READY=1 once started, the watchdog, reloads and the stop;
  // without NOTIFY_SOCKET there is no notifier and nothing changes.
  const systemd = SystemdNotifier.fromEnv(process.env, log);
  if (systemd) service.supervise(systemd);
  // Signals are handled from before the start: a SIGTERM or SIGHUP during a slow start waits
  // for it instead of killing the process with Node's default action.
  const running = service.run(process);
  await service.start();
  if (!service.stopped) {
    if (o.watch) service.watch();
    systemd?.ready(`running: ${config.devices.length} device(s)`);
    systemd?.startWatchdog();
  }
  await running;
  await systemd?.close();
  uninstall();
  return ExitCodes.OK;
}
