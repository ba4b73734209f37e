import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The gateways' logs of the run, and the secrets scan over them at its end (issue 17).
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start servers on free ports; two cores, so keep the pool small.
    maxWorkers: 2,
  },
});
