import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { SerialPort } from "serialport";

/**
 * A serial device server (a DTU, a Moxa NPort in TCP-server mode) for an RTU-over-TCP source's
 * simulator: it listens on TCP and carries the bytes of every connection to a serial line as
 * they are, and the line's bytes back to every connection. The RTU framing is the slave's
 * business at the line's other end, as it is in the field.
 */
export class SerialDeviceServer {
  private server: Server | undefined;
  private port: SerialPort | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly path: string) {}

  /** Opens the line, then listens on host:port (0: a free one). */
  async start(opts: { host: string; port: number }): Promise<{ port: number }> {
    const { SerialPort } = await import("serialport");
    const line = new SerialPort({ path: this.path, baudRate: 19200, autoOpen: false });
    await new Promise<void>((resolve, reject) =>
      line.open((err) => (err ? reject(err) : resolve())),
    );
    // A line that goes away: the master times out, as it would behind a real device server.
    line.on("error", () => undefined);
    line.on("data", (chunk: Buffer) => {
      for (const s of this.sockets) s.write(chunk);
    });
    this.port = line;
    const server = createServer({ noDelay: true }, (socket) => {
      this.sockets.add(socket);
      socket.on("data", (chunk) => line.write(chunk));
      socket.on("error", () => undefined);
      socket.on("close", () => this.sockets.delete(socket));
    });
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: opts.host, port: opts.port }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      await this.stop();
      throw e;
    }
    return { port: (server.address() as AddressInfo).port };
  }

  /** Closes every connection, the listener and the line. Idempotent. */
  async stop(): Promise<void> {
    const server = this.server;
    const line = this.port;
    this.server = undefined;
    this.port = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await Promise.all([
      server && new Promise<void>((resolve) => server.close(() => resolve())),
      line?.isOpen && new Promise<void>((resolve) => line.close(() => resolve())),
    ]);
  }
}
