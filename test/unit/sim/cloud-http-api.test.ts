import { request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { testLogger } from "../../helpers/logs.js";
import { CloudHttpApi, MAX_BODY_BYTES } from "../../../src/sim/cloud/http-api.js";
import { ShadowService, type ShadowTransport } from "../../../src/sim/cloud/shadow-service.js";
import { ShadowStore } from "../../../src/sim/cloud/store.js";
import { httpJson } from "../../helpers/cloud.js";

class FakeTransport implements ShadowTransport {
  readonly published: Array<{ topic: string; payload: string }> = [];
  online = true;
  async start(): Promise<void> {}
  async publish(topic: string, payload: string): Promise<void> {
    this.published.push({ topic, payload });
  }
  isOnline(): boolean {
    return this.online;
  }
  async stop(): Promise<void> {}
}

let store: ShadowStore;
let transport: FakeTransport;
let api: CloudHttpApi;
let base: string;

beforeEach(async () => {
  store = new ShadowStore();
  transport = new FakeTransport();
  const service = new ShadowService({
    store,
    transport,
    logger: testLogger(),
    now: () => 1_700_000_000_000,
  });
  api = new CloudHttpApi({ service, logger: testLogger() });
  await api.start({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${api.port}`;
});
afterEach(async () => {
  await api.stop();
  store.close();
});

const post = (path: string, body: unknown) => httpJson(`${base}${path}`, { method: "POST", body });
const desired = (d: unknown, version?: number): unknown => ({
  method: "update",
  state: { desired: d },
  ...(version === undefined ? {} : { version }),
});

describe("HTTP API: UpdateDeviceShadow and GetDeviceShadow", () => {
  it("GET /healthz", async () => {
    const r = await httpJson(`${base}/healthz`);
    expect(r).toMatchObject({ status: 200, body: { status: "ok", shadows: 0 } });
  });

  it("sets desired and returns the document as a JSON string (and as an object with format=json)", async () => {
    const set = await post("/shadows/pk/dn", { ShadowMessage: desired({ sp: 21 }, 5) });
    expect(set.status).toBe(200);
    expect(set.body).toEqual({ RequestId: expect.any(String), Success: true, version: 5 });
    expect(set.headers.get("content-type")).toMatch(/^application\/json/);

    const got = await httpJson(`${base}/shadows/pk/dn`);
    expect(got.body).toEqual({
      RequestId: expect.any(String),
      Success: true,
      ShadowMessage: expect.any(String),
    });
    const document = {
      state: { desired: { sp: 21 } },
      metadata: { desired: { sp: { timestamp: 1_700_000_000 } } },
      timestamp: 1_700_000_000,
      version: 5,
    };
    expect(JSON.parse(got.body.ShadowMessage)).toEqual(document);
    expect((await httpJson(`${base}/shadows/pk/dn?format=json`)).body).toEqual(document);
  });

  it("takes ShadowMessage as a JSON string, as Alibaba's API does", async () => {
    const r = await post("/shadows/pk/dn", {
      ShadowMessage: JSON.stringify(desired({ sp: 1 }, 2)),
    });
    expect(r.body).toMatchObject({ Success: true, version: 2 });
  });

  it("without a version (or with 0) stores current + 1", async () => {
    expect(
      (await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 1 }, 7) })).body.version,
    ).toBe(7);
    expect((await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 2 }) })).body.version).toBe(
      8,
    );
    expect(
      (await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 3 }, 0) })).body.version,
    ).toBe(9);
  });

  it("answers a stale version with HTTP 409 and Code 409", async () => {
    await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 1 }, 3) });
    const r = await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 2 }, 3) });
    expect(r.status).toBe(409);
    expect(r.body).toEqual({
      RequestId: expect.any(String),
      Success: false,
      Code: "409",
      ErrorMessage: expect.stringContaining("not greater than the current version 3"),
    });
  });

  it("DeltaUpdate false (the default) replaces desired, true merges", async () => {
    await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 1, b: 2 }) });
    await post("/shadows/pk/dn", { ShadowMessage: desired({ c: 3 }), DeltaUpdate: true });
    expect(store.get("pk", "dn")?.state.desired).toEqual({ a: 1, b: 2, c: 3 });
    await post("/shadows/pk/dn", { ShadowMessage: desired({ d: 4 }) });
    expect(store.get("pk", "dn")?.state.desired).toEqual({ d: 4 });
    await post("/shadows/pk/dn", { ShadowMessage: desired("null"), DeltaUpdate: true });
    expect(store.get("pk", "dn")?.state).toEqual({});
  });

  it("pushes control to an online device, not to an offline one", async () => {
    await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 1 }) });
    transport.online = false;
    await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 2 }) });
    expect(transport.published.map((p) => [p.topic, JSON.parse(p.payload).version])).toEqual([
      ["/shadow/get/pk/dn", 1],
    ]);
  });

  it.each([
    ["a body that is not JSON", "{nope", 400, "400"],
    ["a body that is not an object", "[1]", 400, "400"],
    ["no ShadowMessage", { DeltaUpdate: true }, 400, "InvalidParameter"],
    [
      "DeltaUpdate not a boolean",
      { ShadowMessage: desired({ a: 1 }), DeltaUpdate: "yes" },
      400,
      "InvalidParameter",
    ],
    ["ShadowMessage not JSON", { ShadowMessage: "{nope" }, 400, "400"],
    ["method missing", { ShadowMessage: { state: { desired: { a: 1 } } } }, 400, "401"],
    ["method get", { ShadowMessage: { method: "get" } }, 400, "406"],
    ["state missing", { ShadowMessage: { method: "update" } }, 400, "402"],
    [
      "version not a number",
      { ShadowMessage: { ...(desired({ a: 1 }) as object), version: "2" } },
      400,
      "403",
    ],
    ["desired missing", { ShadowMessage: { method: "update", state: { x: 1 } } }, 400, "404"],
    ["desired empty", { ShadowMessage: desired({}) }, 400, "405"],
    [
      "reported through the API",
      { ShadowMessage: { method: "update", state: { reported: { a: 1 } } } },
      400,
      "400",
    ],
  ])("refuses %s", async (_name, body, status, code) => {
    const r = await post("/shadows/pk/dn", body);
    expect(r.status).toBe(status);
    expect(r.body).toMatchObject({ Success: false, Code: code, ErrorMessage: expect.any(String) });
    expect(store.get("pk", "dn")).toBeUndefined();
  });

  it("answers unknown routes, unknown shadows and wrong methods with clear JSON errors", async () => {
    expect(await httpJson(`${base}/nope`)).toMatchObject({
      status: 404,
      body: { Code: "NotFound" },
    });
    expect(await httpJson(`${base}/shadows/pk/dn`)).toMatchObject({
      status: 404,
      body: { Success: false, Code: "NotFound", ErrorMessage: "no shadow for pk/dn" },
    });
    const put = await httpJson(`${base}/shadows/pk/dn`, { method: "PUT", body: {} });
    expect(put).toMatchObject({ status: 405, body: { Code: "MethodNotAllowed" } });
    expect(put.headers.get("allow")).toBe("GET, POST");
    await post("/shadows/pk/dn", { ShadowMessage: desired({ a: 1 }) });
    expect(await httpJson(`${base}/shadows/pk/dn?format=xml`)).toMatchObject({
      status: 400,
      body: { Code: "InvalidParameter" },
    });
  });

  it("refuses a productKey or deviceName that would be an MQTT wildcard", async () => {
    for (const path of [
      "/shadows/pk/%2B",
      "/shadows/%23/dn",
      "/shadows/pk/a%2Fb",
      "/shadows/pk/%E0%A4%A",
    ]) {
      const r = await post(path, { ShadowMessage: desired({ a: 1 }) });
      expect(r, path).toMatchObject({ status: 400, body: { Code: "InvalidParameter" } });
    }
  });

  it(`refuses a body over ${MAX_BODY_BYTES} bytes with 413 and keeps serving`, async () => {
    const big = JSON.stringify({ ShadowMessage: desired({ blob: "x".repeat(MAX_BODY_BYTES) }) });
    const r = await httpJson(`${base}/shadows/pk/dn`, { method: "POST", body: big });
    expect(r).toMatchObject({ status: 413, body: { Success: false, Code: "PayloadTooLarge" } });
    expect(store.get("pk", "dn")).toBeUndefined();
    expect((await httpJson(`${base}/healthz`)).status).toBe(200);
  });

  it("cuts off a client that keeps streaming far past the limit", async () => {
    // A chunked upload with no end in sight: the server must not buffer it, and must not hang.
    const outcome = await new Promise<string>((resolve) => {
      const req = request(`${base}/shadows/pk/dn`, { method: "POST" }, (res) => {
        res.resume();
        resolve(`status ${res.statusCode}`);
      });
      req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = (): void => {
        while (req.write(chunk));
        if (!req.destroyed) req.once("drain", pump);
      };
      pump();
    });
    expect(["ECONNRESET", "EPIPE", "status 413"]).toContain(outcome);
    expect((await httpJson(`${base}/healthz`)).status).toBe(200);
  });
});
