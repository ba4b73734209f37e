import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../../../src/core/types.js";
import type { DevicePlan } from "../../../../src/mapping/types.js";
import { awsCloudSchema } from "../../../../src/north/dialects/aws/config.js";
import {
  decodeShadowMessage,
  encodeClearDesired,
  encodeGet,
  encodeReport,
  leafTimestamps,
  splitReport,
} from "../../../../src/north/dialects/aws/codec.js";
import { awsDialect, classifyAws } from "../../../../src/north/dialects/aws/index.js";
import { parseShadowTopic, replyFilters } from "../../../../src/north/dialects/aws/topics.js";
import { cloudSchema } from "../../../../src/north/dialects/index.js";

const buf = (v: unknown): Buffer => Buffer.from(typeof v === "string" ? v : JSON.stringify(v));

describe("AWS topics", () => {
  it("names the classic and a named shadow's requests and three reply filters", () => {
    expect(awsDialect.topics("plc-01", "plc-01")).toEqual({
      subscriptions: [
        "$aws/things/plc-01/shadow/+/accepted",
        "$aws/things/plc-01/shadow/+/rejected",
        "$aws/things/plc-01/shadow/update/delta",
      ],
      requests: {
        get: "$aws/things/plc-01/shadow/get",
        report: "$aws/things/plc-01/shadow/update",
        clear: "$aws/things/plc-01/shadow/update",
      },
    });
    expect(awsDialect.topics("plc-01", "plc-01.boiler").requests.get).toBe(
      "$aws/things/plc-01/shadow/name/boiler/get",
    );
    expect(replyFilters("t", "s")[2]).toBe("$aws/things/t/shadow/name/s/update/delta");
  });

  it("parses reply topics and refuses what is not one", () => {
    expect(parseShadowTopic("$aws/things/t:1/shadow/name/s_2/update/delta")).toEqual({
      thingName: "t:1",
      shadowName: "s_2",
      operation: "update",
      stub: "delta",
    });
    expect(parseShadowTopic("$aws/things/t/shadow/get")).toEqual({
      thingName: "t",
      operation: "get",
    });
    for (const bad of [
      "$aws/things/t/shadow/get/delta",
      "$aws/things/t.x/shadow/get",
      "$aws/things/t/shadow/put/accepted",
      "/shadow/get/a/b",
      `$aws/things/${"x".repeat(129)}/shadow/get`,
    ])
      expect(parseShadowTopic(bad)).toBeUndefined();
  });
});

describe("AWS encoders", () => {
  it("reports without a version and clears points with JSON null, naming the version", () => {
    expect(encodeReport({ a: 1, b: { c: true } }, "t-1")).toBe(
      '{"state":{"reported":{"a":1,"b":{"c":true}}},"clientToken":"t-1"}',
    );
    expect(encodeClearDesired(["a", "b.c", "b.d"], 7, "t-2")).toBe(
      '{"state":{"desired":{"a":null,"b":{"c":null,"d":null}}},"version":7,"clientToken":"t-2"}',
    );
    expect(encodeGet("t-3")).toBe('{"clientToken":"t-3"}');
  });

  it.each([
    ["a clientToken over 64 bytes", () => encodeGet("x".repeat(65)), /65 bytes; at most 64/],
    ["an empty report", () => encodeReport({}, "t"), /empty/],
    ["NaN", () => encodeReport({ a: Number.NaN }, "t"), /JSON cannot carry/],
    ["null in an array", () => encodeReport({ a: [1, null] }, "t"), /may not hold/],
    [
      "nesting over six levels",
      () => encodeReport({ a: { b: { c: { d: { e: { f: { g: 1 } } } } } } }, "t"),
      /deeper than 6/,
    ],
    ["a clear of nothing", () => encodeClearDesired([], 1, "t"), /no desired points/],
  ])("refuses %s", (_what, fn, message) => {
    expect(fn).toThrow(message);
  });

  it("keeps a __proto__ point an own key when clearing it", () => {
    const body = JSON.parse(encodeClearDesired(["__proto__.x"], 1, "t")) as {
      state: { desired: JsonObject };
    };
    expect(Object.keys(body.state.desired)).toEqual(["__proto__"]);
  });

  it("splits a report over 8 KB into parts that each fit, keeping every leaf once", () => {
    const reported: JsonObject = {};
    for (let i = 0; i < 300; i++) reported[`point_with_a_long_name_${i}`] = i * 1.5;
    reported["big"] = Object.fromEntries(
      Array.from({ length: 400 }, (_, i) => [`leaf_${i}`, "v".repeat(20)]),
    );
    const parts = splitReport(reported);
    expect(parts.length).toBeGreaterThan(2);
    for (const p of parts)
      expect(Buffer.byteLength(JSON.stringify({ reported: p }))).toBeLessThanOrEqual(8192);
    const merged: JsonObject = {};
    for (const p of parts) {
      for (const [k, v] of Object.entries(p)) {
        merged[k] =
          typeof v === "object" && v !== null && !Array.isArray(v)
            ? { ...(merged[k] as JsonObject | undefined), ...v }
            : v;
      }
    }
    expect(merged).toEqual(reported);
    expect(splitReport({ a: 1 })).toEqual([{ a: 1 }]);
  });
});

describe("AWS decoder", () => {
  const T = "$aws/things/plc-01/shadow";

  it("reads a get reply's desired as the commands, with per-leaf timestamps", () => {
    const r = decodeShadowMessage(
      `${T}/get/accepted`,
      buf({
        state: {
          desired: { sp: 80, cfg: { a: 1, b: 2 } },
          reported: { sp: 60, cfg: { a: 1, b: 3 } },
          delta: { sp: 80, cfg: { b: 2 } },
        },
        metadata: {
          desired: { sp: { timestamp: 100 }, cfg: { a: { timestamp: 90 }, b: { timestamp: 120 } } },
        },
        version: 12,
        timestamp: 130,
        clientToken: "c-1",
      }),
    );
    expect(r).toEqual({
      ok: true,
      productKey: "plc-01",
      deviceName: "plc-01",
      message: {
        kind: "reply",
        status: "success",
        version: 12,
        clientToken: "c-1",
        shadow: {
          desired: { sp: 80, cfg: { a: 1, b: 2 } },
          desiredTimestamps: { sp: 100, "cfg.a": 90, "cfg.b": 120, cfg: 120 },
          reported: { sp: 60, cfg: { a: 1, b: 3 } },
        },
      },
    });
  });

  it("reads deltas, rejections, update replies and a deleted shadow", () => {
    expect(
      decodeShadowMessage(
        "$aws/things/plc-01/shadow/name/boiler/update/delta",
        buf({ state: { sp: 1 }, metadata: { sp: { timestamp: 5 } }, version: 3, timestamp: 5 }),
      ),
    ).toMatchObject({
      ok: true,
      deviceName: "plc-01.boiler",
      message: { kind: "control", version: 3, shadow: { desired: { sp: 1 } } },
    });
    expect(
      decodeShadowMessage(
        `${T}/update/rejected`,
        buf({ code: 409, message: "Version conflict", clientToken: "x" }),
      ),
    ).toMatchObject({
      ok: true,
      message: { status: "error", code: 409, message: "Version conflict", clientToken: "x" },
    });
    expect(
      decodeShadowMessage(`${T}/update/accepted`, buf({ state: {}, version: 4, timestamp: 1 })),
    ).toMatchObject({ ok: true, message: { status: "success", version: 4 } });
    expect(
      decodeShadowMessage(`${T}/delete/accepted`, buf({ version: 4, timestamp: 1 })),
    ).toMatchObject({ ok: true, message: { kind: "gone" } });
  });

  it.each([
    ["a documents message", `${T}/update/documents`, {}, /not a shadow reply/],
    ["a request topic", `${T}/update`, {}, /not a shadow reply/],
    ["not JSON", `${T}/get/accepted`, "{", /not JSON/],
    ["a version that is a string", `${T}/get/accepted`, { version: "1" }, /^version:/],
    ["a negative version", `${T}/update/delta`, { state: {}, version: -1 }, /^version:/],
    ["a delta without state", `${T}/update/delta`, { version: 1 }, /^state:/],
    ["a rejection without a code", `${T}/get/rejected`, { message: "x" }, /^code:/],
    ["a __proto__ key", `${T}/update/delta`, '{"state":{"__proto__":{}},"version":1}', /__proto__/],
  ])("refuses %s", (_what, topic, payload, reason) => {
    const r = decodeShadowMessage(topic, buf(payload));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it("reads array metadata as one leaf, its newest element", () => {
    expect(leafTimestamps({ arr: [{ timestamp: 3 }, { timestamp: 7 }] })).toEqual({ arr: 7 });
  });
});

describe("AWS replies and config", () => {
  it("classifies error codes per request kind", () => {
    expect(classifyAws(409, "clear")).toBe("conflict");
    expect(classifyAws(404, "get")).toBe("success");
    expect(classifyAws(404, "report")).toBe("permanent");
    expect(classifyAws(413, "report")).toBe("too-large");
    expect(classifyAws(413, "clear")).toBe("permanent");
    for (const code of [400, 401, 403, 415]) expect(classifyAws(code, "report")).toBe("permanent");
    for (const code of [429, 500, 503]) expect(classifyAws(code, "report")).toBe("retry");
  });

  it("keeps versions by equality and caps requests in flight at 10", () => {
    expect(awsDialect.nextVersion(7)).toBe(7);
    expect(awsDialect.versionRule).toBe("equal");
    expect(awsDialect.limits.maxInFlight).toBe(10);
  });

  const plan = (over: Partial<DevicePlan>): DevicePlan => ({
    file: "m.yaml",
    addressing: "aws",
    productKey: "plc-01",
    deviceName: "plc-01",
    sourceId: "plc1",
    pollIntervalMs: 1000,
    kind: "modbus",
    points: [],
    ...over,
  });
  const point = (name: string, writable = false) => ({
    name,
    path: name.split("."),
    writable,
    onChange: true,
  });

  it("connects with the thing's certificate, ALPN on 443, and checks devices", () => {
    const cloud = awsCloudSchema.parse({
      dialect: "aws",
      url: "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443",
      clientId: "edge-01",
    });
    expect(cloudSchema.parse({ ...cloud }).dialect).toBe("aws");
    expect(awsDialect.connection(cloud, 0)).toEqual({
      url: "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443",
      clientId: "edge-01",
      alpn: ["x-amzn-mqtt-ca"],
    });
    const deep = plan({ points: [point("a.b.c.d.e.f.g")] });
    const alibaba = plan({ addressing: undefined });
    const big = plan({
      deviceName: "plc-02",
      points: Array.from({ length: 120 }, (_, i) => point(`register_${i}_value`, true)),
    });
    const problems = awsDialect.check(cloud, { devices: [deep, alibaba, big], configDir: "." });
    expect(problems).toEqual([
      { path: ["tls"], message: expect.stringMatching(/mutual TLS/) },
      {
        device: 0,
        path: ["points", "a.b.c.d.e.f.g"],
        message: expect.stringMatching(/nests 7 deep.*at most 6/),
      },
      { device: 1, path: ["device"], message: expect.stringMatching(/needs thingName/) },
      {
        device: 2,
        path: ["points"],
        warning: true,
        message: expect.stringMatching(/plc-02 could reach about \d+ bytes.*8192/),
      },
    ]);
  });
});
