import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/**
 * Structured logs on stderr (stdout belongs to command output such as `read --json`).
 * Keys that could carry secrets are redacted wherever they appear.
 */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  const options: LoggerOptions = {
    name: opts.name ?? "shadowgate",
    level: opts.level ?? process.env.SHADOWGATE_LOG_LEVEL ?? "info",
    redact: {
      paths: [
        "password",
        "*.password",
        "deviceSecret",
        "*.deviceSecret",
        "secret",
        "*.secret",
        // The local API's bearer token (the API never logs it; this guards a slip).
        "token",
        "*.token",
        "authorization",
        "*.authorization",
      ],
      censor: "[redacted]",
    },
  };
  return pino(options, pino.destination(2));
}

/** A logger that discards everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
