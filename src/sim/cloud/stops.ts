import type { Logger } from "../../core/logger.js";

/**
 * What a service start has started, stopped in reverse on close: a start that fails part-way
 * closes what had started, and close() after a stop's error goes on with the rest.
 */
export function stopsInReverse(log: Logger): {
  push(stop: () => Promise<void>): void;
  close(): Promise<void>;
} {
  const stops: Array<() => Promise<void>> = [];
  return {
    push: (stop) => void stops.push(stop),
    async close() {
      for (const stop of stops.splice(0).reverse()) {
        try {
          await stop();
        } catch (e) {
          log.warn({ err: (e as Error).message }, "error while stopping");
        }
      }
    },
  };
}
