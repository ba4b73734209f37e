/** Serial line settings that decide how long a frame holds an RS-485 line. */
export interface SerialLine {
  readonly baud: number;
  readonly dataBits: 7 | 8;
  readonly parity: "none" | "even" | "odd";
  readonly stopBits: 1 | 2;
}

export interface LineTiming {
  /** Bits on the wire per character: start + data + parity + stop. */
  readonly bitsPerChar: number;
  /** Milliseconds one character takes. */
  readonly charMs: number;
  /**
   * The silence that ends a frame (t3.5): 3.5 characters, fixed at 1.75 ms above 19200 baud
   * (Modbus over serial line, 2.5.1.1), where 3.5 characters would be too short for UARTs to time.
   */
  readonly silenceMs: number;
  /** Milliseconds `bytes` take on the wire. */
  wireMs(bytes: number): number;
}

export function lineTiming(line: SerialLine): LineTiming {
  const bitsPerChar = 1 + line.dataBits + (line.parity === "none" ? 0 : 1) + line.stopBits;
  const charMs = (bitsPerChar * 1000) / line.baud;
  return {
    bitsPerChar,
    charMs,
    silenceMs: line.baud > 19200 ? 1.75 : 3.5 * charMs,
    wireMs: (bytes) => bytes * charMs,
  };
}

/** The Modbus RTU CRC (CRC-16, polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first. */
export function crc16(frame: Uint8Array): number {
  let crc = 0xffff;
  for (const byte of frame) {
    crc ^= byte;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** unit id + PDU + CRC. */
export function rtuFrame(unitId: number, pdu: Uint8Array): Buffer {
  const frame = Buffer.alloc(pdu.length + 3);
  frame[0] = unitId;
  frame.set(pdu, 1);
  frame.writeUInt16LE(crc16(frame.subarray(0, -2)), frame.length - 2);
  return frame;
}
