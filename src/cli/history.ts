import { existsSync } from "node:fs";
import path from "node:path";
import { parseDuration } from "../core/duration.js";
import { ExitCodes } from "../core/errors.js";
import type { JsonValue } from "../core/types.js";
import { getPath } from "../core/json.js";
import { openReadOnly } from "../store/database.js";
import { readHistory } from "../store/outbox.js";
import { loadOrReport } from "./validate.js";
import type { Override } from "../config/override.js";

/** `--since` takes a time (2026-11-26T08:00Z) or a duration back from now (30m, 2h, 7d). */
export function parseSince(text: string, now = Date.now()): number | undefined {
  const ago = parseDuration(text);
  if (ago !== undefined && /[a-z]$/.test(text.trim())) return now - ago;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : at;
}

/** Prints the reports recorded for a device: what went up, what still waits in the outbox. */
export async function historyCommand(o: {
  config: string;
  override?: readonly Override[];
  device: string;
  since?: string;
  point?: string;
  json?: boolean;
}): Promise<number> {
  const config = await loadOrReport(o.config, o.override);
  if (!config) return ExitCodes.CONFIG;
  const device = config.devices.find((d) => d.deviceName === o.device);
  if (!device) {
    process.stderr.write(
      `no device named ${o.device}; the config has ${config.devices.map((d) => d.deviceName).join(", ")}\n`,
    );
    return ExitCodes.USAGE;
  }
  const since = o.since === undefined ? 0 : parseSince(o.since);
  if (since === undefined) {
    process.stderr.write(`--since ${o.since} is neither a time nor a duration (30m, 2h, 7d)\n`);
    return ExitCodes.USAGE;
  }
  const file = path.join(config.dataDir, "shadowgate.db");
  if (!existsSync(file)) {
    process.stderr.write(
      `no history yet: ${file} does not exist (the daemon writes it once it runs with a cloud section)\n`,
    );
    return ExitCodes.RUNTIME;
  }
  const db = openReadOnly(file);
  try {
    const pointPath = o.point?.split(".");
    for (const row of readHistory(db, device.deviceName, since)) {
      const value: JsonValue | undefined = pointPath
        ? getPath(row.reported, pointPath)
        : row.reported;
      if (value === undefined) continue;
      const at = new Date(row.ts).toISOString();
      const state = row.sent ? "sent" : "queued";
      if (o.json) {
        const entry = {
          seq: row.seq,
          ts: at,
          device: row.deviceName,
          state,
          ...(o.point ? { point: o.point, value } : { reported: value }),
        };
        process.stdout.write(`${JSON.stringify(entry)}\n`);
      } else
        process.stdout.write(`${at}  #${row.seq}  ${state.padEnd(6)}  ${JSON.stringify(value)}\n`);
    }
  } finally {
    db.close();
  }
  return ExitCodes.OK;
}
