// @ts-check
/**
 * The store side of the compiled gateway (dist/), for the outbox benchmarks (B5, B6): the SQLite
 * outbox, the database opener and the edge shadow, typed from their sources the way lib/dist.js
 * types the rest (importing lib/dist.js first also gives its "run npm run build" message when
 * dist/ is missing). A file of its own so that lib/dist.js, shared with other benchmarks, stays
 * as it is.
 */
import { URL } from "node:url";
import "./dist.js";

const DIST = new URL("../../../dist/", import.meta.url);

/**
 * @param {string} rel  a path under dist/
 * @returns {Promise<unknown>}
 */
const load = (rel) => import(new URL(rel, DIST).href);

export const { Outbox } = /** @type {typeof import("../../../src/store/outbox.js")} */ (
  await load("store/outbox.js")
);
export const { openDatabase, openReadOnly } =
  /** @type {typeof import("../../../src/store/database.js")} */ (await load("store/database.js"));
export const { EdgeShadow } = /** @type {typeof import("../../../src/shadow/edge-shadow.js")} */ (
  await load("shadow/edge-shadow.js")
);
export const { mergeReported } = /** @type {typeof import("../../../src/core/json.js")} */ (
  await load("core/json.js")
);
