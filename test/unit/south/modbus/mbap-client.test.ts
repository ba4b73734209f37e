/**
 * MbapClient on its own, against a loopback server that checks the request bytes and chooses
 * how the answer is cut into TCP segments.
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCodes } from "../../../../src/core/errors.js";
import { MbapClient } from "../../../../src/south/modbus/mbap-client.js";
import type { LinkEvents } from "../../../../src/south/modbus/modbus-link.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server that hands each request (whole, as bytes) to `answer`, which writes what it likes. */
async function server(answer: (request: Buffer, socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const srv: Server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on("error", () => undefined);
    socket.on("data", (request: Buffer) => answer(request, socket));
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => srv.close(resolve));
  });
  return (srv.address() as AddressInfo).port;
}

async function client(port: number) {
  const frames: string[] = [];
  const closed: string[] = [];
  const events: LinkEvents = {
    badFrame: (kind) => frames.push(kind),
    closed: (reason) => closed.push(reason),
  };
  const c = await MbapClient.connect({ host: "127.0.0.1", port, timeoutMs: 500 }, events);
  cleanups.push(() => c.close("test over"));
  return { c, frames, closed };
}

/** The answer's MBAP header for `request`, then `pdu`. */
function answer(request: Buffer, pdu: readonly number[]): Buffer {
  const head = Buffer.from(request.subarray(0, 7));
  head.writeUInt16BE(pdu.length + 1, 4);
  return Buffer.concat([head, Buffer.from(pdu)]);
}

describe("MbapClient", () => {
  it("reassembles an answer that arrives one byte per segment", async () => {
    const port = await server((request, socket) => {
      const bytes = answer(request, [4, 4, 0x12, 0x34, 0xab, 0xcd]);
      let i = 0;
      const next = (): void => {
        if (i < bytes.length) socket.write(bytes.subarray(i, ++i), () => setTimeout(next, 1));
      };
      next();
    });
    const { c, frames } = await client(port);
    expect(await c.read(1, "input", 7, 2)).toEqual([0x1234, 0xabcd]);
    expect(frames).toEqual([]);
  });

  it("sends FC2 and decodes bits least significant first; sends FC15 with the bits packed the same way", async () => {
    const seen: Buffer[] = [];
    const port = await server((request, socket) => {
      seen.push(request);
      const fc = request.readUInt8(7);
      if (fc === 2) socket.write(answer(request, [2, 2, 0b10000101, 0b00000010]));
      else socket.write(answer(request, [...request.subarray(7, 12)]));
    });
    const { c } = await client(port);
    expect(await c.read(3, "discreteInput", 100, 10)).toEqual([1, 0, 1, 0, 0, 0, 0, 1, 0, 1]);
    await c.write(3, "coil", 20, [1, 1, 0, 0, 0, 0, 0, 0, 1]);
    const [read, write] = seen;
    // Transaction ids count up; protocol id 0; length 6; unit 3; FC2 at 100 for 10.
    expect(read?.toString("hex")).toBe("000100000006" + "03" + "02" + "0064" + "000a");
    expect(write?.toString("hex")).toBe(
      "000200000009" + "03" + "0f" + "0014" + "0009" + "02" + "03" + "01",
    );
  });

  it("turns an exception answer into MODBUS_EXCEPTION with its code", async () => {
    const port = await server((request, socket) => socket.write(answer(request, [0x83, 0x02])));
    const { c, closed } = await client(port);
    await expect(c.read(1, "holding", 0, 1)).rejects.toMatchObject({
      code: ErrorCodes.MODBUS_EXCEPTION,
      details: { exceptionCode: 2 },
    });
    expect(closed).toEqual([]);
  });

  it("fails a request with MODBUS_DISCONNECTED when the peer closes, and says so once", async () => {
    const port = await server((_request, socket) => socket.destroy());
    const { c, closed } = await client(port);
    await expect(c.read(1, "holding", 0, 1)).rejects.toMatchObject({
      code: ErrorCodes.MODBUS_DISCONNECTED,
    });
    expect(closed).toEqual(["connection closed by peer"]);
    await expect(c.read(1, "holding", 0, 1)).rejects.toMatchObject({
      code: ErrorCodes.MODBUS_DISCONNECTED,
    });
  });
});
