import { describe, expect, it } from "vitest";
import { ErrorCodes, ShadowgateError } from "../../../../../src/core/errors.js";
import type { JsonObject } from "../../../../../src/core/types.js";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  decodeShadowMessage,
  encodeClearDesired,
  encodeDeleteReported,
  encodeGet,
  encodeUpdate,
  isConflict,
  isPermanentError,
  isSuccessCode,
  type DecodeResult,
} from "../../../../../src/north/dialects/alibaba/codec.js";

const TOPIC = "/shadow/get/a1Boiler/boiler-01";

const thrown = (fn: () => unknown): ShadowgateError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowgateError) return e;
    throw e;
  }
  throw new Error("did not throw");
};

const decode = (msg: unknown, topic = TOPIC): DecodeResult =>
  decodeShadowMessage(topic, Buffer.from(typeof msg === "string" ? msg : JSON.stringify(msg)));

const reason = (r: DecodeResult): string => {
  if (r.ok) throw new Error(`decoded: ${JSON.stringify(r)}`);
  return r.reason;
};

const message = (r: DecodeResult) => {
  if (!r.ok) throw new Error(`rejected: ${r.reason}`);
  return r.message;
};

describe("encoders", () => {
  it("encodeUpdate", () => {
    expect(
      encodeUpdate({ temperature: 21.5, running: true, mode: "eco" }, 7, "a1Boiler.boiler-01-1"),
    ).toBe(
      '{"method":"update","state":{"reported":{"temperature":21.5,"running":true,"mode":"eco"}},"version":7,"clientToken":"a1Boiler.boiler-01-1"}',
    );
  });

  it("encodeUpdate keeps nested objects and arrays as they are", () => {
    expect(encodeUpdate({ alarm: { overheat: false }, setpoints: [1, 2] }, 0, "t")).toBe(
      '{"method":"update","state":{"reported":{"alarm":{"overheat":false},"setpoints":[1,2]}},"version":0,"clientToken":"t"}',
    );
  });

  it('encodeClearDesired sends the string "null"', () => {
    expect(encodeClearDesired(12, "t-2")).toBe(
      '{"method":"update","state":{"desired":"null"},"version":12,"clientToken":"t-2"}',
    );
  });

  it("encodeGet", () => {
    expect(encodeGet("t-3")).toBe('{"method":"get","clientToken":"t-3"}');
  });

  it("encodeDeleteReported, some attributes and all", () => {
    expect(encodeDeleteReported(["color", "mode"], 4, "t-4")).toBe(
      '{"method":"delete","state":{"reported":{"color":"null","mode":"null"}},"version":4,"clientToken":"t-4"}',
    );
    expect(encodeDeleteReported("all", 5, "t-5")).toBe(
      '{"method":"delete","state":{"reported":"null"},"version":5,"clientToken":"t-5"}',
    );
  });

  const tooMany: JsonObject = Object.fromEntries(
    Array.from({ length: 129 }, (_, i) => [`p${i}`, i]),
  );
  const bad: Array<[string, () => unknown, RegExp]> = [
    ["version -1 (would wipe the shadow)", () => encodeUpdate({ a: 1 }, -1, "t"), /version -1/],
    ["a fractional version", () => encodeClearDesired(1.5, "t"), /version 1.5/],
    ["an unsafe version", () => encodeClearDesired(2 ** 53, "t"), /not a non-negative integer/],
    ["an empty clientToken", () => encodeGet(""), /clientToken is empty/],
    ["a clientToken over 128 bytes", () => encodeGet("é".repeat(65)), /130 bytes; at most 128/],
    ["an empty reported", () => encodeUpdate({}, 1, "t"), /reported is empty/],
    ["129 attributes", () => encodeUpdate(tooMany, 1, "t"), /129 attributes; .* at most 128/],
    ["NaN", () => encodeUpdate({ a: { b: NaN } }, 1, "t"), /reported.a.b is NaN/],
    [
      "Infinity in an array",
      () => encodeUpdate({ a: [1, Infinity] }, 1, "t"),
      /reported.a\[1\] is Infinity/,
    ],
    [
      "undefined",
      () => encodeUpdate({ a: undefined } as unknown as JsonObject, 1, "t"),
      /reported.a is a undefined/,
    ],
    ["no attributes to delete", () => encodeDeleteReported([], 1, "t"), /no attributes to delete/],
    ["an empty attribute name", () => encodeDeleteReported([""], 1, "t"), /must not be empty/],
  ];
  for (const [what, fn, msg] of bad) {
    it(`refuses ${what} with SG_SHADOW_ENCODE`, () => {
      const e = thrown(fn);
      expect(e.code).toBe(ErrorCodes.SHADOW_ENCODE);
      expect(e.message).toMatch(msg);
    });
  }

  it("accepts exactly 128 attributes and a 128-byte clientToken", () => {
    const max: JsonObject = Object.fromEntries(Array.from({ length: 128 }, (_, i) => [`p${i}`, i]));
    expect(() => encodeUpdate(max, 1, "x".repeat(128))).not.toThrow();
  });
});

describe("error codes", () => {
  it("200 and 407 count as success", () => {
    expect([200, 407, 400, 409, 500].map(isSuccessCode)).toEqual([true, true, false, false, false]);
  });
  it("400-408 except 407 are permanent; 409 and 500 are not", () => {
    const permanent = [399, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 500].filter(
      isPermanentError,
    );
    expect(permanent).toEqual([400, 401, 402, 403, 404, 405, 406, 408]);
  });
  it("409 is a conflict", () => {
    expect([408, 409, 410].map(isConflict)).toEqual([false, true, false]);
  });
});

describe("decodeShadowMessage: replies", () => {
  it("an update reply with the version in payload, as in the doc", () => {
    const r = decode({
      method: "reply",
      payload: { status: "success", version: 1 },
      timestamp: 1469564576,
      clientToken: "t-1",
    });
    expect(r).toEqual({
      ok: true,
      productKey: "a1Boiler",
      deviceName: "boiler-01",
      message: {
        kind: "reply",
        status: "success",
        version: 1,
        clientToken: "t-1",
        timestamp: 1469564576,
      },
    });
  });

  it("a get reply with the version at top level (Link SDK), state and metadata", () => {
    const m = message(
      decode({
        method: "reply",
        payload: {
          status: "success",
          state: { desired: { target: 60, mode: "null", light: null }, reported: { target: 55 } },
          metadata: {
            desired: { target: { timestamp: 1700000001 } },
            reported: { target: { timestamp: 1700000000 } },
          },
        },
        version: 9,
        timestamp: 1700000002,
      }),
    );
    expect(m).toEqual({
      kind: "reply",
      status: "success",
      version: 9,
      timestamp: 1700000002,
      state: { desired: { target: 60, mode: null, light: null }, reported: { target: 55 } },
      metadata: {
        desired: { target: { timestamp: 1700000001 } },
        reported: { target: { timestamp: 1700000000 } },
      },
    });
  });

  it("prefers the top-level version when both are present", () => {
    const m = message(
      decode({
        method: "reply",
        payload: { status: "success", version: 3 },
        version: 4,
        timestamp: 1,
      }),
    );
    expect(m.kind === "reply" && m.version).toBe(4);
  });

  it('reads a whole section cleared with "null" or null as absent', () => {
    for (const cleared of ["null", null]) {
      const m = message(
        decode({
          method: "reply",
          payload: {
            status: "success",
            state: { desired: cleared, reported: { a: 1 } },
            metadata: { desired: cleared, reported: { a: { timestamp: 5 } } },
          },
          version: 2,
          timestamp: 6,
        }),
      );
      expect(m).toMatchObject({
        state: { reported: { a: 1 } },
        metadata: { reported: { a: { timestamp: 5 } } },
      });
      expect(m.kind === "reply" && m.status === "success" && m.state).not.toHaveProperty("desired");
      expect(m.kind === "reply" && m.status === "success" && m.metadata).not.toHaveProperty(
        "desired",
      );
    }
  });

  it("an error reply with errorcode as a string, as the doc's template shows", () => {
    const m = message(
      decode({
        method: "reply",
        payload: {
          status: "error",
          content: { errorcode: "409", errormessage: "version conflict" },
        },
        timestamp: 1469564576,
        clientToken: "t-9",
      }),
    );
    expect(m).toEqual({
      kind: "reply",
      status: "error",
      code: 409,
      message: "version conflict",
      clientToken: "t-9",
      timestamp: 1469564576,
    });
  });

  it("an error reply with errorcode as a number, a version, and no message", () => {
    const m = message(
      decode({
        method: "reply",
        payload: { status: "error", version: 8, content: { errorcode: 403 } },
        timestamp: 10,
      }),
    );
    expect(m).toEqual({
      kind: "reply",
      status: "error",
      code: 403,
      message: "",
      version: 8,
      timestamp: 10,
    });
  });
});

describe("decodeShadowMessage: control", () => {
  const control = (over: Record<string, unknown> = {}, payload: Record<string, unknown> = {}) => ({
    method: "control",
    payload: {
      status: "success",
      state: {
        desired: { target: 65, mode: "null", light: null, nested: { a: "null", keep: ["null"] } },
      },
      metadata: {
        desired: {
          target: { timestamp: 1700000100 },
          mode: { timestamp: 1700000101 },
          nested: { a: { timestamp: 1700000103 }, keep: { timestamp: 1700000102 } },
        },
      },
      ...payload,
    },
    version: 11,
    timestamp: 1700000200,
    ...over,
  });

  it("normalises both forms of null and gives every desired attribute a timestamp", () => {
    expect(decode(control())).toEqual({
      ok: true,
      productKey: "a1Boiler",
      deviceName: "boiler-01",
      message: {
        kind: "control",
        version: 11,
        timestamp: 1700000200,
        // A "null" inside an array is data: arrays are replaced whole.
        desired: { target: 65, mode: null, light: null, nested: { a: null, keep: ["null"] } },
        desiredMetadata: {
          target: { timestamp: 1700000100 },
          mode: { timestamp: 1700000101 },
          // No metadata for light: the message's own timestamp stands in.
          light: { timestamp: 1700000200 },
          // An object attribute with per-leaf metadata: its newest leaf.
          nested: { timestamp: 1700000103 },
        },
      },
    });
  });

  it("takes the version from payload when the top level has none", () => {
    const m = message(decode(control({ version: undefined }, { version: 12 })));
    expect(m.kind === "control" && m.version).toBe(12);
  });

  it("passes reported along and reads a cleared desired as empty", () => {
    const m = message(
      decode(
        control({}, { state: { desired: "null", reported: { target: 60 } }, metadata: undefined }),
      ),
    );
    expect(m).toEqual({
      kind: "control",
      version: 11,
      timestamp: 1700000200,
      desired: {},
      desiredMetadata: {},
      reported: { target: 60 },
    });
  });

  it("accepts a control without payload.status", () => {
    expect(decode(control({}, { status: undefined })).ok).toBe(true);
  });
});

describe("decodeShadowMessage: rejections", () => {
  const ok = { method: "reply", payload: { status: "success", version: 1 }, timestamp: 1 };
  const cases: Array<[string, unknown, RegExp, string?]> = [
    // transport
    [
      "an update topic",
      ok,
      /topic "\/shadow\/update\/a1Boiler\/boiler-01" is not \/shadow\/get/,
      "/shadow/update/a1Boiler/boiler-01",
    ],
    ["a foreign topic", ok, /topic "\/a1Boiler\/boiler-01\/get" is not/, "/a1Boiler/boiler-01/get"],
    ["a topic with an extra level", ok, /is not \/shadow\/get/, `${TOPIC}/x`],
    // syntax
    ["not JSON", "{method:", /payload is not JSON/],
    ["an empty payload", "", /payload is not JSON/],
    ["a JSON array", [ok], /payload is not a JSON object/],
    ["JSON null", "null", /payload is not a JSON object/],
    ["a __proto__ key", '{"method":"reply","payload":{"__proto__":{"x":1}}}', /"__proto__" key/],
    // method
    ["no method", { payload: {}, timestamp: 1 }, /^method missing$/],
    ["an unknown method", { ...ok, method: "update" }, /unknown method "update"/],
    ["a non-string method", { ...ok, method: 5 }, /unknown method 5/],
    // envelope
    ["no payload", { method: "reply", timestamp: 1 }, /^payload missing$/],
    [
      "a string payload",
      { method: "reply", payload: "x", timestamp: 1 },
      /payload: must be a JSON object/,
    ],
    [
      "no timestamp",
      { method: "reply", payload: { status: "success", version: 1 } },
      /^timestamp missing$/,
    ],
    ["a string timestamp", { ...ok, timestamp: "1" }, /^timestamp: must be a non-negative number$/],
    [
      "a negative timestamp",
      { ...ok, timestamp: -1 },
      /^timestamp: must be a non-negative number$/,
    ],
    ["a numeric clientToken", { ...ok, clientToken: 7 }, /^clientToken: must be a string$/],
    // status
    ["no status", { method: "reply", payload: {}, timestamp: 1 }, /^payload.status missing$/],
    [
      "an unknown status",
      { method: "reply", payload: { status: "ok" }, timestamp: 1 },
      /unknown payload.status "ok"/,
    ],
    [
      "a control with status error",
      { method: "control", payload: { status: "error", state: {} }, version: 1, timestamp: 1 },
      /^payload.status: /,
    ],
    // version
    [
      "a reply without any version",
      { method: "reply", payload: { status: "success" }, timestamp: 1 },
      /^version missing/,
    ],
    ["a negative version", { ...ok, version: -1 }, /^version: must be a non-negative integer$/],
    [
      "a fractional version",
      { ...ok, payload: { status: "success", version: 1.5 } },
      /^payload.version: must be a non-negative integer$/,
    ],
    ["a string version", { ...ok, version: "3" }, /^version: must be a non-negative integer$/],
    ["an unsafe version", { ...ok, version: 2 ** 53 }, /^version: must be a non-negative integer$/],
    [
      "a control without any version",
      { method: "control", payload: { state: { desired: { a: 1 } } }, timestamp: 1 },
      /^version missing/,
    ],
    // error content
    [
      "an error without content",
      { method: "reply", payload: { status: "error" }, timestamp: 1 },
      /^payload.content missing$/,
    ],
    [
      "an error without errorcode",
      {
        method: "reply",
        payload: { status: "error", content: { errormessage: "x" } },
        timestamp: 1,
      },
      /^payload.content.errorcode missing$/,
    ],
    [
      "an errorcode that is not a number",
      {
        method: "reply",
        payload: { status: "error", content: { errorcode: "40x" } },
        timestamp: 1,
      },
      /^payload.content.errorcode: must be a non-negative integer or a string of digits$/,
    ],
    [
      "an errormessage that is not a string",
      {
        method: "reply",
        payload: { status: "error", content: { errorcode: 400, errormessage: 1 } },
        timestamp: 1,
      },
      /^payload.content.errormessage: must be a string$/,
    ],
    // state and metadata
    [
      "a control without state",
      { method: "control", payload: {}, version: 1, timestamp: 1 },
      /^payload.state missing$/,
    ],
    [
      "a desired that is an array",
      { method: "control", payload: { state: { desired: [1] } }, version: 1, timestamp: 1 },
      /^payload.state.desired: must be a JSON object, "null" or null$/,
    ],
    [
      "a desired that is a number",
      {
        method: "reply",
        payload: { status: "success", state: { desired: 5 } },
        version: 1,
        timestamp: 1,
      },
      /^payload.state.desired: /,
    ],
    [
      "metadata without a timestamp",
      {
        method: "control",
        payload: { state: { desired: { a: 1 } }, metadata: { desired: { a: { timestamp: "x" } } } },
        version: 1,
        timestamp: 1,
      },
      /^payload.metadata.desired.a: must be \{timestamp\} metadata$/,
    ],
  ];
  for (const [what, msg, expected, topic] of cases) {
    it(`rejects ${what}`, () => {
      expect(reason(decode(msg, topic))).toMatch(expected);
    });
  }

  it("rejects a payload over the limit before parsing it, and the limit is configurable", () => {
    const big = Buffer.alloc(DEFAULT_MAX_MESSAGE_BYTES + 1, 0x20);
    expect(reason(decodeShadowMessage(TOPIC, big))).toBe(
      "payload is 65537 bytes, over the 65536-byte limit",
    );
    const small = Buffer.from(JSON.stringify(ok));
    expect(reason(decodeShadowMessage(TOPIC, small, { maxBytes: 10 }))).toMatch(
      /over the 10-byte limit/,
    );
    expect(decodeShadowMessage(TOPIC, small, { maxBytes: small.length }).ok).toBe(true);
  });

  it("rejects a payload that is not UTF-8", () => {
    expect(reason(decodeShadowMessage(TOPIC, Buffer.from([0x7b, 0xff, 0x7d])))).toBe(
      "payload is not valid UTF-8",
    );
  });

  it("survives nesting deep enough to exhaust the stack", () => {
    const depth = 20_000;
    const deep = `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    const body = `{"method":"control","payload":{"state":{"desired":${deep}},"metadata":{"desired":${deep}}},"version":1,"timestamp":1}`;
    const r = decodeShadowMessage(TOPIC, Buffer.from(body), { maxBytes: body.length });
    expect(typeof r.ok).toBe("boolean");
  });

  it("never throws, whatever it is given", () => {
    const inputs: Array<[unknown, unknown]> = [
      [undefined, Buffer.from("{}")],
      [TOPIC, undefined],
      [TOPIC, "not a buffer"],
      [42, null],
    ];
    for (const [topic, payload] of inputs) {
      const r = decodeShadowMessage(topic as string, payload as Buffer);
      expect(r.ok).toBe(false);
    }
  });
});
