import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { ModbusTable } from "../../core/types.js";
import { EXCEPTION_NAMES } from "./planner.js";

/**
 * One open Modbus connection as the driver uses it: MBAP over TCP (MbapClient), or RTU frames on
 * a serial line or a TCP socket (RtuClient, on modbus-serial). One transaction at a time: the
 * driver's IoQueue serialises them. Every failure is a ShadowgateError: MODBUS_EXCEPTION (with
 * `details.exceptionCode`), MODBUS_TIMEOUT, MODBUS_BAD_FRAME or MODBUS_DISCONNECTED.
 */
export interface ModbusLink {
  /** FC1-FC4: exactly `count` bits (0/1) or words (0..65535). */
  read(unitId: number, table: ModbusTable, address: number, count: number): Promise<number[]>;
  /** FC5/FC6 for one value, FC15/FC16 for several; resolves once the device echoed the request. */
  write(
    unitId: number,
    table: "coil" | "holding",
    address: number,
    data: readonly number[],
  ): Promise<void>;
  /** Closes the connection now; a transaction still waiting fails with MODBUS_DISCONNECTED. */
  close(reason: string): Promise<void>;
}

/** What a link tells the driver besides the answers to its requests. */
export interface LinkEvents {
  /**
   * A frame was dropped. `kind` names the problem (protocol-id, byte-count, stray, crc...) so
   * that the driver logs each kind once per connection and counts every one in badFrames.
   */
  badFrame(kind: string, detail: string, unitId: number | undefined): void;
  /** The connection is gone: closed by the peer, an error, or by the link after a framing error. */
  closed(reason: string): void;
}

/** Function codes of the reads, per table (Modbus Application Protocol, 6.1-6.4). */
export const READ_FUNCTION: Readonly<Record<ModbusTable, number>> = {
  coil: 1,
  discreteInput: 2,
  holding: 3,
  input: 4,
};

/** Data bytes of the answer to a read: two per register, one per eight bits. */
export function readDataBytes(table: ModbusTable, count: number): number {
  return table === "holding" || table === "input" ? count * 2 : Math.ceil(count / 8);
}

export function exceptionError(exceptionCode: number, unitId: number): ShadowgateError {
  const name = EXCEPTION_NAMES[exceptionCode] ?? "unknown exception";
  return new ShadowgateError(
    ErrorCodes.MODBUS_EXCEPTION,
    `exception ${String(exceptionCode).padStart(2, "0")} (${name})`,
    { exceptionCode, unitId },
  );
}

export function timeoutError(unitId: number, more = ""): ShadowgateError {
  return new ShadowgateError(
    ErrorCodes.MODBUS_TIMEOUT,
    `unit ${unitId} did not answer in time${more}`,
    { unitId },
  );
}

export function badFrameError(unitId: number, detail: string): ShadowgateError {
  return new ShadowgateError(ErrorCodes.MODBUS_BAD_FRAME, `unit ${unitId}: ${detail}`, { unitId });
}

export function disconnectedError(reason: string): ShadowgateError {
  return new ShadowgateError(ErrorCodes.MODBUS_DISCONNECTED, `connection lost: ${reason}`);
}
