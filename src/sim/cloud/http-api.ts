import { randomUUID } from "node:crypto";
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import { ShadowErrorCodes } from "../../north/dialects/alibaba/messages.js";
import type { CloudShadowDocument } from "./shadow-document.js";
import { isPlainObject } from "./shadow-document.js";
import type { ShadowService } from "./shadow-service.js";

/** Request bodies above this are refused with 413. */
export const MAX_BODY_BYTES = 64 * 1024;
/** A client that keeps sending this far past the limit is cut off instead of drained. */
const DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES;

export interface CloudHttpApiOptions {
  readonly service: ShadowService;
  readonly logger: Logger;
}

type Body = Record<string, unknown>;

export class HttpFailure {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly message: string,
    readonly headers: OutgoingHttpHeaders = {},
  ) {}
}

/**
 * A JSON API in the manner of Alibaba's GetDeviceShadow and UpdateDeviceShadow (doc-detail
 * 69954), so that an application, a test or the demo can set desired state as the cloud
 * console would:
 *
 *   GET  /shadows/{pk}/{dn}              -> {RequestId, Success, ShadowMessage: "<document JSON>"}
 *   GET  /shadows/{pk}/{dn}?format=json  -> the document as an object
 *   POST /shadows/{pk}/{dn}  {ShadowMessage, DeltaUpdate?} -> {RequestId, Success, version}
 *   GET  /healthz                        -> {status: "ok", shadows: N}
 *   GET  /devices/{pk}/{dn}              -> {RequestId, Success, disabled, gateway, session}
 *   POST /devices/{pk}/{dn}/disable      -> {RequestId, Success, disabled: true, changed, gateway}
 *   POST /devices/{pk}/{dn}/enable       -> the same with disabled: false
 *
 * Disable and enable are the console's switches (shadow-protocol.md 2.3): the gateway whose
 * topology holds the device is told on its topo/change topic. An unknown device is 404.
 *
 * Errors: {RequestId, Success: false, Code, ErrorMessage} with a 4xx status; Code is the
 * shadow error code ("400".."409") where one applies, otherwise NotFound, MethodNotAllowed,
 * PayloadTooLarge or InvalidParameter.
 */
/** A JSON HTTP server on loopback: listen, port, stop; the routes are the subclass's. */
export abstract class JsonHttpServer {
  private server: Server | undefined;
  private boundPort = 0;

  constructor(protected readonly log: Logger) {}

  get port(): number {
    return this.boundPort;
  }

  async start(listen: { port: number; host: string }): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(listen.port, listen.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      this.server = undefined;
      throw new ShadowgateError(
        ErrorCodes.CLOUD_START,
        `HTTP API cannot listen on ${listen.host}:${listen.port}: ${(e as Error).message}`,
      );
    }
    this.boundPort = (server.address() as AddressInfo).port;
    this.log.info({ host: listen.host, port: this.boundPort }, "HTTP API listening");
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Idle keep-alive connections would hold close() open until they time out.
    server.closeAllConnections();
    await closed;
  }

  protected abstract handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export class CloudHttpApi extends JsonHttpServer {
  private readonly service: ShadowService;

  constructor(opts: CloudHttpApiOptions) {
    super(opts.logger);
    this.service = opts.service;
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    try {
      send(res, 200, await this.route(req, requestId));
    } catch (e) {
      if (e instanceof HttpFailure) {
        this.log.info(
          {
            code: ErrorCodes.CLOUD_REQUEST_INVALID,
            method: req.method,
            path: pathOf(req),
            status: e.status,
          },
          `HTTP API request refused: ${e.message}`,
        );
        send(
          res,
          e.status,
          { RequestId: requestId, Success: false, Code: e.code, ErrorMessage: e.message },
          e.headers,
        );
        return;
      }
      this.log.error(
        { code: ErrorCodes.CLOUD_INTERNAL, method: req.method, path: pathOf(req), err: e },
        "HTTP API request failed",
      );
      send(res, 500, {
        RequestId: requestId,
        Success: false,
        Code: "500",
        ErrorMessage: "internal error; see the service log",
      });
    }
  }

  /** The 200 response body; a refusal throws HttpFailure. */
  private async route(req: IncomingMessage, requestId: string): Promise<unknown> {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/healthz") {
      allow(req, ["GET"]);
      return { status: "ok", shadows: this.service.shadows().length };
    }
    const device = /^\/devices\/([^/]+)\/([^/]+)(?:\/(disable|enable))?\/?$/.exec(url.pathname);
    if (device) {
      const productKey = segment(device[1] ?? "", "productKey");
      const deviceName = segment(device[2] ?? "", "deviceName");
      const action = device[3];
      allow(req, action === undefined ? ["GET"] : ["POST"]);
      // Any body is ignored, but read: unread data at close would reset the connection.
      req.resume();
      return { RequestId: requestId, ...(await this.device(productKey, deviceName, action)) };
    }
    const m = /^\/shadows\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
    if (!m) {
      throw new HttpFailure(404, "NotFound", `no route ${req.method ?? ""} ${url.pathname}`);
    }
    const productKey = segment(m[1] ?? "", "productKey");
    const deviceName = segment(m[2] ?? "", "deviceName");
    allow(req, ["GET", "POST"]);
    if (req.method === "POST") {
      return { RequestId: requestId, ...(await this.update(req, productKey, deviceName)) };
    }
    const doc = this.service.getShadow(productKey, deviceName);
    if (doc === undefined) {
      throw new HttpFailure(404, "NotFound", `no shadow for ${productKey}/${deviceName}`);
    }
    const format = url.searchParams.get("format");
    if (format === "json") return stored(doc);
    if (format !== null) {
      throw new HttpFailure(400, "InvalidParameter", `format "${format}" is not json`);
    }
    // Alibaba's GetDeviceShadow returns the document as a JSON string, not an object.
    return { RequestId: requestId, Success: true, ShadowMessage: JSON.stringify(stored(doc)) };
  }

  /** A device's status, or the operator's switch; nothing is read from the body. */
  private async device(
    productKey: string,
    deviceName: string,
    action: string | undefined,
  ): Promise<Body> {
    const status = this.service.deviceStatus(productKey, deviceName);
    if (!status.known) {
      throw new HttpFailure(
        404,
        "NotFound",
        `no device ${productKey}/${deviceName}: it has no secret, topology or shadow`,
      );
    }
    const base = { Success: true, productKey, deviceName };
    if (action === undefined) {
      return {
        ...base,
        disabled: status.disabled,
        gateway: status.gateway ?? null,
        session: status.session ?? null,
      };
    }
    const disabled = action === "disable";
    const outcome = await this.service.setDisabled(productKey, deviceName, disabled);
    return {
      ...base,
      disabled,
      changed: outcome.changed,
      gateway: outcome.gateway ?? null,
      notified: outcome.notified,
    };
  }

  private async update(
    req: IncomingMessage,
    productKey: string,
    deviceName: string,
  ): Promise<Body> {
    const text = await readBody(req);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw new HttpFailure(400, "400", `request body is not JSON: ${(e as Error).message}`);
    }
    if (!isPlainObject(body))
      throw new HttpFailure(400, "400", "request body is not a JSON object");
    if (body.ShadowMessage === undefined) {
      throw new HttpFailure(400, "InvalidParameter", "ShadowMessage is missing");
    }
    const delta = body.DeltaUpdate ?? false;
    if (typeof delta !== "boolean") {
      throw new HttpFailure(400, "InvalidParameter", "DeltaUpdate must be true or false");
    }
    const outcome = await this.service.updateDesired(productKey, deviceName, body.ShadowMessage, {
      delta,
    });
    if (!outcome.ok) {
      const status = outcome.code === ShadowErrorCodes.VERSION_CONFLICT ? 409 : 400;
      throw new HttpFailure(status, String(outcome.code), outcome.message);
    }
    return { Success: true, version: outcome.version };
  }
}

/** The document in Alibaba's stored form and key order. */
function stored(doc: CloudShadowDocument): CloudShadowDocument {
  return {
    state: doc.state,
    metadata: doc.metadata,
    timestamp: doc.timestamp,
    version: doc.version,
  };
}

export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: OutgoingHttpHeaders = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function allow(req: IncomingMessage, methods: readonly string[]): void {
  if (!methods.includes(req.method ?? "")) {
    throw new HttpFailure(
      405,
      "MethodNotAllowed",
      `${req.method ?? ""} is not allowed here; use ${methods.join(" or ")}`,
      { allow: methods.join(", ") },
    );
  }
}

/** A productKey or deviceName from the path: it becomes an MQTT topic level, so no wildcards. */
export function segment(raw: string, name: string): string {
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    throw new HttpFailure(400, "InvalidParameter", `${name} is not valid percent-encoding`);
  }
  if (value === "" || /[/+#]/.test(value) || value.includes("\0")) {
    throw new HttpFailure(
      400,
      "InvalidParameter",
      `${name} "${value}" may not contain / + # or NUL`,
    );
  }
  return value;
}

export const pathOf = (req: IncomingMessage): string => (req.url ?? "").split("?")[0] ?? "";

/**
 * Reads the body up to MAX_BODY_BYTES. Past it the rest is drained before the 413 goes out:
 * closing a socket with unread data makes the kernel send a reset, and the client would see
 * ECONNRESET instead of the error.
 */
export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else if (size > DRAIN_LIMIT_BYTES) req.destroy();
    });
    const tooLarge = (): HttpFailure =>
      new HttpFailure(
        413,
        "PayloadTooLarge",
        `request body is over ${MAX_BODY_BYTES} bytes (${size} received)`,
      );
    req.on("end", () => {
      if (size > MAX_BODY_BYTES) reject(tooLarge());
      else resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", reject);
    // Destroyed past the drain limit, no "end" comes: settle so the handler does not hang.
    req.on("close", () =>
      reject(size > MAX_BODY_BYTES ? tooLarge() : new HttpFailure(400, "400", "request aborted")),
    );
  });
}
