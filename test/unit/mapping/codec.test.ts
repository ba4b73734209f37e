import { describe, expect, it } from "vitest";
import { ErrorCodes, ShadowgateError } from "../../../src/core/errors.js";
import {
  decodeRegisters,
  encodeRegisters,
  registerCount,
  resolveByteOrder,
} from "../../../src/mapping/codec.js";
import type { ByteOrder, CodecSpec, PointType } from "../../../src/mapping/types.js";
import { seededRandom } from "../../helpers/random.js";

const spec = (type: PointType, extra: Partial<CodecSpec> = {}): CodecSpec => ({
  type,
  byteOrder: resolveByteOrder(type, extra.byteOrder),
  ...extra,
});

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowgateError) return e.code;
    throw e;
  }
  return undefined;
};

describe("byte orders (architecture.md conventions)", () => {
  // 0x41200000 is 10.0f: bytes A=41 B=20 C=00 D=00.
  const cases: Array<[ByteOrder, number[]]> = [
    ["ABCD", [0x4120, 0x0000]],
    ["CDAB", [0x0000, 0x4120]],
    ["BADC", [0x2041, 0x0000]],
    ["DCBA", [0x0000, 0x2041]],
  ];
  for (const [order, words] of cases) {
    it(`float32 ${order}`, () => {
      expect(decodeRegisters(spec("float32", { byteOrder: order }), words)).toBe(10);
      expect(encodeRegisters(spec("float32", { byteOrder: order }), 10)).toEqual(words);
    });
  }

  // int64 0x0102030405060708: bytes A..H = 01..08.
  const v64 = 0x0102030405060708n;
  const cases64: Array<[ByteOrder, number[]]> = [
    ["ABCD", [0x0102, 0x0304, 0x0506, 0x0708]], // ABCDEFGH
    ["DCBA", [0x0807, 0x0605, 0x0403, 0x0201]], // HGFEDCBA
    ["BADC", [0x0201, 0x0403, 0x0605, 0x0807]], // BADCFEHG
    ["CDAB", [0x0708, 0x0506, 0x0304, 0x0102]], // GHEFCDAB
  ];
  for (const [order, words] of cases64) {
    it(`int64 ${order}`, () => {
      const s = spec("int64", { byteOrder: order });
      expect(decodeRegisters(s, words)).toBe(v64.toString());
      expect(encodeRegisters(s, v64.toString())).toEqual(words);
    });
  }

  it("16-bit AB and BA", () => {
    expect(decodeRegisters(spec("uint16"), [0x1234])).toBe(0x1234);
    expect(decodeRegisters(spec("uint16", { byteOrder: "BA" }), [0x1234])).toBe(0x3412);
    expect(encodeRegisters(spec("int16", { byteOrder: "BA" }), -2)).toEqual([0xfeff]);
  });
});

describe("integers", () => {
  it("int16 and uint16 round-trip over every word", () => {
    for (const order of ["AB", "BA"] as const) {
      for (const type of ["int16", "uint16"] as const) {
        const s = spec(type, { byteOrder: order });
        for (let w = 0; w <= 0xffff; w++) {
          const v = decodeRegisters(s, [w]);
          expect(encodeRegisters(s, v)).toEqual([w]);
        }
      }
    }
  });

  it("int16 edges", () => {
    expect(decodeRegisters(spec("int16"), [0x8000])).toBe(-32768);
    expect(decodeRegisters(spec("int16"), [0x7fff])).toBe(32767);
    expect(code(() => encodeRegisters(spec("int16"), 32768))).toBe(ErrorCodes.CODEC_RANGE);
    expect(code(() => encodeRegisters(spec("uint16"), -1))).toBe(ErrorCodes.CODEC_RANGE);
    expect(code(() => encodeRegisters(spec("int16"), 1.5))).toBe(ErrorCodes.CODEC_RANGE);
    expect(code(() => encodeRegisters(spec("int16"), "7"))).toBe(ErrorCodes.CODEC_TYPE);
  });

  it("32-bit types round-trip over random words and the edges, all byte orders", () => {
    const r = seededRandom(1);
    for (const order of ["ABCD", "CDAB", "BADC", "DCBA"] as const) {
      for (const type of ["int32", "uint32"] as const) {
        const s = spec(type, { byteOrder: order });
        const samples: number[][] = [
          [0, 0],
          [0xffff, 0xffff],
          [0x8000, 0],
          [0, 0x8000],
          [0x7fff, 0xffff],
          [0xffff, 0x7fff],
        ];
        for (let i = 0; i < 5000; i++) {
          samples.push([Math.floor(r() * 65536), Math.floor(r() * 65536)]);
        }
        for (const words of samples) {
          expect(encodeRegisters(s, decodeRegisters(s, words))).toEqual(words);
        }
      }
    }
    expect(decodeRegisters(spec("int32"), [0x8000, 0])).toBe(-2147483648);
    expect(decodeRegisters(spec("uint32"), [0xffff, 0xffff])).toBe(4294967295);
    expect(code(() => encodeRegisters(spec("uint32"), 4294967296))).toBe(ErrorCodes.CODEC_RANGE);
  });

  it("64-bit integers are numbers while exact, decimal strings beyond 2^53 - 1", () => {
    const s = spec("int64");
    expect(decodeRegisters(s, [0x001f, 0xffff, 0xffff, 0xffff])).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeRegisters(s, [0x0020, 0, 0, 0])).toBe("9007199254740992");
    expect(decodeRegisters(s, [0xffe0, 0, 0, 0x0001])).toBe(-Number.MAX_SAFE_INTEGER);
    expect(decodeRegisters(s, [0x8000, 0, 0, 0])).toBe("-9223372036854775808");
    expect(decodeRegisters(spec("uint64"), [0xffff, 0xffff, 0xffff, 0xffff])).toBe(
      "18446744073709551615",
    );
    const r = seededRandom(2);
    for (const type of ["int64", "uint64"] as const) {
      for (const order of ["ABCD", "CDAB", "BADC", "DCBA"] as const) {
        const t = spec(type, { byteOrder: order });
        for (let i = 0; i < 2000; i++) {
          const words = [0, 1, 2, 3].map(() => Math.floor(r() * 65536));
          expect(encodeRegisters(t, decodeRegisters(t, words))).toEqual(words);
        }
      }
    }
    expect(code(() => encodeRegisters(spec("uint64"), "18446744073709551616"))).toBe(
      ErrorCodes.CODEC_RANGE,
    );
    expect(code(() => encodeRegisters(spec("int64"), 2 ** 60))).toBe(ErrorCodes.CODEC_RANGE);
  });
});

describe("floats", () => {
  it("float32 round-trips over random bit patterns in every byte order", () => {
    const r = seededRandom(3);
    for (const order of ["ABCD", "CDAB", "BADC", "DCBA"] as const) {
      const s = spec("float32", { byteOrder: order });
      let checked = 0;
      while (checked < 5000) {
        const words = [Math.floor(r() * 65536), Math.floor(r() * 65536)];
        let v: unknown;
        try {
          v = decodeRegisters(s, words);
        } catch {
          continue; // NaN / Infinity patterns, tested below
        }
        const back = encodeRegisters(s, v);
        // -0 and +0 are distinct bit patterns and both survive.
        expect(back).toEqual(words);
        checked++;
      }
    }
  });

  it("float32 reports the shortest decimal", () => {
    const words = encodeRegisters(spec("float32"), 0.1);
    expect(decodeRegisters(spec("float32"), words)).toBe(0.1);
    expect(decodeRegisters(spec("float32"), [0x41ac, 0x0000])).toBe(21.5);
  });

  it("float64 round-trips and keeps full precision", () => {
    const r = seededRandom(4);
    const s = spec("float64", { byteOrder: "DCBA" });
    for (let i = 0; i < 5000; i++) {
      const v = (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
      expect(decodeRegisters(s, encodeRegisters(s, v))).toBe(v);
    }
    expect(decodeRegisters(spec("float64"), encodeRegisters(spec("float64"), Math.PI))).toBe(
      Math.PI,
    );
  });

  it("NaN and Infinity are refused both ways, on purpose", () => {
    expect(code(() => decodeRegisters(spec("float32"), [0x7fc0, 0]))).toBe(
      ErrorCodes.CODEC_NOT_FINITE,
    );
    expect(code(() => decodeRegisters(spec("float32"), [0x7f80, 0]))).toBe(
      ErrorCodes.CODEC_NOT_FINITE,
    );
    expect(code(() => decodeRegisters(spec("float64"), [0xfff0, 0, 0, 0]))).toBe(
      ErrorCodes.CODEC_NOT_FINITE,
    );
    expect(code(() => encodeRegisters(spec("float32"), Number.NaN))).toBe(
      ErrorCodes.CODEC_NOT_FINITE,
    );
    expect(code(() => encodeRegisters(spec("float64"), Infinity))).toBe(
      ErrorCodes.CODEC_NOT_FINITE,
    );
    expect(code(() => encodeRegisters(spec("int16"), Number.NaN))).toBe(
      ErrorCodes.CODEC_NOT_FINITE,
    );
    expect(code(() => encodeRegisters(spec("float32"), 1e39))).toBe(ErrorCodes.CODEC_RANGE);
  });
});

describe("scale, offset, enum, bit, bool, string", () => {
  it("scale and offset invert exactly on the point's resolution", () => {
    const s = spec("int16", { scale: 0.1 });
    expect(decodeRegisters(s, [215])).toBe(21.5);
    expect(decodeRegisters(s, [3])).toBe(0.3);
    expect(encodeRegisters(s, 21.5)).toEqual([215]);
    for (let w = 0; w <= 0xffff; w++) {
      expect(encodeRegisters(s, decodeRegisters(s, [w]))).toEqual([w]);
    }
    expect(code(() => encodeRegisters(s, 21.37))).toBe(ErrorCodes.CODEC_RANGE);
    const o = spec("uint16", { scale: 0.5, offset: -40 });
    expect(decodeRegisters(o, [100])).toBe(10);
    expect(encodeRegisters(o, 10)).toEqual([100]);
    expect(code(() => encodeRegisters(o, -41))).toBe(ErrorCodes.CODEC_RANGE);
    const f = spec("float32", { scale: 2, offset: 1 });
    expect(decodeRegisters(f, encodeRegisters(f, 11))).toBe(11);
  });

  it("enum maps raw integers to labels and back", () => {
    const s = spec("uint16", { enum: { "0": "idle", "1": "heating", "2": "fault" } });
    expect(decodeRegisters(s, [1])).toBe("heating");
    expect(decodeRegisters(s, [7])).toBe(7); // unknown raw values stay visible as numbers
    expect(encodeRegisters(s, "fault")).toEqual([2]);
    expect(encodeRegisters(s, 2)).toEqual([2]);
    expect(code(() => encodeRegisters(s, "boiling"))).toBe(ErrorCodes.CODEC_RANGE);
  });

  it("bit N counts from the least significant bit, and writing keeps the other bits", () => {
    for (let bit = 0; bit < 16; bit++) {
      const s = spec("uint16", { bit });
      expect(decodeRegisters(s, [1 << bit])).toBe(true);
      expect(decodeRegisters(s, [0xffff & ~(1 << bit)])).toBe(false);
      expect(encodeRegisters(s, true, [0x0000])).toEqual([1 << bit]);
      expect(encodeRegisters(s, false, [0xffff])).toEqual([0xffff & ~(1 << bit)]);
    }
    expect(code(() => encodeRegisters(spec("uint16", { bit: 3 }), true))).toBe(
      ErrorCodes.CODEC_TYPE,
    );
  });

  it("bool on a register is non-zero", () => {
    expect(decodeRegisters(spec("bool"), [0])).toBe(false);
    expect(decodeRegisters(spec("bool"), [5])).toBe(true);
    expect(encodeRegisters(spec("bool"), true)).toEqual([1]);
    expect(code(() => encodeRegisters(spec("bool"), 1))).toBe(ErrorCodes.CODEC_TYPE);
  });

  it("strings: two characters a register, high byte first unless BA, trailing NUL and spaces trimmed", () => {
    const s = spec("string", { length: 4 });
    expect(registerCount(s)).toBe(4);
    expect(decodeRegisters(s, [0x4142, 0x4344, 0x4520, 0x0000])).toBe("ABCDE");
    expect(encodeRegisters(s, "ABCDE")).toEqual([0x4142, 0x4344, 0x4500, 0x0000]);
    const ba = spec("string", { length: 2, byteOrder: "BA" });
    expect(decodeRegisters(ba, [0x4241, 0x0043])).toBe("ABC");
    expect(encodeRegisters(ba, "ABC")).toEqual([0x4241, 0x0043]);
    expect(code(() => encodeRegisters(ba, "ABCDE"))).toBe(ErrorCodes.CODEC_RANGE);
    expect(code(() => encodeRegisters(ba, "€"))).toBe(ErrorCodes.CODEC_TYPE);
  });

  it("too few words is an error, not a guess", () => {
    expect(code(() => decodeRegisters(spec("float32"), [1]))).toBe(ErrorCodes.CODEC_TYPE);
  });
});
