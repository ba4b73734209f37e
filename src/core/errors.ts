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
  /** Not a problem: the config works, but something in it is worth knowing (a warning). */
  CONFIG_WARNING: "SG_CONFIG_WARNING",
  // Codec (encode/decode between words and engineering values)
  CODEC_RANGE: "SG_CODEC_RANGE",
  CODEC_TYPE: "SG_CODEC_TYPE",
  CODEC_NOT_FINITE: "SG_CODEC_NOT_FINITE",
  // South (device side)
  MODBUS_EXCEPTION: "SG_MODBUS_EXCEPTION",
  MODBUS_TIMEOUT: "SG_MODBUS_TIMEOUT",
  MODBUS_DISCONNECTED: "SG_MODBUS_DISCONNECTED",
  /**
   * A frame that could not be used: a bad CRC or MBAP header, a byte count or length that
   * disagrees, the wrong unit, function code or write echo (noise, a late answer, a broken slave).
   */
  MODBUS_BAD_FRAME: "SG_MODBUS_BAD_FRAME",
  MODBUS_UNIT_DOWN: "SG_MODBUS_UNIT_DOWN",
  MODBUS_ILLEGAL_ADDRESS: "SG_MODBUS_ILLEGAL_ADDRESS",
  SOURCE_NOT_STARTED: "SG_SOURCE_NOT_STARTED",
  /** An OPC UA node answered a Bad status code (the reason names it, e.g. BadNodeIdUnknown). */
  OPCUA_BAD: "SG_OPCUA_BAD",
  /** An OPC UA service call got no answer in time. */
  OPCUA_TIMEOUT: "SG_OPCUA_TIMEOUT",
  OPCUA_DISCONNECTED: "SG_OPCUA_DISCONNECTED",
  /** The server's certificate is not in the client's trust list (the reason says how to trust it). */
  OPCUA_UNTRUSTED: "SG_OPCUA_UNTRUSTED",
  /** The server refused the session: identity rejected, no matching endpoint or user token policy. */
  OPCUA_SESSION: "SG_OPCUA_SESSION",
  /** A Write answered a Bad status code (BadNotWritable, BadTypeMismatch, ...). */
  OPCUA_WRITE: "SG_OPCUA_WRITE",
  // North (cloud side)
  MQTT_OFFLINE: "SG_MQTT_OFFLINE",
  MQTT_SUBSCRIBE: "SG_MQTT_SUBSCRIBE",
  SHADOW_REJECTED: "SG_SHADOW_REJECTED",
  SHADOW_CONFLICT: "SG_SHADOW_CONFLICT",
  SHADOW_REPLY_TIMEOUT: "SG_SHADOW_REPLY_TIMEOUT",
  SHADOW_BAD_MESSAGE: "SG_SHADOW_BAD_MESSAGE",
  /** A device's session login failed for a reason that may pass (timeout, 429, 500): retried. */
  SESSION_LOGIN: "SG_SESSION_LOGIN",
  /**
   * The cloud will not take a device's traffic until an operator acts (Alibaba: 521 deleted,
   * 522 disabled, 6287 bad sign, 6401 no topology, 428 too many online): not retried.
   */
  SESSION_REFUSED: "SG_SESSION_REFUSED",
  /** A session reply or notice that is malformed, unasked or names an unknown device: ignored. */
  SESSION_BAD_MESSAGE: "SG_SESSION_BAD_MESSAGE",
  // Commands (desired state written to a device)
  COMMAND_REJECTED: "SG_COMMAND_REJECTED",
  COMMAND_FAILED: "SG_COMMAND_FAILED",
  // Store (SQLite)
  STORE_REFUSED: "SG_STORE_REFUSED",
  STORE_FULL: "SG_STORE_FULL",
  STORE_OPEN: "SG_STORE_OPEN",
  // Runtime
  NOT_READ: "SG_NOT_READ",
  RESTORED: "SG_RESTORED",
  POLL_OVERRUN: "SG_POLL_OVERRUN",
  SHUTDOWN_TIMEOUT: "SG_SHUTDOWN_TIMEOUT",
  /**
   * The V8 heap is near its cap (gateway.memory.heapMb, --max-old-space-size), or the garbage
   * collector takes a large share of the time (a heap too small for the load); at 100% of the
   * cap the process dies.
   */
  HEAP_HIGH: "SG_HEAP_HIGH",
  /** A component of the daemon (the store, a source, the cloud sync) failed to start. */
  COMPONENT_FAILED: "SG_COMPONENT_FAILED",
  /** A bug: an exception that escaped where none should; logged, and the daemon goes on. */
  INTERNAL: "SG_INTERNAL",
  USAGE: "SG_USAGE",
  /**
   * `shadowgate install` or `uninstall` could not do a step: not root, the package not where
   * the unit would run it, a user, folder or file it could not create, systemctl failed.
   */
  INSTALL: "SG_INSTALL",
  // North: Alibaba dialect (credentials, CONNECT authentication, shadow messages)
  SIGN_INPUT: "SG_SIGN_INPUT",
  AUTH_CLIENT_ID: "SG_AUTH_CLIENT_ID",
  AUTH_DENIED: "SG_AUTH_DENIED",
  SHADOW_ENCODE: "SG_SHADOW_ENCODE",
  // Local cloud shadow service (sim.cloud)
  CLOUD_REQUEST_INVALID: "SG_CLOUD_REQUEST_INVALID",
  CLOUD_VERSION_CONFLICT: "SG_CLOUD_VERSION_CONFLICT",
  CLOUD_PUBLISH: "SG_CLOUD_PUBLISH",
  CLOUD_START: "SG_CLOUD_START",
  CLOUD_INTERNAL: "SG_CLOUD_INTERNAL",
  // Local HTTP API (src/api): the `error.code` of every refused request
  /** Malformed JSON, a body that is not `{"value": ...}`, an unsupported content type. */
  API_BAD_REQUEST: "SG_API_BAD_REQUEST",
  /** A token is configured and the request has none, or the wrong one. */
  API_UNAUTHORIZED: "SG_API_UNAUTHORIZED",
  /** No such route, device or point. */
  API_NOT_FOUND: "SG_API_NOT_FOUND",
  /** The request body is larger than the API takes. */
  API_TOO_LARGE: "SG_API_TOO_LARGE",
  /** /readyz: the gateway is not ready (the reasons say why). */
  API_NOT_READY: "SG_API_NOT_READY",
  /** The gateway cannot take the request now (e.g. a command while the journal is closed). */
  API_UNAVAILABLE: "SG_API_UNAVAILABLE",
  /** The point has no raw words to show (a bit, an OPC UA variable the server types). */
  API_NO_RAW: "SG_API_NO_RAW",
  /** A read the API asked of a device (its raw words) failed: the device's own reason follows. */
  API_DEVICE_FAILED: "SG_API_DEVICE_FAILED",
  /** An event-stream client that did not keep up: its buffer passed the bound, it was dropped. */
  API_SLOW_CLIENT: "SG_API_SLOW_CLIENT",
  /** A reload asked for (SIGHUP or the API) was refused: the config has problems. */
  RELOAD_REFUSED: "SG_RELOAD_REFUSED",
  /** A reload changed settings that only a restart applies (the api and log sections, the heap cap). */
  RELOAD_RESTART_NEEDED: "SG_RELOAD_RESTART_NEEDED",
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
