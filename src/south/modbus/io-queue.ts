/**
 * One Modbus connection carries one transaction at a time (most devices and every RS-485 line
 * serve requests strictly in order). Writes jump the queue so that a command never waits
 * behind a backlog of polls: at most behind the one transaction already on the wire.
 */
export class IoQueue {
  private readonly urgent: Array<() => Promise<void>> = [];
  private readonly normal: Array<() => Promise<void>> = [];
  private running = false;

  run<T>(fn: () => Promise<T>, priority: "urgent" | "normal" = "normal"): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job = (): Promise<void> => fn().then(resolve, reject);
      (priority === "urgent" ? this.urgent : this.normal).push(job);
      void this.drain();
    });
  }

  get pending(): number {
    return this.urgent.length + this.normal.length;
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let job = this.next(); job; job = this.next()) await job();
    } finally {
      this.running = false;
    }
  }

  private next(): (() => Promise<void>) | undefined {
    return this.urgent.shift() ?? this.normal.shift();
  }
}
