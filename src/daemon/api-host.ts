import type {
  ApiEvent,
  ApiHost,
  CloudIdentity,
  CloudState,
  CommandReply,
  DeviceDetail,
  DeviceShadowView,
  DeviceSummary,
  RawReply,
  Readiness,
  ReloadRecord,
  ReloadReply,
} from "../api/host.js";
import { ApiServer } from "../api/server.js";
import type { GatewayConfig } from "../config/gateway-schema.js";
import { ErrorCodes } from "../core/errors.js";
import { awsShadowOf } from "../core/shadow-identity.js";
import type { Logger } from "../core/logger.js";
import { COMMANDS_KEY, type JsonObject, type JsonValue } from "../core/types.js";
import { LOCAL_SOURCE } from "../north/desired.js";
import type { SyncEngine } from "../north/sync.js";
import type { DevicePlan } from "../mapping/types.js";
import type { CommandNote, ReportedUpdate } from "../shadow/edge-shadow.js";
import type { SourceHealth } from "../south/driver.js";
import { protocolOfKind } from "../south/registry.js";
import type { LinkChange } from "./cloud-sync.js";
import type { Gateway } from "./gateway.js";

/** What the adapter needs of the service that owns the gateway. */
export interface GatewaySource {
  /** The gateway running now. */
  current(): Gateway;
  /** Calls `fn` with each gateway built from now on (a reload builds one); returns the undo. */
  watch(fn: (gateway: Gateway) => void): () => void;
  reload(): Promise<ReloadReply>;
  lastReload(): ReloadRecord | undefined;
}

/** The Prometheus exposition of the gateway (api/metrics.ts renders it). */
export type RenderMetrics = () => Promise<{ contentType: string; body: string }>;

/**
 * The running gateway as the local API sees it (api/host.ts). It reads whichever gateway the
 * service runs now, so it survives reloads: event listeners move to each new gateway as it is
 * built, and are attached only while the API has subscribers.
 */
export class GatewayApiHost implements ApiHost {
  private readonly listeners = new Set<(e: ApiEvent) => void>();
  private readonly shadowWatchers = new Set<(deviceName: string) => void>();
  private detach: (() => void) | undefined;
  private unwatch: (() => void) | undefined;
  /** Without a cloud section there is no journal to order commands: they queue here per device. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly source: GatewaySource,
    private readonly metricsSource: RenderMetrics,
    private readonly log: Logger,
  ) {}

  devices(): DeviceSummary[] {
    const g = this.source.current();
    const health = g.sourceHealth();
    const outbox = g.outboxPending();
    return g.devices.map((d) => summary(g, d, health, outbox));
  }

  device(deviceName: string): DeviceDetail | undefined {
    const g = this.source.current();
    const d = g.devices.find((x) => x.deviceName === deviceName);
    if (!d) return undefined;
    const { points } = protocolOfKind(d.kind);
    return {
      ...summary(g, d, g.sourceHealth(), g.outboxPending()),
      file: d.file,
      definitions: d.points.map((p) => ({
        name: p.name,
        where: points.describe(p),
        writable: p.writable,
        onChange: p.onChange,
        ...(p.unit !== undefined && { unit: p.unit }),
        ...(p.min !== undefined && { min: p.min }),
        ...(p.max !== undefined && { max: p.max }),
        ...(p.deadband !== undefined && { deadband: p.deadband }),
        ...(p.heartbeatMs !== undefined && { heartbeatMs: p.heartbeatMs }),
        ...(p.position && { defined: `${p.position.file}:${p.position.line}` }),
      })),
    };
  }

  async raw(deviceName: string, point: string): Promise<RawReply> {
    const g = this.source.current();
    const d = g.devices.find((x) => x.deviceName === deviceName);
    if (!d) return { status: "not-found", reason: `no device ${deviceName}` };
    if (!d.points.some((p) => p.name === point))
      return { status: "not-found", reason: `${deviceName} has no point ${point}` };
    const probe = await g.probe(deviceName, point);
    if (probe.ok) return { status: "ok", raw: probe.json };
    return { status: probe.usage ? "no-raw" : "failed", reason: probe.message };
  }

  history(deviceName: string, point: string, max: number): ReturnType<ApiHost["history"]> {
    const g = this.source.current();
    const d = g.devices.find((x) => x.deviceName === deviceName);
    if (!d) return { status: "not-found", reason: `no device ${deviceName}` };
    const p = d.points.find((x) => x.name === point);
    if (!p) return { status: "not-found", reason: `${deviceName} has no point ${point}` };
    const values = g.history(d, p, max);
    if (!values)
      return {
        status: "unavailable",
        reason: g.hasCloud
          ? "the store is not open"
          : "no history: the gateway keeps it in its store, which only a cloud section opens",
      };
    return { status: "ok", values };
  }

  async cloud(deviceName: string, fresh: boolean): ReturnType<ApiHost["cloud"]> {
    const g = this.source.current();
    if (!g.devices.some((x) => x.deviceName === deviceName))
      return { status: "not-found", reason: `no device ${deviceName}` };
    const sync = g.cloudSync?.sync;
    if (!sync)
      return {
        status: "unavailable",
        reason: g.hasCloud ? "the cloud sync is not running" : "the config has no cloud section",
      };
    const shadow = await sync.cloudShadow(deviceName, fresh);
    if (!shadow) return { status: "unavailable", reason: "the cloud shadow has not been read yet" };
    return { status: "ok", shadow };
  }

  shadow(deviceName: string): DeviceShadowView | undefined {
    const g = this.source.current();
    const plan = g.devices.find((d) => d.deviceName === deviceName);
    const doc = g.shadow.document(deviceName);
    if (!plan || !doc) return undefined;
    const commands = g.shadow.commands(deviceName);
    return {
      device: deviceName,
      ...identity(plan),
      // As in the cloud shadow: the outcomes sit beside the values, once there are any.
      reported: {
        ...doc.state.reported,
        ...(Object.keys(commands).length > 0 && { [COMMANDS_KEY]: commands }),
      },
      desired: g.cloudSync?.sync?.desiredPending(deviceName) ?? {},
      // The edge shadow's metadata is already one entry per point, in the API's shape.
      points: doc.metadata.reported,
    };
  }

  shadowRevision(deviceName: string): string | undefined {
    const g = this.source.current();
    const revision = g.shadow.revision(deviceName);
    if (revision === undefined) return undefined;
    // Desired values waiting are few (one per point at most) and change apart from the shadow.
    const desired = g.cloudSync?.sync?.desiredPending(deviceName);
    return desired && Object.keys(desired).length > 0
      ? `${revision}:${JSON.stringify(desired)}`
      : String(revision);
  }

  async command(deviceName: string, point: string, value: JsonValue): Promise<CommandReply> {
    const g = this.source.current();
    const plan = g.devices.find((d) => d.deviceName === deviceName);
    if (!plan) return { status: "not-found", reason: `no device ${deviceName}` };
    if (!plan.points.some((p) => p.name === point))
      return { status: "not-found", reason: `${deviceName} has no point ${point}` };
    let outcome: JsonObject;
    if (g.hasCloud) {
      const sync = g.cloudSync?.sync;
      // Unjournaled, a command the cloud also sends could run twice: refused rather than risked.
      if (!sync)
        return {
          status: "unavailable",
          reason: "the command journal is not open (the store or the cloud sync is not running)",
        };
      outcome = await sync.local(deviceName, point, value);
    } else outcome = await this.unjournaled(g, deviceName, point, value);
    const reason = typeof outcome.reason === "string" ? outcome.reason : "";
    if (outcome.status === "applied") return { status: "applied", outcome };
    if (outcome.status === "rejected") return { status: "rejected", reason, outcome };
    return { status: "failed", reason, outcome };
  }

  subscribe(listener: (e: ApiEvent) => void): () => void {
    return this.hold(this.listeners, listener);
  }

  watchShadows(listener: (deviceName: string) => void): () => void {
    return this.hold(this.shadowWatchers, listener);
  }

  readiness(): Readiness {
    const g = this.source.current();
    const reasons: string[] = [];
    for (const [name, s] of Object.entries(g.status())) {
      if (s.state !== "running")
        reasons.push(`${name} is ${s.state}${s.error !== undefined ? `: ${s.error}` : ""}`);
    }
    const health = g.sourceHealth();
    const sources: Record<string, Readiness["sources"][string]> = {};
    for (const id of new Set(g.devices.map((d) => d.sourceId))) {
      const state = health[id]?.state ?? "not open";
      sources[id] = state;
      if (state !== "online") reasons.push(`source ${id} is ${state}`);
    }
    const store = g.hasCloud ? (g.storeOpen ? "open" : "closed") : "none";
    if (store === "closed") reasons.push("the store is not open");
    return {
      ready: reasons.length === 0,
      reasons,
      config: { file: g.configFile, devices: g.devices.length },
      store,
      sources,
    };
  }

  reload(): Promise<ReloadReply> {
    return this.source.reload();
  }

  lastReload(): ReloadRecord | undefined {
    return this.source.lastReload();
  }

  metrics(): Promise<{ contentType: string; body: string }> {
    return this.metricsSource();
  }

  /**
   * Without a cloud section there is no store and so no journal: the command is guarded,
   * written and read back all the same, one at a time per device, and its outcome is kept in
   * the edge shadow's `_commands` (stamped in ms; with a cloud, in the dialect's unit).
   */
  private unjournaled(
    g: Gateway,
    deviceName: string,
    point: string,
    value: JsonValue,
  ): Promise<JsonObject> {
    const run = (this.queues.get(deviceName) ?? Promise.resolve()).then(async () => {
      const ts = Date.now();
      const r = await g.commands.execute(deviceName, point, value);
      const outcome: JsonObject = {
        status: r.status,
        ts,
        ...(r.reason !== undefined && { reason: r.reason }),
        ...(r.value !== undefined && { value: r.value }),
        source: LOCAL_SOURCE,
      };
      g.shadow.recordCommand(deviceName, point, outcome);
      return outcome;
    });
    const settled = run.catch(() => undefined);
    this.queues.set(deviceName, settled);
    // The last command's chain is dropped once done, so the map holds only devices in use.
    void settled.then(() => {
      if (this.queues.get(deviceName) === settled) this.queues.delete(deviceName);
    });
    return run;
  }

  /** Adds a listener; the gateway's events are followed while there is any, of either kind. */
  private hold<T>(listeners: Set<T>, listener: T): () => void {
    listeners.add(listener);
    if (!this.detach) {
      this.detach = this.attach(this.source.current());
      this.unwatch = this.source.watch((g) => {
        this.detach?.();
        this.detach = this.attach(g);
      });
    }
    return () => {
      listeners.delete(listener);
      if (this.listeners.size > 0 || this.shadowWatchers.size > 0) return;
      this.unwatch?.();
      this.detach?.();
      this.unwatch = this.detach = undefined;
    };
  }

  /** Forwards the gateway's events to the subscribers; returns the undo. */
  private attach(g: Gateway): () => void {
    const onUpdate = (u: ReportedUpdate): void => {
      if (Object.keys(u.reported).length > 0)
        this.emit({ type: "point", device: u.deviceName, reported: u.reported });
      if (Object.keys(u.quality).length > 0)
        this.emit({ type: "quality", device: u.deviceName, quality: u.quality });
    };
    const onCommand = (n: CommandNote): void =>
      this.emit({ type: "command", device: n.deviceName, point: n.point, outcome: n.outcome });
    const onLink = (l: LinkChange): void => this.emit({ type: "link", ...l });
    const onRevised = (deviceName: string): void =>
      this.deliver(this.shadowWatchers, deviceName, { device: deviceName });
    const cloud = g.cloudSync;
    g.shadow.on("update", onUpdate);
    g.shadow.on("command", onCommand);
    g.shadow.on("revised", onRevised);
    cloud?.events.on("link", onLink);
    return () => {
      g.shadow.off("update", onUpdate);
      g.shadow.off("command", onCommand);
      g.shadow.off("revised", onRevised);
      cloud?.events.off("link", onLink);
    };
  }

  /** Runs inside the gateway's own emits (a poll's ingest): a listener's bug must stay here. */
  private emit(event: ApiEvent): void {
    this.deliver(this.listeners, event, { event: event.type });
  }

  /** Calls each listener; one that throws is logged (with `fields`) and the others still run. */
  private deliver<T>(
    listeners: ReadonlySet<(value: T) => void>,
    value: T,
    fields: Record<string, unknown>,
  ): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (err) {
        this.log.error({ err, code: ErrorCodes.INTERNAL, ...fields }, "API event failed");
      }
    }
  }
}

/** How the API names a device's cloud shadow: in its platform's own terms. */
const identity = (d: DevicePlan): CloudIdentity =>
  d.addressing === "aws" ? awsShadowOf(d) : { productKey: d.productKey };

function summary(
  g: Gateway,
  d: DevicePlan,
  health: Record<string, SourceHealth>,
  outbox: Map<string, number> | undefined,
): DeviceSummary {
  const lastPoll = g.shadow.readAt(d.deviceName);
  const connection = health[d.sourceId]?.state ?? "not open";
  const overruns = g.overruns(d);
  return {
    name: d.deviceName,
    ...identity(d),
    source: d.sourceId,
    online: connection === "online",
    connection,
    points: d.points.length,
    ...(lastPoll !== undefined && { lastPoll }),
    ...(overruns !== undefined && { overruns }),
    ...(g.hasCloud && { cloud: cloudState(g, d.deviceName) }),
    ...(outbox && { outbox: outbox.get(d.deviceName) ?? 0 }),
  };
}

/** A device's cloud state, from the link, its session and its sync figures. */
function cloudState(g: Gateway, deviceName: string): CloudState {
  const sync: SyncEngine | undefined = g.cloudSync?.sync;
  if (!sync) return { state: "offline", reason: "the cloud sync is not running" };
  const session = sync.sessionStatus()[deviceName];
  if (session?.state === "refused")
    return {
      state: "refused",
      reason: session.reason ?? "the cloud refused the device",
      ...(session.code !== undefined && { code: session.code }),
    };
  const link = g.cloudSync?.linkState();
  if (link !== "online") return { state: "offline", reason: `the MQTT link is ${link ?? "down"}` };
  if (session !== undefined && session.state !== "open")
    return { state: "offline", reason: `the device's session is ${session.state}` };
  const d = sync.deviceState(deviceName);
  return d?.synced && !d.busy && !d.backlog ? { state: "synced" } : { state: "syncing" };
}

/**
 * The local API for the daemon's `api` section: one per process, owned by the service, reading
 * whichever gateway runs through the adapter above.
 */
export function createLocalApi(
  api: NonNullable<GatewayConfig["api"]>,
  source: GatewaySource,
  log: Logger,
  metrics: RenderMetrics,
): ApiServer {
  const apiLog = log.child({ component: "api" });
  return new ApiServer(
    { listen: api.listen, ...(api.token !== undefined && { token: api.token }) },
    new GatewayApiHost(source, metrics, apiLog),
    apiLog,
  );
}
