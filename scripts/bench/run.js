// @ts-check
/**
 * The benchmarks' entry point (`npm run bench` runs it after building dist/):
 *
 *   node scripts/bench/run.js            every scripts/bench/b<N>-*.ts, in order of N
 *   node scripts/bench/run.js b1 b4      only those (by id, or by full name: b1-coalescing)
 *
 * The benchmarks are TypeScript, and share helpers with the tests (test/helpers). This file
 * stays JavaScript because it runs before anything is compiled: it transpiles scripts/bench and
 * the test helpers the benchmarks import into build/bench/ (git-ignored, emptied first), in the
 * repository's layout so that relative imports hold, then runs the harness (lib/harness.ts).
 *
 * Transpiling only strips the types, one file at a time (ts.transpileModule), which the
 * compiler options isolatedModules and verbatimModuleSyntax make safe; `npm run typecheck`
 * checks the types. Only what the benchmarks import is transpiled, followed from
 * scripts/bench/*.ts and lib/*.ts. A value import of src/ is refused: the benchmarks use the
 * gateway as built (dist/, through lib/dist.ts), never a second copy of it; a test helper's
 * (shared with the tests, which load src/) is pointed at the same module in dist/.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";

const REPO_DIR = resolve(import.meta.dirname, "../..");
const BENCH_SRC = join(REPO_DIR, "scripts", "bench");
const SRC_DIR = join(REPO_DIR, "src");
const HELPERS_DIR = join(REPO_DIR, "test", "helpers");
const OUT_DIR = join(REPO_DIR, "build", "bench");

/** @type {ts.CompilerOptions} */
const OPTIONS = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ES2022,
  verbatimModuleSyntax: true,
};

/** @param {string} dir @returns {string[]} */
const tsFiles = (dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
    .map((f) => join(dir, f));

/**
 * Transpiles the benchmarks and everything they import, relative path by relative path.
 * @returns {number} how many files
 */
function transpile() {
  rmSync(OUT_DIR, { recursive: true, force: true });
  const queue = [...tsFiles(BENCH_SRC), ...tsFiles(join(BENCH_SRC, "lib"))];
  const done = new Set();
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (done.has(file)) continue;
    done.add(file);
    const { outputText } = ts.transpileModule(readFileSync(file, "utf8"), {
      fileName: file,
      compilerOptions: OPTIONS,
    });
    const out = join(OUT_DIR, relative(REPO_DIR, file)).replace(/\.ts$/, ".js");
    let text = outputText;
    // Type-only imports are gone from the output: what is left is loaded at run time.
    for (const { fileName } of ts.preProcessFile(outputText, true, true).importedFiles) {
      if (!fileName.startsWith(".")) continue; // a package or a node: built-in
      const target = resolve(dirname(file), fileName);
      const from = relative(REPO_DIR, file);
      if (target.startsWith(SRC_DIR + sep)) {
        if (!file.startsWith(HELPERS_DIR + sep)) {
          throw new Error(`${from} imports ${fileName}: load the gateway through lib/dist.ts`);
        }
        // A test helper shared with the tests (which load src/) gets the built module instead.
        const built = join(REPO_DIR, "dist", relative(SRC_DIR, target));
        const spec = relative(dirname(out), built).split(sep).join("/");
        text = text.replaceAll(JSON.stringify(fileName), JSON.stringify(spec));
        continue;
      }
      const source = target.replace(/\.js$/, ".ts");
      if (!existsSync(source)) throw new Error(`${from} imports ${fileName}: no ${source}`);
      queue.push(source);
    }
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, text);
  }
  return done.size;
}

try {
  const t0 = Date.now();
  const n = transpile();
  console.log(
    `transpiled ${n} files into ${relative(REPO_DIR, OUT_DIR)}/ in ${Date.now() - t0} ms`,
  );
  const harness = join(OUT_DIR, "scripts", "bench", "lib", "harness.js");
  const { runBenchmarks } = /** @type {typeof import("./lib/harness.js")} */ (
    await import(pathToFileURL(harness).href)
  );
  process.exitCode = await runBenchmarks(process.argv.slice(2));
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(2);
}
