import type { ServerResponse } from "node:http";
import { ErrorCodes } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import type { ApiEvent } from "./host.js";

export interface EventStreamOptions {
  /**
   * Bytes a client may leave unread in its response's buffer (what write() could not hand to
   * the kernel yet); past it the client is dropped.
   */
  readonly maxBufferBytes: number;
  /** A comment line this often keeps proxies and the client's idle timers from closing it. */
  readonly heartbeatMs: number;
}

interface Client {
  readonly id: number;
  readonly res: ServerResponse;
  readonly peer: string;
}

/**
 * The Server-Sent Events clients of GET /api/v1/events. An event is serialized once and written
 * to every client without waiting: a client that does not read fills its own buffer, and once
 * write() has reported backpressure and the buffer passed `maxBufferBytes` the client is
 * dropped, so a slow reader costs the gateway a bounded amount of memory and never a wait.
 */
export class EventStream {
  private readonly clients = new Map<number, Client>();
  private nextId = 1;
  private heartbeat: NodeJS.Timeout | undefined;
  private droppedCount = 0;

  constructor(
    private readonly opts: EventStreamOptions,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.clients.size;
  }

  /** Clients dropped for not keeping up, since start. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Takes over a response: the event-stream headers, then events until either side closes. */
  add(res: ServerResponse, peer: string): void {
    const client: Client = { id: this.nextId++, res, peer };
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      // nginx buffers responses unless told not to; an event stream must not be.
      "x-accel-buffering": "no",
    });
    this.clients.set(client.id, client);
    res.on("close", () => this.clients.delete(client.id));
    // The client knows it is subscribed once this arrives: events from now on reach it.
    this.write(client, ": connected\n\n");
    this.heartbeat ??= setInterval(() => this.broadcast(": heartbeat\n\n"), this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  publish(event: ApiEvent): void {
    // Nobody listening: the gateway does not pay for the serialization.
    if (this.clients.size === 0) return;
    this.broadcast(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
  }

  /** Ends every stream (the API is stopping). */
  close(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const c of this.clients.values()) c.res.end();
    this.clients.clear();
  }

  private broadcast(chunk: string): void {
    for (const c of this.clients.values()) this.write(c, chunk);
  }

  private write(c: Client, chunk: string): void {
    if (c.res.write(chunk)) return;
    // write() said the buffer is past its high-water mark: the kernel is not taking the data as
    // fast as it comes. Within the bound the client may catch up; beyond it, it is dropped.
    const buffered = c.res.writableLength;
    if (buffered <= this.opts.maxBufferBytes) return;
    this.clients.delete(c.id);
    this.droppedCount++;
    this.log.warn(
      { client: c.peer, bufferedBytes: buffered, code: ErrorCodes.API_SLOW_CLIENT },
      "dropped an event-stream client that does not keep up",
    );
    c.res.destroy();
  }
}
