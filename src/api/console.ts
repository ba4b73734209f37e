import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The console's files (console/ at the package root) and the ES modules it imports (preact,
 * its hooks, htm), read once and served by the local API without a token: they hold no data,
 * and the page asks for the token before it calls the API. Everything comes from this
 * package, so the console works on a LAN with no way out (no CDN).
 */
export interface ConsoleFile {
  readonly type: string;
  readonly body: Buffer;
}

const CONSOLE_DIR = fileURLToPath(new URL("../../console/", import.meta.url));
const JS = "text/javascript; charset=utf-8";

/** The ES-module build beside a package's main file (preact/dist/preact.js -> preact.module.js). */
function moduleBuild(specifier: string): string {
  const main = createRequire(import.meta.url).resolve(specifier);
  return path.join(path.dirname(main), `${path.basename(main, ".js")}.module.js`);
}

let files: ReadonlyMap<string, ConsoleFile> | undefined;

/** The console's files by URL path. */
export function consoleFiles(): ReadonlyMap<string, ConsoleFile> {
  files ??= new Map([
    [
      "/",
      {
        type: "text/html; charset=utf-8",
        body: readFileSync(path.join(CONSOLE_DIR, "index.html")),
      },
    ],
    // The console's own modules (app.js and what it imports) and its style.
    ...readdirSync(CONSOLE_DIR)
      .filter((f) => f.endsWith(".js"))
      .map((f): [string, ConsoleFile] => [
        `/console/${f}`,
        { type: JS, body: readFileSync(path.join(CONSOLE_DIR, f)) },
      ]),
    [
      "/console/style.css",
      { type: "text/css; charset=utf-8", body: readFileSync(path.join(CONSOLE_DIR, "style.css")) },
    ],
    ["/console/vendor/preact.js", { type: JS, body: readFileSync(moduleBuild("preact")) }],
    ["/console/vendor/hooks.js", { type: JS, body: readFileSync(moduleBuild("preact/hooks")) }],
    ["/console/vendor/htm.js", { type: JS, body: readFileSync(moduleBuild("htm")) }],
  ]);
  return files;
}
