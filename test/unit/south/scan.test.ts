import { describe, expect, it } from "vitest";
import type { ModbusTable } from "../../../src/core/types.js";
import type { ModbusLink } from "../../../src/south/modbus/modbus-link.js";
import { exceptionError, timeoutError } from "../../../src/south/modbus/modbus-link.js";
import { draftMapping, scanUnits } from "../../../src/south/modbus/scan.js";

/**
 * A device that answers exactly as told: per unit, per table, the readable addresses; a read
 * over anything else is exception 02; a unit without a table answers 01; others are silent.
 */
function device(units: Record<number, Partial<Record<ModbusTable, (a: number) => boolean>>>) {
  const reads: string[] = [];
  const link: ModbusLink = {
    async read(unitId, table, address, count) {
      reads.push(`${unitId} ${table} ${address}+${count}`);
      const unit = units[unitId];
      if (!unit) throw timeoutError(unitId);
      const ok = unit[table];
      if (!ok) throw exceptionError(1, unitId);
      for (let a = address; a < address + count; a++) if (!ok(a)) throw exceptionError(2, unitId);
      return new Array<number>(count).fill(0);
    },
    async write() {
      throw new Error("a scan never writes");
    },
    async close() {},
  };
  return { link, reads };
}

describe("scanUnits", () => {
  it("finds ranges around holes by halving refused blocks, and tables a unit lacks", async () => {
    const { link, reads } = device({
      1: { holding: (a) => a < 130 || (a >= 200 && a !== 250), input: () => true },
      2: { holding: (a) => a < 5 }, // no input registers: exception 01
    });
    const scans = await scanUnits(async () => link, {
      units: [1, 2, 3],
      from: 0,
      to: 299,
      maxRequestsPerUnit: 500,
    });
    expect(scans.map((s) => [s.unitId, s.ranges, s.incomplete])).toEqual([
      [
        1,
        {
          holding: [
            [0, 130],
            [200, 50],
            [251, 49],
          ],
          input: [[0, 300]],
        },
        false,
      ],
      [2, { holding: [[0, 5]], input: [] }, false],
    ]);
    expect(reads.filter((r) => r.startsWith("3 "))).toEqual(["3 holding 0+1", "3 input 0+1"]);
  });

  it("stops a unit at its request budget and says so", async () => {
    const { link } = device({ 1: { holding: (a) => a % 2 === 0, input: () => true } });
    const [scan] = await scanUnits(async () => link, {
      units: [1],
      from: 0,
      to: 999,
      maxRequestsPerUnit: 50,
    });
    expect(scan?.incomplete).toBe(true);
    expect(scan?.requests).toBe(50);
  });

  it("drafts a mapping with a comment per block", () => {
    const text = draftMapping(
      {
        unitId: 4,
        ranges: { holding: [[10, 2]], input: [] },
        requests: 3,
        incomplete: false,
      },
      "line1",
      ["from a test"],
    );
    expect(text).toContain("# from a test\n");
    expect(text).toContain("unitId: 4\n");
    expect(text).toContain(
      "  # holding registers 10-11 (2)\n  hr_10: { table: holding, offset: 10, type: uint16 }\n  hr_11:",
    );
  });
});
