import type { ModbusTable } from "../../core/types.js";
import type { UnitMemory } from "./memory.js";

/** Exception codes of the Modbus application protocol spec that the simulator answers. */
export const ModbusException = {
  ILLEGAL_FUNCTION: 0x01,
  ILLEGAL_DATA_ADDRESS: 0x02,
  ILLEGAL_DATA_VALUE: 0x03,
  GATEWAY_TARGET_FAILED: 0x0b,
} as const;

/** MBAP header (7 bytes, unit id included) + function code. */
export const MBAP_LENGTH = 7;
/** The largest MBAP length field: unit id + a 253-byte PDU. */
export const MAX_MBAP_LENGTH = 254;

export type WriteListener = (table: ModbusTable, address: number, count: number) => void;

/** A response ADU with the request's transaction and unit id and room for `pduLength` bytes. */
function allocResponse(req: Buffer, pduLength: number): Buffer {
  const out = Buffer.allocUnsafe(MBAP_LENGTH + pduLength);
  out.writeUInt16BE(req.readUInt16BE(0), 0);
  out.writeUInt16BE(0, 2);
  out.writeUInt16BE(pduLength + 1, 4);
  out.writeUInt8(req.readUInt8(6), 6);
  return out;
}

/** The exception response for a request ADU. */
export function exceptionResponse(req: Buffer, code: number): Buffer {
  const out = allocResponse(req, 2);
  out.writeUInt8((req.readUInt8(7) | 0x80) & 0xff, 7);
  out.writeUInt8(code, 8);
  return out;
}

function readBits(req: Buffer, bits: Uint8Array, address: number, quantity: number): Buffer {
  const byteCount = (quantity + 7) >> 3;
  const out = allocResponse(req, 2 + byteCount);
  out[7] = req.readUInt8(7);
  out[8] = byteCount;
  for (let i = 0; i < byteCount; i++) {
    let b = 0;
    const base = address + i * 8;
    const n = Math.min(8, quantity - i * 8);
    for (let j = 0; j < n; j++) if (bits[base + j]) b |= 1 << j;
    out[9 + i] = b;
  }
  return out;
}

function readWords(req: Buffer, words: Uint16Array, address: number, quantity: number): Buffer {
  const out = allocResponse(req, 2 + quantity * 2);
  out[7] = req.readUInt8(7);
  out[8] = quantity * 2;
  for (let i = 0, o = 9; i < quantity; i++, o += 2) {
    const w = words[address + i]!;
    out[o] = w >> 8;
    out[o + 1] = w & 0xff;
  }
  return out;
}

/** The fixed 5-byte echo of FC15/FC16: function code, address, quantity. */
function writeMultipleResponse(req: Buffer): Buffer {
  const out = allocResponse(req, 5);
  req.copy(out, 7, 7, 12);
  return out;
}

/**
 * Serves one complete request ADU (MBAP header included) against a unit's memory and returns
 * the response ADU. Checks follow the spec's order: function code (01), quantity and framing
 * (03), then address range and holes (02). The caller has already checked the MBAP framing.
 */
export function serveRequest(unit: UnitMemory, req: Buffer, onWrite?: WriteListener): Buffer {
  const fc = req.readUInt8(7);
  const pduLength = req.length - MBAP_LENGTH;
  switch (fc) {
    case 0x01:
    case 0x02: {
      if (pduLength !== 5) return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      const address = req.readUInt16BE(8);
      const quantity = req.readUInt16BE(10);
      if (quantity < 1 || quantity > 2000) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      }
      const table = fc === 0x01 ? "coil" : "discreteInput";
      if (address + quantity > 65536 || unit.touchesHole(table, address, quantity)) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      return readBits(req, unit[table], address, quantity);
    }
    case 0x03:
    case 0x04: {
      if (pduLength !== 5) return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      const address = req.readUInt16BE(8);
      const quantity = req.readUInt16BE(10);
      if (quantity < 1 || quantity > unit.maxRegistersPerRequest) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      }
      const table = fc === 0x03 ? "holding" : "input";
      if (address + quantity > 65536 || unit.touchesHole(table, address, quantity)) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      return readWords(req, unit[table], address, quantity);
    }
    case 0x05: {
      if (pduLength !== 5) return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      const address = req.readUInt16BE(8);
      const value = req.readUInt16BE(10);
      if (value !== 0xff00 && value !== 0x0000) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      }
      if (unit.refusesWrite("coil", address, 1)) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      unit.coil[address] = value === 0xff00 ? 1 : 0;
      onWrite?.("coil", address, 1);
      // The normal response is an echo of the request.
      return req;
    }
    case 0x06: {
      if (pduLength !== 5) return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      const address = req.readUInt16BE(8);
      if (unit.refusesWrite("holding", address, 1)) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      unit.holding[address] = req.readUInt16BE(10);
      onWrite?.("holding", address, 1);
      return req;
    }
    case 0x0f: {
      if (pduLength < 6) return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      const address = req.readUInt16BE(8);
      const quantity = req.readUInt16BE(10);
      const byteCount = req.readUInt8(12);
      if (
        quantity < 1 ||
        quantity > 1968 ||
        byteCount !== (quantity + 7) >> 3 ||
        pduLength !== 6 + byteCount
      ) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      }
      if (address + quantity > 65536 || unit.refusesWrite("coil", address, quantity)) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      const coils = unit.coil;
      for (let i = 0; i < quantity; i++) {
        coils[address + i] = (req[13 + (i >> 3)]! >> (i & 7)) & 1;
      }
      onWrite?.("coil", address, quantity);
      return writeMultipleResponse(req);
    }
    case 0x10: {
      if (pduLength < 6) return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      const address = req.readUInt16BE(8);
      const quantity = req.readUInt16BE(10);
      const byteCount = req.readUInt8(12);
      if (
        quantity < 1 ||
        quantity > Math.min(123, unit.maxRegistersPerRequest) ||
        byteCount !== quantity * 2 ||
        pduLength !== 6 + byteCount
      ) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_VALUE);
      }
      if (address + quantity > 65536 || unit.refusesWrite("holding", address, quantity)) {
        return exceptionResponse(req, ModbusException.ILLEGAL_DATA_ADDRESS);
      }
      const holding = unit.holding;
      for (let i = 0, o = 13; i < quantity; i++, o += 2) holding[address + i] = req.readUInt16BE(o);
      onWrite?.("holding", address, quantity);
      return writeMultipleResponse(req);
    }
    default:
      return exceptionResponse(req, ModbusException.ILLEGAL_FUNCTION);
  }
}
