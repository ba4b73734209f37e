import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

/** Distinct "logged once" keys kept before the set starts again (hostile input is unbounded). */
const LOGGED_ONCE_LIMIT = 1000;

/** Lines said once per key (per device and code, per topic and reason), shared by the engine's parts. */
export class LogOnce {
  private readonly keys = new Set<string>();

  run(key: string, log: () => void): void {
    if (this.keys.has(key)) return;
    if (this.keys.size >= LOGGED_ONCE_LIMIT) this.keys.clear();
    this.keys.add(key);
    log();
  }

  /** Says the key's line again next time (the condition it reported ended). */
  forget(key: string): void {
    this.keys.delete(key);
  }
}

/** A bug caught where nothing may escape (a timer, a link event, the desired chain). */
export function logInternal(
  log: Logger,
  what: string,
  err: unknown,
  fields: Record<string, unknown> = {},
): void {
  log.error({ ...fields, err, code: ErrorCodes.INTERNAL }, `unexpected error ${what}`);
}
