import { EventEmitter } from "node:events";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * A TCP proxy that injects network faults between a client and a server, for fault-injection
 * tests and benchmarks (a gateway and its MQTT broker): it forwards bytes both ways and, on
 * demand,
 * - cuts the link: destroys every connection and refuses new ones (accepted, then reset) until
 *   restored, like a mobile link going down;
 * - resets every open connection (TCP RST) while accepting new ones, like a NAT timeout;
 * - delays every chunk in both directions by a fixed latency, keeping the byte order.
 *
 * Everything listens on 127.0.0.1 (a free port by default). The target is looked up per
 * connection, so a restarted server on another port can be followed with `setTarget`.
 *
 *   const proxy = new TcpProxy({ targetPort: broker.port });
 *   const { port } = await proxy.start();
 *   proxy.cut(2000);   // down for 2 s
 *   proxy.reset();     // RST now
 *   proxy.delay = 300; // 300 ms each way
 */
export interface TcpProxyOptions {
  readonly targetPort: number;
  readonly targetHost?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly host?: string;
}

export interface TcpProxyStats {
  /** Connections forwarded to the target. */
  readonly accepted: number;
  /** Connections refused while the link was cut, or because the target refused them. */
  readonly refused: number;
  readonly cuts: number;
  /** Connections reset by `reset()`. */
  readonly resets: number;
  readonly open: number;
}

export interface TcpProxyEvents {
  /** A client connection was accepted and is being forwarded. */
  connection: [{ readonly id: number }];
  /** A forwarded connection ended, for whatever reason. */
  closed: [{ readonly id: number }];
}

interface Pair {
  readonly id: number;
  readonly client: Socket;
  readonly upstream: Socket;
  readonly toUpstream: DelayLine;
  readonly toClient: DelayLine;
  closed: boolean;
}

/** Chunks written on after `delay` ms each, never overtaking one another. */
class DelayLine {
  private readonly queue: Array<{ at: number; chunk: Buffer }> = [];
  private timer: NodeJS.Timeout | undefined;
  private lastAt = 0;
  private ending = false;

  constructor(
    private readonly out: Socket,
    private readonly delayMs: () => number,
  ) {}

  push(chunk: Buffer): void {
    const delay = this.delayMs();
    if (delay <= 0 && this.queue.length === 0) {
      this.out.write(chunk);
      return;
    }
    const at = Math.max(Date.now() + delay, this.lastAt);
    this.lastAt = at;
    this.queue.push({ at, chunk });
    this.schedule();
  }

  /** Ends the output once everything queued has gone. */
  end(): void {
    this.ending = true;
    if (this.queue.length === 0) this.out.end();
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    const head = this.queue[0];
    if (head === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        while (this.queue.length > 0 && (this.queue[0]?.at ?? Infinity) <= now) {
          const item = this.queue.shift();
          if (item && !this.out.destroyed) this.out.write(item.chunk);
        }
        if (this.queue.length === 0 && this.ending) this.out.end();
        this.schedule();
      },
      Math.max(0, head.at - Date.now()),
    );
  }
}

export class TcpProxy extends EventEmitter<TcpProxyEvents> {
  /** Latency added to every chunk in each direction, in ms; settable at any time. */
  delay = 0;
  private targetPort: number;
  private readonly targetHost: string;
  private server: Server | undefined;
  private boundPort = 0;
  private readonly pairs = new Set<Pair>();
  private cutUntil = 0;
  private cutTimer: NodeJS.Timeout | undefined;
  private nextId = 1;
  private counters = { accepted: 0, refused: 0, cuts: 0, resets: 0 };

  constructor(private readonly opts: TcpProxyOptions) {
    super();
    this.targetPort = opts.targetPort;
    this.targetHost = opts.targetHost ?? "127.0.0.1";
  }

  get port(): number {
    return this.boundPort;
  }

  /** Whether the link is cut now. */
  get isCut(): boolean {
    return Date.now() < this.cutUntil;
  }

  get connectionCount(): number {
    return this.pairs.size;
  }

  stats(): TcpProxyStats {
    return { ...this.counters, open: this.pairs.size };
  }

  /** New connections go to this port from now on; open ones stay where they are. */
  setTarget(port: number): void {
    this.targetPort = port;
  }

  async start(): Promise<{ port: number }> {
    if (this.server) throw new Error("the proxy is already started");
    const server = createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.opts.port ?? 0, this.opts.host ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.boundPort = (server.address() as AddressInfo).port;
    return { port: this.boundPort };
  }

  /**
   * The link goes down: every open connection is closed (a reset with `{ reset: true }`) and
   * new ones are refused, for `ms` milliseconds or, without it, until `restore()`.
   */
  cut(ms?: number, opts: { reset?: boolean } = {}): void {
    this.counters.cuts++;
    clearTimeout(this.cutTimer);
    this.cutTimer = undefined;
    this.cutUntil = ms === undefined ? Infinity : Date.now() + ms;
    if (ms !== undefined) {
      this.cutTimer = setTimeout(() => this.restore(), ms);
      this.cutTimer.unref();
    }
    for (const pair of [...this.pairs]) this.drop(pair, opts.reset === true);
  }

  /** The link is up again: new connections are forwarded. */
  restore(): void {
    clearTimeout(this.cutTimer);
    this.cutTimer = undefined;
    this.cutUntil = 0;
  }

  /** Resets (TCP RST) every open connection; new ones are accepted as usual. */
  reset(): void {
    for (const pair of [...this.pairs]) {
      this.counters.resets++;
      this.drop(pair, true);
    }
  }

  /** Closes the listener and every connection. Idempotent. */
  async stop(): Promise<void> {
    this.restore();
    const server = this.server;
    this.server = undefined;
    for (const pair of [...this.pairs]) this.drop(pair, false);
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    client.on("error", () => undefined);
    if (!this.server || this.isCut) {
      this.counters.refused++;
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = connect({ host: this.targetHost, port: this.targetPort, noDelay: true });
    upstream.on("error", () => undefined);
    const pair: Pair = {
      id: this.nextId++,
      client,
      upstream,
      toUpstream: new DelayLine(upstream, () => this.delay),
      toClient: new DelayLine(client, () => this.delay),
      closed: false,
    };
    this.pairs.add(pair);
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      this.counters.accepted++;
      this.emit("connection", { id: pair.id });
    });
    client.on("data", (chunk: Buffer) => pair.toUpstream.push(chunk));
    upstream.on("data", (chunk: Buffer) => pair.toClient.push(chunk));
    client.on("end", () => pair.toUpstream.end());
    upstream.on("end", () => pair.toClient.end());
    client.on("close", () => this.drop(pair, false));
    upstream.on("close", () => {
      // A target that refused the connection: the client sees a reset, as from the target.
      if (!connected) this.counters.refused++;
      this.drop(pair, !connected);
    });
  }

  private drop(pair: Pair, reset: boolean): void {
    if (pair.closed) return;
    pair.closed = true;
    this.pairs.delete(pair);
    pair.toUpstream.clear();
    pair.toClient.clear();
    for (const s of [pair.client, pair.upstream]) {
      if (s.destroyed) continue;
      // resetAndDestroy needs a connected socket; one still connecting is just destroyed.
      if (reset && !s.connecting) s.resetAndDestroy();
      else s.destroy();
    }
    this.emit("closed", { id: pair.id });
  }
}
