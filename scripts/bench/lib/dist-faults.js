// @ts-check
/**
 * The fault-injecting TCP proxy of the compiled gateway (dist/sim/tcp-proxy.js), for B7, typed
 * from its source the way lib/dist.js types the rest (importing lib/dist.js first also gives its
 * "run npm run build" message when dist/ is missing). The same module the fault-injection suite
 * (test/integration/fault-injection.test.ts) uses. A file of its own so that lib/dist.js, shared
 * with other benchmarks, stays as it is.
 */
import { URL } from "node:url";
import "./dist.js";

const DIST = new URL("../../../dist/", import.meta.url);

export const { TcpProxy } = /** @type {typeof import("../../../src/sim/tcp-proxy.js")} */ (
  await import(new URL("sim/tcp-proxy.js", DIST).href)
);
