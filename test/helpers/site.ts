import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * Writes a site's files (path relative to the site -> text: `gateway.yaml`, `mappings/a.yaml`,
 * a scenario) into a new temporary folder, and returns the folder.
 */
export async function writeSite(
  prefix: string,
  files: Readonly<Record<string, string>>,
): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
  return dir;
}

/** The shipped boiler mapping (mappings/boiler-01.yaml), for a site of its own. */
export const shippedBoilerMapping = (): Promise<string> =>
  readFile(path.resolve(import.meta.dirname, "../../mappings/boiler-01.yaml"), "utf8");
