import { EventEmitter } from "node:events";
import type { OPCUAClient } from "node-opcua";
import { ConnectionMachine } from "../../core/connection.js";
import { type ErrorCode, ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { NodeRef, ValueSample } from "../../core/samples.js";
import type { ConnectionState, JsonValue } from "../../core/types.js";
import type { MonitorGroup, NodeDriver, SourceHealth } from "../driver.js";
import { readValues, writeValue } from "./attribute-service.js";
import { routeNodeOpcuaLogs } from "./library-logs.js";
import type { OpcuaDriverOptions } from "./options.js";
import { ClientPki } from "./pki.js";
import { badSample } from "./samples.js";
import { type Down, Endpoint, type LiveSession, ServiceCalls } from "./session.js";
import { Subscriptions } from "./subscriptions.js";

export type {
  OpcuaDriverOptions,
  OpcuaIdentity,
  OpcuaSecurityMode,
  OpcuaSecurityPolicy,
} from "./options.js";
export { routeNodeOpcuaLogs } from "./library-logs.js";
export { DEFAULT_MONITORED_ITEMS_PER_CALL } from "./session.js";
export { queueSizeFor } from "./subscriptions.js";

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

/** A connection online this long has proved itself: the next loss starts the backoff afresh. */
const STABLE_MS = 30_000;

/**
 * OPC UA on node-opcua: one client connection and one session per source. This class is the
 * driver contract and the connection's life; the parts live in their own modules: session.ts
 * (endpoint, security, identity, what a session learns), pki.ts (trust), address-space.ts
 * (NodeIds, DataTypes), attribute-service.ts (Read, Write), subscriptions.ts and
 * registration.ts (monitored items, replays), samples.ts (quality).
 *
 * **Connection.** The state machine of every source (core/connection.ts: disconnected,
 * connecting, online, backoff, stopping), each transition logged once and re-emitted as the
 * `state` event. A lost connection or session (socket closed, keep-alive failure, subscription
 * timed out) goes to backoff, then connecting after a jittered delay between the source's
 * reconnect min and max; node-opcua's own reconnection is off (maxRetry 0, its retries are not
 * jittered), so a new client and session are made each time and the subscriptions and monitored
 * items are recreated on it, browse paths translated again and DataTypes read again. The backoff
 * starts afresh only after a connection stayed up 30 s: a flapping link does not open a session
 * every `reconnect.min` (a session lost with its link lingers on the server until its 60 s
 * timeout).
 */
export class OpcuaDriver extends EventEmitter<OpcuaDriverEvents> implements NodeDriver {
  private readonly connection: ConnectionMachine;
  private readonly calls: ServiceCalls;
  private readonly endpoint: Endpoint;
  private readonly pki: ClientPki;
  private readonly subscriptions: Subscriptions;
  private live: LiveSession | undefined;
  private down: Down = {
    code: ErrorCodes.OPCUA_DISCONNECTED,
    message: "not connected yet",
  };
  private lastError: Down | undefined;
  private connecting: Promise<void> | undefined;
  /** The client of the attempt in progress, so that stop() can cut it short. */
  private attemptClient: OPCUAClient | undefined;

  constructor(
    readonly sourceId: string,
    private readonly opts: OpcuaDriverOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    routeNodeOpcuaLogs(log);
    this.calls = new ServiceCalls(opts.timeoutMs);
    this.endpoint = new Endpoint(sourceId, opts, this.calls, log, () => this.now());
    this.connection = new ConnectionMachine(
      {
        reconnectMinMs: opts.reconnectMinMs,
        reconnectMaxMs: opts.reconnectMaxMs,
        fields: () => ({
          source: this.sourceId,
          endpoint: this.opts.endpoint,
          securityMode: this.opts.securityMode,
          securityPolicy: this.endpoint.policyName,
        }),
        onChange: (state) => this.emit("state", state),
      },
      log,
    );
    this.pki = new ClientPki(sourceId, opts, log);
    this.subscriptions = new Subscriptions(
      sourceId,
      log,
      () => this.now(),
      opts.timeoutMs,
      (live, reason) => this.lost(live, reason),
    );
  }

  /** Resolves after the first connection attempt, whatever its outcome: a down server is not fatal. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.connection.state !== "disconnected" || signal?.aborted) return;
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
    await this.connect();
  }

  async stop(): Promise<void> {
    if (this.connection.state === "disconnected" && !this.live && !this.connecting) return;
    this.connection.stopping();
    if (this.attemptClient && !this.live)
      void this.attemptClient.disconnect().catch(() => undefined);
    await this.connecting?.catch(() => undefined);
    const live = this.live;
    this.live = undefined;
    if (live) {
      live.end(new ShadowgateError(ErrorCodes.OPCUA_DISCONNECTED, "the source is stopping"));
      await this.calls.bounded(live.client.disconnect(), "disconnect").catch(() => undefined);
    }
    this.subscriptions.sourceStopped();
    await this.pki.dispose();
    this.connection.stopped();
  }

  health(): OpcuaHealth {
    return {
      sourceId: this.sourceId,
      state: this.connection.state,
      ...this.calls.counters,
      badFrames: 0,
      illegal: [],
      ...(this.lastError && { lastError: this.lastError }),
    };
  }

  stats(): OpcuaStats {
    return {
      subscriptions: this.live?.subscriptions.size ?? 0,
      monitoredItems: this.subscriptions.monitoredItems,
      createMonitoredItemsCalls: this.subscriptions.createMonitoredItemsCalls,
      suppressed: this.subscriptions.suppressed,
      maxMonitoredItemsPerCall: this.live?.limits.maxMonitoredItemsPerCall ?? 0,
      maxNodesPerRead: this.live?.limits.maxNodesPerRead ?? 0,
    };
  }

  async read(nodes: readonly NodeRef[]): Promise<ValueSample[]> {
    const live = this.live;
    if (!live || !this.connection.online) {
      const down = this.downNow();
      const at = this.now();
      return nodes.map((n) => badSample(n.key, down.code, down.message, at));
    }
    return readValues(live, nodes, () => this.now());
  }

  async write(node: NodeRef, value: JsonValue): Promise<void> {
    const live = this.live;
    if (!live || !this.connection.online) {
      const down = this.downNow();
      throw new ShadowgateError(down.code, down.message, { node: node.node });
    }
    await writeValue(live, node, value);
  }

  async monitor(
    group: MonitorGroup,
    onSamples: (samples: ValueSample[]) => void,
  ): Promise<() => Promise<void>> {
    const live = this.connection.online ? this.live : undefined;
    return this.subscriptions.add(group, onSamples, live, this.downNow());
  }

  // ---- connection --------------------------------------------------------------------------

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    this.connection.to("connecting");
    let wentOnline = false;
    try {
      const certificates = await this.pki.forAttempt();
      const live = await this.endpoint.open(certificates, {
        client: (client) => {
          this.attemptClient = client;
        },
        stopping: () => this.connection.ending,
        lost: (l, reason) => this.lost(l, reason),
        online: (l) => {
          this.live = l;
          wentOnline = true;
          this.lastError = undefined;
          this.connection.to("online", {
            maxMonitoredItemsPerCall: l.limits.maxMonitoredItemsPerCall,
            maxNodesPerRead: l.limits.maxNodesPerRead,
          });
        },
      });
      await this.subscriptions.restore(live);
    } catch (err) {
      if (wentOnline) {
        // Online already: a loss is handled by lost(), anything else left the items to retry.
        this.log.warn({ source: this.sourceId, err: (err as Error).message }, "restoring monitors");
        return;
      }
      this.calls.counters.errors++;
      if (this.connection.ending) return;
      const down = await this.pki.connectFailure(err);
      this.lastError = down;
      this.down = down;
      this.subscriptions.markDown(down);
      this.retry(down.message);
    } finally {
      this.attemptClient = undefined;
    }
  }

  /** The session or its connection is gone: bad samples for monitored keys, then backoff. */
  private lost(live: LiveSession, reason: string): void {
    if (this.live !== live) return;
    this.live = undefined;
    live.end(new ShadowgateError(ErrorCodes.OPCUA_DISCONNECTED, `connection lost: ${reason}`));
    this.subscriptions.sessionLost(live);
    void live.client.disconnect().catch(() => undefined);
    if (this.connection.ending) return;
    const down: Down = {
      code: ErrorCodes.OPCUA_DISCONNECTED,
      message: `connection lost: ${reason}`,
    };
    this.down = down;
    this.lastError = down;
    this.subscriptions.markDown(down);
    if (this.now() - live.since >= STABLE_MS) this.connection.proven();
    this.retry(reason);
  }

  private retry(reason: string): void {
    this.connection.retry(reason, () => {
      this.calls.counters.reconnects++;
      void this.connect();
    });
  }

  private downNow(): Down {
    if (this.connection.state === "online") return this.down;
    if (this.connection.state === "connecting" && !this.lastError) {
      return { code: ErrorCodes.OPCUA_DISCONNECTED, message: "connecting" };
    }
    return this.down;
  }
}
