import { accessSync, constants } from "node:fs";
import path from "node:path";

/** An executable: the first of `candidates` that is one, else `name` on PATH. */
export function findExecutable(
  name: string,
  candidates: ReadonlyArray<string | undefined> = [],
): string | undefined {
  const fromPath = (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((d) => d !== "")
    .map((d) => path.join(d, name));
  for (const file of [...candidates, ...fromPath]) {
    if (file === undefined || file === "") continue;
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}
