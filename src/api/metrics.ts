import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { Counter, Gauge, Histogram, Registry, type LabelValues } from "prom-client";
import { DURATION_BOUNDS_S, type HistogramSnapshot } from "../core/histogram.js";
import type { ConnectionState } from "../core/types.js";

/**
 * What the metrics read, once per scrape: figures the gateway's components keep as they go
 * (counters, gauges, bucketed durations), never a scan. The API knows nothing of the daemon:
 * daemon/metrics-source.ts builds this from a running Gateway.
 */
export interface MetricsSource {
  snapshot(): MetricsSnapshot;
}

export interface MetricsSnapshot {
  /** Each component of the gateway (store, sources, poller, cloud) and whether it runs. */
  readonly components: readonly { readonly name: string; readonly running: boolean }[];
  readonly sources: readonly SourceFigures[];
  /** Poll groups (one per source and interval): cycles run and ticks skipped by overruns. */
  readonly pollGroups: readonly {
    readonly group: string;
    readonly polls: number;
    readonly overruns: number;
  }[];
  /** Per device, how many of its points are of one quality (good, bad, stale). */
  readonly points: readonly PointFigures[];
  /** Absent without a cloud section (no store) or while the store is closed. */
  readonly outbox?: OutboxFigures;
  /** Absent without a cloud section or while the cloud sync is not started. */
  readonly cloud?: CloudFigures;
  /** Commands executed, per outcome, with how long each took. */
  readonly commands: Readonly<Record<"applied" | "rejected" | "failed", HistogramSnapshot>>;
  /** Errors counted by the components, by catalogue code (core/errors.ts). */
  readonly errors: Readonly<Record<string, number>>;
}

export interface SourceFigures {
  readonly source: string;
  readonly state: ConnectionState;
  readonly reconnects: number;
  readonly badFrames: number;
  /** Per unit id; one entry with unit "" for a protocol without units (OPC UA). */
  readonly units: readonly UnitFigures[];
  /** How long its device polls took; absent before the first. */
  readonly pollSeconds?: HistogramSnapshot;
}

export interface UnitFigures {
  readonly unit: string;
  readonly polls: number;
  readonly requests: number;
  readonly errors: number;
  readonly timeouts: number;
}

export interface PointFigures {
  readonly device: string;
  readonly source: string;
  readonly quality: string;
  readonly count: number;
}

export interface OutboxFigures {
  readonly queued: number;
  readonly confirmed: number;
  readonly pending: number;
  readonly rows: number;
  readonly bytes: number;
}

export interface CloudFigures {
  readonly link: ConnectionState;
  readonly connects: number;
  readonly reconnects: number;
  /** Shadow requests published (updates, gets, desired clears). */
  readonly sent: number;
  /** Version conflicts (409) answered by the cloud. */
  readonly conflicts: number;
}

/** Every connection state, so that a state gauge shows the others at 0 (a key per state). */
const STATES = Object.keys({
  disconnected: true,
  connecting: true,
  online: true,
  backoff: true,
  stopping: true,
} satisfies Record<ConnectionState, true>) as ConnectionState[];

const P = "shadowgate_";

/** How often the event-loop delay is sampled: often enough to catch a 50 ms stall, cheap. */
const LOOP_RESOLUTION_MS = 20;

/** One line of a histogram as prom-client's registry formats it. */
interface HistogramSample {
  readonly metricName: string;
  readonly labels: Record<string, string | number>;
  /** prom-client's own histograms keep the series' labels here; ours are all in `labels`. */
  readonly sharedLabels: object;
  readonly value: number;
}

type Series<L extends string> = Iterable<readonly [LabelValues<L>, number]>;

/**
 * A histogram whose counts another part of the gateway keeps (core/histogram.ts): rendered from
 * the snapshot of each scrape, since prom-client's own histograms only count what they observe.
 */
class SnapshotHistogram extends Histogram {
  constructor(
    private readonly config: {
      name: string;
      help: string;
      labelNames: readonly string[];
      registers: Registry[];
    },
    private readonly read: () => Iterable<
      readonly [Readonly<Record<string, string>>, HistogramSnapshot]
    >,
  ) {
    super({ ...config, buckets: [...DURATION_BOUNDS_S] });
  }

  /**
   * What the registry renders (it prefers this to get(), and prom-client's get() splays what
   * this returns): the samples of a histogram, from the snapshots instead of observations.
   */
  getForPromString(): Promise<{
    name: string;
    help: string;
    type: "histogram";
    aggregator: "sum";
    values: HistogramSample[];
  }> {
    const { name, help } = this.config;
    const values: HistogramSample[] = [];
    const sample = (suffix: string, labels: Record<string, string | number>, value: number) =>
      values.push({ metricName: name + suffix, labels, sharedLabels: {}, value });
    for (const [labels, h] of this.read()) {
      h.bounds.forEach((le, i) => sample("_bucket", { ...labels, le }, h.cumulative[i] ?? 0));
      sample("_bucket", { ...labels, le: "+Inf" }, h.count);
      sample("_sum", { ...labels }, h.sum);
      sample("_count", { ...labels }, h.count);
    }
    return Promise.resolve({ name, help, type: "histogram", aggregator: "sum", values });
  }
}

/**
 * The gateway's Prometheus metrics, in a registry of its own (not prom-client's global one), so
 * that several gateways in one process, and tests, do not share series. Each scrape takes one
 * snapshot of the MetricsSource; every family reads that snapshot in its collect().
 */
export class GatewayMetrics {
  private readonly registry = new Registry();
  private current: MetricsSnapshot | undefined;
  /**
   * Event-loop delay, sampled by a libuv timer (no work on our side between scrapes); reset
   * after each scrape, so the quantiles describe the time since the last one.
   */
  private readonly loop: IntervalHistogram = monitorEventLoopDelay({
    resolution: LOOP_RESOLUTION_MS,
  });

  constructor(private readonly source: MetricsSource) {
    this.loop.enable();
    this.define();
  }

  async render(): Promise<{ contentType: string; body: string }> {
    // collect() runs synchronously for every family within metrics(), before its first await:
    // every family of one scrape reads this same snapshot.
    this.current = this.source.snapshot();
    try {
      return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    } finally {
      this.current = undefined;
      this.loop.reset();
    }
  }

  stop(): void {
    this.loop.disable();
  }

  private define(): void {
    const snap = (): MetricsSnapshot | undefined => this.current;

    this.gauge(
      "component_up",
      "1 while the component runs, 0 when it failed or is stopped",
      ["component"],
      (s) => s.components.map((c) => [{ component: c.name }, c.running ? 1 : 0]),
    );

    // South: sources, units, polls.
    this.gauge(
      "source_state",
      "Connection state of a source: 1 for its current state, 0 for the others",
      ["source", "state"],
      (s) =>
        s.sources.flatMap((src) =>
          STATES.map(
            (st) => [{ source: src.source, state: st }, src.state === st ? 1 : 0] as const,
          ),
        ),
    );
    const perUnit = (pick: (u: UnitFigures) => number) => (s: MetricsSnapshot) =>
      s.sources.flatMap((src) =>
        src.units.map((u) => [{ source: src.source, unit: u.unit }, pick(u)] as const),
      );
    this.counter(
      "source_polls_total",
      "Device polls by the poller (a command's reads not included)",
      ["source", "unit"],
      perUnit((u) => u.polls),
    );
    this.counter(
      "source_requests_total",
      "Requests sent to the device (Modbus transactions, OPC UA service calls)",
      ["source", "unit"],
      perUnit((u) => u.requests),
    );
    this.counter(
      "source_errors_total",
      "Requests that failed (timeouts, exceptions, lost connections)",
      ["source", "unit"],
      perUnit((u) => u.errors),
    );
    this.counter(
      "source_timeouts_total",
      "Requests the device did not answer in time",
      ["source", "unit"],
      perUnit((u) => u.timeouts),
    );
    this.counter(
      "source_reconnects_total",
      "Connection attempts after a source lost its connection or failed to connect",
      ["source"],
      (s) => s.sources.map((src) => [{ source: src.source }, src.reconnects]),
    );
    this.counter(
      "source_bad_frames_total",
      "Answers dropped as unusable (bad CRC or header, wrong length or unit)",
      ["source"],
      (s) => s.sources.map((src) => [{ source: src.source }, src.badFrames]),
    );
    new SnapshotHistogram(
      {
        name: `${P}poll_duration_seconds`,
        help: "How long one device poll took, per source",
        labelNames: ["source"],
        registers: [this.registry],
      },
      () =>
        (snap()?.sources ?? []).flatMap((src) =>
          src.pollSeconds ? [[{ source: src.source }, src.pollSeconds] as const] : [],
        ),
    );
    this.counter(
      "poll_cycles_total",
      "Poll cycles run, per poll group (a source and an interval)",
      ["group"],
      (s) => s.pollGroups.map((g) => [{ group: g.group }, g.polls]),
    );
    this.counter(
      "poll_overruns_total",
      "Poll ticks skipped because the previous poll of the group was still running",
      ["group"],
      (s) => s.pollGroups.map((g) => [{ group: g.group }, g.overruns]),
    );
    this.gauge(
      "points",
      "Points of a device by quality: good, bad (no value) or stale (a last value kept)",
      ["device", "source", "quality"],
      (s) =>
        s.points.map((p) => [{ device: p.device, source: p.source, quality: p.quality }, p.count]),
    );

    // Store and forward.
    const outbox =
      (pick: (o: OutboxFigures) => number) =>
      (s: MetricsSnapshot): Series<never> =>
        s.outbox ? [[{}, pick(s.outbox)]] : [];
    this.counter(
      "reports_queued_total",
      "Reported updates written to the outbox",
      [],
      outbox((o) => o.queued),
    );
    this.counter(
      "reports_confirmed_total",
      "Reported updates the cloud confirmed, leaving the outbox's backlog",
      [],
      outbox((o) => o.confirmed),
    );
    this.gauge(
      "outbox_pending_reports",
      "Reported updates waiting for the cloud's confirmation",
      [],
      outbox((o) => o.pending),
    );
    this.gauge(
      "outbox_rows",
      "Rows in the outbox file: unconfirmed reports and history",
      [],
      outbox((o) => o.rows),
    );
    this.gauge(
      "outbox_bytes",
      "Bytes of database pages in use by the outbox file",
      [],
      outbox((o) => o.bytes),
    );

    // Cloud.
    const cloud =
      (pick: (c: CloudFigures) => number) =>
      (s: MetricsSnapshot): Series<never> =>
        s.cloud ? [[{}, pick(s.cloud)]] : [];
    this.gauge(
      "mqtt_link_state",
      "State of the MQTT link: 1 for its current state, 0 for the others",
      ["state"],
      (s) =>
        s.cloud ? STATES.map((st) => [{ state: st }, s.cloud?.link === st ? 1 : 0] as const) : [],
    );
    this.counter(
      "mqtt_connects_total",
      "Successful MQTT connections, the first one included",
      [],
      cloud((c) => c.connects),
    );
    this.counter(
      "mqtt_reconnects_total",
      "MQTT connection attempts after a loss or a failed attempt",
      [],
      cloud((c) => c.reconnects),
    );
    this.counter(
      "shadow_requests_total",
      "Shadow requests published to the cloud (updates, gets, desired clears)",
      [],
      cloud((c) => c.sent),
    );
    this.counter(
      "shadow_conflicts_total",
      "Shadow version conflicts (409) answered by the cloud",
      [],
      cloud((c) => c.conflicts),
    );

    // Commands and errors.
    const outcomes = ["applied", "rejected", "failed"] as const;
    this.counter(
      "commands_total",
      "Commands (desired values written to a device) by outcome",
      ["outcome"],
      (s) => outcomes.map((o) => [{ outcome: o }, s.commands[o].count]),
    );
    new SnapshotHistogram(
      {
        name: `${P}command_duration_seconds`,
        help: "How long a command took from its check to its outcome (write and read-back included)",
        labelNames: ["outcome"],
        registers: [this.registry],
      },
      () => {
        const s = snap();
        return s ? outcomes.map((o) => [{ outcome: o }, s.commands[o]] as const) : [];
      },
    );
    this.counter(
      "errors_total",
      "Errors counted by the gateway, by code of the error catalogue",
      ["code"],
      (s) => Object.entries(s.errors).map(([code, n]) => [{ code }, n]),
    );

    // The process: what a box with little memory needs watched.
    this.gauge("process_resident_memory_bytes", "Resident set size of the process", [], () => [
      [{}, process.memoryUsage.rss()],
    ]);
    this.gauge("nodejs_heap_used_bytes", "V8 heap in use", [], () => [
      [{}, process.memoryUsage().heapUsed],
    ]);
    this.gauge("nodejs_heap_total_bytes", "V8 heap allocated", [], () => [
      [{}, process.memoryUsage().heapTotal],
    ]);
    this.gauge("nodejs_heap_limit_bytes", "V8 heap size limit (--max-old-space-size)", [], () => [
      [{}, getHeapStatistics().heap_size_limit],
    ]);
    const delay = (pick: (h: IntervalHistogram) => number) => (): Series<never> => [
      [
        {},
        // Before its first sample the histogram holds its initial extremes: 0 until then. Node
        // records each timer interval whole, the resolution included: the delay is the excess.
        this.loop.count === 0 ? 0 : Math.max(0, pick(this.loop) / 1e9 - LOOP_RESOLUTION_MS / 1000),
      ],
    ];
    this.gauge(
      "event_loop_delay_p50_seconds",
      "Event-loop delay since the last scrape, median",
      [],
      delay((h) => h.percentile(50)),
    );
    this.gauge(
      "event_loop_delay_p99_seconds",
      "Event-loop delay since the last scrape, 99th percentile",
      [],
      delay((h) => h.percentile(99)),
    );
    this.gauge(
      "event_loop_delay_max_seconds",
      "Event-loop delay since the last scrape, maximum",
      [],
      delay((h) => h.max),
    );
  }

  /** A counter mirroring a count the gateway keeps: each scrape sets it to the snapshot's value. */
  private counter<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    read: (s: MetricsSnapshot) => Series<L>,
  ): void {
    const snapshot = (): MetricsSnapshot | undefined => this.current;
    new Counter<L>({
      name: P + name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        // Reset first: a series that left the snapshot (a source closed) leaves the output.
        this.reset();
        const s = snapshot();
        if (s) for (const [labels, v] of read(s)) this.inc(labels, v);
      },
    });
  }

  private gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    read: (s: MetricsSnapshot) => Series<L>,
  ): void {
    const snapshot = (): MetricsSnapshot | undefined => this.current;
    new Gauge<L>({
      name: P + name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        const s = snapshot();
        if (s) for (const [labels, v] of read(s)) this.set(labels, v);
      },
    });
  }
}
