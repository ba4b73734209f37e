import { pino, type DestinationStream, type Logger, type LoggerOptions } from "pino";
import { prettyLine } from "./log-pretty.js";

export type { Logger };

/** json: one JSON object a line (journald keeps it); pretty: one readable line (log-pretty.ts). */
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * Structured logs on stderr (stdout belongs to command output such as `read --json`).
 * Keys that could carry secrets are redacted wherever they appear.
 */
export function createLogger(
  opts: {
    level?: string;
    name?: string;
    format?: LogFormat;
    /** Where the lines go instead of stderr (tests). */
    destination?: DestinationStream;
  } = {},
): Logger {
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
  const out = opts.destination ?? pino.destination(2);
  return pino(options, opts.format === "pretty" ? pretty(out) : out);
}

/**
 * Redaction happens before pino writes a line, so the pretty lines are formatted from what the
 * JSON output would show.
 */
function pretty(out: DestinationStream): DestinationStream {
  return { write: (line: string) => void out.write(prettyLine(line)) };
}

/** A logger that discards everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
