/**
 * Monitored items on the server.
 *
 * **Monitoring.** One subscription per publishing interval (shared across groups), monitored
 * items created in CreateMonitoredItems batches of at most the server's MaxMonitoredItemsPerCall
 * (1000 when it states none), each with its own sampling interval, an absolute deadband
 * (DataChangeFilter, StatusValue) when the NodeRef has one, queueSize
 * ceil(publishingInterval / samplingInterval) + 1 with discardOldest, so no change sampled
 * between two publishes is lost. Each Publish response reaches onSamples as one batch. The
 * registrations outlive sessions: on every new session their items are created again (and
 * replays suppressed, see registration.ts).
 */
import {
  AttributeIds,
  type ClientMonitoredItemBase,
  ClientMonitoredItemGroup,
  type ClientSubscription,
  DataChangeFilter,
  DataChangeTrigger,
  DeadbandType,
  type NodeId,
  TimestampsToReturn,
} from "node-opcua";
import { ErrorCodes } from "../../core/errors.js";
import type { Logger } from "../../core/logger.js";
import type { NodeRef, ValueSample } from "../../core/samples.js";
import type { MonitorGroup } from "../driver.js";
import { resolveNodes } from "./address-space.js";
import { Registration } from "./registration.js";
import { badSample, toSample } from "./samples.js";
import { type Down, KEEPALIVE_MS, type LiveSession, type Resolved } from "./session.js";
import { convertDataValue, severity, statusName } from "./values.js";

/** A subscription outlives this long without Publish requests (a slow or stalled link). */
const LIFETIME_MS = 60_000;

/** Every monitor() call of a source, and the subscriptions and items they hold on its session. */
export class Subscriptions {
  private readonly registrations = new Set<Registration>();
  /** Subscription and monitored-item changes go one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  /** CreateMonitoredItems service calls since the driver was created. */
  createMonitoredItemsCalls = 0;
  /** Notifications dropped because they repeated what was last delivered (replays). */
  suppressed = 0;

  constructor(
    private readonly sourceId: string,
    private readonly log: Logger,
    private readonly now: () => number,
    /** How long one service call may take. */
    private readonly timeoutMs: number,
    /** A subscription was terminated or went bad: the session is treated as lost. */
    private readonly lost: (live: LiveSession, reason: string) => void,
  ) {}

  /**
   * Registers the group; its items are created now on `live` (the session, when online) or on
   * the next session, and meanwhile every key gets one bad sample saying why (`down`).
   */
  async add(
    group: MonitorGroup,
    onSamples: (samples: ValueSample[]) => void,
    live: LiveSession | undefined,
    down: Down,
  ): Promise<() => Promise<void>> {
    const reg = new Registration(group, onSamples, {
      sourceId: this.sourceId,
      log: this.log,
      suppressed: () => this.suppressed++,
    });
    this.registrations.add(reg);
    if (live) {
      await this.exclusive(() => this.createItems(live, reg)).catch((err: unknown) => {
        this.log.warn(
          { source: this.sourceId, group: group.id, err: (err as Error).message },
          "monitor failed; retried on the next session",
        );
      });
    } else {
      this.markDown(down, [reg]);
    }
    return async () => {
      if (reg.stopped) return;
      reg.stopped = true;
      this.registrations.delete(reg);
      await this.exclusive(() => this.removeItems(reg));
    };
  }

  /** Creates every registration's items on a new session. */
  async restore(live: LiveSession): Promise<void> {
    for (const reg of [...this.registrations]) {
      await this.exclusive(() => this.createItems(live, reg));
      if (live.ended) break;
    }
  }

  /** The session is gone, and the items that lived on it. */
  sessionLost(live: LiveSession): void {
    for (const reg of this.registrations) if (reg.createdOn === live) reg.detach();
  }

  /** The source stopped: no registration's items live on a session any more. */
  sourceStopped(): void {
    for (const reg of this.registrations) reg.createdOn = undefined;
  }

  /** One bad sample per monitored key for this reason of unavailability (not one per attempt). */
  markDown(down: Down, regs: Iterable<Registration> = this.registrations): void {
    const at = this.now();
    for (const reg of regs) reg.markDown(down, at);
  }

  get monitoredItems(): number {
    let n = 0;
    for (const reg of this.registrations) n += reg.itemCount;
    return n;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private subscriptionFor(live: LiveSession, intervalMs: number): Promise<ClientSubscription> {
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

  private async createSubscription(
    live: LiveSession,
    intervalMs: number,
  ): Promise<ClientSubscription> {
    const keepAlive = Math.max(1, Math.round(KEEPALIVE_MS / intervalMs));
    const subscription = await live.call(
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
  private async createItems(live: LiveSession, reg: Registration): Promise<void> {
    if (reg.stopped || reg.createdOn === live || live.ended) return;
    reg.detach();
    reg.createdOn = live;
    const { group } = reg;
    const interval = group.publishingIntervalMs;
    let subscription: ClientSubscription;
    let resolved: Resolved[];
    try {
      subscription = await this.subscriptionFor(live, interval);
      resolved = await resolveNodes(live, group.nodes);
    } catch (err) {
      if (live.ended) return;
      reg.createdOn = undefined;
      const e = live.failure(err);
      this.log.warn({ source: this.sourceId, group: group.id, err: e.message }, "monitor failed");
      this.markDown(e, [reg]);
      return;
    }
    const bad = (index: number, reason: string, signature: string): void => {
      const key = group.nodes[index]?.key ?? "";
      reg.deliver(index, badSample(key, ErrorCodes.OPCUA_BAD, reason, this.now()), signature);
    };
    const ok: { index: number; nodeId: NodeId }[] = [];
    resolved.forEach((r, index) => {
      if ("nodeId" in r) ok.push({ index, nodeId: r.nodeId });
      else bad(index, r.error, `!${r.error}`);
    });
    const batch = live.limits.maxMonitoredItemsPerCall;
    for (let from = 0; from < ok.length; from += batch) {
      if (reg.stopped || live.ended) return;
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
        if (index === undefined || live.ended || reg.createdOn !== live) return;
        const ref = group.nodes[index];
        if (!ref) return;
        const c = convertDataValue(dataValue);
        reg.deliver(index, toSample(ref.key, c, this.now()), c.signature);
      });
      this.createMonitoredItemsCalls++;
      live.calls.counters.requests++;
      try {
        await this.settled(live, itemGroup);
      } catch (err) {
        if (live.ended) return;
        live.calls.counters.errors++;
        const message = (err as Error).message;
        this.log.warn(
          { source: this.sourceId, group: group.id, items: chunk.length, err: message },
          "CreateMonitoredItems failed",
        );
        for (const c of chunk) bad(c.index, message, `!${message}`);
        continue;
      }
      reg.itemGroups.push({ group: itemGroup, interval });
      itemGroup.monitoredItems.forEach((item, j) => {
        const index = chunk[j]?.index;
        if (index === undefined) return;
        if (severity(item.statusCode) === "bad") {
          bad(index, statusName(item.statusCode), `${item.statusCode.value}`);
        } else reg.itemCount++;
      });
    }
  }

  /** Waits for a monitored-item group's CreateMonitoredItems to be answered. */
  private settled(live: LiveSession, group: ClientMonitoredItemGroup): Promise<void> {
    const answered = new Promise<void>((resolve, reject) => {
      group.once("initialized", () => resolve());
      group.once("terminated", (err?: Error) =>
        reject(err ?? new Error("the monitored items were terminated")),
      );
    });
    const timer = new Promise<never>((_, reject) => {
      const t = setTimeout(
        () => reject(new Error("CreateMonitoredItems was not answered in time")),
        this.timeoutMs * 2,
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
    reg.detach();
    if (!live || live.ended) return;
    const counters = live.calls.counters;
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
        counters.requests++;
        await live.calls.bounded(subscription.terminate(), "DeleteSubscriptions");
      } catch (err) {
        counters.errors++;
        this.log.debug(
          { source: this.sourceId, err: (err as Error).message },
          "delete subscription",
        );
      }
      return;
    }
    for (const { group } of groups) {
      try {
        counters.requests++;
        await live.calls.bounded(group.terminate(), "DeleteMonitoredItems");
      } catch (err) {
        counters.errors++;
        this.log.debug({ source: this.sourceId, err: (err as Error).message }, "delete items");
      }
    }
  }
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
