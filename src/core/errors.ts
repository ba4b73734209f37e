/**
 * The one catalogue of error codes. Logs, the CLI, the API and tests use these codes; the
 * message templates live here so the same problem reads the same everywhere.
 */
export const ErrorCodes = {
  // Configuration and mapping files (exit code 2 at the CLI)
  CONFIG_READ: "SG_CONFIG_READ",
  CONFIG_YAML: "SG_CONFIG_YAML",
  CONFIG_SCHEMA: "SG_CONFIG_SCHEMA",
  CONFIG_ENV: "SG_CONFIG_ENV",
  CONFIG_CROSS: "SG_CONFIG_CROSS",
  // Codec (encode/decode between words and engineering values)
  CODEC_RANGE: "SG_CODEC_RANGE",
  CODEC_TYPE: "SG_CODEC_TYPE",
  CODEC_NOT_FINITE: "SG_CODEC_NOT_FINITE",
  // South (device side)
  MODBUS_EXCEPTION: "SG_MODBUS_EXCEPTION",
  MODBUS_TIMEOUT: "SG_MODBUS_TIMEOUT",
  MODBUS_DISCONNECTED: "SG_MODBUS_DISCONNECTED",
  MODBUS_UNIT_DOWN: "SG_MODBUS_UNIT_DOWN",
  MODBUS_ILLEGAL_ADDRESS: "SG_MODBUS_ILLEGAL_ADDRESS",
  SOURCE_NOT_STARTED: "SG_SOURCE_NOT_STARTED",
  // Runtime
  NOT_READ: "SG_NOT_READ",
  POLL_OVERRUN: "SG_POLL_OVERRUN",
  SHUTDOWN_TIMEOUT: "SG_SHUTDOWN_TIMEOUT",
  USAGE: "SG_USAGE",
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class ShadowgateError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = "ShadowgateError";
    this.code = code;
    this.details = details;
  }
}

/** Exit codes of the CLI, documented in the README. */
export const ExitCodes = {
  OK: 0,
  /** A runtime failure: a source or port could not be opened, an unexpected error. */
  RUNTIME: 1,
  /** The configuration or a mapping file is invalid; nothing was started. */
  CONFIG: 2,
  /** The command line itself is wrong. */
  USAGE: 64,
} as const;
