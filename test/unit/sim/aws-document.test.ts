import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../../src/core/types.js";
import {
  applyUpdate,
  deltaOf,
  getResponse,
  parseRequest,
  parseUpdate,
  type AwsShadowDocument,
} from "../../../src/sim/cloud/aws/document.js";

/** The local AWS shadow service's document rules, each as AWS documents it (3.2-3.4). */

const update = (
  doc: AwsShadowDocument | undefined,
  body: JsonObject,
  now = 100,
  lastVersion = 0,
) => {
  const req = parseUpdate(body);
  if (!req.ok) return req;
  return applyUpdate(doc, lastVersion, req.value, now, body["clientToken"] as string | undefined);
};

const ok = (r: ReturnType<typeof update>) => {
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
};

describe("AWS shadow document", () => {
  it("merges partial updates, deletes with null, replaces arrays, stamps leaves", () => {
    const a = ok(
      update(undefined, { state: { reported: { t: 1, cfg: { x: 1, y: 2 }, arr: [1, 2] } } }),
    );
    expect(a.document.version).toBe(1);
    const b = ok(update(a.document, { state: { reported: { cfg: { y: null }, arr: [3] } } }, 200));
    expect(b.document.state.reported).toEqual({ t: 1, cfg: { x: 1 }, arr: [3] });
    expect(b.document.metadata.reported).toEqual({
      t: { timestamp: 100 },
      cfg: { x: { timestamp: 100 } },
      arr: [{ timestamp: 200 }],
    });
    expect(b.accepted).toMatchObject({
      state: { reported: { cfg: { y: null }, arr: [3] } },
      version: 2,
    });
    // An object left empty goes; so does a section.
    const c = ok(update(b.document, { state: { reported: { cfg: { x: null } } } }));
    expect(c.document.state.reported).toEqual({ t: 1, arr: [3] });
    const d = ok(update(c.document, { state: { desired: { sp: 5 } } }));
    const e = ok(update(d.document, { state: { desired: null } }));
    expect(e.document.state.desired).toBeUndefined();
  });

  it("takes a version only when it equals the current one", () => {
    const a = ok(update(undefined, { state: { reported: { t: 1 } } }));
    expect(update(a.document, { state: { desired: { t: 2 } }, version: 0 })).toEqual({
      ok: false,
      error: { code: 409, message: "Version conflict" },
    });
    expect(
      ok(update(a.document, { state: { desired: { t: 2 } }, version: 1 })).document.version,
    ).toBe(2);
    // A deleted shadow keeps counting.
    expect(ok(update(undefined, { state: { reported: { t: 1 } } }, 1, 7)).document.version).toBe(8);
  });

  it("publishes a delta of what the update set that reported differs from", () => {
    const a = ok(update(undefined, { state: { reported: { sp: 60, cfg: { a: 1, b: 1 } } } }));
    const b = ok(update(a.document, { state: { desired: { sp: 80, cfg: { a: 1, b: 2 } } } }, 150));
    expect(b.delta).toEqual({
      state: { sp: 80, cfg: { b: 2 } },
      metadata: { sp: { timestamp: 150 }, cfg: { b: { timestamp: 150 } } },
      version: 2,
      timestamp: 150,
    });
    // Desired equal to reported: no delta.
    expect(ok(update(b.document, { state: { desired: { sp: 60 } } })).delta).toBeUndefined();
    expect(getResponse(b.document).state).toMatchObject({ delta: { sp: 80, cfg: { b: 2 } } });
    expect(deltaOf({ a: [1, 2] }, { a: [1, 2] })).toEqual({});
    expect(b.documents).toMatchObject({ previous: { version: 1 }, current: { version: 2 } });
  });

  it.each([
    ["no state", {}, 400, "Missing required node: state"],
    ["state not an object", { state: 1 }, 400, "State node must be an object"],
    ["desired a string", { state: { desired: "null" } }, 400, "Desired node must be an object"],
    ["reported an array", { state: { reported: [] } }, 400, "Reported node must be an object"],
    ["a string version", { state: {}, version: "1" }, 400, "Invalid version"],
    ["null in an array", { state: { reported: { a: [null] } } }, 400, /array may not hold null/],
    [
      "seven levels",
      { state: { reported: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } } },
      400,
      /too many levels of nesting; maximum is 6/,
    ],
    [
      "over 8 KB",
      { state: { reported: { a: "x".repeat(8200) } } },
      413,
      /exceeds the maximum size/,
    ],
  ])("refuses %s with %s", (_what, body, code, message) => {
    const r = update(undefined, body as JsonObject);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe(code);
      expect(r.error.message).toMatch(message);
    }
  });

  it("refuses a document that the update would take over its limit", () => {
    const a = ok(update(undefined, { state: { reported: { a: "x".repeat(5000) } } }));
    const r = update(a.document, { state: { reported: { b: "y".repeat(5000) } } });
    expect(r).toMatchObject({ ok: false, error: { code: 413 } });
  });

  it("reads request payloads as AWS does", () => {
    expect(parseRequest(Buffer.from(""))).toEqual({ ok: true, value: {} });
    expect(parseRequest(Buffer.from([0xff, 0xfe]))).toMatchObject({
      ok: false,
      error: { code: 415 },
    });
    expect(parseRequest(Buffer.from("[1]"))).toMatchObject({
      ok: false,
      error: { message: "Invalid JSON" },
    });
    expect(
      parseRequest(Buffer.from(JSON.stringify({ clientToken: "x".repeat(65) }))),
    ).toMatchObject({
      ok: false,
      error: { message: "Invalid clientToken" },
    });
  });
});
