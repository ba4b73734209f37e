import { describe, expect, it } from "vitest";
import { crc16, lineTiming, rtuFrame } from "../../../src/south/modbus/rtu-frame.js";

const hex = (b: Uint8Array): string =>
  Buffer.from(b).toString("hex").toUpperCase().match(/../g)!.join(" ");

describe("crc16 (CRC-16/MODBUS)", () => {
  it("gives the catalogue check value for '123456789'", () => {
    // The standard check value of CRC-16/MODBUS (poly 0x8005 reflected, init 0xFFFF).
    expect(crc16(Buffer.from("123456789", "ascii"))).toBe(0x4b37);
  });

  it("matches published request frames, low byte first", () => {
    // Read 10 holding registers from 0 at slave 1: 01 03 00 00 00 0A C5 CD.
    expect(hex(rtuFrame(1, Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a])))).toBe(
      "01 03 00 00 00 0A C5 CD",
    );
    // What libmodbus (mbpoll -a 1 -r 1 -c 1) sends: 01 03 00 00 00 01 84 0A.
    expect(hex(rtuFrame(1, Buffer.from([0x03, 0x00, 0x00, 0x00, 0x01])))).toBe(
      "01 03 00 00 00 01 84 0A",
    );
  });

  it("is 0 over a whole frame, CRC included (the receiver's check)", () => {
    const frame = rtuFrame(17, Buffer.from([0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0, 10, 1, 2]));
    expect(crc16(frame)).toBe(0);
    frame[3] = frame[3]! ^ 0x01;
    expect(crc16(frame)).not.toBe(0);
  });

  it("is 0xFFFF over nothing", () => {
    expect(crc16(new Uint8Array(0))).toBe(0xffff);
  });
});

describe("lineTiming", () => {
  it("counts start, data, parity and stop bits per character", () => {
    expect(lineTiming({ baud: 9600, dataBits: 8, parity: "none", stopBits: 1 }).bitsPerChar).toBe(
      10,
    );
    expect(lineTiming({ baud: 9600, dataBits: 8, parity: "even", stopBits: 1 }).bitsPerChar).toBe(
      11,
    );
    expect(lineTiming({ baud: 9600, dataBits: 8, parity: "none", stopBits: 2 }).bitsPerChar).toBe(
      11,
    );
    expect(lineTiming({ baud: 9600, dataBits: 7, parity: "odd", stopBits: 1 }).bitsPerChar).toBe(
      10,
    );
  });

  it("times characters and frames at 9600 8N1", () => {
    const t = lineTiming({ baud: 9600, dataBits: 8, parity: "none", stopBits: 1 });
    expect(t.charMs).toBeCloseTo(1000 / 960, 10);
    expect(t.silenceMs).toBeCloseTo(3.5 * (1000 / 960), 10);
    expect(t.wireMs(8)).toBeCloseTo(8000 / 960, 10);
    expect(t.wireMs(0)).toBe(0);
  });

  it("uses 3.5 characters up to 19200 baud and a fixed 1.75 ms above", () => {
    const at19200 = lineTiming({ baud: 19200, dataBits: 8, parity: "even", stopBits: 1 });
    expect(at19200.silenceMs).toBeCloseTo((3.5 * 11 * 1000) / 19200, 10);
    const at38400 = lineTiming({ baud: 38400, dataBits: 8, parity: "even", stopBits: 1 });
    expect(at38400.silenceMs).toBe(1.75);
    expect(at38400.charMs).toBeCloseTo((11 * 1000) / 38400, 10);
    expect(lineTiming({ baud: 115200, dataBits: 8, parity: "none", stopBits: 1 }).silenceMs).toBe(
      1.75,
    );
  });
});
