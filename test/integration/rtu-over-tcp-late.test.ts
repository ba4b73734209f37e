/**
 * A late answer over RTU-over-TCP (a serial device server): an RTU answer names no request, and
 * the device server forwards it whenever the slave sends it. Found by the Modbus fuzzer: an
 * answer to a timed-out read of address 10 arrived while the read of address 50 waited, and was
 * taken as its answer (good quality, address 10's value). After a timeout the client now keeps
 * one timeout of quiet and empties what arrived, so the next read gets its own answer.
 */
import { afterEach, expect, it } from "vitest";
import { testLogger } from "../helpers/logs.js";
import { ModbusDriver } from "../../src/south/modbus/modbus-driver.js";
import {
  eagerDriverOptions,
  readAnswerPdu,
  rtuFrameReference,
  ScriptedSlave,
} from "../helpers/hostile-modbus.js";

const TIMEOUT_MS = 100;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("a late answer to a timed-out read is never taken for the next read's answer", async () => {
  // Each register holds 1000 + its address; the first read's answer comes after its timeout.
  let first = true;
  const slave = new ScriptedSlave("rtu", (req) => {
    const values = Array.from({ length: req.quantity }, (_, i) => 1000 + req.address + i);
    const frame = { write: rtuFrameReference(req.unit, readAnswerPdu(req.fc, values)) };
    if (!first) return [frame];
    first = false;
    return [{ wait: TIMEOUT_MS * 1.5 }, frame];
  });
  const port = await slave.start();
  cleanups.push(() => slave.stop());
  const driver = new ModbusDriver(
    "late",
    eagerDriverOptions({ kind: "rtu-over-tcp", host: "127.0.0.1", port }, TIMEOUT_MS),
    testLogger(),
  );
  cleanups.push(() => driver.stop());
  await driver.start();
  const read = async (address: number) => {
    const [s] = await driver.read({
      unitId: 1,
      points: [{ key: "p", table: "holding", address, count: 1 }],
    });
    return s;
  };
  const late = await read(10);
  expect(late?.quality.status).not.toBe("good");
  const next = await read(50);
  expect(next?.quality.status).toBe("good");
  expect(next?.data).toEqual([1050]);
  expect((await read(51))?.data).toEqual([1051]);
});
