import { format, stripVTControlCharacters } from "node:util";
import { LogLevel, setErrorLogger, setLogLevel, setWarningLogger } from "node-opcua";
import type { Logger } from "../../core/logger.js";

let libraryLogsRouted = false;

/**
 * node-opcua prints its warnings and errors with console.log, on stdout, which belongs to command
 * output (`read --json`). Routes them, process-wide and once, to the gateway's log on stderr:
 * warnings at debug (the driver logs what matters itself, with the source), errors at warn.
 * NODEOPCUA_LOG_LEVEL, when set, still decides what node-opcua emits.
 */
export function routeNodeOpcuaLogs(log: Logger): void {
  if (libraryLogsRouted) return;
  libraryLogsRouted = true;
  const lib = log.child({ lib: "node-opcua" });
  const text = (args: unknown[]) => stripVTControlCharacters(format(...args));
  const at = (ctx: unknown) => {
    const c = ctx as { filename?: string; callerline?: number } | undefined;
    return c?.filename ? `${c.filename}:${c.callerline ?? 0}` : undefined;
  };
  setWarningLogger((ctx, ...args) => lib.debug({ at: at(ctx) }, text(args)));
  setErrorLogger((ctx, ...args) => lib.warn({ at: at(ctx) }, text(args)));
  if (process.env.NODEOPCUA_LOG_LEVEL === undefined) setLogLevel(LogLevel.Warning);
}
