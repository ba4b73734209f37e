import { describe, expect, it, vi } from "vitest";
import { UnitMemory } from "../../../src/sim/modbus/memory.js";
import { ModbusException, serveRequest } from "../../../src/sim/modbus/pdu.js";

/** A request ADU: MBAP header with transaction id 0x1234, then the PDU bytes. */
function adu(unitId: number, pdu: readonly number[]): Buffer {
  const b = Buffer.alloc(7 + pdu.length);
  b.writeUInt16BE(0x1234, 0);
  b.writeUInt16BE(0, 2);
  b.writeUInt16BE(pdu.length + 1, 4);
  b.writeUInt8(unitId, 6);
  Buffer.from(pdu).copy(b, 7);
  return b;
}

const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const pdu = (res: Buffer): number[] => [...res.subarray(7)];

function exceptionOf(res: Buffer): number | undefined {
  return res.readUInt8(7) & 0x80 ? res.readUInt8(8) : undefined;
}

describe("serveRequest", () => {
  it("keeps the transaction id and unit id and sets the MBAP length", () => {
    const unit = new UnitMemory({ unitId: 7 });
    const res = serveRequest(unit, adu(7, [3, ...u16(0), ...u16(2)]));
    expect(res.readUInt16BE(0)).toBe(0x1234);
    expect(res.readUInt16BE(2)).toBe(0);
    expect(res.readUInt16BE(4)).toBe(res.length - 6);
    expect(res.readUInt8(6)).toBe(7);
  });

  it("FC3 and FC4 read big-endian words", () => {
    const unit = new UnitMemory({ unitId: 1 });
    unit.holding.set([0x0102, 0xfffe], 10);
    unit.input[65535] = 0xabcd;
    expect(pdu(serveRequest(unit, adu(1, [3, ...u16(10), ...u16(2)])))).toEqual([
      3, 4, 0x01, 0x02, 0xff, 0xfe,
    ]);
    expect(pdu(serveRequest(unit, adu(1, [4, ...u16(65535), ...u16(1)])))).toEqual([
      4, 2, 0xab, 0xcd,
    ]);
  });

  it("FC1 and FC2 pack bits LSB first and pad the last byte with zeros", () => {
    const unit = new UnitMemory({ unitId: 1 });
    // Coils 20..29: 1 0 1 1 0 0 1 1 | 0 1
    [1, 0, 1, 1, 0, 0, 1, 1, 0, 1].forEach((b, i) => (unit.coil[20 + i] = b));
    unit.coil[30] = 1; // just past the range: must not leak into the padding
    expect(pdu(serveRequest(unit, adu(1, [1, ...u16(20), ...u16(10)])))).toEqual([
      1, 2, 0xcd, 0x02,
    ]);
    unit.discreteInput[0] = 1;
    expect(pdu(serveRequest(unit, adu(1, [2, ...u16(0), ...u16(1)])))).toEqual([2, 1, 1]);
  });

  it("FC5 and FC6 write one item and echo the request", () => {
    const unit = new UnitMemory({ unitId: 1 });
    const onWrite = vi.fn();
    const on = adu(1, [5, ...u16(4), 0xff, 0x00]);
    expect(serveRequest(unit, on, onWrite).equals(on)).toBe(true);
    expect(unit.coil[4]).toBe(1);
    serveRequest(unit, adu(1, [5, ...u16(4), 0x00, 0x00]), onWrite);
    expect(unit.coil[4]).toBe(0);
    const reg = adu(1, [6, ...u16(9), ...u16(600)]);
    expect(serveRequest(unit, reg, onWrite).equals(reg)).toBe(true);
    expect(unit.holding[9]).toBe(600);
    expect(onWrite.mock.calls).toEqual([
      ["coil", 4, 1],
      ["coil", 4, 1],
      ["holding", 9, 1],
    ]);
  });

  it("FC5 refuses values other than FF00 and 0000", () => {
    const unit = new UnitMemory({ unitId: 1 });
    const res = serveRequest(unit, adu(1, [5, ...u16(4), 0x00, 0x01]));
    expect(exceptionOf(res)).toBe(ModbusException.ILLEGAL_DATA_VALUE);
    expect(res.readUInt8(7)).toBe(0x85);
  });

  it("FC15 and FC16 write several items and answer address and quantity", () => {
    const unit = new UnitMemory({ unitId: 1 });
    const onWrite = vi.fn();
    const coils = serveRequest(unit, adu(1, [15, ...u16(100), ...u16(10), 2, 0xcd, 0x01]), onWrite);
    expect(pdu(coils)).toEqual([15, ...u16(100), ...u16(10)]);
    expect([...unit.coil.subarray(100, 110)]).toEqual([1, 0, 1, 1, 0, 0, 1, 1, 1, 0]);
    const regs = serveRequest(
      unit,
      adu(1, [16, ...u16(5), ...u16(2), 4, ...u16(1), ...u16(65535)]),
      onWrite,
    );
    expect(pdu(regs)).toEqual([16, ...u16(5), ...u16(2)]);
    expect([...unit.holding.subarray(5, 7)]).toEqual([1, 65535]);
    expect(onWrite.mock.calls).toEqual([
      ["coil", 100, 10],
      ["holding", 5, 2],
    ]);
  });

  it.each([
    ["FC1 0 bits", [1, ...u16(0), ...u16(0)]],
    ["FC1 2001 bits", [1, ...u16(0), ...u16(2001)]],
    ["FC2 2001 bits", [2, ...u16(0), ...u16(2001)]],
    ["FC3 0 registers", [3, ...u16(0), ...u16(0)]],
    ["FC3 126 registers", [3, ...u16(0), ...u16(126)]],
    ["FC4 126 registers", [4, ...u16(0), ...u16(126)]],
    ["FC15 1969 coils", [15, ...u16(0), ...u16(1969), 247, ...new Array<number>(247).fill(0)]],
    ["FC15 byte count wrong", [15, ...u16(0), ...u16(9), 1, 0]],
    ["FC16 124 registers", [16, ...u16(0), ...u16(124), 248, ...new Array<number>(246).fill(0)]],
    ["FC16 byte count wrong", [16, ...u16(0), ...u16(2), 2, 0, 0]],
    ["FC16 data short", [16, ...u16(0), ...u16(2), 4, 0, 0]],
    ["FC3 PDU too short", [3, ...u16(0)]],
  ])("answers exception 03 for %s", (_name, bytes) => {
    const unit = new UnitMemory({ unitId: 1 });
    expect(exceptionOf(serveRequest(unit, adu(1, bytes)))).toBe(3);
  });

  it("accepts the largest legal quantities", () => {
    const unit = new UnitMemory({ unitId: 1 });
    expect(exceptionOf(serveRequest(unit, adu(1, [1, ...u16(0), ...u16(2000)])))).toBeUndefined();
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(0), ...u16(125)])))).toBeUndefined();
    const fc15 = [15, ...u16(0), ...u16(1968), 246, ...new Array<number>(246).fill(0xff)];
    expect(exceptionOf(serveRequest(unit, adu(1, fc15)))).toBeUndefined();
    expect(unit.coil[1967]).toBe(1);
    const fc16 = [16, ...u16(0), ...u16(123), 246, ...new Array<number>(246).fill(1)];
    expect(exceptionOf(serveRequest(unit, adu(1, fc16)))).toBeUndefined();
  });

  it("answers exception 02 past address 65535", () => {
    const unit = new UnitMemory({ unitId: 1 });
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(65535), ...u16(2)])))).toBe(2);
    expect(exceptionOf(serveRequest(unit, adu(1, [1, ...u16(65000), ...u16(600)])))).toBe(2);
    expect(
      exceptionOf(serveRequest(unit, adu(1, [16, ...u16(65535), ...u16(2), 4, 0, 0, 0, 0]))),
    ).toBe(2);
  });

  it("answers exception 02 whenever a request touches a hole, and writes nothing", () => {
    const unit = new UnitMemory({
      unitId: 1,
      holes: [
        { table: "holding", from: 99, to: 109 },
        { table: "coil", from: 8, to: 8 },
      ],
    });
    const onWrite = vi.fn();
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(90), ...u16(10)])))).toBe(2);
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(109), ...u16(1)])))).toBe(2);
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(89), ...u16(10)])))).toBeUndefined();
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(110), ...u16(10)])))).toBeUndefined();
    // Input registers at the same addresses are another table.
    expect(exceptionOf(serveRequest(unit, adu(1, [4, ...u16(100), ...u16(1)])))).toBeUndefined();
    expect(exceptionOf(serveRequest(unit, adu(1, [6, ...u16(100), ...u16(1)]), onWrite))).toBe(2);
    expect(
      exceptionOf(serveRequest(unit, adu(1, [16, ...u16(98), ...u16(2), 4, 0, 1, 0, 1]), onWrite)),
    ).toBe(2);
    expect(exceptionOf(serveRequest(unit, adu(1, [5, ...u16(8), 0xff, 0]), onWrite))).toBe(2);
    expect(exceptionOf(serveRequest(unit, adu(1, [1, ...u16(0), ...u16(16)])))).toBe(2);
    expect(unit.holding[98]).toBe(0);
    expect(onWrite).not.toHaveBeenCalled();
  });

  it("checks the quantity (03) before the address (02), as the spec orders them", () => {
    const unit = new UnitMemory({ unitId: 1, holes: [{ table: "holding", from: 0, to: 0 }] });
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(0), ...u16(200)])))).toBe(3);
  });

  it("honours a unit's smaller maxRegistersPerRequest for reads and FC16", () => {
    const unit = new UnitMemory({ unitId: 1, maxRegistersPerRequest: 16 });
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(0), ...u16(16)])))).toBeUndefined();
    expect(exceptionOf(serveRequest(unit, adu(1, [3, ...u16(0), ...u16(17)])))).toBe(3);
    expect(exceptionOf(serveRequest(unit, adu(1, [4, ...u16(0), ...u16(17)])))).toBe(3);
    const fc16 = [16, ...u16(0), ...u16(17), 34, ...new Array<number>(34).fill(0)];
    expect(exceptionOf(serveRequest(unit, adu(1, fc16)))).toBe(3);
  });

  it("answers exception 01 for function codes it does not implement", () => {
    const unit = new UnitMemory({ unitId: 1 });
    for (const fc of [0x07, 0x11, 0x16, 0x17, 0x2b, 0x41]) {
      const res = serveRequest(unit, adu(1, [fc, 0, 0, 0, 1]));
      expect(res.readUInt8(7)).toBe(fc | 0x80);
      expect(exceptionOf(res)).toBe(ModbusException.ILLEGAL_FUNCTION);
    }
  });
});
