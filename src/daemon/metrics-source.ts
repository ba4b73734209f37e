import type { MetricsSnapshot, MetricsSource, SourceFigures } from "../api/metrics.js";
import { ErrorCodes } from "../core/errors.js";
import type { HistogramSnapshot } from "../core/histogram.js";
import type { ConnectionState } from "../core/types.js";
import type { SyncStats } from "../north/hooks.js";
import type { OutboxStats } from "../store/outbox.js";
import type { SourceHealth } from "../south/driver.js";
import type { ComponentStatus } from "./component.js";
import type { Gateway } from "./gateway.js";
import type { SchedulerStats } from "./scheduler.js";

/**
 * What each component's status() details hold (sources.ts, poller.ts, store.ts, cloud-sync.ts
 * return them); Lifecycle.status() hands them out as unknown, so they are named here once.
 */
type SourcesDetails = Readonly<Record<string, SourceHealth>>;
interface PollerDetails {
  readonly groups?: readonly SchedulerStats[];
  readonly pollSeconds?: Readonly<Record<string, HistogramSnapshot>>;
}
/** Empty while the store is closed. */
type StoreDetails = Partial<OutboxStats>;
/** Empty while the cloud sync is not started. */
interface CloudDetails {
  readonly link?: {
    readonly state: ConnectionState;
    readonly connects: number;
    readonly reconnects: number;
  };
  readonly sync?: SyncStats;
}

function details<T>(status: Record<string, ComponentStatus>, name: string): T | undefined {
  return status[name]?.details as T | undefined;
}

/**
 * The running gateway as the metrics read it: one Gateway.status() (counters the components
 * keep, no scans), the edge shadow's quality counts and the command executor's durations, taken
 * together at each scrape. Holds no state of its own, so a gateway replaced by a reload is read
 * by a new instance over the new gateway.
 */
export class GatewayMetricsSource implements MetricsSource {
  constructor(private readonly gateway: Gateway) {}

  snapshot(): MetricsSnapshot {
    const status = this.gateway.status();
    const poller = details<PollerDetails>(status, "poller") ?? {};
    const pollSeconds = poller.pollSeconds ?? {};
    const groups = poller.groups ?? [];
    const healths = Object.values(details<SourcesDetails>(status, "sources") ?? {});
    const store = details<StoreDetails>(status, "store");
    const cloud = details<CloudDetails>(status, "cloud");
    const commands = this.gateway.commands.stats();

    const errors: Record<string, number> = {};
    const add = (code: string, n: number): void => {
      errors[code] = (errors[code] ?? 0) + n;
    };
    for (const h of healths)
      for (const [code, n] of Object.entries(h.errorCodes ?? {})) add(code, n);
    add(
      ErrorCodes.POLL_OVERRUN,
      groups.reduce((n, g) => n + g.overruns, 0),
    );
    add(ErrorCodes.COMMAND_REJECTED, commands.rejected.count);
    add(ErrorCodes.COMMAND_FAILED, commands.failed.count);
    if (store?.refused !== undefined) add(ErrorCodes.STORE_REFUSED, store.refused);
    if (cloud?.sync) {
      add(ErrorCodes.SHADOW_CONFLICT, cloud.sync.conflicts);
      add(ErrorCodes.SHADOW_REJECTED, cloud.sync.rejected);
      add(ErrorCodes.SHADOW_REPLY_TIMEOUT, cloud.sync.timeouts);
      add(ErrorCodes.SHADOW_BAD_MESSAGE, cloud.sync.badMessages);
    }

    return {
      components: Object.entries(status).map(([name, s]) => ({
        name,
        running: s.state === "running",
      })),
      sources: healths.map((h) => sourceFigures(h, pollSeconds[h.sourceId])),
      pollGroups: groups.map((g) => ({ group: g.id, polls: g.polls, overruns: g.overruns })),
      points: this.gateway.shadow.qualityCounts().flatMap((d) =>
        Object.entries(d.counts).map(([quality, count]) => ({
          device: d.deviceName,
          source: d.sourceId,
          quality,
          count,
        })),
      ),
      ...(store?.rows !== undefined && {
        outbox: {
          queued: store.queued ?? 0,
          confirmed: store.confirmed ?? 0,
          pending: store.pending ?? 0,
          rows: store.rows,
          bytes: store.bytes ?? 0,
        },
      }),
      ...(cloud?.link &&
        cloud.sync && {
          cloud: {
            link: cloud.link.state,
            connects: cloud.link.connects,
            reconnects: cloud.link.reconnects,
            sent: cloud.sync.sent,
            conflicts: cloud.sync.conflicts,
          },
        }),
      commands,
      errors,
    };
  }
}

/**
 * A protocol with units (Modbus) counts per unit; one without (OPC UA) is one series with unit
 * "", whose polls are the poller's (the histogram's count: every device poll is timed).
 */
function sourceFigures(h: SourceHealth, pollSeconds: HistogramSnapshot | undefined): SourceFigures {
  const units = h.units
    ? Object.entries(h.units).map(([unit, u]) => ({ unit, ...u }))
    : [
        {
          unit: "",
          polls: pollSeconds?.count ?? 0,
          requests: h.requests,
          errors: h.errors,
          timeouts: h.timeouts,
        },
      ];
  return {
    source: h.sourceId,
    state: h.state,
    reconnects: h.reconnects,
    badFrames: h.badFrames,
    units,
    ...(pollSeconds && { pollSeconds }),
  };
}
