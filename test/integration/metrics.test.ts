/**
 * The metrics of a running gateway, end to end: a Gateway over the Modbus TCP simulator (and
 * the local cloud service over aedes), read through GatewayMetricsSource and rendered by
 * GatewayMetrics as GET /metrics will serve it. Every scrape is parsed strictly; faults (a
 * silent unit, the PLC gone, the broker gone) must show in the counters and gauges.
 */
import { afterEach, describe, expect, it } from "vitest";
import { GatewayMetrics } from "../../src/api/metrics.js";
import { GatewayMetricsSource } from "../../src/daemon/metrics-source.js";
import { ModbusTcpSimulator } from "../../src/sim/modbus/index.js";
import { closeCloudTestResources, startTestCloud } from "../helpers/cloud.js";
import { startGateway } from "../helpers/gateway.js";
import {
  parsePromText,
  samplesByPrometheus,
  samplesByUs,
  valueOf,
  type Family,
} from "../helpers/prom-text.js";
import { until } from "../helpers/until.js";

const running: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const stop of running.splice(0).reverse()) await stop()?.catch(() => undefined);
  await closeCloudTestResources();
});

const mapping = (deviceName: string, unitId: number) => `version: 1
device: { productKey: a1Metrics, deviceName: ${deviceName} }
source: plc1
unitId: ${unitId}
pollInterval: 100ms
points:
  level: { register: 40001, type: uint16 }
  setpoint: { register: 40002, type: uint16, writable: true, max: 100 }
`;

const plc1 = (port: number) => `  plc1:
    protocol: modbus-tcp
    host: 127.0.0.1
    port: ${port}
    timeout: 100ms
    unitBackoff: 300ms
    reconnect: { min: 100ms, max: 300ms }
`;

/** Starts the gateway and its metrics; both are stopped after the test. */
async function gatewayWithMetrics(yaml: string) {
  const { gateway } = await startGateway(yaml, {
    "dev-1": mapping("dev-1", 1),
    "dev-2": mapping("dev-2", 2),
  });
  running.push(() => gateway.stop());
  const metrics = new GatewayMetrics(new GatewayMetricsSource(gateway));
  running.push(() => metrics.stop());
  let last = new Map<string, Family>();
  let text = "";
  /** One scrape, parsed (strictly: a malformed line throws); `v` reads the last one. */
  const scrape = async () => (last = parsePromText((text = (await metrics.render()).body)));
  const v = (name: string, labels: Record<string, string> = {}) => valueOf(last, name, labels);
  /** Scrapes until `cond` holds on the scrape. */
  const scrapeUntil = (what: string, cond: () => boolean) =>
    until(what, async () => {
      await scrape();
      return cond();
    });
  return { gateway, scrape, scrapeUntil, v, text: () => text, families: () => last };
}

describe("metrics of a running gateway", () => {
  it("over the Modbus simulator: polls and requests per unit, then a silent unit and a lost PLC", async () => {
    const sim = new ModbusTcpSimulator({ units: [1, 2] });
    const { port } = await sim.start({ port: 0 });
    running.push(() => sim.stop());
    const { gateway, scrapeUntil, v, text, families } = await gatewayWithMetrics(
      `version: 1\ngateway: { name: metrics-test, dataDir: ./data }\nsources:\n${plc1(port)}mappings: ./mappings\n`,
    );
    const unit = (u: string) => ({ source: "plc1", unit: u });
    const points = (device: string, quality: string) =>
      v("shadowgate_points", { device, source: "plc1", quality });

    // A unit's poll counts when its read goes out, its duration once it is done: both awaited.
    await scrapeUntil(
      "polls of both units, their durations, and every point good",
      () =>
        v("shadowgate_source_polls_total", unit("1")) >= 2 &&
        v("shadowgate_source_polls_total", unit("2")) >= 2 &&
        v("shadowgate_poll_duration_seconds_count", { source: "plc1" }) >= 4 &&
        points("dev-1", "good") === 2 &&
        points("dev-2", "good") === 2,
    );
    // Prometheus's own parser (Python client) reads the same samples as ours.
    const ours = samplesByUs(families());
    expect(ours.length).toBeGreaterThan(50);
    expect(samplesByPrometheus(text())).toEqual(ours);
    expect(v("shadowgate_source_requests_total", unit("1"))).toBeGreaterThan(0);
    expect(v("shadowgate_source_requests_total", unit("2"))).toBeGreaterThan(0);
    expect(v("shadowgate_source_timeouts_total", unit("1"))).toBe(0);
    expect(v("shadowgate_source_state", { source: "plc1", state: "online" })).toBe(1);
    expect(v("shadowgate_poll_cycles_total", { group: "plc1@100ms" })).toBeGreaterThan(0);
    expect(points("dev-1", "bad")).toBe(0);
    expect(v("shadowgate_component_up", { component: "sources" })).toBe(1);
    // No cloud section: no store and no link, so their families are 0 or empty.
    expect(v("shadowgate_reports_queued_total")).toBe(0);

    // Commands: one applied (written and read back), one refused by the guard.
    expect(await gateway.commands.execute("dev-1", "setpoint", 42)).toMatchObject({
      status: "applied",
    });
    expect(await gateway.commands.execute("dev-1", "setpoint", 101)).toMatchObject({
      status: "rejected",
    });
    await scrapeUntil(
      "the commands",
      () => v("shadowgate_commands_total", { outcome: "applied" }) === 1,
    );
    expect(v("shadowgate_commands_total", { outcome: "rejected" })).toBe(1);
    expect(v("shadowgate_command_duration_seconds_count", { outcome: "applied" })).toBe(1);
    expect(v("shadowgate_command_duration_seconds_sum", { outcome: "applied" })).toBeGreaterThan(0);
    expect(v("shadowgate_errors_total", { code: "SG_COMMAND_REJECTED" })).toBe(1);

    // Unit 2 stops answering: its timeouts rise, its points go stale; unit 1 is untouched.
    sim.unit(2).silent = true;
    await scrapeUntil(
      "unit 2's timeouts and stale points",
      () => v("shadowgate_source_timeouts_total", unit("2")) >= 1 && points("dev-2", "stale") === 2,
    );
    expect(v("shadowgate_source_errors_total", unit("2"))).toBeGreaterThanOrEqual(
      v("shadowgate_source_timeouts_total", unit("2")),
    );
    expect(v("shadowgate_errors_total", { code: "SG_MODBUS_TIMEOUT" })).toBeGreaterThanOrEqual(1);
    expect(v("shadowgate_source_timeouts_total", unit("1"))).toBe(0);
    expect(points("dev-1", "good")).toBe(2);

    // The PLC goes away: the source leaves online and retries; every point is stale.
    await sim.stop();
    await scrapeUntil(
      "the source retrying and dev-1 stale",
      () =>
        v("shadowgate_source_state", { source: "plc1", state: "online" }) === 0 &&
        v("shadowgate_source_reconnects_total", { source: "plc1" }) >= 1 &&
        points("dev-1", "stale") === 2,
    );
    expect(points("dev-1", "good") + points("dev-2", "good")).toBe(0);
  });

  it("with the local cloud service: reports queued and confirmed, link state, reconnects", async () => {
    const sim = new ModbusTcpSimulator({ units: [1, 2] });
    const { port } = await sim.start({ port: 0 });
    running.push(() => sim.stop());
    let cloud = await startTestCloud();
    const mqttPort = Number(new URL(cloud.mqttUrl).port);
    const { scrapeUntil, v } = await gatewayWithMetrics(`version: 1
gateway: { name: metrics-cloud, dataDir: ./data }
sources:
${plc1(port)}cloud:
  url: ${cloud.mqttUrl}
  productKey: a1Gateway
  deviceName: metrics-cloud
  sendWindow: 0s
  reconnect: { min: 100ms, max: 300ms }
mappings: ./mappings
`);
    const link = (state: string) => v("shadowgate_mqtt_link_state", { state });

    await scrapeUntil(
      "reports confirmed by the cloud",
      () => link("online") === 1 && v("shadowgate_reports_confirmed_total") >= 2,
    );
    expect(v("shadowgate_reports_queued_total")).toBeGreaterThanOrEqual(
      v("shadowgate_reports_confirmed_total"),
    );
    expect(v("shadowgate_shadow_requests_total")).toBeGreaterThan(0);
    expect(v("shadowgate_mqtt_connects_total")).toBe(1);
    expect(v("shadowgate_mqtt_reconnects_total")).toBe(0);
    expect(v("shadowgate_outbox_rows")).toBeGreaterThan(0);
    expect(v("shadowgate_outbox_bytes")).toBeGreaterThan(0);
    expect(v("shadowgate_component_up", { component: "cloud" })).toBe(1);
    expect(v("shadowgate_errors_total", { code: "SG_SHADOW_CONFLICT" })).toBe(0);

    // The broker goes away: the link leaves online and retries; reports wait in the outbox.
    await cloud.close();
    sim.unit(1).holding[0] = 7;
    await scrapeUntil(
      "the link retrying, a report waiting",
      () =>
        link("online") === 0 &&
        v("shadowgate_mqtt_reconnects_total") >= 1 &&
        v("shadowgate_outbox_pending_reports") >= 1,
    );
    // It comes back on the same port: connected again, and the backlog drains.
    cloud = await startTestCloud({ mqttPort });
    await scrapeUntil(
      "the link online again, the backlog sent",
      () =>
        link("online") === 1 &&
        v("shadowgate_mqtt_connects_total") === 2 &&
        v("shadowgate_outbox_pending_reports") === 0,
    );
    expect(cloud.service.getShadow("a1Metrics", "dev-1")?.state.reported).toMatchObject({
      level: 7,
    });
  });
});
