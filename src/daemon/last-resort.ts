import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

/**
 * The daemon's last resort: an exception that escapes a timer or an event handler, or a promise
 * rejected with no handler, is logged with SG_INTERNAL and the daemon keeps running. Each such
 * escape is a bug to fix (the components catch what they expect); but a gateway that exits on
 * one stops polling and syncing every device until systemd restarts it, and one bad cloud
 * message must not be able to do that. Returns the function that removes the handlers.
 */
export function installLastResort(log: Logger, proc: NodeJS.Process = process): () => void {
  const onException = (err: Error, origin: string): void => {
    log.error(
      { err, origin, code: ErrorCodes.INTERNAL },
      "an exception escaped; logged and the gateway keeps running (please report this)",
    );
  };
  const onRejection = (reason: unknown): void => {
    log.error(
      { err: reason, origin: "unhandledRejection", code: ErrorCodes.INTERNAL },
      "a promise was rejected with no handler; logged and the gateway keeps running (please report this)",
    );
  };
  proc.on("uncaughtException", onException);
  proc.on("unhandledRejection", onRejection);
  return () => {
    proc.off("uncaughtException", onException);
    proc.off("unhandledRejection", onRejection);
  };
}
