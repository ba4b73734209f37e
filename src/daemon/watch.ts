import { watch, type FSWatcher } from "node:fs";
import path from "node:path";
import type { Logger } from "../core/logger.js";

/** Editors write a file in several steps (truncate, write, rename): wait for them to settle. */
const SETTLE_MS = 300;

/**
 * `run --watch`: calls `changed` once the config file or a YAML file in a mapping folder has
 * changed and the writes have settled. Folders are watched, not files: an editor that saves by
 * renaming a new file over the old one would leave a file watch on a deleted inode.
 * `mappings` are the config's entries (files or folders), relative to the config file.
 */
export function watchConfig(
  configFile: string,
  mappings: string | readonly string[],
  changed: () => void,
  log: Logger,
): () => void {
  const configDir = path.dirname(path.resolve(configFile));
  const entries = (typeof mappings === "string" ? [mappings] : mappings).map((m) =>
    path.resolve(configDir, m),
  );
  const folders = new Set([configDir]);
  for (const e of entries) folders.add(/\.ya?ml$/i.test(e) ? path.dirname(e) : e);
  const relevant = (file: string): boolean =>
    file === path.resolve(configFile) ||
    (/\.ya?ml$/i.test(file) && entries.some((e) => file === e || file.startsWith(e + path.sep)));

  let timer: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const folder of folders) {
    try {
      const w = watch(folder, { persistent: false }, (_event, name) => {
        if (name === null || !relevant(path.join(folder, name.toString()))) return;
        clearTimeout(timer);
        timer = setTimeout(changed, SETTLE_MS);
      });
      w.on("error", (err) => log.warn({ folder, err }, "stopped watching a config folder"));
      watchers.push(w);
    } catch (err) {
      // A mapping folder that does not exist yet cannot be watched; the config names it
      // anyway, so validation has already said so.
      log.warn({ folder, err }, "cannot watch a config folder");
    }
  }
  log.info({ folders: [...folders] }, "watching the config for changes");
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
