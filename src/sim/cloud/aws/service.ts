import { EventEmitter } from "node:events";
import { ErrorCodes } from "../../../core/errors.js";
import type { Logger } from "../../../core/logger.js";
import type { JsonObject } from "../../../core/types.js";
import { MAX_IN_FLIGHT } from "../../../north/dialects/aws/codec.js";
import { parseShadowTopic, shadowPrefix } from "../../../north/dialects/aws/topics.js";
import type { MessageOrigin } from "../sessions.js";
import type { ShadowTransport } from "../transport.js";
import {
  AwsErrors,
  applyUpdate,
  getResponse,
  parseRequest,
  parseUpdate,
  type AwsError,
  type AwsShadowDocument,
  type UpdateRequest,
} from "./document.js";

/** Where requests arrive: the classic and the named shadows' operation topics, nothing else. */
export const AWS_SERVICE_FILTERS: readonly string[] = [
  "$aws/things/+/shadow/+",
  "$aws/things/+/shadow/name/+/+",
];

export interface AwsShadowServiceOptions {
  readonly transport: ShadowTransport;
  readonly logger: Logger;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now?: () => number;
  /**
   * How long a request stays in flight before it is answered (default 0: at once). With a
   * delay, the 11th request in flight on one connection is answered 429, as AWS does.
   */
  readonly replyDelayMs?: number;
  /** When given, only these things exist; a request for another is answered 404. */
  readonly things?: readonly string[];
  /** Where the shadows live (default: a store of this service's own). */
  readonly store?: AwsShadowStore;
  /**
   * Bytes of state a stored document may hold (default AWS's 8 KB; AWS may raise it for an
   * account). One request still carries at most 8 KB.
   */
  readonly maxDocumentBytes?: number;
  /** Bytes of state one update may carry (default 8 KB); a larger one is answered 413. */
  readonly maxRequestBytes?: number;
}

export interface AwsShadowServiceEvents {
  /** An update was accepted (by MQTT or HTTP): what it asked for and the document after it. */
  updated: [event: UpdatedEvent];
  /**
   * A request is about to be served (after the reply delay): a test may change the shadow
   * here, between the gateway's sending and the service's deciding.
   */
  request: [topic: string, body: JsonObject];
  /** A request was answered with an error. */
  rejected: [topic: string, error: AwsError];
}

export interface UpdatedEvent {
  readonly thingName: string;
  readonly shadowName: string | undefined;
  readonly request: UpdateRequest;
  readonly document: AwsShadowDocument;
}

/** One shadow: its document, or the version a deleted one reached (AWS keeps counting). */
interface Slot {
  document?: AwsShadowDocument;
  lastVersion: number;
}

/**
 * The shadows, in memory. Apart from the service so that one store can outlive a service that
 * is stopped and started again (a test restarting the broker, as AWS's shadows outlive a
 * connection).
 */
export class AwsShadowStore {
  readonly slots = new Map<string, Slot>();
}

/**
 * The AWS IoT Device Shadow service, local: requests on `$aws/things/{thing}/shadow[/name/
 * {shadow}]/get|update|delete`, answers on `/accepted` and `/rejected`, `/update/delta` and
 * `/update/documents` after accepted updates (document.ts has the rules). Shadows live in
 * memory: the service is a test peer and a demo, not a store.
 */
export class AwsShadowService extends EventEmitter<AwsShadowServiceEvents> {
  private readonly shadows: Map<string, Slot>;
  private readonly inFlight = new Map<string, number>();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly things: ReadonlySet<string> | undefined;

  constructor(private readonly opts: AwsShadowServiceOptions) {
    super();
    this.log = opts.logger.child({ dialect: "aws" });
    this.now = opts.now ?? Date.now;
    this.things = opts.things && new Set(opts.things);
    this.shadows = (opts.store ?? new AwsShadowStore()).slots;
  }

  /** The shadow's document, if it has one. */
  getShadow(thingName: string, shadowName?: string): AwsShadowDocument | undefined {
    return this.shadows.get(key(thingName, shadowName))?.document;
  }

  /** Handles one message on a topic of AWS_SERVICE_FILTERS. Never throws. */
  readonly handleMessage = (topic: string, payload: Buffer, origin?: MessageOrigin): void => {
    const where = parseShadowTopic(topic);
    if (!where || where.stub !== undefined) {
      this.log.warn(
        { code: ErrorCodes.CLOUD_REQUEST_INVALID, topic },
        "not a shadow request topic; not answered",
      );
      return;
    }
    const connection = origin?.connection;
    const answer = (stub: "accepted" | "rejected", body: JsonObject): void => {
      this.publish(`${topic}/${stub}`, body);
    };
    const parsed = parseRequest(payload);
    const token: JsonObject =
      parsed.clientToken === undefined ? {} : { clientToken: parsed.clientToken };
    const reject = (error: AwsError): void => {
      this.emit("rejected", topic, error);
      answer("rejected", {
        code: error.code,
        message: error.message,
        timestamp: this.seconds(),
        ...token,
      });
    };
    if (connection !== undefined && (this.opts.replyDelayMs ?? 0) > 0) {
      const n = this.inFlight.get(connection) ?? 0;
      if (n >= MAX_IN_FLIGHT) return reject(AwsErrors.inFlight);
      this.inFlight.set(connection, n + 1);
      setTimeout(() => {
        const left = (this.inFlight.get(connection) ?? 1) - 1;
        if (left > 0) this.inFlight.set(connection, left);
        else this.inFlight.delete(connection);
        this.serve(topic, where, parsed, answer, reject);
      }, this.opts.replyDelayMs).unref();
      return;
    }
    this.serve(topic, where, parsed, answer, reject);
  };

  /** A connection ended: its requests in flight no longer count. */
  readonly connectionClosed = (connection: string): void => {
    this.inFlight.delete(connection);
  };

  /**
   * An update from an application (the HTTP API, the console's part): the same rules, and the
   * same messages to the device.
   */
  update(
    thingName: string,
    shadowName: string | undefined,
    body: JsonObject,
  ): { ok: true; accepted: JsonObject } | { ok: false; error: AwsError } {
    if (this.things && !this.things.has(thingName))
      return { ok: false, error: AwsErrors.noShadow(shadowName ?? thingName) };
    const request = parseUpdate(body, this.opts.maxRequestBytes);
    if (!request.ok) return request;
    const r = this.apply(thingName, shadowName, request.value, undefined);
    return r.ok ? { ok: true, accepted: r.accepted } : r;
  }

  /** The document as GetThingShadow gives it, or the 404 for a shadow that has none. */
  get(
    thingName: string,
    shadowName?: string,
  ): { ok: true; document: JsonObject } | { ok: false; error: AwsError } {
    const doc = this.getShadow(thingName, shadowName);
    if (!doc) return { ok: false, error: AwsErrors.noShadow(shadowName ?? thingName) };
    return { ok: true, document: getResponse(doc) };
  }

  private serve(
    topic: string,
    where: { thingName: string; shadowName?: string; operation: "get" | "update" | "delete" },
    parsed: ReturnType<typeof parseRequest>,
    answer: (stub: "accepted" | "rejected", body: JsonObject) => void,
    reject: (error: AwsError) => void,
  ): void {
    try {
      if (!parsed.ok) return reject(parsed.error);
      this.emit("request", topic, parsed.value);
      const { thingName, shadowName } = where;
      if (this.things && !this.things.has(thingName))
        return reject(AwsErrors.noShadow(shadowName ?? thingName));
      const token = parsed.clientToken;
      const slot = this.shadows.get(key(thingName, shadowName));
      if (where.operation === "get") {
        if (!slot?.document) return reject(AwsErrors.noShadow(shadowName ?? thingName));
        return answer("accepted", getResponse(slot.document, token));
      }
      if (where.operation === "delete") {
        if (!slot?.document) return reject(AwsErrors.noShadow(shadowName ?? thingName));
        const version = slot.document.version;
        this.shadows.set(key(thingName, shadowName), { lastVersion: version });
        return answer("accepted", {
          version,
          timestamp: this.seconds(),
          ...(token !== undefined && { clientToken: token }),
        });
      }
      const request = parseUpdate(parsed.value, this.opts.maxRequestBytes);
      if (!request.ok) return reject(request.error);
      const r = this.apply(thingName, shadowName, request.value, token);
      if (!r.ok) return reject(r.error);
    } catch (e) {
      this.log.error(
        { code: ErrorCodes.CLOUD_INTERNAL, err: (e as Error).message },
        "shadow request failed",
      );
      reject({ code: 500, message: "Internal service failure" });
    }
  }

  private apply(
    thingName: string,
    shadowName: string | undefined,
    request: UpdateRequest,
    token: string | undefined,
  ): { ok: true; accepted: JsonObject } | { ok: false; error: AwsError } {
    const k = key(thingName, shadowName);
    const slot = this.shadows.get(k);
    const r = applyUpdate(
      slot?.document,
      slot?.lastVersion ?? 0,
      request,
      this.seconds(),
      token,
      this.opts.maxDocumentBytes,
    );
    if (!r.ok) return r;
    const { document, accepted, delta, documents } = r.value;
    this.shadows.set(k, { document, lastVersion: document.version });
    const prefix = shadowPrefix(thingName, shadowName);
    this.publish(`${prefix}/update/accepted`, accepted);
    if (delta) this.publish(`${prefix}/update/delta`, delta);
    this.publish(`${prefix}/update/documents`, documents);
    this.emit("updated", { thingName, shadowName, request, document });
    return { ok: true, accepted };
  }

  private publish(topic: string, body: JsonObject): void {
    this.opts.transport.publish(topic, JSON.stringify(body)).catch((e: unknown) => {
      this.log.warn({ topic, err: (e as Error).message }, "cannot publish");
    });
  }

  private seconds(): number {
    return Math.floor(this.now() / 1000);
  }
}

const key = (thingName: string, shadowName?: string): string =>
  shadowName === undefined ? thingName : `${thingName}/name/${shadowName}`;
