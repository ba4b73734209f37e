import { afterAll, beforeAll, describe } from "vitest";
import { findMosquitto, startMosquitto, type RunningMosquitto } from "./mosquitto.js";

// Apart from mosquitto.ts, which the benchmarks import too: this one needs vitest.

/**
 * A describe block around a mosquitto started before its tests and stopped after them;
 * `broker()` is it. Skipped only on a developer machine without mosquitto; under CI its absence
 * is a failure (startMosquitto throws).
 */
export function describeWithMosquitto(
  name: string,
  body: (broker: () => RunningMosquitto) => void,
): void {
  describe.skipIf(findMosquitto() === undefined && process.env.CI !== "true")(name, () => {
    let mosquitto: RunningMosquitto | undefined;
    beforeAll(async () => {
      mosquitto = await startMosquitto();
    });
    afterAll(async () => {
      await mosquitto?.stop();
    });
    body(() => {
      if (mosquitto === undefined) throw new Error("mosquitto did not start");
      return mosquitto;
    });
  });
}
