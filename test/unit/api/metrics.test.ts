import { afterEach, describe, expect, it } from "vitest";
import {
  GatewayMetrics,
  type MetricsSnapshot,
  type MetricsSource,
} from "../../../src/api/metrics.js";
import { DurationHistogram } from "../../../src/core/histogram.js";
import { parsePromText, valueOf } from "../../helpers/prom-text.js";
import { until } from "../../helpers/until.js";

const histogram = (...seconds: number[]) => {
  const h = new DurationHistogram();
  for (const s of seconds) h.observe(s);
  return h.snapshot();
};

/** A gateway with one Modbus source (two units), one OPC UA source, a store and a cloud. */
function snapshot(): MetricsSnapshot {
  return {
    components: [
      { name: "store", running: true },
      { name: "sources", running: true },
      { name: "cloud", running: false },
    ],
    sources: [
      {
        source: "plc1",
        state: "online",
        reconnects: 2,
        badFrames: 1,
        units: [
          { unit: "1", polls: 10, requests: 20, errors: 0, timeouts: 0 },
          { unit: "7", polls: 10, requests: 12, errors: 5, timeouts: 4 },
        ],
        pollSeconds: histogram(0.004, 0.004, 0.3, 12),
      },
      {
        source: "opc",
        state: "backoff",
        reconnects: 0,
        badFrames: 0,
        units: [{ unit: "", polls: 0, requests: 3, errors: 1, timeouts: 1 }],
      },
    ],
    pollGroups: [{ group: "plc1@1000ms", polls: 10, overruns: 1 }],
    points: [
      // A device name a field engineer chose: quotes, backslash and a newline must be escaped.
      { device: 'boiler "A"\\1\nx', source: "plc1", quality: "good", count: 5 },
      { device: 'boiler "A"\\1\nx', source: "plc1", quality: "stale", count: 2 },
      { device: 'boiler "A"\\1\nx', source: "plc1", quality: "bad", count: 0 },
    ],
    outbox: { queued: 40, confirmed: 35, pending: 5, rows: 120, bytes: 65536 },
    cloud: { link: "online", connects: 3, reconnects: 4, sent: 50, conflicts: 2 },
    commands: { applied: histogram(0.02, 0.03), rejected: histogram(0.0001), failed: histogram() },
    errors: { SG_MODBUS_TIMEOUT: 4, SG_SHADOW_CONFLICT: 2 },
  };
}

let metrics: GatewayMetrics | undefined;
afterEach(() => {
  metrics?.stop();
  metrics = undefined;
});

async function scrape(source: MetricsSource) {
  metrics ??= new GatewayMetrics(source);
  const { contentType, body } = await metrics.render();
  return { contentType, body, families: parsePromText(body) };
}

describe("GatewayMetrics", () => {
  it("renders every family with HELP and TYPE, in the Prometheus text format", async () => {
    const { contentType, families } = await scrape({ snapshot });
    expect(contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const types = Object.fromEntries([...families.values()].map((f) => [f.name, f.type]));
    expect(types).toEqual({
      shadowgate_component_up: "gauge",
      shadowgate_source_state: "gauge",
      shadowgate_source_polls_total: "counter",
      shadowgate_source_requests_total: "counter",
      shadowgate_source_errors_total: "counter",
      shadowgate_source_timeouts_total: "counter",
      shadowgate_source_reconnects_total: "counter",
      shadowgate_source_bad_frames_total: "counter",
      shadowgate_poll_duration_seconds: "histogram",
      shadowgate_poll_cycles_total: "counter",
      shadowgate_poll_overruns_total: "counter",
      shadowgate_points: "gauge",
      shadowgate_reports_queued_total: "counter",
      shadowgate_reports_confirmed_total: "counter",
      shadowgate_outbox_pending_reports: "gauge",
      shadowgate_outbox_rows: "gauge",
      shadowgate_outbox_bytes: "gauge",
      shadowgate_mqtt_link_state: "gauge",
      shadowgate_mqtt_connects_total: "counter",
      shadowgate_mqtt_reconnects_total: "counter",
      shadowgate_shadow_requests_total: "counter",
      shadowgate_shadow_conflicts_total: "counter",
      shadowgate_commands_total: "counter",
      shadowgate_command_duration_seconds: "histogram",
      shadowgate_errors_total: "counter",
      shadowgate_process_resident_memory_bytes: "gauge",
      shadowgate_nodejs_heap_used_bytes: "gauge",
      shadowgate_nodejs_heap_total_bytes: "gauge",
      shadowgate_nodejs_heap_limit_bytes: "gauge",
      shadowgate_event_loop_delay_p50_seconds: "gauge",
      shadowgate_event_loop_delay_p99_seconds: "gauge",
      shadowgate_event_loop_delay_max_seconds: "gauge",
    });
    for (const f of families.values()) expect(f.help, f.name).toMatch(/\w/);
  });

  it("reads the snapshot's figures under their labels", async () => {
    const { families: f } = await scrape({ snapshot });
    const v = (name: string, labels: Record<string, string> = {}) => valueOf(f, name, labels);
    expect(v("shadowgate_component_up", { component: "cloud" })).toBe(0);
    expect(v("shadowgate_component_up", { component: "sources" })).toBe(1);
    expect(v("shadowgate_source_state", { source: "plc1", state: "online" })).toBe(1);
    expect(v("shadowgate_source_state", { source: "plc1", state: "backoff" })).toBe(0);
    expect(v("shadowgate_source_state", { source: "opc", state: "backoff" })).toBe(1);
    expect(v("shadowgate_source_requests_total", { source: "plc1", unit: "7" })).toBe(12);
    expect(v("shadowgate_source_errors_total", { source: "plc1", unit: "7" })).toBe(5);
    expect(v("shadowgate_source_timeouts_total", { source: "plc1", unit: "7" })).toBe(4);
    expect(v("shadowgate_source_polls_total", { source: "plc1", unit: "1" })).toBe(10);
    expect(v("shadowgate_source_timeouts_total", { source: "opc", unit: "" })).toBe(1);
    expect(v("shadowgate_source_reconnects_total", { source: "plc1" })).toBe(2);
    expect(v("shadowgate_source_bad_frames_total", { source: "plc1" })).toBe(1);
    expect(v("shadowgate_poll_cycles_total", { group: "plc1@1000ms" })).toBe(10);
    expect(v("shadowgate_poll_overruns_total", { group: "plc1@1000ms" })).toBe(1);
    const device = 'boiler "A"\\1\nx'; // escaped in the text, the same again once parsed
    expect(v("shadowgate_points", { device, quality: "good" })).toBe(5);
    expect(v("shadowgate_points", { device, quality: "stale" })).toBe(2);
    expect(v("shadowgate_reports_queued_total")).toBe(40);
    expect(v("shadowgate_reports_confirmed_total")).toBe(35);
    expect(v("shadowgate_outbox_pending_reports")).toBe(5);
    expect(v("shadowgate_outbox_rows")).toBe(120);
    expect(v("shadowgate_outbox_bytes")).toBe(65536);
    expect(v("shadowgate_mqtt_link_state", { state: "online" })).toBe(1);
    expect(v("shadowgate_mqtt_link_state", { state: "backoff" })).toBe(0);
    expect(v("shadowgate_mqtt_connects_total")).toBe(3);
    expect(v("shadowgate_mqtt_reconnects_total")).toBe(4);
    expect(v("shadowgate_shadow_requests_total")).toBe(50);
    expect(v("shadowgate_shadow_conflicts_total")).toBe(2);
    expect(v("shadowgate_commands_total", { outcome: "applied" })).toBe(2);
    expect(v("shadowgate_commands_total", { outcome: "failed" })).toBe(0);
    expect(v("shadowgate_errors_total", { code: "SG_MODBUS_TIMEOUT" })).toBe(4);
    expect(v("shadowgate_errors_total", { code: "SG_SHADOW_CONFLICT" })).toBe(2);
    expect(v("shadowgate_process_resident_memory_bytes")).toBeGreaterThan(1e6);
    expect(v("shadowgate_nodejs_heap_limit_bytes")).toBeGreaterThan(
      v("shadowgate_nodejs_heap_used_bytes"),
    );
  });

  it("renders the kept histograms bucket by bucket, +Inf equal to the count", async () => {
    const { families: f } = await scrape({ snapshot });
    const v = (name: string, labels: Record<string, string>) => valueOf(f, name, labels);
    const poll = (le: string) =>
      v("shadowgate_poll_duration_seconds_bucket", { source: "plc1", le });
    expect(poll("0.001")).toBe(0);
    expect(poll("0.005")).toBe(2);
    expect(poll("0.25")).toBe(2);
    expect(poll("0.5")).toBe(3);
    expect(poll("10")).toBe(3);
    expect(poll("+Inf")).toBe(4); // 12 s: above every bound
    expect(v("shadowgate_poll_duration_seconds_count", { source: "plc1" })).toBe(4);
    expect(v("shadowgate_poll_duration_seconds_sum", { source: "plc1" })).toBeCloseTo(12.308, 9);
    // The OPC UA source has polled nothing: no series rather than an empty one.
    expect(
      f.get("shadowgate_poll_duration_seconds")?.samples.some((s) => s.labels.source === "opc"),
    ).toBe(false);
    expect(
      v("shadowgate_command_duration_seconds_bucket", { outcome: "applied", le: "0.025" }),
    ).toBe(1);
    expect(v("shadowgate_command_duration_seconds_count", { outcome: "rejected" })).toBe(1);
  });

  it("follows the source from scrape to scrape: new values, series that left are gone", async () => {
    let snap = snapshot();
    const source: MetricsSource = { snapshot: () => snap };
    await scrape(source);
    const first = snap.sources[0];
    if (!first) throw new Error("no source");
    snap = {
      ...snap,
      sources: [
        { ...first, units: [{ unit: "1", polls: 11, requests: 22, errors: 0, timeouts: 0 }] },
      ],
      cloud: undefined,
    } as MetricsSnapshot;
    const { families: f } = await scrape(source);
    expect(valueOf(f, "shadowgate_source_polls_total", { source: "plc1", unit: "1" })).toBe(11);
    expect(f.get("shadowgate_source_polls_total")?.samples).toHaveLength(1); // unit 7 and opc left
    expect(f.get("shadowgate_mqtt_link_state")?.samples).toEqual([]);
    expect(f.get("shadowgate_poll_duration_seconds")?.samples.length).toBeGreaterThan(0);
  });

  it("shows event-loop delay ordered and small, and keeps a registry per instance", async () => {
    const a = new GatewayMetrics({ snapshot });
    const b = new GatewayMetrics({ snapshot });
    try {
      const delays = async () => {
        const f = parsePromText((await a.render()).body);
        return ["p50", "p99", "max"].map((q) =>
          valueOf(f, `shadowgate_event_loop_delay_${q}_seconds`),
        );
      };
      expect(await delays()).toEqual([0, 0, 0]); // not sampled yet
      // The monitor records on its own 20 ms timer, and the first tick after a scrape's reset
      // only restarts its clock: scrapes 100 ms apart, until one shows samples (a tick is never
      // exactly on time). How much of a stall shows depends on when the loop read its clock,
      // so asserted is the order of the quantiles, and far below a second on an idle loop.
      let seen: number[] = [];
      await until(
        "the monitor's samples",
        async () => ((seen = await delays())[2] ?? 0) > 0,
        5000,
        100,
      );
      const [p50 = NaN, p99 = NaN, max = NaN] = seen;
      expect(p50).toBeGreaterThanOrEqual(0);
      expect(p99).toBeGreaterThanOrEqual(p50);
      expect(max).toBeGreaterThanOrEqual(p99);
      expect(max).toBeLessThan(1);
      // Two instances in one process: each renders its own families, nothing collides.
      const other = parsePromText((await b.render()).body);
      expect(valueOf(other, "shadowgate_outbox_rows")).toBe(120);
    } finally {
      a.stop();
      b.stop();
    }
  });
});

describe("parsePromText (the test helper) refuses", () => {
  const cases: Array<[string, string]> = [
    ["a bad escape in a label value", '# TYPE m gauge\nm{a="x\\t"} 1\n'],
    ["an unescaped quote", '# TYPE m gauge\nm{a="x"y"} 1\n'],
    ["a bad label name", '# TYPE m gauge\nm{1a="x"} 1\n'],
    ["a bad value", "# TYPE m gauge\nm 1,5\n"],
    ["a sample outside its family", "# TYPE m gauge\nn 1\n"],
    ["a duplicate series", '# TYPE m gauge\nm{a="1"} 1\nm{a="1"} 2\n'],
    ["a second TYPE", "# TYPE m gauge\n# TYPE m counter\n"],
    ["a split family", "# TYPE m gauge\nm 1\n# TYPE n gauge\nn 1\n# HELP m late\n"],
    [
      "buckets that count less",
      '# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="2"} 2\nh_bucket{le="+Inf"} 3\nh_sum 1\nh_count 3\n',
    ],
    [
      "+Inf unlike _count",
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    ],
    ["no final newline", "# TYPE m gauge\nm 1"],
  ];
  it.each(cases)("%s", (_, text) => {
    expect(() => parsePromText(text)).toThrow();
  });

  it("and accepts escapes, timestamps and special values", () => {
    const f = parsePromText(
      '# HELP m a \\\\ and a \\n\n# TYPE m gauge\nm{a="q\\"b\\\\n\\n"} +Inf 1700000000000\nm{a="2"} NaN\nm{a="3"} -1.5e-3\n',
    );
    expect(f.get("m")?.help).toBe("a \\ and a \n");
    expect(f.get("m")?.samples.map((s) => s.labels.a)).toEqual(['q"b\\n\n', "2", "3"]);
    expect(valueOf(f, "m", { a: "3" })).toBe(-0.0015);
  });
});
