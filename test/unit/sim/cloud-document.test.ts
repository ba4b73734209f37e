import { describe, expect, it } from "vitest";
import { MAX_ATTRIBUTES } from "../../../src/north/dialects/alibaba/messages.js";
import {
  applyChange,
  emptyDocument,
  parseShadowRequest,
  type CloudShadowDocument,
  type ShadowRequestBody,
} from "../../../src/sim/cloud/shadow-document.js";

type Change = Exclude<ShadowRequestBody, { method: "get" }>;

/** Parses and applies like the service does; throws on a refusal so tests read top-down. */
function apply(
  doc: CloudShadowDocument,
  message: unknown,
  now = 100,
  replaceDesired = false,
): CloudShadowDocument {
  const parsed = parseShadowRequest(JSON.stringify(message));
  if (!parsed.ok) throw new Error(`${parsed.code} ${parsed.message}`);
  const result = applyChange(doc, parsed.request as Change, { now, replaceDesired });
  if (!result.ok) throw new Error(`${result.code} ${result.message}`);
  return result.document;
}

function codeOf(text: string): number | "ok" {
  const parsed = parseShadowRequest(text);
  return parsed.ok ? "ok" : parsed.code;
}

const update = (state: unknown, version?: number): unknown => ({
  method: "update",
  state,
  ...(version === undefined ? {} : { version }),
});

describe("parseShadowRequest: the documented error codes", () => {
  it.each([
    ["malformed JSON", "{nope", 400],
    ["not an object", "[1,2]", 400],
    ["method missing", '{"state":{"reported":{"a":1}},"version":1}', 401],
    ["method null", '{"method":null}', 401],
    ["state missing", '{"method":"update","version":1}', 402],
    ["state not an object", '{"method":"update","state":"x","version":1}', 400],
    ["version a string", '{"method":"update","state":{"reported":{"a":1}},"version":"1"}', 403],
    ["version fractional", '{"method":"update","state":{"reported":{"a":1}},"version":1.5}', 403],
    ["version null", '{"method":"update","state":{"reported":{"a":1}},"version":null}', 403],
    ["neither reported nor desired", '{"method":"update","state":{},"version":1}', 404],
    ["delete without reported", '{"method":"delete","state":{"desired":"null"},"version":1}', 404],
    ["reported empty", '{"method":"update","state":{"reported":{}},"version":1}', 405],
    ["desired empty", '{"method":"update","state":{"desired":{}},"version":1}', 405],
    ["reported an array", '{"method":"update","state":{"reported":[1]},"version":1}', 400],
    ["unknown method", '{"method":"patch","state":{"reported":{"a":1}}}', 406],
    ["method not a string", '{"method":5}', 406],
    ["a reply sent back", '{"method":"reply","payload":{}}', 406],
  ])("%s -> %s", (_name, text, code) => {
    expect(codeOf(text)).toBe(code);
  });

  it("takes the lowest code when several apply", () => {
    // state missing (402) and version invalid (403): 402 wins.
    expect(codeOf('{"method":"update","version":"x"}')).toBe(402);
  });

  it("accepts get without state or version, and -1 whatever the state holds", () => {
    expect(codeOf('{"method":"get"}')).toBe("ok");
    expect(codeOf('{"method":"update","state":{},"version":-1}')).toBe("ok");
  });

  it("keeps a string clientToken, on success and on error", () => {
    const ok = parseShadowRequest('{"method":"get","clientToken":"pk.dn-1"}');
    expect(ok).toMatchObject({ ok: true, clientToken: "pk.dn-1" });
    const bad = parseShadowRequest('{"method":"nope","clientToken":"pk.dn-2"}');
    expect(bad).toMatchObject({ ok: false, code: 406, clientToken: "pk.dn-2" });
    const notString = parseShadowRequest('{"method":"get","clientToken":7}');
    expect(notString).not.toHaveProperty("clientToken");
  });

  it('reads the string "null" and JSON null alike as "clear"', () => {
    for (const marker of ['"null"', "null"]) {
      const parsed = parseShadowRequest(
        `{"method":"update","state":{"desired":${marker}},"version":2}`,
      );
      expect(parsed).toMatchObject({ ok: true, request: { desired: "clear", version: 2 } });
    }
  });
});

describe("applyChange: the version rule", () => {
  const v1 = apply(emptyDocument(), update({ reported: { a: 1 } }, 1));

  it("stores the version sent, not current + 1", () => {
    expect(apply(v1, update({ reported: { a: 2 } }, 10)).version).toBe(10);
  });

  it("refuses a version equal to or lower than the stored one with 409", () => {
    for (const version of [1, 0, -2]) {
      const parsed = parseShadowRequest(JSON.stringify(update({ reported: { a: 2 } }, version)));
      if (!parsed.ok) throw new Error("parse");
      expect(applyChange(v1, parsed.request as Change, { now: 1 })).toMatchObject({
        ok: false,
        code: 409,
      });
    }
  });

  it("a first update must still exceed version 0", () => {
    const parsed = parseShadowRequest(JSON.stringify(update({ reported: { a: 1 } }, 0)));
    if (!parsed.ok) throw new Error("parse");
    expect(applyChange(emptyDocument(), parsed.request as Change, { now: 1 })).toMatchObject({
      code: 409,
    });
  });

  it("-1 clears the whole shadow and resets the version to 0, ignoring the state sent", () => {
    const full = apply(v1, update({ desired: { b: 1 } }, 5));
    const reset = apply(full, update({ reported: { z: 9 } }, -1), 200);
    expect(reset).toEqual({ state: {}, metadata: {}, version: 0, timestamp: 200 });
  });

  it("without a version, applies unconditionally as current + 1", () => {
    expect(apply(v1, { method: "update", state: { reported: { a: 3 } } }).version).toBe(2);
  });
});

describe("applyChange: merge, null and metadata", () => {
  const base = apply(
    emptyDocument(),
    update({ reported: { temp: 20, alarm: { high: false, low: false }, list: [1, 2, 3] } }, 1),
    100,
  );

  it("merges objects recursively and replaces arrays whole", () => {
    const doc = apply(base, update({ reported: { alarm: { high: true }, list: [9] } }, 2), 200);
    expect(doc.state.reported).toEqual({
      temp: 20,
      alarm: { high: true, low: false },
      list: [9],
    });
  });

  it("updates metadata only for the top-level attributes touched", () => {
    const doc = apply(base, update({ reported: { alarm: { high: true } } }, 2), 200);
    expect(doc.metadata.reported).toEqual({
      temp: { timestamp: 100 },
      alarm: { timestamp: 200 },
      list: { timestamp: 100 },
    });
    expect(doc.timestamp).toBe(200);
  });

  it('deletes an attribute set to "null" (or JSON null) together with its metadata', () => {
    const doc = apply(base, update({ reported: { temp: "null", list: null } }, 2), 200);
    expect(doc.state.reported).toEqual({ alarm: { high: false, low: false } });
    expect(Object.keys(doc.metadata.reported ?? {})).toEqual(["alarm"]);
  });

  it("drops a nested object emptied by deletions, keeps one sent empty", () => {
    const doc = apply(
      base,
      update({ reported: { alarm: { high: "null", low: "null" }, extra: {} } }, 2),
    );
    expect(doc.state.reported).toEqual({ temp: 20, list: [1, 2, 3], extra: {} });
  });

  it("drops a section that becomes empty, with its metadata", () => {
    const doc = apply(base, update({ reported: { temp: "null", alarm: "null", list: "null" } }, 2));
    expect(doc.state).toEqual({});
    expect(doc.metadata).toEqual({});
  });

  it('state.desired "null" clears desired and leaves reported', () => {
    const withDesired = apply(base, update({ desired: { temp: 25 } }, 2));
    const cleared = apply(withDesired, update({ desired: "null" }, 3));
    expect(cleared.state).toEqual(base.state);
    expect(cleared.metadata).toEqual(base.metadata);
  });

  it("puts desired before reported, as Alibaba's documents do", () => {
    const doc = apply(base, update({ desired: { temp: 25 } }, 2));
    expect(Object.keys(doc.state)).toEqual(["desired", "reported"]);
    expect(Object.keys(doc.metadata)).toEqual(["desired", "reported"]);
  });

  it("does not let a __proto__ key reach the prototype", () => {
    const doc = apply(
      base,
      JSON.parse(
        '{"method":"update","state":{"reported":{"__proto__":{"polluted":1}}},"version":2}',
      ),
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.hasOwn(doc.state.reported ?? {}, "__proto__")).toBe(true);
  });

  it("tells whether desired got a value (the service pushes control only then)", () => {
    const run = (state: unknown, replaceDesired = false): boolean => {
      const parsed = parseShadowRequest(JSON.stringify(update(state, 2)));
      if (!parsed.ok) throw new Error("parse");
      const r = applyChange(base, parsed.request as Change, { now: 1, replaceDesired });
      if (!r.ok) throw new Error("apply");
      return r.desiredSet;
    };
    expect(run({ desired: { temp: 25 } })).toBe(true);
    expect(run({ desired: { alarm: { high: true } } })).toBe(true);
    expect(run({ desired: { temp: "null" } })).toBe(false);
    expect(run({ desired: "null" })).toBe(false);
    expect(run({ reported: { temp: 21 } })).toBe(false);
  });

  it("replaceDesired writes desired whole (UpdateDeviceShadow without DeltaUpdate)", () => {
    const first = apply(base, update({ desired: { a: 1, b: 2 } }, 2), 200);
    const replaced = apply(first, update({ desired: { c: 3 } }, 3), 300, true);
    expect(replaced.state.desired).toEqual({ c: 3 });
    expect(replaced.metadata.desired).toEqual({ c: { timestamp: 300 } });
    const merged = apply(first, update({ desired: { c: 3 } }, 3), 300, false);
    expect(merged.state.desired).toEqual({ a: 1, b: 2, c: 3 });
  });
});

describe("applyChange: delete", () => {
  const base = apply(
    emptyDocument(),
    update({ reported: { a: 1, b: { x: 1, y: 2 } }, desired: { a: 5 } }, 1),
    100,
  );

  it('removes one attribute with {attr: "null"}', () => {
    const doc = apply(
      base,
      { method: "delete", state: { reported: { a: "null" } }, version: 2 },
      200,
    );
    expect(doc.state).toEqual({ desired: { a: 5 }, reported: { b: { x: 1, y: 2 } } });
    expect(doc.metadata.reported).toEqual({ b: { timestamp: 100 } });
  });

  it("descends into nested objects and re-stamps the attribute", () => {
    const doc = apply(
      base,
      { method: "delete", state: { reported: { b: { x: "null" } } }, version: 2 },
      200,
    );
    expect(doc.state.reported).toEqual({ a: 1, b: { y: 2 } });
    expect(doc.metadata.reported?.b).toEqual({ timestamp: 200 });
  });

  it('removes all reported with reported: "null" and leaves desired alone', () => {
    const doc = apply(base, { method: "delete", state: { reported: "null" }, version: 2 });
    expect(doc.state).toEqual({ desired: { a: 5 } });
    expect(doc.metadata).toEqual({ desired: { a: { timestamp: 100 } } });
    expect(doc.version).toBe(2);
  });

  it("follows the version rule like update", () => {
    const parsed = parseShadowRequest(
      '{"method":"delete","state":{"reported":"null"},"version":1}',
    );
    if (!parsed.ok) throw new Error("parse");
    expect(applyChange(base, parsed.request as Change, { now: 1 })).toMatchObject({ code: 409 });
  });
});

describe("applyChange: the attribute limit", () => {
  const attrs = (n: number, prefix = "p"): Record<string, number> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, i]));

  it(`accepts ${MAX_ATTRIBUTES} reported attributes and refuses the next with 408`, () => {
    const full = apply(emptyDocument(), update({ reported: attrs(MAX_ATTRIBUTES) }, 1));
    expect(Object.keys(full.state.reported ?? {})).toHaveLength(MAX_ATTRIBUTES);
    const parsed = parseShadowRequest(JSON.stringify(update({ reported: { one: 1 } }, 2)));
    if (!parsed.ok) throw new Error("parse");
    expect(applyChange(full, parsed.request as Change, { now: 1 })).toMatchObject({
      ok: false,
      code: 408,
    });
    // Replacing an existing attribute does not count twice.
    expect(apply(full, update({ reported: { p0: 42 } }, 2)).state.reported?.p0).toBe(42);
  });

  it("counts the merged document, and deletions in the same request make room", () => {
    const full = apply(emptyDocument(), update({ reported: attrs(MAX_ATTRIBUTES) }, 1));
    const doc = apply(full, update({ reported: { p0: "null", fresh: 1 } }, 2));
    expect(Object.keys(doc.state.reported ?? {})).toHaveLength(MAX_ATTRIBUTES);
  });
});
