import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { MAX_MBAP_LENGTH } from "./pdu.js";
import { ModbusSimulator, type ModbusSimulatorOptions, type SimulatorStats } from "./simulator.js";
import type { TransactionQueue } from "./transactions.js";

export interface SimulatorOptions extends ModbusSimulatorOptions {
  /** Each connection is closed right after its Nth request has been handled. */
  readonly dropAfterRequests?: number;
}

interface Connection {
  readonly socket: Socket;
  /** Bytes of an incomplete frame carried over to the next chunk. */
  pending: Buffer | undefined;
  /** Frames waiting behind a delayed response: answers go out in request order. */
  readonly transactions: TransactionQueue;
  handled: number;
  closed: boolean;
}

/**
 * A Modbus TCP slave on node:net, built for tests and benchmarks: per-connection framing that
 * copes with merged and split frames, answers in request order, and faults on demand (delay,
 * silent units, unknown units, dropped connections, holes, short request limits). The same
 * units can also be served over a serial line (`startRtu()`, from ModbusSimulator).
 *
 * Requests on one connection are served one after another, like a real device or an RS-485
 * gateway: with a response delay, a pipelining client waits delay x depth for its last answer.
 */
export class ModbusTcpSimulator extends ModbusSimulator {
  /** Settable at runtime; applies to requests handled from then on. undefined: never. */
  dropAfterRequests: number | undefined;

  private readonly connections = new Set<Connection>();
  private server: Server | undefined;
  private accepted = 0;

  constructor(opts: SimulatorOptions = {}) {
    super(opts);
    this.dropAfterRequests = opts.dropAfterRequests;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  /** Listens (port 0: a free port) and starts the profile's dynamics. */
  async start(opts: { host?: string; port?: number } = {}): Promise<{ port: number }> {
    if (this.server) throw new Error("the simulator is already started");
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: opts.host ?? "127.0.0.1", port: opts.port ?? 0 }, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      this.server = undefined;
      throw err;
    }
    this.profile?.start();
    return { port: (server.address() as AddressInfo).port };
  }

  /**
   * Stops the dynamics, destroys every connection, closes the listener and the serial link.
   * Idempotent.
   */
  override async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.dropConnections();
    await Promise.all([
      super.stop(),
      server && new Promise<void>((resolve) => server.close(() => resolve())),
    ]);
  }

  /** Destroys every open connection now, mid-request or not. The listener stays open. */
  dropConnections(): void {
    for (const conn of [...this.connections]) this.close(conn);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  protected override connectionStats(): SimulatorStats["connections"] {
    return { open: this.connections.size, accepted: this.accepted };
  }

  private accept(socket: Socket): void {
    if (!this.server) {
      socket.destroy();
      return;
    }
    this.accepted++;
    socket.setNoDelay(true);
    const conn: Connection = {
      socket,
      pending: undefined,
      transactions: this.openQueue({
        broadcast: false,
        unknownUnit: () => this.unknownUnit,
        requestMs: () => 0,
        responseMs: () => 0,
        send: (response) => socket.write(response),
        afterRequest: () => this.afterRequest(conn),
        cork: () => socket.cork(),
        uncork: () => socket.uncork(),
      }),
      handled: 0,
      closed: false,
    };
    this.connections.add(conn);
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    // Resets from clients that vanish are routine for a simulator; 'close' follows.
    socket.on("error", () => undefined);
    socket.on("close", () => this.close(conn));
  }

  private close(conn: Connection): void {
    conn.closed = true;
    conn.transactions.close();
    this.connections.delete(conn);
    conn.socket.destroy();
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    const receivedAt = performance.now();
    const buf = conn.pending ? Buffer.concat([conn.pending, chunk]) : chunk;
    conn.pending = undefined;
    let offset = 0;
    // Corking turns the answers to a burst of merged frames into one write.
    conn.socket.cork();
    while (buf.length - offset >= 6) {
      const length = buf.readUInt16BE(offset + 4);
      if (length < 2 || length > MAX_MBAP_LENGTH) {
        // Framing is lost for good: no way to find the next header. Devices reset here too.
        this.close(conn);
        return;
      }
      const end = offset + 6 + length;
      if (end > buf.length) break;
      const frame = buf.subarray(offset, end);
      offset = end;
      // Not Modbus: the spec says ignore it.
      if (frame.readUInt16BE(2) !== 0) this.countIgnoredFrame();
      else conn.transactions.push({ adu: frame, receivedAt });
      if (conn.closed) return;
    }
    if (offset < buf.length) conn.pending = buf.subarray(offset);
    conn.socket.uncork();
  }

  private afterRequest(conn: Connection): void {
    conn.handled++;
    const limit = this.dropAfterRequests;
    if (limit !== undefined && conn.handled >= limit && !conn.closed) {
      conn.closed = true;
      conn.transactions.close();
      this.connections.delete(conn);
      const socket = conn.socket;
      // end() flushes the last answer before the FIN; destroy() makes sure the socket goes.
      socket.uncork();
      socket.end(() => socket.destroy());
    }
  }
}
