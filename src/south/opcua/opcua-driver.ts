import { X509Certificate } from "node:crypto";
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { format, stripVTControlCharacters } from "node:util";
import {
  AttributeIds,
  type ClientMonitoredItemBase,
  ClientMonitoredItemGroup,
  type ClientSession,
  type ClientSubscription,
  DataChangeFilter,
  DataChangeTrigger,
  DataType,
  type DataValue,
  DeadbandType,
  findBasicDataType,
  LogLevel,
  makeBrowsePath,
  MessageSecurityMode,
  NodeId,
  NodeIdType,
  OPCUACertificateManager,
  OPCUAClient,
  resolveNodeId,
  SecurityPolicy,
  setErrorLogger,
  setLogLevel,
  setWarningLogger,
  type StatusCode,
  TimestampsToReturn,
  type UserIdentityInfo,
  UserTokenType,
  VariableIds,
} from "node-opcua";
import { Backoff } from "../../core/backoff.js";
import { type ErrorCode, ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { ConnectionState, JsonValue, Quality } from "../../core/types.js";
import type { MonitorGroup, NodeDriver, SourceHealth } from "../driver.js";
import type { NodeRef, ValueSample } from "../../core/samples.js";
import {
  describeCertificate,
  findRejectedFile,
  rejectedDir,
  trustCommand,
  trustedCertsDir,
} from "./trust.js";
import { convertDataValue, jsonToVariant, type NodeType, severity, statusName } from "./values.js";

export type OpcuaSecurityMode = "None" | "Sign" | "SignAndEncrypt";
export type OpcuaSecurityPolicy =
  "None" | "Basic256Sha256" | "Aes128_Sha256_RsaOaep" | "Aes256_Sha256_RsaPss";

/** Who the session runs as. Certificate files are absolute paths here. */
export type OpcuaIdentity =
  | { readonly type: "anonymous" }
  | { readonly type: "username"; readonly username: string; readonly password: string }
  | { readonly type: "certificate"; readonly certificate: string; readonly privateKey: string };

export interface OpcuaDriverOptions {
  readonly endpoint: string;
  readonly securityMode: OpcuaSecurityMode;
  /** Default: Basic256Sha256 with Sign or SignAndEncrypt, None with None. */
  readonly securityPolicy?: OpcuaSecurityPolicy;
  readonly identity: OpcuaIdentity;
  /** How long one service call may take. */
  readonly timeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /**
   * The client's PKI (own certificate, trusted/, rejected/): the gateway passes
   * `<dataDir>/pki/opcua`. Unknown server certificates land in `rejected/` and are refused.
   */
  readonly pkiDir: string;
  /** ApplicationName in the client certificate and the session. Default "Shadowgate". */
  readonly applicationName?: string;
}

/** SourceHealth, plus why the source is not online when it is not. */
export interface OpcuaHealth extends SourceHealth {
  readonly lastError?: { readonly code: ErrorCode; readonly message: string };
}

/** What the driver keeps on the server, for tests and diagnostics. */
export interface OpcuaStats {
  readonly subscriptions: number;
  readonly monitoredItems: number;
  /** CreateMonitoredItems service calls since the driver was created. */
  readonly createMonitoredItemsCalls: number;
  /** Notifications dropped because they repeated what was last delivered (replays). */
  readonly suppressed: number;
  /** The batch size of CreateMonitoredItems and the split of Read on the current session. */
  readonly maxMonitoredItemsPerCall: number;
  readonly maxNodesPerRead: number;
}

export interface OpcuaDriverEvents {
  state: [state: ConnectionState];
}

/** CreateMonitoredItems batch when the server states no MaxMonitoredItemsPerCall. */
export const DEFAULT_MONITORED_ITEMS_PER_CALL = 1000;
/** The server sends a keep-alive at least this often when nothing changes. */
const KEEPALIVE_MS = 10_000;
/** A subscription outlives this long without Publish requests (a slow or stalled link). */
const LIFETIME_MS = 60_000;
const SESSION_TIMEOUT_MS = 60_000;
/** A connection online this long has proved itself: the next loss starts the backoff afresh. */
const STABLE_MS = 30_000;

interface Limits {
  readonly maxNodesPerRead: number;
  readonly maxMonitoredItemsPerCall: number;
  readonly maxNodesPerTranslate: number;
}

type Resolved = { readonly nodeId: NodeId } | { readonly error: string };

/** One session and everything learned on it; replaced as a whole on reconnect. */
interface Live {
  readonly client: OPCUAClient;
  readonly session: ClientSession;
  readonly limits: Limits;
  readonly namespaces: readonly string[];
  readonly since: number;
  /** NodeRef.node -> NodeId (browse paths translated once per session). */
  readonly nodes: Map<string, Resolved>;
  readonly types: Map<string, Promise<NodeType>>;
  /** One subscription per publishing interval, shared by every group with that interval. */
  readonly subscriptions: Map<number, Promise<ClientSubscription>>;
  /** Subscriptions being deleted on purpose (their "terminated" is not a loss). */
  readonly closing: Set<ClientSubscription>;
  /** Rejects when this session is gone, so that waits on it end. */
  readonly gone: Promise<never>;
  readonly abandon: (e: Error) => void;
}

/** A monitor() call: kept across reconnects, its items recreated on every new session. */
interface Registration {
  readonly group: MonitorGroup;
  readonly onSamples: (samples: ValueSample[]) => void;
  /** Per node of the group: the signature of what was last delivered (see class comment). */
  readonly delivered: (string | undefined)[];
  pending: ValueSample[];
  flushScheduled: boolean;
  /** The session its items live on, when they do. */
  createdOn: Live | undefined;
  itemGroups: { readonly group: ClientMonitoredItemGroup; readonly interval: number }[];
  itemCount: number;
  stopped: boolean;
}

interface Down {
  readonly code: ErrorCode;
  readonly message: string;
}

/**
 * OPC UA on node-opcua: one client connection and one session per source.
 *
 * **Connection.** The state machine of every source (disconnected, connecting, online, backoff,
 * stopping), each transition logged once. A lost connection or session (socket closed, keep-alive
 * failure, subscription timed out) goes to backoff, then connecting after a jittered delay between
 * the source's reconnect min and max; node-opcua's own reconnection is off (maxRetry 0, its
 * retries are not jittered), so a new client and session are made each time and the
 * subscriptions and monitored items are recreated on it, browse paths translated again and
 * DataTypes read again. The backoff starts afresh only after a connection stayed up 30 s: a
 * flapping link does not open a session every `reconnect.min` (a session lost with its link
 * lingers on the server until its 60 s timeout).
 *
 * **Security.** The client PKI lives in `pkiDir`. A server certificate that is not trusted is
 * refused (automaticallyAcceptUnknownCertificate false): node-opcua saves it in
 * `<pkiDir>/rejected/`, and the driver logs an error, and puts in every sample's reason and in
 * health().lastError, the file's exact path and the `mv` that trusts it. The trust list is
 * re-read before every attempt, so moving the file is enough: the next attempt connects.
 *
 * **Monitoring.** One subscription per publishing interval (shared across groups), monitored
 * items created in CreateMonitoredItems batches of at most the server's MaxMonitoredItemsPerCall
 * (1000 when it states none), each with its own sampling interval, an absolute deadband
 * (DataChangeFilter, StatusValue) when the NodeRef has one, queueSize
 * ceil(publishingInterval / samplingInterval) + 1 with discardOldest, so no change sampled
 * between two publishes is lost. Each Publish response reaches onSamples as one batch.
 *
 * **Replays.** For every monitored key the driver keeps the signature (status code, value as
 * JSON) of the sample it last delivered and drops a notification with the same signature: a value
 * the server sends again (the initial value of a recreated item, a republished notification) is
 * never reported as a new change. When the connection is lost every monitored key gets one bad
 * sample (SG_OPCUA_DISCONNECTED; SG_OPCUA_UNTRUSTED while the server is not trusted), once per
 * outage and reason, not once per failed attempt, so the shadow marks it stale. After the
 * reconnect the first good value of each key is therefore delivered exactly once, even when equal
 * to the last good one (its quality changed), and a value that changed during the outage arrives
 * once, as that first value. Keys whose node cannot be monitored (BadNodeIdUnknown, a browse
 * path without a match) get one bad sample naming the status code.
 *
 * **Quality.** Good -> good. Uncertain -> good with the value: the core Quality type has no
 * "uncertain", and the shadow carries a value only with good quality, so reporting it bad or
 * stale would freeze the shadow at an older value, which is more wrong than an uncertain current
 * one (OPC UA Part 4: an uncertain value may be used). A Good <-> Uncertain change is still
 * delivered (the status code is part of the replay signature). Bad -> bad, SG_OPCUA_BAD, reason
 * the status code's name. NaN/Infinity -> bad, SG_CODEC_NOT_FINITE.
 *
 * **Writes** use the node's own DataType and ValueRank (read once per session), refuse what the
 * type cannot hold before anything is sent, and throw SG_OPCUA_WRITE naming the status code
 * (BadNotWritable, BadTypeMismatch, ...) when the server refuses.
 */
export class OpcuaDriver extends EventEmitter<OpcuaDriverEvents> implements NodeDriver {
  private state: ConnectionState = "disconnected";
  private live: Live | undefined;
  private down: Down = {
    code: ErrorCodes.OPCUA_DISCONNECTED,
    message: "not connected yet",
  };
  private lastError: Down | undefined;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;
  /** The client of the attempt in progress, so that stop() can cut it short. */
  private attemptClient: OPCUAClient | undefined;
  private certificates: OPCUACertificateManager | undefined;
  /** The server certificate the last check refused, and why. */
  private refusedCertificate: { chain: Buffer; status: StatusCode } | undefined;
  private readonly loggedRefusals = new Set<string>();
  private readonly registrations = new Set<Registration>();
  /** Subscription and monitored-item changes go one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly counters = { requests: 0, errors: 0, timeouts: 0, reconnects: 0 };
  private createMonitoredItemsCalls = 0;
  private suppressed = 0;
  private readonly securityMode: MessageSecurityMode;
  private readonly securityPolicy: SecurityPolicy;
  private readonly policyName: OpcuaSecurityPolicy;

  constructor(
    readonly sourceId: string,
    private readonly opts: OpcuaDriverOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    routeNodeOpcuaLogs(log);
    this.backoff = new Backoff(opts.reconnectMinMs, opts.reconnectMaxMs);
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

  /** Resolves after the first connection attempt, whatever its outcome: a down server is not fatal. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.state !== "disconnected" || signal?.aborted) return;
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    await this.connect();
  }

  async stop(): Promise<void> {
    if (this.state === "disconnected" && !this.live && !this.connecting) return;
    this.transition("stopping");
    clearTimeout(this.reconnectTimer);
    if (this.attemptClient && !this.live)
      void this.attemptClient.disconnect().catch(() => undefined);
    await this.connecting?.catch(() => undefined);
    const live = this.live;
    this.live = undefined;
    if (live) {
      live.abandon(new ShadowgateError(ErrorCodes.OPCUA_DISCONNECTED, "the source is stopping"));
      await this.bounded(live.client.disconnect(), "disconnect").catch(() => undefined);
    }
    for (const reg of this.registrations) reg.createdOn = undefined;
    const cm = this.certificates;
    this.certificates = undefined;
    if (cm) {
      cm.referenceCounter = 0;
      await cm.dispose().catch(() => undefined);
    }
    this.transition("disconnected");
  }

  health(): OpcuaHealth {
    return {
      sourceId: this.sourceId,
      state: this.state,
      ...this.counters,
      badFrames: 0,
      illegal: [],
      ...(this.lastError && { lastError: this.lastError }),
    };
  }

  stats(): OpcuaStats {
    let monitoredItems = 0;
    for (const reg of this.registrations) monitoredItems += reg.itemCount;
    return {
      subscriptions: this.live?.subscriptions.size ?? 0,
      monitoredItems,
      createMonitoredItemsCalls: this.createMonitoredItemsCalls,
      suppressed: this.suppressed,
      maxMonitoredItemsPerCall: this.live?.limits.maxMonitoredItemsPerCall ?? 0,
      maxNodesPerRead: this.live?.limits.maxNodesPerRead ?? 0,
    };
  }

  async read(nodes: readonly NodeRef[]): Promise<ValueSample[]> {
    const live = this.live;
    if (!live || this.state !== "online") return this.unavailable(nodes, this.downNow());
    const resolved = await this.resolve(live, nodes);
    const ts = () => this.now();
    const out: (ValueSample | undefined)[] = nodes.map((ref, i) => {
      const r = resolved[i];
      return r && "error" in r ? this.bad(ref.key, ErrorCodes.OPCUA_BAD, r.error) : undefined;
    });
    const wanted = nodes.flatMap((ref, i) => {
      const r = resolved[i];
      return r && "nodeId" in r ? [{ index: i, ref, nodeId: r.nodeId }] : [];
    });
    const per = live.limits.maxNodesPerRead > 0 ? live.limits.maxNodesPerRead : wanted.length;
    for (let from = 0; from < wanted.length; from += per) {
      const chunk = wanted.slice(from, from + per);
      try {
        const values = await this.call(
          live,
          live.session.read(
            chunk.map((w) => ({ nodeId: w.nodeId, attributeId: AttributeIds.Value })),
            0,
          ),
        );
        const at = ts();
        chunk.forEach((w, j) => {
          const dv = values[j];
          out[w.index] = dv
            ? this.sample(w.ref.key, dv, at)
            : this.bad(w.ref.key, ErrorCodes.OPCUA_BAD, "no result in the Read response");
        });
      } catch (err) {
        const e = this.failure(live, err);
        for (const w of chunk) out[w.index] = this.bad(w.ref.key, e.code, e.message);
      }
    }
    return out.map((s, i) => s ?? this.bad(nodes[i]?.key ?? "", ErrorCodes.OPCUA_BAD, "not read"));
  }

  async write(node: NodeRef, value: JsonValue): Promise<void> {
    const live = this.live;
    if (!live || this.state !== "online") {
      const down = this.downNow();
      throw new ShadowgateError(down.code, down.message, { node: node.node });
    }
    const [resolved] = await this.resolve(live, [node]);
    if (!resolved || "error" in resolved) {
      throw new ShadowgateError(
        ErrorCodes.OPCUA_WRITE,
        `cannot write ${node.node}: ${resolved && "error" in resolved ? resolved.error : "unresolved"}`,
        { node: node.node, status: resolved && "error" in resolved ? resolved.error : undefined },
      );
    }
    const type = await this.typeOf(live, resolved.nodeId, node.node);
    let variant;
    try {
      variant = jsonToVariant(type, value);
    } catch (err) {
      if (err instanceof ShadowgateError) {
        throw new ShadowgateError(err.code, `${node.node}: ${err.message}`, {
          ...err.details,
          node: node.node,
        });
      }
      throw err;
    }
    let status: StatusCode;
    try {
      status = await this.call(
        live,
        live.session.write({
          nodeId: resolved.nodeId,
          attributeId: AttributeIds.Value,
          value: { value: variant },
        }),
      );
    } catch (err) {
      const e = this.failure(live, err);
      throw new ShadowgateError(e.code, `write to ${node.node} failed: ${e.message}`, {
        node: node.node,
      });
    }
    if (severity(status) === "bad") {
      const name = statusName(status);
      throw new ShadowgateError(ErrorCodes.OPCUA_WRITE, `write to ${node.node} refused: ${name}`, {
        node: node.node,
        status: name,
      });
    }
  }

  async monitor(
    group: MonitorGroup,
    onSamples: (samples: ValueSample[]) => void,
  ): Promise<() => Promise<void>> {
    const reg: Registration = {
      group,
      onSamples,
      delivered: group.nodes.map(() => undefined),
      pending: [],
      flushScheduled: false,
      createdOn: undefined,
      itemGroups: [],
      itemCount: 0,
      stopped: false,
    };
    this.registrations.add(reg);
    const live = this.live;
    if (live && this.state === "online") {
      await this.exclusive(() => this.createItems(live, reg)).catch((err: unknown) => {
        this.log.warn(
          { source: this.sourceId, group: group.id, err: (err as Error).message },
          "monitor failed; retried on the next session",
        );
      });
    } else {
      this.markDown(this.downNow(), [reg]);
    }
    return async () => {
      if (reg.stopped) return;
      reg.stopped = true;
      this.registrations.delete(reg);
      await this.exclusive(() => this.removeItems(reg));
    };
  }

  // ---- connection --------------------------------------------------------------------------

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    this.transition("connecting");
    let client: OPCUAClient | undefined;
    let wentOnline = false;
    try {
      const certificates = await this.certificateManager();
      this.refusedCertificate = undefined;
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
      this.attemptClient = client;
      client.on("timed_out_request", () => {
        this.counters.timeouts++;
      });
      this.counters.requests++;
      await this.bounded(client.connect(this.opts.endpoint), "connect");
      if (this.stopping()) throw new Error("the source is stopping");
      const identity = await this.identity();
      this.counters.requests++;
      let session: ClientSession;
      try {
        session = await this.bounded(client.createSession(identity), "createSession");
      } catch (err) {
        throw this.sessionRefused(err);
      }
      if (this.stopping()) throw new Error("the source is stopping");
      const { limits, namespaces } = await this.serverInfo(session);

      let abandon: (e: Error) => void = () => undefined;
      const gone = new Promise<never>((_, reject) => (abandon = reject));
      gone.catch(() => undefined);
      const live: Live = {
        client,
        session,
        limits,
        namespaces,
        since: this.now(),
        nodes: new Map(),
        types: new Map(),
        subscriptions: new Map(),
        closing: new Set(),
        gone,
        abandon,
      };
      client.on("connection_lost", () => this.lost(live, "connection lost"));
      client.on("close", (err) => this.lost(live, err?.message ?? "connection closed"));
      session.on("session_closed", (status) =>
        this.lost(live, `session closed by the server (${statusName(status)})`),
      );
      session.on("keepalive_failure", () => this.lost(live, "session keep-alive failed"));
      this.live = live;
      wentOnline = true;
      this.lastError = undefined;
      this.transition("online", {
        maxMonitoredItemsPerCall: limits.maxMonitoredItemsPerCall,
        maxNodesPerRead: limits.maxNodesPerRead,
      });
      for (const reg of [...this.registrations]) {
        await this.exclusive(() => this.createItems(live, reg));
        if (this.live !== live) break;
      }
    } catch (err) {
      if (wentOnline) {
        // Online already: a loss is handled by lost(), anything else left the items to retry.
        this.log.warn({ source: this.sourceId, err: (err as Error).message }, "restoring monitors");
        return;
      }
      this.counters.errors++;
      if (client) void client.disconnect().catch(() => undefined);
      if (this.stopping()) return;
      const down = await this.connectFailure(err);
      this.lastError = down;
      this.down = down;
      this.markDown(down);
      this.scheduleReconnect(down.message);
    } finally {
      this.attemptClient = undefined;
    }
  }

  private stopping(): boolean {
    return (this.state as ConnectionState) === "stopping";
  }

  /** The session or its connection is gone: bad samples for monitored keys, then backoff. */
  private lost(live: Live, reason: string): void {
    if (this.live !== live) return;
    this.live = undefined;
    live.abandon(new ShadowgateError(ErrorCodes.OPCUA_DISCONNECTED, `connection lost: ${reason}`));
    for (const reg of this.registrations) {
      if (reg.createdOn === live) {
        reg.createdOn = undefined;
        reg.itemGroups = [];
        reg.itemCount = 0;
      }
    }
    void live.client.disconnect().catch(() => undefined);
    if (this.stopping()) return;
    const down: Down = {
      code: ErrorCodes.OPCUA_DISCONNECTED,
      message: `connection lost: ${reason}`,
    };
    this.down = down;
    this.lastError = down;
    this.markDown(down);
    if (this.now() - live.since >= STABLE_MS) this.backoff.reset();
    this.scheduleReconnect(reason);
  }

  private scheduleReconnect(reason: string): void {
    if (this.stopping()) return;
    const delay = this.backoff.next();
    this.transition("backoff", { reason, retryInMs: delay });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.counters.reconnects++;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private async certificateManager(): Promise<OPCUACertificateManager> {
    let cm = this.certificates;
    if (!cm) {
      cm = new OPCUACertificateManager({
        rootFolder: this.opts.pkiDir,
        automaticallyAcceptUnknownCertificate: false,
        // The trust list is re-read before every attempt instead (no watchers to leak).
        disableFileWatchers: true,
      });
      await cm.initialize();
      // Every client holds a reference and its disconnect() releases it; the driver's own one
      // keeps the store open between clients (released in stop()).
      cm.referenceCounter++;
      // Remember what the check refused, to tell the operator which file to trust.
      const check = cm.checkCertificate.bind(cm) as (c: Buffer | Buffer[]) => Promise<StatusCode>;
      (cm as unknown as { checkCertificate: typeof check }).checkCertificate = async (chain) => {
        const status = await check(chain);
        if (status.value !== 0) {
          const der = Array.isArray(chain) ? Buffer.concat(chain) : chain;
          this.refusedCertificate = { chain: der, status };
        }
        return status;
      };
      this.certificates = cm;
    } else if (this.opts.securityMode !== "None") {
      await cm.reloadCertificates();
    }
    return cm;
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

  /**
   * Operation limits and the namespace table, read once per session. MaxNodesPerRead comes
   * first and alone: it bounds the Read of the others. A server that answers none of them gets
   * the defaults (no split, batches of DEFAULT_MONITORED_ITEMS_PER_CALL).
   */
  private async serverInfo(
    session: ClientSession,
  ): Promise<{ limits: Limits; namespaces: string[] }> {
    const readValues = async (ids: readonly number[], per: number): Promise<unknown[]> => {
      const out: unknown[] = [];
      const step = per > 0 ? per : ids.length;
      for (let from = 0; from < ids.length; from += step) {
        const chunk = ids.slice(from, from + step);
        this.counters.requests++;
        try {
          const values = await this.bounded(
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
          this.counters.errors++;
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

  // ---- nodes -------------------------------------------------------------------------------

  /** NodeIds of the refs: NodeId strings parsed, browse paths translated (cached per session). */
  private async resolve(live: Live, refs: readonly NodeRef[]): Promise<Resolved[]> {
    const paths = new Map<string, ReturnType<typeof makeBrowsePath>>();
    for (const ref of refs) {
      const node = ref.node;
      if (live.nodes.has(node)) continue;
      if (!node.startsWith("/")) {
        live.nodes.set(node, parseNodeId(node, live.namespaces));
        continue;
      }
      try {
        paths.set(node, makeBrowsePath(resolveNodeId("ObjectsFolder"), node));
      } catch {
        live.nodes.set(node, { error: "BadBrowseNameInvalid" });
      }
    }
    const todo = [...paths.entries()];
    const per =
      live.limits.maxNodesPerTranslate > 0 ? live.limits.maxNodesPerTranslate : todo.length;
    for (let from = 0; from < todo.length; from += per) {
      const chunk = todo.slice(from, from + per);
      try {
        const results = await this.call(
          live,
          live.session.translateBrowsePath(chunk.map(([, p]) => p)),
        );
        chunk.forEach(([node], j) => {
          const r = results[j];
          const target = r?.targets?.[0]?.targetId;
          if (r && severity(r.statusCode) === "good" && target) {
            live.nodes.set(node, {
              nodeId: new NodeId(target.identifierType, target.value, target.namespace),
            });
          } else {
            live.nodes.set(node, { error: r ? statusName(r.statusCode) : "BadNoMatch" });
          }
        });
      } catch (err) {
        // Not cached: a later call tries again.
        const e = this.failure(live, err);
        return refs.map((ref) => live.nodes.get(ref.node) ?? { error: e.message });
      }
    }
    return refs.map((ref) => live.nodes.get(ref.node) ?? { error: "BadNodeIdUnknown" });
  }

  /** DataType (as a built-in type) and ValueRank of a node, read once per session. */
  private typeOf(live: Live, nodeId: NodeId, name: string): Promise<NodeType> {
    const key = nodeId.toString();
    let p = live.types.get(key);
    if (!p) {
      p = this.readType(live, nodeId, name);
      live.types.set(key, p);
      p.catch(() => live.types.delete(key));
    }
    return p;
  }

  private async readType(live: Live, nodeId: NodeId, name: string): Promise<NodeType> {
    let values: DataValue[];
    try {
      const attributes = [AttributeIds.DataType, AttributeIds.ValueRank, AttributeIds.Value];
      const per = live.limits.maxNodesPerRead > 0 ? live.limits.maxNodesPerRead : 3;
      values = [];
      for (let from = 0; from < attributes.length; from += per) {
        const chunk = attributes.slice(from, from + per).map((attributeId) => ({
          nodeId,
          attributeId,
        }));
        values.push(...(await this.call(live, live.session.read(chunk))));
      }
    } catch (err) {
      const e = this.failure(live, err);
      throw new ShadowgateError(e.code, `cannot read the DataType of ${name}: ${e.message}`);
    }
    const [dt, rank, current] = values;
    if (!dt || severity(dt.statusCode) !== "good") {
      const status = dt ? statusName(dt.statusCode) : "BadNoData";
      throw new ShadowgateError(
        ErrorCodes.OPCUA_WRITE,
        `cannot read the DataType of ${name}: ${status}`,
        { node: name, status },
      );
    }
    const typeId = dt.value.value as NodeId;
    let dataType = builtInType(typeId);
    if (dataType === undefined) {
      try {
        this.counters.requests++;
        dataType = await this.bounded(findBasicDataType(live.session, typeId), "browse DataType");
      } catch (err) {
        this.counters.errors++;
        throw new ShadowgateError(
          ErrorCodes.OPCUA_WRITE,
          `cannot find the built-in type of ${name}'s DataType ${typeId.toString()}: ${(err as Error).message}`,
        );
      }
    }
    if (dataType === DataType.Variant || dataType === DataType.Null) {
      // An abstract DataType (BaseDataType): write what the node holds now, if anything.
      const held = current && severity(current.statusCode) !== "bad" ? current.value : undefined;
      dataType = held && held.dataType !== DataType.Null ? held.dataType : undefined;
    }
    const vr: unknown = rank && severity(rank.statusCode) === "good" ? rank.value.value : -1;
    return { dataType, valueRank: typeof vr === "number" ? vr : -1 };
  }

  // ---- monitored items ---------------------------------------------------------------------

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private subscriptionFor(live: Live, intervalMs: number): Promise<ClientSubscription> {
    let p = live.subscriptions.get(intervalMs);
    if (!p) {
      p = this.createSubscription(live, intervalMs);
      live.subscriptions.set(intervalMs, p);
      p.catch(() => {
        if (live.subscriptions.get(intervalMs) === p) live.subscriptions.delete(intervalMs);
      });
    }
    return p;
  }

  private async createSubscription(live: Live, intervalMs: number): Promise<ClientSubscription> {
    const keepAlive = Math.max(1, Math.round(KEEPALIVE_MS / intervalMs));
    const subscription = await this.call(
      live,
      live.session.createSubscription2({
        requestedPublishingInterval: intervalMs,
        requestedMaxKeepAliveCount: keepAlive,
        requestedLifetimeCount: Math.max(3 * keepAlive, Math.ceil(LIFETIME_MS / intervalMs)),
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 1,
      }),
    );
    subscription.on("terminated", () => {
      if (!live.closing.has(subscription)) this.lost(live, "the subscription was terminated");
    });
    subscription.on("status_changed", (status) => {
      if (severity(status) === "bad") {
        this.lost(live, `subscription status ${statusName(status)}`);
      }
    });
    subscription.on("internal_error", (err) => {
      this.log.warn({ source: this.sourceId, err: err.message }, "OPC UA subscription error");
    });
    this.log.debug(
      {
        source: this.sourceId,
        publishingIntervalMs: subscription.publishingInterval,
        keepAliveCount: subscription.maxKeepAliveCount,
        lifetimeCount: subscription.lifetimeCount,
      },
      "subscription created",
    );
    return subscription;
  }

  /** Creates the registration's monitored items on this session, in batches. */
  private async createItems(live: Live, reg: Registration): Promise<void> {
    if (reg.stopped || reg.createdOn === live || this.live !== live) return;
    reg.createdOn = live;
    reg.itemGroups = [];
    reg.itemCount = 0;
    const { group } = reg;
    const interval = group.publishingIntervalMs;
    let subscription: ClientSubscription;
    let resolved: Resolved[];
    try {
      subscription = await this.subscriptionFor(live, interval);
      resolved = await this.resolve(live, group.nodes);
    } catch (err) {
      if (this.live !== live) return;
      reg.createdOn = undefined;
      const e = this.failure(live, err);
      this.log.warn({ source: this.sourceId, group: group.id, err: e.message }, "monitor failed");
      this.markDown(e, [reg]);
      return;
    }
    const ok: { index: number; nodeId: NodeId }[] = [];
    resolved.forEach((r, index) => {
      if ("nodeId" in r) ok.push({ index, nodeId: r.nodeId });
      else
        this.deliver(
          reg,
          index,
          this.bad(group.nodes[index]?.key ?? "", ErrorCodes.OPCUA_BAD, r.error),
          `!${r.error}`,
        );
    });
    const batch = live.limits.maxMonitoredItemsPerCall;
    for (let from = 0; from < ok.length; from += batch) {
      if (reg.stopped || this.live !== live) return;
      const chunk = ok.slice(from, from + batch);
      const itemGroup = ClientMonitoredItemGroup.create(
        subscription,
        chunk.map((c) => ({ nodeId: c.nodeId, attributeId: AttributeIds.Value })),
        { samplingInterval: interval, queueSize: 2, discardOldest: true },
        TimestampsToReturn.Both,
      );
      // The group sends its CreateMonitoredItems on the next turn of the loop: each item gets its
      // own sampling interval, queue size and deadband before that.
      itemGroup.monitoredItems.forEach((item, j) => {
        const ref = group.nodes[chunk[j]?.index ?? -1];
        if (ref) applyParameters(item, ref, interval);
      });
      itemGroup.on("changed", (_item, dataValue, j) => {
        const index = chunk[j]?.index;
        if (index === undefined || this.live !== live || reg.createdOn !== live) return;
        const ref = group.nodes[index];
        if (!ref) return;
        const c = convertDataValue(dataValue);
        this.deliver(reg, index, this.toSample(ref.key, c, this.now()), c.signature);
      });
      this.createMonitoredItemsCalls++;
      this.counters.requests++;
      try {
        await this.settled(live, itemGroup);
      } catch (err) {
        if (this.live !== live) return;
        this.counters.errors++;
        const message = (err as Error).message;
        this.log.warn(
          { source: this.sourceId, group: group.id, items: chunk.length, err: message },
          "CreateMonitoredItems failed",
        );
        for (const c of chunk) {
          const key = group.nodes[c.index]?.key ?? "";
          this.deliver(reg, c.index, this.bad(key, ErrorCodes.OPCUA_BAD, message), `!${message}`);
        }
        continue;
      }
      reg.itemGroups.push({ group: itemGroup, interval });
      itemGroup.monitoredItems.forEach((item, j) => {
        const index = chunk[j]?.index;
        if (index === undefined) return;
        if (severity(item.statusCode) === "bad") {
          const name = statusName(item.statusCode);
          const key = group.nodes[index]?.key ?? "";
          this.deliver(
            reg,
            index,
            this.bad(key, ErrorCodes.OPCUA_BAD, name),
            `${item.statusCode.value}`,
          );
        } else reg.itemCount++;
      });
    }
  }

  /** Waits for a monitored-item group's CreateMonitoredItems to be answered. */
  private settled(live: Live, group: ClientMonitoredItemGroup): Promise<void> {
    const answered = new Promise<void>((resolve, reject) => {
      group.once("initialized", () => resolve());
      group.once("terminated", (err?: Error) =>
        reject(err ?? new Error("the monitored items were terminated")),
      );
    });
    const timer = new Promise<never>((_, reject) => {
      const t = setTimeout(
        () => reject(new Error("CreateMonitoredItems was not answered in time")),
        this.opts.timeoutMs * 2,
      );
      t.unref();
      void answered.finally(() => clearTimeout(t)).catch(() => undefined);
    });
    return Promise.race([answered, timer, live.gone]);
  }

  /** Deletes the registration's items, and its subscription when no other group uses it. */
  private async removeItems(reg: Registration): Promise<void> {
    const live = reg.createdOn;
    const groups = reg.itemGroups;
    reg.createdOn = undefined;
    reg.itemGroups = [];
    reg.itemCount = 0;
    if (!live || this.live !== live) return;
    const interval = reg.group.publishingIntervalMs;
    const shared = [...this.registrations].some(
      (r) => r.createdOn === live && r.group.publishingIntervalMs === interval,
    );
    const p = live.subscriptions.get(interval);
    if (!shared && p) {
      live.subscriptions.delete(interval);
      try {
        const subscription = await p;
        live.closing.add(subscription);
        this.counters.requests++;
        await this.bounded(subscription.terminate(), "DeleteSubscriptions");
      } catch (err) {
        this.counters.errors++;
        this.log.debug(
          { source: this.sourceId, err: (err as Error).message },
          "delete subscription",
        );
      }
      return;
    }
    for (const { group } of groups) {
      try {
        this.counters.requests++;
        await this.bounded(group.terminate(), "DeleteMonitoredItems");
      } catch (err) {
        this.counters.errors++;
        this.log.debug({ source: this.sourceId, err: (err as Error).message }, "delete items");
      }
    }
  }

  // ---- samples -----------------------------------------------------------------------------

  /** Queues a sample unless it repeats what was last delivered for the key; flushes per turn. */
  private deliver(reg: Registration, index: number, sample: ValueSample, signature: string): void {
    if (reg.stopped) return;
    if (reg.delivered[index] === signature) {
      this.suppressed++;
      return;
    }
    reg.delivered[index] = signature;
    reg.pending.push(sample);
    if (reg.flushScheduled) return;
    reg.flushScheduled = true;
    // One Publish response is dispatched in one turn of the loop: it reaches onSamples as one batch.
    setImmediate(() => {
      reg.flushScheduled = false;
      const batch = reg.pending;
      reg.pending = [];
      if (reg.stopped || batch.length === 0) return;
      try {
        reg.onSamples(batch);
      } catch (err) {
        this.log.error(
          { source: this.sourceId, group: reg.group.id, err: (err as Error).message },
          "onSamples threw",
        );
      }
    });
  }

  /** One bad sample per monitored key for this reason of unavailability (not one per attempt). */
  private markDown(down: Down, regs: Iterable<Registration> = this.registrations): void {
    const at = this.now();
    for (const reg of regs) {
      reg.group.nodes.forEach((ref, i) => {
        this.deliver(reg, i, this.bad(ref.key, down.code, down.message, at), `down:${down.code}`);
      });
    }
  }

  private downNow(): Down {
    if (this.state === "online") return this.down;
    if (this.state === "connecting" && !this.lastError) {
      return { code: ErrorCodes.OPCUA_DISCONNECTED, message: "connecting" };
    }
    return this.down;
  }

  private unavailable(nodes: readonly NodeRef[], down: Down): ValueSample[] {
    const at = this.now();
    return nodes.map((n) => this.bad(n.key, down.code, down.message, at));
  }

  private sample(key: string, dv: DataValue, ts: number): ValueSample {
    return this.toSample(key, convertDataValue(dv), ts);
  }

  private toSample(key: string, c: ReturnType<typeof convertDataValue>, ts: number): ValueSample {
    return {
      key,
      quality: c.quality,
      ...(c.value !== undefined && { value: c.value }),
      ...(c.sourceTs !== undefined && { sourceTs: c.sourceTs }),
      ts,
    };
  }

  private bad(key: string, code: string, reason: string, ts = this.now()): ValueSample {
    const quality: Quality = { status: "bad", code, reason };
    return { key, quality, ts };
  }

  // ---- errors ------------------------------------------------------------------------------

  /** A service call on the session: counted, bounded, and settled if the session goes. */
  private async call<T>(live: Live, request: Promise<T>): Promise<T> {
    this.counters.requests++;
    try {
      return await Promise.race([request, live.gone]);
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  /** Bounds a step that has no timeout of its own (connect, createSession) by the source's. */
  private bounded<T>(p: Promise<T>, what: string): Promise<T> {
    const ms = Math.max(this.opts.timeoutMs * 2, 10_000);
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

  /** A failed service call as a catalogue code and message. */
  private failure(live: Live, err: unknown): Down {
    if (err instanceof ShadowgateError) return { code: err.code, message: err.message };
    const e = err as {
      message?: string;
      response?: { responseHeader?: { serviceResult?: StatusCode } };
    };
    const message = e.message ?? String(err);
    if (this.live !== live) {
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

  /** Why a connection attempt failed; for an untrusted server certificate, how to trust it. */
  private async connectFailure(err: unknown): Promise<Down> {
    if (err instanceof ShadowgateError)
      return this.logged({ code: err.code, message: err.message });
    const message = ((err as Error).message ?? String(err)).split("\n")[0] ?? "";
    const refused = this.refusedCertificate;
    if (refused) {
      const status = statusName(refused.status);
      const file = await findRejectedFile(this.opts.pkiDir, refused.chain);
      const cert = describeCertificate(refused.chain);
      const server = `the server certificate of ${this.opts.endpoint}`;
      const text =
        status !== "BadCertificateUntrusted"
          ? `${server} was refused (${status})` + (file ? `; it was saved as ${file}` : "")
          : file
            ? `${server} is not trusted (${status}); it was saved as ${file}. ` +
              `To trust it, run: ${trustCommand(this.opts.pkiDir, file)}`
            : `${server} is not trusted (${status}); put it in ` +
              `${trustedCertsDir(this.opts.pkiDir)}/ (refused certificates go to ` +
              `${rejectedDir(this.opts.pkiDir)}/)`;
      if (!this.loggedRefusals.has(cert.thumbprint + status)) {
        this.loggedRefusals.add(cert.thumbprint + status);
        this.log.error(
          {
            source: this.sourceId,
            endpoint: this.opts.endpoint,
            code: ErrorCodes.OPCUA_UNTRUSTED,
            status,
            certificate: cert,
            ...(file && { rejectedFile: file, trustWith: trustCommand(this.opts.pkiDir, file) }),
          },
          text,
        );
      }
      return { code: ErrorCodes.OPCUA_UNTRUSTED, message: text };
    }
    if (/rejected by server|BadSecurityChecksFailed|BadCertificate/i.test(message)) {
      const own = `${this.opts.pkiDir}/own/certs/client_certificate.pem`;
      return this.logged({
        code: ErrorCodes.OPCUA_UNTRUSTED,
        message:
          `${this.opts.endpoint} refused the connection (${message}); the server may not trust ` +
          `the gateway's certificate ${own}: add it to the server's trusted certificates`,
      });
    }
    return { code: ErrorCodes.OPCUA_DISCONNECTED, message: `connect failed: ${message}` };
  }

  /** Logs a refusal once per distinct message (attempts repeat it every backoff). */
  private logged(down: Down): Down {
    const key = `${down.code}|${down.message}`;
    if (!this.loggedRefusals.has(key)) {
      this.loggedRefusals.add(key);
      this.log.error(
        { source: this.sourceId, endpoint: this.opts.endpoint, code: down.code },
        down.message,
      );
    }
    return down;
  }

  private transition(next: ConnectionState, extra: Record<string, unknown> = {}): void {
    if (next === this.state) return;
    const from = this.state;
    this.state = next;
    const fields = {
      source: this.sourceId,
      from,
      to: next,
      endpoint: this.opts.endpoint,
      securityMode: this.opts.securityMode,
      securityPolicy: this.policyName,
      ...extra,
    };
    if (next === "backoff") this.log.warn(fields, "connection state");
    else this.log.info(fields, "connection state");
    this.emit("state", next);
  }
}

let libraryLogsRouted = false;

/**
 * node-opcua prints its warnings and errors with console.log, on stdout, which belongs to command
 * output (`read --json`). Routes them, process-wide and once, to the gateway's log on stderr:
 * warnings at debug (the driver logs what matters itself, with the source), errors at warn.
 * NODEOPCUA_LOG_LEVEL, when set, still decides what node-opcua emits.
 */
export function routeNodeOpcuaLogs(log: Logger): void {
  if (libraryLogsRouted) return;
  libraryLogsRouted = true;
  const lib = log.child({ lib: "node-opcua" });
  const text = (args: unknown[]) => stripVTControlCharacters(format(...args));
  const at = (ctx: unknown) => {
    const c = ctx as { filename?: string; callerline?: number } | undefined;
    return c?.filename ? `${c.filename}:${c.callerline ?? 0}` : undefined;
  };
  setWarningLogger((ctx, ...args) => lib.debug({ at: at(ctx) }, text(args)));
  setErrorLogger((ctx, ...args) => lib.warn({ at: at(ctx) }, text(args)));
  if (process.env.NODEOPCUA_LOG_LEVEL === undefined) setLogLevel(LogLevel.Warning);
}

/** Sampling interval, queue size and deadband of one monitored item, from its NodeRef. */
function applyParameters(item: ClientMonitoredItemBase, ref: NodeRef, publishingMs: number): void {
  const p = item.monitoringParameters;
  const sampling = ref.samplingIntervalMs ?? publishingMs;
  p.samplingInterval = sampling;
  p.queueSize = queueSizeFor(publishingMs, sampling);
  p.discardOldest = true;
  if (ref.deadband !== undefined && ref.deadband > 0) {
    p.filter = new DataChangeFilter({
      trigger: DataChangeTrigger.StatusValue,
      deadbandType: DeadbandType.Absolute,
      deadbandValue: ref.deadband,
    });
  }
}

/**
 * Enough queue for every sample taken between two publishes, plus one: a change is never
 * dropped for lack of room. Sampling interval 0 (as fast as the server can) counts as 10 ms.
 */
export function queueSizeFor(publishingMs: number, samplingMs: number): number {
  const s = samplingMs > 0 ? samplingMs : 10;
  return Math.ceil(publishingMs / s) + 1;
}

/** A ns=0 numeric DataType NodeId as a built-in type; undefined for others (browse for it). */
function builtInType(id: NodeId): DataType | undefined {
  if (id.namespace !== 0 || id.identifierType !== NodeIdType.NUMERIC) return undefined;
  const n = id.value as number;
  if (n >= 1 && n <= 25) return n as DataType;
  switch (n) {
    case 26: // Number
      return DataType.Double;
    case 27: // Integer
      return DataType.Int64;
    case 28: // UInteger
      return DataType.UInt64;
    case 29: // Enumeration
      return DataType.Int32;
    default:
      return undefined;
  }
}

/** A NodeId string; `nsu=<uri>;...` is mapped to the session's namespace index. */
function parseNodeId(node: string, namespaces: readonly string[]): Resolved {
  let text = node;
  const nsu = /^nsu=([^;]+);(.+)$/.exec(node);
  if (nsu) {
    const index = namespaces.indexOf(nsu[1] ?? "");
    if (index < 0) return { error: "BadNodeIdUnknown" };
    text = `ns=${index};${nsu[2]}`;
  }
  try {
    return { nodeId: resolveNodeId(text) };
  } catch {
    return { error: "BadNodeIdInvalid" };
  }
}
