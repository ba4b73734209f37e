import { consoleFiles } from "./console.js";
import { createHash, timingSafeEqual } from "node:crypto";
import { STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { ErrorCodes, type ErrorCode } from "../core/errors.js";
import { isJsonObject } from "../core/json.js";
import type { Logger } from "../core/logger.js";
import type { JsonValue } from "../core/types.js";
import { EventStream } from "./events.js";
import type { ApiHost } from "./host.js";

/** Request bodies are one `{"value": ...}`: anything larger is refused before it is read. */
export const BODY_LIMIT_BYTES = 64 * 1024;
/** What an event-stream client may leave unread before it is dropped. */
export const SSE_BUFFER_BYTES = 256 * 1024;
export const SSE_HEARTBEAT_MS = 15_000;
/** A point's history: values given when the request names no `max`, and the most it may. */
const HISTORY_DEFAULT = 120;
const HISTORY_MAX = 1000;

export interface ApiOptions {
  /** host:port, as in the config's `api.listen` (port 0: any free port). */
  readonly listen: string;
  /** When set, every route but /healthz needs `Authorization: Bearer <token>`. */
  readonly token?: string;
  readonly sseBufferBytes?: number;
  readonly sseHeartbeatMs?: number;
}

/** A device's shadow as served: its JSON, made once per revision. */
interface ShadowBody {
  readonly revision: string;
  readonly body: string;
  /** A reader has had it: its device's next shadow is made ahead (ApiServer.warm). */
  served: boolean;
}

/** The error body of every refused request. */
interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string };
}

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

/**
 * The local HTTP API (fastify) as a daemon component: start binds the listen address, stop ends
 * the event streams and closes the server. It reads the gateway only through its ApiHost.
 */
const JSON_TYPE = "application/json; charset=utf-8";

export class ApiServer {
  readonly name = "api";
  private app: FastifyInstance | undefined;
  private events: EventStream | undefined;
  private unsubscribe: (() => void) | undefined;
  private unwatchShadows: (() => void) | undefined;
  /** The error code of a refused request, for its one log line. */
  private readonly codes = new WeakMap<FastifyRequest, ErrorCode>();
  private readonly counts = { requests: 0, refused: 0, unauthorized: 0 };
  /** Each device's shadow as last made, by the host's revision of it; `served` once read. */
  private readonly shadows = new Map<string, ShadowBody>();
  /** Devices whose next shadow is to be made before it is asked for (see warm()). */
  private readonly warming = new Set<string>();

  constructor(
    private readonly opts: ApiOptions,
    private readonly host: ApiHost,
    private readonly log: Logger,
  ) {}

  /** The bound address, once started (the port chosen when `listen` named port 0). */
  get address(): AddressInfo | undefined {
    const a = this.app?.server.address();
    return a !== null && typeof a === "object" ? a : undefined;
  }

  async start(): Promise<void> {
    const sep = this.opts.listen.lastIndexOf(":");
    const host = this.opts.listen.slice(0, sep).replace(/^\[(.*)\]$/, "$1");
    const port = Number(this.opts.listen.slice(sep + 1));
    const events = new EventStream(
      {
        maxBufferBytes: this.opts.sseBufferBytes ?? SSE_BUFFER_BYTES,
        heartbeatMs: this.opts.sseHeartbeatMs ?? SSE_HEARTBEAT_MS,
      },
      this.log,
    );
    const app = Fastify({
      logger: false,
      bodyLimit: BODY_LIMIT_BYTES,
      // A URL fastify cannot decode (`/%ff`) is refused in the API's own shape, not fastify's.
      frameworkErrors: (err, req, reply) =>
        this.refuse(req, reply, err.statusCode ?? 400, ErrorCodes.API_BAD_REQUEST, err.message),
      clientErrorHandler: (err, socket) => clientError(err, socket),
    });
    this.routes(app, events);
    await app.listen({ host, port });
    this.app = app;
    this.events = events;
    this.unsubscribe = this.host.subscribe((e) => events.publish(e));
    this.unwatchShadows = this.host.watchShadows((deviceName) => this.warm(deviceName));
    const bound = this.address;
    this.log.info(
      { listen: this.opts.listen, port: bound?.port, auth: this.opts.token !== undefined },
      "local API listening",
    );
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unwatchShadows?.();
    this.unsubscribe = this.unwatchShadows = undefined;
    this.warming.clear();
    // Open event streams would hold the server's close until their clients left.
    this.events?.close();
    await this.app?.close();
    this.app = undefined;
  }

  status(): Record<string, unknown> {
    return {
      listen: this.opts.listen,
      ...(this.address && { port: this.address.port }),
      eventClients: this.events?.size ?? 0,
      eventClientsDropped: this.events?.dropped ?? 0,
      ...this.counts,
    };
  }

  /**
   * The device's shadow as JSON, made once per revision: ten readers of a device polled once a
   * second get one serialization per poll, not ten. Undefined for an unknown device.
   */
  private shadowBody(deviceName: string): ShadowBody | undefined {
    const revision = this.host.shadowRevision(deviceName);
    // No revision: no such device (any more, after a reload).
    if (revision === undefined) {
      this.shadows.delete(deviceName);
      return undefined;
    }
    const cached = this.shadows.get(deviceName);
    if (cached?.revision === revision) return cached;
    const view = this.host.shadow(deviceName);
    if (!view) return undefined;
    const made: ShadowBody = {
      revision,
      body: JSON.stringify({
        device: view.device,
        // One of the two identities: JSON leaves out the other's (undefined) fields.
        productKey: view.productKey,
        thingName: view.thingName,
        shadowName: view.shadowName,
        state: { reported: view.reported, desired: view.desired },
        metadata: { reported: view.points },
      }),
      served: false,
    };
    this.shadows.set(deviceName, made);
    return made;
  }

  /**
   * A device whose last shadow was read gets its next one made as soon as the poll that moved it
   * is done, while the gateway is awake anyway, instead of by the first reader after the poll,
   * who would wait for it (500 points: 0.5 to 4 ms on a small box, B8). A device whose shadow
   * nobody read since it was made is left until it is asked for, so unread devices cost nothing.
   */
  private warm(deviceName: string): void {
    if (!this.shadows.get(deviceName)?.served) return;
    if (this.warming.size === 0)
      setImmediate(() => {
        for (const name of this.warming) this.shadowBody(name);
        this.warming.clear();
      });
    this.warming.add(deviceName);
  }

  private routes(app: FastifyInstance, events: EventStream): void {
    // An empty JSON body reads as no body (POST /api/v1/reload takes none, whatever the client's
    // content type); the routes that need one say what it must be.
    app.removeContentTypeParser("application/json");
    app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, text, done) => {
      if (text === "") return done(null, undefined);
      try {
        done(null, JSON.parse(text as string) as unknown);
      } catch (err) {
        done(
          Object.assign(new Error(`the body is not JSON: ${(err as Error).message}`), {
            statusCode: 400,
          }),
        );
      }
    });
    const expected = this.opts.token === undefined ? undefined : sha256(this.opts.token);
    app.addHook("onRequest", async (req, reply) => {
      this.counts.requests++;
      if (expected === undefined || req.routeOptions.url === "/healthz") return;
      // The console's files hold no data; the page asks for the token before it calls the API.
      if (consoleFiles().has(req.url.split("?")[0] ?? "")) return;
      const presented = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      // Equal-length digests: the comparison takes the same time whatever the token's length.
      if (presented !== undefined && timingSafeEqual(sha256(presented), expected)) return;
      this.counts.unauthorized++;
      reply.header(
        "www-authenticate",
        presented === undefined
          ? 'Bearer realm="shadowgate"'
          : 'Bearer realm="shadowgate", error="invalid_token"',
      );
      return this.refuse(
        req,
        reply,
        401,
        ErrorCodes.API_UNAUTHORIZED,
        presented === undefined ? "an Authorization: Bearer token is required" : "wrong token",
      );
    });
    app.addHook("onResponse", async (req, reply) => {
      const code = this.codes.get(req);
      if (code === undefined) return;
      this.counts.refused++;
      // Method, route and status only: never the headers (the token) or the body.
      this.log.warn(
        {
          method: req.method,
          route: req.routeOptions.url ?? req.url.split("?")[0],
          status: reply.statusCode,
          code,
        },
        "API request refused",
      );
    });
    app.setNotFoundHandler((req, reply) =>
      this.refuse(
        req,
        reply,
        404,
        ErrorCodes.API_NOT_FOUND,
        `no route ${req.method} ${req.url.split("?")[0]}`,
      ),
    );
    app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, req, reply) => {
      if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE")
        return this.refuse(
          req,
          reply,
          413,
          ErrorCodes.API_TOO_LARGE,
          `the body is larger than ${BODY_LIMIT_BYTES} bytes`,
        );
      const status = err.statusCode ?? 500;
      // Fastify's own refusals of the request: malformed JSON, an empty body, a content type
      // it does not parse.
      if (status >= 400 && status < 500)
        return this.refuse(req, reply, status, ErrorCodes.API_BAD_REQUEST, err.message);
      this.log.error({ err, method: req.method, route: req.routeOptions.url }, "API route failed");
      return this.refuse(req, reply, 500, ErrorCodes.INTERNAL, "internal error; see the log");
    });

    app.get("/healthz", async () => ({ status: "alive" }));

    // The field engineer's console (console/): its page, its script and style, its modules.
    for (const [url, file] of consoleFiles()) {
      app.get(url, async (_req, reply) =>
        reply.header("content-type", file.type).header("cache-control", "no-cache").send(file.body),
      );
    }

    app.get("/readyz", async (_req, reply) => {
      const r = this.host.readiness();
      if (r.ready) return r;
      // A 503 here is an answer, not a refused request: probes ask every few seconds.
      return reply.code(503).send({
        ...r,
        error: { code: ErrorCodes.API_NOT_READY, message: r.reasons.join("; ") },
      });
    });

    app.get("/metrics", async (_req, reply) => {
      const { contentType, body } = await this.host.metrics();
      return reply.type(contentType).send(body);
    });

    app.get("/api/v1/devices", async () => ({ devices: this.host.devices() }));

    app.get<{ Params: { deviceName: string } }>(
      "/api/v1/devices/:deviceName",
      async (req, reply) => {
        const detail = this.host.device(req.params.deviceName);
        return (
          detail ??
          this.refuse(
            req,
            reply,
            404,
            ErrorCodes.API_NOT_FOUND,
            `no device ${req.params.deviceName}`,
          )
        );
      },
    );

    app.get<{ Params: { deviceName: string; point: string } }>(
      "/api/v1/devices/:deviceName/points/:point/raw",
      async (req, reply) => {
        const r = await this.host.raw(req.params.deviceName, req.params.point);
        switch (r.status) {
          case "ok":
            return r.raw;
          case "not-found":
            return this.refuse(req, reply, 404, ErrorCodes.API_NOT_FOUND, r.reason);
          case "no-raw":
            return this.refuse(req, reply, 422, ErrorCodes.API_NO_RAW, r.reason);
          case "failed":
            return this.refuse(req, reply, 502, ErrorCodes.API_DEVICE_FAILED, r.reason);
        }
      },
    );

    app.get<{ Params: { deviceName: string; point: string }; Querystring: { max?: string } }>(
      "/api/v1/devices/:deviceName/points/:point/history",
      async (req, reply) => {
        const { deviceName, point } = req.params;
        const max = req.query.max === undefined ? HISTORY_DEFAULT : Number(req.query.max);
        if (!Number.isInteger(max) || max < 1 || max > HISTORY_MAX)
          return this.refuse(
            req,
            reply,
            400,
            ErrorCodes.API_BAD_REQUEST,
            `max must be a whole number from 1 to ${HISTORY_MAX}`,
          );
        const r = this.host.history(deviceName, point, max);
        if (r.status === "ok") return { device: deviceName, point, values: r.values };
        return r.status === "not-found"
          ? this.refuse(req, reply, 404, ErrorCodes.API_NOT_FOUND, r.reason)
          : this.refuse(req, reply, 503, ErrorCodes.API_UNAVAILABLE, r.reason);
      },
    );

    app.get<{ Params: { deviceName: string }; Querystring: { fresh?: string } }>(
      "/api/v1/devices/:deviceName/cloud",
      async (req, reply) => {
        const { deviceName } = req.params;
        const r = await this.host.cloud(deviceName, req.query.fresh === "1");
        if (r.status === "ok") return { device: deviceName, ...r.shadow };
        return r.status === "not-found"
          ? this.refuse(req, reply, 404, ErrorCodes.API_NOT_FOUND, r.reason)
          : this.refuse(req, reply, 503, ErrorCodes.API_UNAVAILABLE, r.reason);
      },
    );

    app.get<{ Params: { deviceName: string } }>(
      "/api/v1/devices/:deviceName/shadow",
      async (req, reply) => {
        const { deviceName } = req.params;
        const shadow = this.shadowBody(deviceName);
        if (!shadow)
          return this.refuse(req, reply, 404, ErrorCodes.API_NOT_FOUND, `no device ${deviceName}`);
        shadow.served = true;
        return reply.type(JSON_TYPE).send(shadow.body);
      },
    );

    app.put<{ Params: { deviceName: string; point: string }; Body: JsonValue }>(
      "/api/v1/devices/:deviceName/points/:point",
      async (req, reply) => {
        const { deviceName, point } = req.params;
        const body = req.body;
        if (!isJsonObject(body) || !Object.hasOwn(body, "value"))
          return this.refuse(
            req,
            reply,
            400,
            ErrorCodes.API_BAD_REQUEST,
            'the body must be a JSON object {"value": ...}',
          );
        const r = await this.host.command(deviceName, point, body.value as JsonValue);
        switch (r.status) {
          case "applied":
            return { device: deviceName, point, outcome: r.outcome };
          case "rejected":
            // The guard's reason, verbatim: what the operator has to change.
            return this.refuse(req, reply, 422, ErrorCodes.COMMAND_REJECTED, r.reason, {
              outcome: r.outcome,
            });
          case "failed":
            return this.refuse(req, reply, 502, ErrorCodes.COMMAND_FAILED, r.reason, {
              outcome: r.outcome,
            });
          case "not-found":
            return this.refuse(req, reply, 404, ErrorCodes.API_NOT_FOUND, r.reason);
          case "unavailable":
            return this.refuse(req, reply, 503, ErrorCodes.API_UNAVAILABLE, r.reason);
        }
      },
    );

    app.get("/api/v1/events", (req, reply) => {
      // The stream outlives the handler: fastify lets go of the response.
      reply.hijack();
      events.add(reply.raw, `${req.ip}:${req.socket.remotePort ?? 0}`);
    });

    app.get("/api/v1/reload", async () => ({ last: this.host.lastReload() ?? null }));

    app.post("/api/v1/reload", async (req, reply) => {
      const r = await this.host.reload();
      if (r.status === "applied") return r;
      if (r.status === "failed")
        return this.refuse(req, reply, 500, ErrorCodes.INTERNAL, `reload failed: ${r.reason}`);
      return this.refuse(
        req,
        reply,
        422,
        ErrorCodes.RELOAD_REFUSED,
        `the config has ${r.problems.length} problem(s); the running config stays in place`,
        { problems: r.problems, ...(r.omitted !== undefined && { omitted: r.omitted }) },
      );
    });
  }

  /** Sends the error body and marks the request for its one log line. */
  private refuse(
    req: FastifyRequest,
    reply: FastifyReply,
    status: number,
    code: ErrorCode,
    message: string,
    more: Record<string, unknown> = {},
  ): FastifyReply {
    this.codes.set(req, code);
    const body: ErrorBody = { error: { code, message } };
    return reply.code(status).send({ ...body, ...more });
  }
}

/**
 * A request node's HTTP parser refuses before any route sees it (raw non-ASCII bytes in the
 * request line, a header too large): answered in the API's error shape, then the connection is
 * closed, since the stream cannot be trusted past the bad request.
 */
function clientError(err: Error & { code?: string; rawPacket?: unknown }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "the request's headers are too large"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "the request took too long to arrive"]
        : [400, `the request is not valid HTTP (${err.code ?? err.message})`];
  // A HEAD request's answer has no body, even this one.
  const raw = err.rawPacket;
  const head = Buffer.isBuffer(raw) && raw.subarray(0, 5).toString("latin1") === "HEAD ";
  const body = head ? "" : JSON.stringify({ error: { code: ErrorCodes.API_BAD_REQUEST, message } });
  // As node's own handler does: no second answer on a socket whose response already started
  // (a request refused before its body was read, whose body then fails to parse).
  const answering = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !answering?.headersSent)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: ${JSON_TYPE}\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy();
}
