import { describe, expect, it } from "vitest";
import { GOOD } from "../../../src/core/types.js";
import { decodeNodeSample, encodeNodeValue, nodeRef } from "../../../src/mapping/node-points.js";
import { checkCommand } from "../../../src/mapping/guard.js";
import type { NodePoint } from "../../../src/mapping/types.js";

const point = (extra: Partial<NodePoint> = {}): NodePoint => ({
  name: "sp",
  path: ["sp"],
  node: "ns=1;s=Sp",
  writable: true,
  onChange: true,
  ...extra,
});

describe("OPC UA point values", () => {
  it("scales numbers both ways, landing integers on the resolution", () => {
    const p = point({ scale: 0.1, valueOffset: 5 });
    expect(decodeNodeSample(p, { key: "sp", quality: GOOD, value: 213, ts: 1 })).toEqual({
      value: 26.3,
      quality: GOOD,
      ts: 1,
    });
    expect(encodeNodeValue(point({ scale: 0.1 }), 21.3)).toBe(213); // not 212.99999999999997
    expect(encodeNodeValue(point({ scale: 0.1 }), 21.37)).toBeCloseTo(213.7); // refused by the driver for an integer node
  });

  it("maps enum labels both ways; a raw value without a label stays a number", () => {
    const p = point({ enum: { 0: "idle", 1: "heating" } });
    expect(decodeNodeSample(p, { key: "sp", quality: GOOD, value: 1, ts: 1 }).value).toBe(
      "heating",
    );
    expect(decodeNodeSample(p, { key: "sp", quality: GOOD, value: 7, ts: 1 }).value).toBe(7);
    expect(encodeNodeValue(p, "idle")).toBe(0);
    expect(() => encodeNodeValue(p, "boiling")).toThrow(/not one of idle, heating/);
  });

  it("keeps the server's source timestamp, arrays, and bad quality as it came", () => {
    const p = point();
    expect(
      decodeNodeSample(p, { key: "sp", quality: GOOD, value: [1, 2], sourceTs: 5, ts: 9 }),
    ).toEqual({ value: [1, 2], quality: GOOD, ts: 5 });
    const bad = { status: "bad", code: "SG_OPCUA_BAD", reason: "BadNodeIdUnknown" } as const;
    expect(decodeNodeSample(p, { key: "sp", quality: bad, ts: 9 })).toEqual({
      quality: bad,
      ts: 9,
    });
  });

  it("asks the server for the deadband in raw units", () => {
    expect(nodeRef(point({ deadband: 0.5, scale: 0.1, samplingIntervalMs: 100 }))).toEqual({
      key: "sp",
      node: "ns=1;s=Sp",
      samplingIntervalMs: 100,
      deadband: 5,
    });
  });

  it("guards commands: writable, min and max, enum labels", () => {
    expect(checkCommand(point({ writable: false }), 1)).toMatchObject({ ok: false });
    expect(checkCommand(point({ max: 90 }), 91)).toEqual({
      ok: false,
      reason: "91 is above the maximum 90 of sp",
    });
    expect(checkCommand(point({ enum: { 0: "idle" } }), "idle")).toEqual({ ok: true });
    expect(checkCommand(point(), true)).toEqual({ ok: true }); // the server's type decides
  });
});
