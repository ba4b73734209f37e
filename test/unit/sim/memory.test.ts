import { describe, expect, it } from "vitest";
import { UnitMemory } from "../../../src/sim/modbus/memory.js";

describe("UnitMemory", () => {
  it("reads and writes raw words and bits through methods and the typed arrays", () => {
    const unit = new UnitMemory({ unitId: 3 });
    unit.write("holding", 65534, [0x1_0001, -1]);
    expect(unit.read("holding", 65534, 2)).toEqual([1, 0xffff]);
    unit.write("coil", 0, [true, 0, 5, false]);
    expect(unit.read("coil", 0, 4)).toEqual([1, 0, 1, 0]);
    unit.input[12] = 120;
    expect(unit.read("input", 12, 1)).toEqual([120]);
    expect(() => unit.read("holding", 65535, 2)).toThrow(RangeError);
    expect(() => unit.write("discreteInput", -1, [1])).toThrow(RangeError);
  });

  it("finds holes that overlap a request at either end", () => {
    const unit = new UnitMemory({ unitId: 1, holes: [{ table: "input", from: 10, to: 19 }] });
    expect(unit.touchesHole("input", 0, 10)).toBe(false);
    expect(unit.touchesHole("input", 0, 11)).toBe(true);
    expect(unit.touchesHole("input", 19, 5)).toBe(true);
    expect(unit.touchesHole("input", 20, 5)).toBe(false);
    expect(unit.touchesHole("input", 12, 1)).toBe(true);
    expect(unit.touchesHole("holding", 12, 1)).toBe(false);
    unit.addHole({ table: "holding", from: 0, to: 0 });
    expect(unit.holes()).toEqual([
      { table: "input", from: 10, to: 19 },
      { table: "holding", from: 0, to: 0 },
    ]);
    unit.clearHoles("input");
    expect(unit.touchesHole("input", 12, 1)).toBe(false);
    expect(unit.touchesHole("holding", 0, 1)).toBe(true);
    expect(() => unit.addHole({ table: "coil", from: 5, to: 4 })).toThrow(RangeError);
  });

  it("validates the unit id and maxRegistersPerRequest", () => {
    expect(() => new UnitMemory({ unitId: 256 })).toThrow(RangeError);
    expect(() => new UnitMemory({ unitId: 1, maxRegistersPerRequest: 126 })).toThrow(RangeError);
    const unit = new UnitMemory({ unitId: 1 });
    expect(unit.maxRegistersPerRequest).toBe(125);
    unit.maxRegistersPerRequest = 32;
    expect(unit.maxRegistersPerRequest).toBe(32);
  });
});
