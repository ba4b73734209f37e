/**
 * The session side of the OPC UA driver: the endpoint's security mode and policy, the identity
 * the session runs as, opening a client and a session, and what is learned on a session
 * (operation limits, namespaces, resolved nodes, subscriptions) until it is lost.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import {
  AttributeIds,
  type ClientSession,
  type ClientSubscription,
  MessageSecurityMode,
  type NodeId,
  type OPCUACertificateManager,
  OPCUAClient,
  resolveNodeId,
  SecurityPolicy,
  type StatusCode,
  type UserIdentityInfo,
  UserTokenType,
  VariableIds,
} from "node-opcua";
import { type ErrorCode, ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { OpcuaDriverOptions, OpcuaSecurityPolicy } from "./options.js";
import { type NodeType, severity, statusName } from "./values.js";

/** CreateMonitoredItems batch when the server states no MaxMonitoredItemsPerCall. */
export const DEFAULT_MONITORED_ITEMS_PER_CALL = 1000;
/** The server sends a keep-alive at least this often when nothing changes. */
export const KEEPALIVE_MS = 10_000;
const SESSION_TIMEOUT_MS = 60_000;

/** Why the source cannot serve now (or why a call failed): a catalogue code and a message. */
export interface Down {
  readonly code: ErrorCode;
  readonly message: string;
}

/** Service calls as health() reports them. */
export interface Counters {
  requests: number;
  errors: number;
  timeouts: number;
  reconnects: number;
}

/** The source's time budget for a call, and the counters every call adds to. */
export class ServiceCalls {
  readonly counters: Counters = { requests: 0, errors: 0, timeouts: 0, reconnects: 0 };

  constructor(readonly timeoutMs: number) {}

  /** Bounds a step that has no timeout of its own (connect, createSession) by the source's. */
  bounded<T>(p: Promise<T>, what: string): Promise<T> {
    const ms = Math.max(this.timeoutMs * 2, 10_000);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.counters.timeouts++;
        reject(new ShadowgateError(ErrorCodes.OPCUA_TIMEOUT, `${what} took longer than ${ms} ms`));
      }, ms);
      timer.unref();
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

export interface Limits {
  readonly maxNodesPerRead: number;
  readonly maxMonitoredItemsPerCall: number;
  readonly maxNodesPerTranslate: number;
}

/** A NodeRef's node on this session: its NodeId, or the status code saying why there is none. */
export type Resolved = { readonly nodeId: NodeId } | { readonly error: string };

/** One session and everything learned on it; replaced as a whole on reconnect. */
export class LiveSession {
  /** NodeRef.node -> NodeId (browse paths translated once per session). */
  readonly nodes = new Map<string, Resolved>();
  readonly types = new Map<string, Promise<NodeType>>();
  /** One subscription per publishing interval, shared by every group with that interval. */
  readonly subscriptions = new Map<number, Promise<ClientSubscription>>();
  /** Subscriptions being deleted on purpose (their "terminated" is not a loss). */
  readonly closing = new Set<ClientSubscription>();
  /** Rejects when this session is gone, so that waits on it end. */
  readonly gone: Promise<never>;
  private abandon: (e: Error) => void = () => undefined;
  private over = false;

  constructor(
    readonly client: OPCUAClient,
    readonly session: ClientSession,
    readonly limits: Limits,
    readonly namespaces: readonly string[],
    readonly since: number,
    readonly calls: ServiceCalls,
  ) {
    this.gone = new Promise<never>((_, reject) => (this.abandon = reject));
    this.gone.catch(() => undefined);
  }

  /** No longer the driver's session (lost, or the source is stopping): waits on it end. */
  get ended(): boolean {
    return this.over;
  }

  end(why: Error): void {
    this.over = true;
    this.abandon(why);
  }

  /** A service call on the session: counted, and settled if the session goes. */
  async call<T>(request: Promise<T>): Promise<T> {
    const counters = this.calls.counters;
    counters.requests++;
    try {
      return await Promise.race([request, this.gone]);
    } catch (err) {
      counters.errors++;
      throw err;
    }
  }

  /** A failed service call as a catalogue code and message. */
  failure(err: unknown): Down {
    if (err instanceof ShadowgateError) return { code: err.code, message: err.message };
    const e = err as {
      message?: string;
      response?: { responseHeader?: { serviceResult?: StatusCode } };
    };
    const message = e.message ?? String(err);
    if (this.ended) {
      return { code: ErrorCodes.OPCUA_DISCONNECTED, message: `connection lost: ${message}` };
    }
    const status = e.response?.responseHeader?.serviceResult;
    if (status && severity(status) === "bad") {
      const name = statusName(status);
      if (name === "BadTimeout") return { code: ErrorCodes.OPCUA_TIMEOUT, message: name };
      return { code: ErrorCodes.OPCUA_BAD, message: name };
    }
    if (/timed? ?out/i.test(message)) return { code: ErrorCodes.OPCUA_TIMEOUT, message };
    return { code: ErrorCodes.OPCUA_BAD, message };
  }
}

/** What one connection attempt tells the driver while it runs. */
export interface AttemptHooks {
  /** The attempt's client, as soon as it exists, so that stop() can cut the attempt short. */
  readonly client: (client: OPCUAClient) => void;
  readonly stopping: () => boolean;
  /**
   * The session is up: called synchronously, before any of its events can arrive, so that the
   * driver is online with it before a loss is reported.
   */
  readonly online: (live: LiveSession) => void;
  /** The session or its connection is gone. */
  readonly lost: (live: LiveSession, reason: string) => void;
}

/**
 * The server endpoint a source connects to, with its security mode and policy and the identity
 * its sessions run as. Each open() is one attempt with a new client.
 */
export class Endpoint {
  readonly securityMode: MessageSecurityMode;
  readonly securityPolicy: SecurityPolicy;
  readonly policyName: OpcuaSecurityPolicy;

  constructor(
    private readonly sourceId: string,
    private readonly opts: OpcuaDriverOptions,
    private readonly calls: ServiceCalls,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.securityMode = MessageSecurityMode[opts.securityMode];
    this.policyName =
      opts.securityMode === "None" ? "None" : (opts.securityPolicy ?? "Basic256Sha256");
    if (opts.securityMode !== "None" && this.policyName === "None") {
      throw new ShadowgateError(
        ErrorCodes.CONFIG_CROSS,
        `securityMode ${opts.securityMode} needs a securityPolicy other than None`,
        { source: sourceId },
      );
    }
    this.securityPolicy = SecurityPolicy[this.policyName];
  }

  /**
   * Connects a new client and opens a session on it. Until the session is up a failure
   * disconnects the client and is thrown; after that, what hooks.online() throws is its own.
   */
  async open(certificates: OPCUACertificateManager, hooks: AttemptHooks): Promise<LiveSession> {
    const counters = this.calls.counters;
    let client: OPCUAClient | undefined;
    let live: LiveSession;
    try {
      client = OPCUAClient.create({
        applicationName: this.opts.applicationName ?? "Shadowgate",
        clientName: this.sourceId,
        endpointMustExist: false,
        securityMode: this.securityMode,
        securityPolicy: this.securityPolicy,
        clientCertificateManager: certificates,
        // One attempt per client: the driver's own backoff decides when the next one is.
        connectionStrategy: {
          maxRetry: 0,
          initialDelay: this.opts.reconnectMinMs,
          maxDelay: this.opts.reconnectMaxMs,
        },
        defaultTransactionTimeout: this.opts.timeoutMs,
        requestedSessionTimeout: SESSION_TIMEOUT_MS,
        keepSessionAlive: true,
        keepAliveInterval: KEEPALIVE_MS,
      });
      hooks.client(client);
      client.on("timed_out_request", () => {
        counters.timeouts++;
      });
      counters.requests++;
      await this.calls.bounded(client.connect(this.opts.endpoint), "connect");
      if (hooks.stopping()) throw new Error("the source is stopping");
      const identity = await this.identity();
      counters.requests++;
      let session: ClientSession;
      try {
        session = await this.calls.bounded(client.createSession(identity), "createSession");
      } catch (err) {
        throw this.sessionRefused(err);
      }
      if (hooks.stopping()) throw new Error("the source is stopping");
      const { limits, namespaces } = await this.serverInfo(session);
      live = new LiveSession(client, session, limits, namespaces, this.now(), this.calls);
    } catch (err) {
      if (client) void client.disconnect().catch(() => undefined);
      throw err;
    }
    live.client.on("connection_lost", () => hooks.lost(live, "connection lost"));
    live.client.on("close", (err) => hooks.lost(live, err?.message ?? "connection closed"));
    live.session.on("session_closed", (status) =>
      hooks.lost(live, `session closed by the server (${statusName(status)})`),
    );
    live.session.on("keepalive_failure", () => hooks.lost(live, "session keep-alive failed"));
    hooks.online(live);
    return live;
  }

  private async identity(): Promise<UserIdentityInfo> {
    const id = this.opts.identity;
    switch (id.type) {
      case "anonymous":
        return { type: UserTokenType.Anonymous };
      case "username":
        return { type: UserTokenType.UserName, userName: id.username, password: id.password };
      case "certificate": {
        let certificateData: Buffer;
        let privateKey: string;
        try {
          certificateData = new X509Certificate(await readFile(id.certificate)).raw;
          privateKey = await readFile(id.privateKey, "utf8");
        } catch (err) {
          throw new ShadowgateError(
            ErrorCodes.OPCUA_SESSION,
            `cannot read the identity certificate or key: ${(err as Error).message}`,
            { certificate: id.certificate, privateKey: id.privateKey },
          );
        }
        return { type: UserTokenType.Certificate, certificateData, privateKey };
      }
    }
  }

  private sessionRefused(err: unknown): ShadowgateError {
    const e = err as {
      message?: string;
      response?: { responseHeader?: { serviceResult?: StatusCode } };
    };
    const status = e.response?.responseHeader?.serviceResult;
    const why = status ? statusName(status) : (e.message ?? String(err)).split("\n")[0];
    return new ShadowgateError(
      ErrorCodes.OPCUA_SESSION,
      `the server refused the session as ${this.opts.identity.type}: ${why}`,
      { identity: this.opts.identity.type },
    );
  }

  /**
   * Operation limits and the namespace table, read once per session. MaxNodesPerRead comes
   * first and alone: it bounds the Read of the others. A server that answers none of them gets
   * the defaults (no split, batches of DEFAULT_MONITORED_ITEMS_PER_CALL).
   */
  private async serverInfo(
    session: ClientSession,
  ): Promise<{ limits: Limits; namespaces: string[] }> {
    const counters = this.calls.counters;
    const readValues = async (ids: readonly number[], per: number): Promise<unknown[]> => {
      const out: unknown[] = [];
      const step = per > 0 ? per : ids.length;
      for (let from = 0; from < ids.length; from += step) {
        const chunk = ids.slice(from, from + step);
        counters.requests++;
        try {
          const values = await this.calls.bounded(
            session.read(
              chunk.map((i) => ({ nodeId: resolveNodeId(i), attributeId: AttributeIds.Value })),
            ),
            "read server capabilities",
          );
          chunk.forEach((_, j) => {
            const dv = values[j];
            out.push(dv && severity(dv.statusCode) === "good" ? dv.value?.value : undefined);
          });
        } catch (err) {
          counters.errors++;
          this.log.debug(
            { source: this.sourceId, err: (err as Error).message },
            "server capabilities not readable; using defaults",
          );
          chunk.forEach(() => out.push(undefined));
        }
      }
      return out;
    };
    const positive = (v: unknown): number => (typeof v === "number" && v > 0 ? v : 0);
    const [perRead] = await readValues(
      [VariableIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead],
      1,
    );
    const maxNodesPerRead = positive(perRead);
    const [perCall, perTranslate, ns] = await readValues(
      [
        VariableIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
        VariableIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
        VariableIds.Server_NamespaceArray,
      ],
      maxNodesPerRead,
    );
    return {
      limits: {
        maxNodesPerRead,
        maxMonitoredItemsPerCall: positive(perCall) || DEFAULT_MONITORED_ITEMS_PER_CALL,
        maxNodesPerTranslate: positive(perTranslate),
      },
      namespaces: Array.isArray(ns) ? ns.map(String) : [],
    };
  }
}
