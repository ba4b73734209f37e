import type { IncomingMessage, ServerResponse } from "node:http";
import { ErrorCodes } from "../../../core/errors.js";
import { isJsonObject } from "../../../core/json.js";
import type { Logger } from "../../../core/logger.js";
import type { JsonValue } from "../../../core/types.js";
import {
  HttpFailure,
  JsonHttpServer,
  allow,
  pathOf,
  readBody,
  segment,
  send,
} from "../http-api.js";
import type { AwsShadowService } from "./service.js";

/**
 * The AWS IoT data plane's shadow routes (GetThingShadow, UpdateThingShadow), so that an
 * application, a test or the demo sets desired state as the AWS console would:
 *
 *   GET  /things/{thing}/shadow[?name={shadow}]   -> the document, with delta
 *   POST /things/{thing}/shadow[?name={shadow}]   {"state":{"desired":{...}}} -> the accepted doc
 *   GET  /healthz                                 -> {status: "ok"}
 *
 * Errors are AWS's: `{code, message}` with the code as the HTTP status.
 */
export class AwsHttpApi extends JsonHttpServer {
  constructor(
    private readonly service: AwsShadowService,
    logger: Logger,
  ) {
    super(logger);
  }

  protected async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const [status, body] = await this.route(req);
      send(res, status, body);
    } catch (e) {
      const f =
        e instanceof HttpFailure ? e : new HttpFailure(500, "500", "internal error; see the log");
      if (!(e instanceof HttpFailure))
        this.log.error(
          { code: ErrorCodes.CLOUD_INTERNAL, path: pathOf(req), err: e },
          "HTTP API request failed",
        );
      send(res, f.status, { code: f.status, message: f.message }, f.headers);
    }
  }

  private async route(req: IncomingMessage): Promise<[number, JsonValue]> {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/healthz") {
      allow(req, ["GET"]);
      return [200, { status: "ok" }];
    }
    const m = /^\/things\/([^/]+)\/shadow$/.exec(url.pathname);
    if (!m) throw new HttpFailure(404, "NotFound", `no route ${url.pathname}`);
    allow(req, ["GET", "POST"]);
    const thing = segment(m[1] ?? "", "thing name");
    const name = url.searchParams.get("name") ?? undefined;
    if (name !== undefined) segment(encodeURIComponent(name), "shadow name");
    if (req.method === "GET") {
      const r = this.service.get(thing, name);
      return r.ok ? [200, r.document] : [r.error.code, { ...r.error }];
    }
    let body: JsonValue;
    try {
      body = JSON.parse(await readBody(req)) as JsonValue;
    } catch (e) {
      if (e instanceof HttpFailure) throw e;
      throw new HttpFailure(400, "400", "Invalid JSON");
    }
    if (!isJsonObject(body)) throw new HttpFailure(400, "400", "Invalid JSON");
    const r = this.service.update(thing, name, body);
    return r.ok ? [200, r.accepted] : [r.error.code, { ...r.error }];
  }
}
