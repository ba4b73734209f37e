/**
 * How the benchmarks reach the gateway: the compiled modules in dist/ (built by `npm run
 * build`), never src/ itself, so a benchmark measures the build the daemon runs. dist/ carries
 * no .d.ts files (declaration: false), so a static import would leave tsc weak types inferred
 * from the emitted JS; lib/dist.ts and lib/dist-opcua.ts instead import a module by its path and
 * cast it to the type of the source it was compiled from (a type-only import, erased when the
 * benchmarks are transpiled). A missing build fails at run time with a pointer.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_DIR } from "./common.js";

const DIST_DIR = join(REPO_DIR, "dist");

/** The module at `rel` under dist/, e.g. "core/logger.js". */
export async function loadDist(rel: string): Promise<unknown> {
  const file = join(DIST_DIR, rel);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: run "npm run build" (npm run bench does)`);
  }
  return import(pathToFileURL(file).href);
}
