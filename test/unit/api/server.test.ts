/**
 * The local API's routes (src/api/server.ts) over real sockets on 127.0.0.1, against a host
 * whose answers the test sets: bad input, auth, status codes, error bodies, the refused-request
 * log, and the event stream's slow-reader bound.
 */
import { setImmediate as tick } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type {
  ApiEvent,
  ApiHost,
  CommandReply,
  DeviceDetail,
  RawReply,
  Readiness,
  ReloadRecord,
  ReloadReply,
} from "../../../src/api/host.js";
import { ApiServer, BODY_LIMIT_BYTES } from "../../../src/api/server.js";
import { testLogger } from "../../helpers/logs.js";
import type { JsonValue } from "../../../src/core/types.js";
import { captureLogger, httpJson } from "../../helpers/cloud.js";
import { SseReader, StalledReader } from "../../helpers/sse.js";
import { until } from "../../helpers/until.js";

const TOKEN = "s3cret-token-0123456789";

/** A host with one device `boiler` (points `setpoint`, `temperature`) and scripted answers. */
class TestHost implements ApiHost {
  readonly commands: Array<{ device: string; point: string; value: JsonValue }> = [];
  reply: CommandReply = { status: "applied", outcome: { status: "applied", value: 1 } };
  ready: Readiness = {
    ready: true,
    reasons: [],
    config: { file: "gateway.yaml", devices: 1 },
    store: "none",
    sources: { plc: "online" },
  };
  reloadReply: ReloadReply = {
    status: "applied",
    plan: { added: [], changed: ["boiler"], removed: [], reconnected: false },
  };
  private readonly listeners = new Set<(e: ApiEvent) => void>();

  devices() {
    return [
      {
        name: "boiler",
        productKey: "pk",
        source: "plc",
        online: true,
        connection: "online" as const,
        points: 2,
      },
    ];
  }
  device(name: string): DeviceDetail | undefined {
    const [summary] = this.devices();
    if (name !== "boiler" || !summary) return undefined;
    return {
      ...summary,
      file: "mappings/boiler.yaml",
      definitions: [
        { name: "setpoint", where: "40010 (holding 9), int16 AB", writable: true, onChange: true },
      ],
    };
  }
  rawReply: RawReply = { status: "ok", raw: { words: [0x1234] } };
  async raw(device: string, point: string): Promise<RawReply> {
    if (device !== "boiler") return { status: "not-found", reason: `no device ${device}` };
    if (point !== "setpoint")
      return { status: "not-found", reason: `boiler has no point ${point}` };
    return this.rawReply;
  }
  historyAsked: number[] = [];
  history(device: string, _point: string, max: number): ReturnType<ApiHost["history"]> {
    this.historyAsked.push(max);
    if (device !== "boiler") return { status: "not-found", reason: `no device ${device}` };
    return { status: "ok", values: [{ ts: 1, value: 20 }] };
  }
  freshAsked: boolean[] = [];
  async cloud(device: string, fresh: boolean): ReturnType<ApiHost["cloud"]> {
    this.freshAsked.push(fresh);
    if (device !== "boiler") return { status: "not-found", reason: `no device ${device}` };
    return { status: "unavailable", reason: "the config has no cloud section" };
  }
  lastReloadRecord: ReloadRecord | undefined;
  lastReload() {
    return this.lastReloadRecord;
  }
  temperature = 21.5;
  revision = 1;
  shadowViews = 0;
  shadowRevision(name: string) {
    return name === "boiler" ? String(this.revision) : undefined;
  }
  private readonly shadowWatchers = new Set<(deviceName: string) => void>();
  watchShadows(listener: (deviceName: string) => void) {
    this.shadowWatchers.add(listener);
    return () => void this.shadowWatchers.delete(listener);
  }
  /** A poll: the boiler's shadow moves to a new revision and the watchers hear of it. */
  revise(): void {
    this.revision++;
    for (const w of this.shadowWatchers) w("boiler");
  }
  shadow(name: string) {
    if (name !== "boiler") return undefined;
    this.shadowViews++;
    return {
      device: "boiler",
      productKey: "pk",
      reported: { temperature: this.temperature },
      desired: {},
      points: { temperature: { quality: "good" as const, timestamp: 1 } },
    };
  }
  async command(device: string, point: string, value: JsonValue): Promise<CommandReply> {
    if (device !== "boiler") return { status: "not-found", reason: `no device ${device}` };
    if (point !== "setpoint" && point !== "temperature")
      return { status: "not-found", reason: `boiler has no point ${point}` };
    this.commands.push({ device, point, value });
    return this.reply;
  }
  subscribe(listener: (e: ApiEvent) => void) {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
  emit(e: ApiEvent): void {
    for (const l of this.listeners) l(e);
  }
  get subscribers(): number {
    return this.listeners.size;
  }
  get watching(): number {
    return this.shadowWatchers.size;
  }
  readiness() {
    return this.ready;
  }
  async reload() {
    return this.reloadReply;
  }
  async metrics() {
    return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "sg_up 1\n" };
  }
}

const running: ApiServer[] = [];
afterEach(async () => {
  for (const api of running.splice(0)) await api.stop();
});

async function serve(
  opts: { token?: string; sseBufferBytes?: number; sseHeartbeatMs?: number } = {},
) {
  const host = new TestHost();
  const { logger, records } = captureLogger();
  const api = new ApiServer({ listen: "127.0.0.1:0", ...opts }, host, logger);
  await api.start();
  running.push(api);
  const port = api.address?.port;
  if (port === undefined) throw new Error("not bound");
  return { host, api, records, port, url: `http://127.0.0.1:${port}` };
}

describe("local API routes", () => {
  it("serves health, devices, a shadow and metrics; unknown routes are 404 in the error body", async () => {
    const { url } = await serve();
    expect(await httpJson(`${url}/healthz`)).toMatchObject({
      status: 200,
      body: { status: "alive" },
    });
    expect((await httpJson(`${url}/api/v1/devices`)).body.devices[0]).toMatchObject({
      name: "boiler",
      online: true,
    });
    expect((await httpJson(`${url}/api/v1/devices/boiler/shadow`)).body).toEqual({
      device: "boiler",
      productKey: "pk",
      state: { reported: { temperature: 21.5 }, desired: {} },
      metadata: { reported: { temperature: { quality: "good", timestamp: 1 } } },
    });
    expect(await httpJson(`${url}/api/v1/devices/nope/shadow`)).toMatchObject({
      status: 404,
      body: { error: { code: "SG_API_NOT_FOUND", message: "no device nope" } },
    });
    const metrics = await fetch(`${url}/metrics`);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain; version=0.0.4/);
    expect(await metrics.text()).toBe("sg_up 1\n");
    expect(await httpJson(`${url}/nothing`)).toMatchObject({
      status: 404,
      body: { error: { code: "SG_API_NOT_FOUND", message: "no route GET /nothing" } },
    });
  });

  it("serves a device's point definitions, raw words, history, cloud shadow and the last reload", async () => {
    const { url, host } = await serve();
    const get = (p: string) => httpJson(`${url}${p}`);
    expect((await get("/api/v1/devices/boiler")).body.definitions[0]).toMatchObject({
      name: "setpoint",
      where: "40010 (holding 9), int16 AB",
    });
    expect((await get("/api/v1/devices/nope")).status).toBe(404);
    expect((await get("/api/v1/devices/boiler/points/setpoint/raw")).body).toEqual({
      words: [0x1234],
    });
    expect((await get("/api/v1/devices/boiler/points/nope/raw")).body.error.code).toBe(
      "SG_API_NOT_FOUND",
    );
    host.rawReply = { status: "no-raw", reason: "setpoint is a coil: one bit" };
    expect(await get("/api/v1/devices/boiler/points/setpoint/raw")).toMatchObject({
      status: 422,
      body: { error: { code: "SG_API_NO_RAW", message: "setpoint is a coil: one bit" } },
    });
    host.rawReply = { status: "failed", reason: "boiler setpoint: timeout" };
    expect(await get("/api/v1/devices/boiler/points/setpoint/raw")).toMatchObject({
      status: 502,
      body: { error: { code: "SG_API_DEVICE_FAILED", message: "boiler setpoint: timeout" } },
    });
    expect((await get("/api/v1/devices/boiler/points/setpoint/history?max=5")).body).toEqual({
      device: "boiler",
      point: "setpoint",
      values: [{ ts: 1, value: 20 }],
    });
    await get("/api/v1/devices/boiler/points/setpoint/history");
    for (const bad of ["0", "1001", "2.5", "x"]) {
      const r = await get(`/api/v1/devices/boiler/points/setpoint/history?max=${bad}`);
      expect(r.status, bad).toBe(400);
    }
    expect(host.historyAsked).toEqual([5, 120]);
    expect(await get("/api/v1/devices/boiler/cloud?fresh=1")).toMatchObject({
      status: 503,
      body: { error: { code: "SG_API_UNAVAILABLE", message: "the config has no cloud section" } },
    });
    expect((await get("/api/v1/devices/nope/cloud")).status).toBe(404);
    expect(host.freshAsked).toEqual([true, false]);
    expect((await get("/api/v1/reload")).body).toEqual({ last: null });
    host.lastReloadRecord = {
      at: 5,
      trigger: "api",
      reply: { status: "refused", problems: ["m.yaml:3:7 points.x: bad"] },
    };
    expect((await get("/api/v1/reload")).body.last).toEqual(host.lastReloadRecord);
  });

  it("serves a shadow made once per revision to every reader, and anew when it changes", async () => {
    const { url, host } = await serve();
    const read = async () => (await httpJson(`${url}/api/v1/devices/boiler/shadow`)).body;
    expect((await read()).state.reported).toEqual({ temperature: 21.5 });
    host.temperature = 30; // not yet a new revision: the view made before is served
    expect((await read()).state.reported).toEqual({ temperature: 21.5 });
    expect(host.shadowViews).toBe(1);
    host.revision = 2;
    expect((await read()).state.reported).toEqual({ temperature: 30 });
    expect(host.shadowViews).toBe(2);
  });

  it("makes a read device's next shadow when it moves, and an unread one's only when asked", async () => {
    const { url, host, api } = await serve();
    const read = async () => (await httpJson(`${url}/api/v1/devices/boiler/shadow`)).body;
    const settled = () => new Promise<void>((resolve) => setImmediate(resolve));
    expect((await read()).state.reported).toEqual({ temperature: 21.5 });
    expect(host.shadowViews).toBe(1);
    // The poll moves the shadow: the next one is made before any reader asks...
    host.temperature = 30;
    host.revise();
    await until("the next shadow made", () => host.shadowViews === 2);
    // ...and every reader is served that one.
    for (let i = 0; i < 3; i++) expect((await read()).state.reported).toEqual({ temperature: 30 });
    expect(host.shadowViews).toBe(2);
    // Nobody reads the next one: it is made (the last was read), but the one after is not.
    host.revise();
    await until("made once more", () => host.shadowViews === 3);
    host.revise();
    await settled();
    await settled();
    expect(host.shadowViews).toBe(3);
    // Asked for, it is made then, and the chain starts again.
    host.temperature = 40;
    expect((await read()).state.reported).toEqual({ temperature: 40 });
    expect(host.shadowViews).toBe(4);
    host.revise();
    await until("made after the read", () => host.shadowViews === 5);
    // A stopped API makes nothing more, and stops listening.
    await api.stop();
    host.revise();
    await settled();
    expect(host.shadowViews).toBe(5);
    expect(host.watching).toBe(0);
  });

  it("refuses bad command input with 400, 404 and 413 and passes nothing to the host", async () => {
    const { url, host } = await serve();
    const put = (path: string, body: unknown) => httpJson(`${url}${path}`, { method: "PUT", body });
    const cases: Array<[string, unknown, number, string, RegExp]> = [
      ["/api/v1/devices/boiler/points/setpoint", "{not json", 400, "SG_API_BAD_REQUEST", /JSON/],
      ["/api/v1/devices/boiler/points/setpoint", {}, 400, "SG_API_BAD_REQUEST", /"value"/],
      ["/api/v1/devices/boiler/points/setpoint", [1], 400, "SG_API_BAD_REQUEST", /"value"/],
      ["/api/v1/devices/boiler/points/setpoint", "", 400, "SG_API_BAD_REQUEST", /"value"/],
      [
        "/api/v1/devices/nope/points/setpoint",
        { value: 1 },
        404,
        "SG_API_NOT_FOUND",
        /no device nope/,
      ],
      [
        "/api/v1/devices/boiler/points/nope",
        { value: 1 },
        404,
        "SG_API_NOT_FOUND",
        /no point nope/,
      ],
      [
        "/api/v1/devices/boiler/points/setpoint",
        { value: "x".repeat(BODY_LIMIT_BYTES) },
        413,
        "SG_API_TOO_LARGE",
        /larger than 65536 bytes/,
      ],
    ];
    for (const [path, body, status, code, message] of cases) {
      const r = await put(path, body);
      expect(r.status, `${path} ${String(body).slice(0, 20)}`).toBe(status);
      expect(r.body.error.code).toBe(code);
      expect(r.body.error.message).toMatch(message);
    }
    // Fastify reads text/plain as a string, which is not {"value": ...}; other types it does not parse.
    for (const [type, status] of [
      ["text/plain", 400],
      ["application/xml", 415],
    ] as const) {
      const r = await fetch(`${url}/api/v1/devices/boiler/points/setpoint`, {
        method: "PUT",
        headers: { "content-type": type },
        body: "7",
      });
      expect(r.status, type).toBe(status);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe(
        "SG_API_BAD_REQUEST",
      );
    }
    expect(host.commands).toEqual([]);
  });

  it("answers a command's outcome: 200 applied, 422 refused by the guard, 502 failed, 503 unavailable", async () => {
    const { url, host } = await serve();
    const put = () =>
      httpJson(`${url}/api/v1/devices/boiler/points/setpoint`, {
        method: "PUT",
        body: { value: 7 },
      });
    host.reply = { status: "applied", outcome: { status: "applied", value: 7, source: "local" } };
    expect(await put()).toMatchObject({
      status: 200,
      body: { device: "boiler", point: "setpoint", outcome: { status: "applied", value: 7 } },
    });
    const reason = "121 is above the maximum 120 of setpoint";
    host.reply = { status: "rejected", reason, outcome: { status: "rejected", reason } };
    expect(await put()).toMatchObject({
      status: 422,
      body: { error: { code: "SG_COMMAND_REJECTED", message: reason }, outcome: { reason } },
    });
    host.reply = { status: "failed", reason: "timeout", outcome: { status: "failed" } };
    expect(await put()).toMatchObject({
      status: 502,
      body: { error: { code: "SG_COMMAND_FAILED", message: "timeout" } },
    });
    host.reply = { status: "unavailable", reason: "the command journal is not open" };
    expect(await put()).toMatchObject({
      status: 503,
      body: { error: { code: "SG_API_UNAVAILABLE", message: "the command journal is not open" } },
    });
    expect(host.commands).toHaveLength(4);
  });

  it("readyz is 503 with the reasons when not ready; reload says applied or every problem", async () => {
    const { url, host } = await serve();
    expect((await httpJson(`${url}/readyz`)).status).toBe(200);
    host.ready = { ...host.ready, ready: false, reasons: ["source plc is backoff"] };
    expect(await httpJson(`${url}/readyz`)).toMatchObject({
      status: 503,
      body: {
        ready: false,
        reasons: ["source plc is backoff"],
        error: { code: "SG_API_NOT_READY", message: "source plc is backoff" },
      },
    });
    expect(await httpJson(`${url}/api/v1/reload`, { method: "POST" })).toMatchObject({
      status: 200,
      body: { status: "applied" },
    });
    const problems = ["gateway.yaml:3:9 sources.plc.port: expected a number", "m.yaml:1:1 x: bad"];
    host.reloadReply = { status: "refused", problems };
    expect(await httpJson(`${url}/api/v1/reload`, { method: "POST" })).toMatchObject({
      status: 422,
      body: { error: { code: "SG_RELOAD_REFUSED" }, problems },
    });
  });

  it("with a token: every route but /healthz needs it, compared whole; refusals are logged once without it", async () => {
    const { url, records } = await serve({ token: TOKEN });
    expect((await httpJson(`${url}/healthz`)).status).toBe(200);
    const missing = await httpJson(`${url}/api/v1/devices`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe('Bearer realm="shadowgate"');
    expect(missing.body.error.code).toBe("SG_API_UNAUTHORIZED");
    for (const wrong of [`${TOKEN}x`, TOKEN.slice(0, -1), "x"]) {
      const r = await httpJson(`${url}/metrics`, { headers: { authorization: `Bearer ${wrong}` } });
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toMatch(/error="invalid_token"/);
    }
    const bearer = { authorization: `Bearer ${TOKEN}` };
    expect((await httpJson(`${url}/api/v1/devices`, { headers: bearer })).status).toBe(200);
    expect((await httpJson(`${url}/readyz`, { headers: bearer })).status).toBe(200);
    // Even a route that does not exist says 401 first: nothing about the API leaks unasked.
    expect((await httpJson(`${url}/nothing`)).status).toBe(401);

    const refused = records.filter((r) => r.msg === "API request refused");
    expect(refused.map((r) => [r.method, r.route, r.status])).toEqual([
      ["GET", "/api/v1/devices", 401],
      ["GET", "/metrics", 401],
      ["GET", "/metrics", 401],
      ["GET", "/metrics", 401],
      ["GET", "/nothing", 401],
    ]);
    expect(JSON.stringify(records)).not.toContain(TOKEN.slice(0, 8));
  });

  it("streams events with heartbeats; drops a reader that stalls while a fast one keeps receiving", async () => {
    const { url, host, api, port, records } = await serve({
      sseBufferBytes: 64 * 1024,
      sseHeartbeatMs: 20,
    });
    const fast = await SseReader.open(`${url}/api/v1/events`);
    const slow = await StalledReader.open(port, "/api/v1/events");
    await until("both subscribed", () => api.status().eventClients === 2);
    await fast.until(() => fast.comments.includes("heartbeat"));

    // Big events fill the stalled socket's kernel buffers, then its bounded buffer here.
    const filler = "x".repeat(32 * 1024);
    let sent = 0;
    while (api.status().eventClientsDropped === 0) {
      host.emit({ type: "point", device: "boiler", reported: { filler, n: sent++ } });
      // Lets the fast reader take what was written, as a live client would.
      await tick();
      if (sent > 5000) throw new Error("the stalled reader was never dropped");
    }
    host.emit({ type: "link", online: false, reason: "marker" });
    const marker = await fast.next((e) => e.event === "link");
    expect(marker.data).toEqual({ type: "link", online: false, reason: "marker" });
    await fast.until(() => fast.events.length === sent + 1);
    expect(fast.events.slice(0, sent).map((e) => e.data.reported.n)).toEqual(
      Array.from({ length: sent }, (_, i) => i),
    );
    // The stalled reader got a prefix of the stream, then the server closed it.
    const received = await slow.drain();
    expect(received).not.toContain("marker");
    expect(api.status()).toMatchObject({ eventClients: 1, eventClientsDropped: 1 });
    expect(records.filter((r) => r.code === "SG_API_SLOW_CLIENT")).toHaveLength(1);

    // Stopping the API ends the stream and lets go of the host.
    await api.stop();
    await fast.ended;
    expect(host.subscribers).toBe(0);
  });
});

it("a listen address in use fails start (the service logs it and runs without the API)", async () => {
  const { port } = await serve();
  const second = new ApiServer({ listen: `127.0.0.1:${port}` }, new TestHost(), testLogger());
  await expect(second.start()).rejects.toThrow(/EADDRINUSE/);
});
