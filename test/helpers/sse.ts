import http from "node:http";
import net from "node:net";

/** One Server-Sent Event as received: its `event:` name and parsed `data:`. */
export interface SseEvent {
  readonly event: string;
  // Events are asserted on, not typed.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
  readonly data: any;
}

/**
 * A reader of an event stream that keeps up: it queues every event and comment, and lets a test
 * await the one it expects instead of sleeping.
 */
export class SseReader {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  private buffer = "";
  private readonly waiters: Array<() => void> = [];

  private constructor(private readonly res: http.IncomingMessage) {
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => this.onData(chunk));
    this.ended = new Promise((resolve) => {
      res.once("end", resolve);
      res.once("close", resolve);
    });
  }

  /** Opens the stream; resolves once the server said it is subscribed (`: connected`). */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(url, { headers }, resolve).once("error", reject),
    );
    if (res.statusCode !== 200) throw new Error(`event stream answered ${res.statusCode}`);
    const reader = new SseReader(res);
    await reader.until(() => reader.comments.includes("connected"));
    return reader;
  }

  /** The first event (from the start of the stream) that matches. */
  async next(match: (e: SseEvent) => boolean): Promise<SseEvent> {
    let found: SseEvent | undefined;
    await this.until(() => (found = this.events.find(match)) !== undefined);
    return found as SseEvent;
  }

  /** Resolves when `cond` holds after some data arrived (or at once); the test's timeout bounds it. */
  until(cond: () => boolean): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (cond()) resolve();
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  close(): void {
    this.res.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) this.comments.push(line.slice(1).trim());
        else if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data !== "") this.events.push({ event, data: JSON.parse(data) as unknown });
    }
    for (const check of this.waiters.splice(0)) check();
  }
}

/**
 * A client that subscribes and then stops reading: its socket is paused, so what the server
 * writes piles up in the kernel's buffers and then in the server's. `drain()` reads the rest
 * once the test is done with it, until the server closes the connection.
 */
export class StalledReader {
  private text = "";

  private constructor(private readonly socket: net.Socket) {}

  static async open(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<StalledReader> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) =>
      socket.once("connect", resolve).once("error", reject),
    );
    const reader = new StalledReader(socket);
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
    socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${extra.join("")}\r\n`);
    await new Promise<void>((resolve) => {
      const onData = (b: Buffer): void => {
        reader.text += b.toString("utf8");
        if (!reader.text.includes(": connected")) return;
        socket.off("data", onData);
        socket.pause();
        resolve();
      };
      socket.on("data", onData);
    });
    return reader;
  }

  /** Reads everything the server still sends, until it closes; returns all that was received. */
  async drain(): Promise<string> {
    const closed = new Promise<void>((resolve) => {
      this.socket.once("close", () => resolve());
    });
    this.socket.on("data", (b: Buffer) => (this.text += b.toString("utf8")));
    this.socket.on("error", () => undefined);
    this.socket.resume();
    await closed;
    return this.text;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
