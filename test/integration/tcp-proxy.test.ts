import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { TcpProxy } from "../../src/sim/tcp-proxy.js";

/** An echo server on a free port. */
async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on("error", () => undefined);
    s.pipe(s);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: (server.address() as AddressInfo).port };
}

/** Connects; resolves with the socket, or with the error that ended it before any data. */
async function dial(port: number): Promise<Socket> {
  const socket = connect({ port, host: "127.0.0.1" });
  socket.on("error", () => undefined);
  await once(socket, "connect");
  return socket;
}

/** Resolves when the socket has closed, whether with an error (a reset) or not. */
const closed = (socket: Socket): Promise<void> =>
  new Promise((resolve) => socket.once("close", () => resolve()));

/** Everything the socket receives until `bytes` have come, or it closes. */
function receive(socket: Socket, bytes: number): Promise<string> {
  return new Promise((resolve) => {
    let got = "";
    const done = () => resolve(got);
    socket.on("data", (b: Buffer) => {
      got += b.toString();
      if (got.length >= bytes) done();
    });
    socket.on("close", done);
  });
}

const closing: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of closing.splice(0).reverse()) await fn();
});

describe("TcpProxy", () => {
  async function setup() {
    const echo = await echoServer();
    const proxy = new TcpProxy({ targetPort: echo.port });
    await proxy.start();
    closing.push(() => new Promise<void>((r) => echo.server.close(() => r())));
    closing.push(() => proxy.stop());
    return { echo, proxy };
  }

  it("forwards both ways", async () => {
    const { proxy } = await setup();
    const s = await dial(proxy.port);
    closing.push(() => void s.destroy());
    const got = receive(s, 5);
    s.write("hello");
    expect(await got).toBe("hello");
    expect(proxy.stats()).toMatchObject({ accepted: 1, open: 1 });
  });

  it("cuts: closes open connections and refuses new ones until restored", async () => {
    const { proxy } = await setup();
    const s = await dial(proxy.port);
    await once(proxy, "connection");
    const gone = closed(s);
    proxy.cut();
    await gone;
    expect(proxy.isCut).toBe(true);
    const refused = connect({ port: proxy.port, host: "127.0.0.1" });
    refused.on("error", () => undefined);
    await closed(refused);
    expect(proxy.stats().refused).toBe(1);
    proxy.restore();
    const again = await dial(proxy.port);
    closing.push(() => void again.destroy());
    const got = receive(again, 2);
    again.write("up");
    expect(await got).toBe("up");
  });

  it("a timed cut ends by itself", async () => {
    const { proxy } = await setup();
    proxy.cut(50);
    expect(proxy.isCut).toBe(true);
    for (let i = 0; i < 100 && proxy.isCut; i++) await new Promise((r) => setTimeout(r, 10));
    expect(proxy.isCut).toBe(false);
  });

  it("resets open connections with RST and keeps accepting", async () => {
    const { proxy } = await setup();
    const s = await dial(proxy.port);
    await once(proxy, "connection");
    const error = new Promise<NodeJS.ErrnoException>((r) => s.once("error", r));
    proxy.reset();
    expect((await error).code).toBe("ECONNRESET");
    expect(proxy.stats().resets).toBe(1);
    const again = await dial(proxy.port);
    closing.push(() => void again.destroy());
    const got = receive(again, 2);
    again.write("ok");
    expect(await got).toBe("ok");
  });

  it("delays each chunk each way, keeping the order when the delay changes", async () => {
    const { proxy } = await setup();
    const s = await dial(proxy.port);
    closing.push(() => void s.destroy());
    proxy.delay = 60;
    const got = receive(s, 6);
    s.write("ab");
    await new Promise((r) => setTimeout(r, 5));
    proxy.delay = 0; // later chunks must not overtake the delayed one
    s.write("cd");
    s.write("ef");
    // Undelayed, "cd" and "ef" would have come back first.
    expect(await got).toBe("abcdef");
  });

  it("refuses a client when the target is down", async () => {
    const { echo, proxy } = await setup();
    await new Promise<void>((r) => echo.server.close(() => r()));
    const s = connect({ port: proxy.port, host: "127.0.0.1" });
    s.on("error", () => undefined);
    await closed(s);
    expect(proxy.stats()).toMatchObject({ accepted: 0, refused: 1, open: 0 });
  });
});
