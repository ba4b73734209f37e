import { ExitCodes } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { Gateway } from "../daemon/gateway.js";
import type { ShadowDocument } from "../shadow/edge-shadow.js";
import { reportedByDevice } from "./output.js";
import { loadOrReport } from "./validate.js";
import type { Override } from "../config/override.js";

export async function readCommand(o: {
  config: string;
  override?: readonly Override[];
  device?: string;
  json?: boolean;
  raw?: string;
}): Promise<number> {
  const config = await loadOrReport(o.config, o.override);
  if (!config) return ExitCodes.CONFIG;
  const devices = config.devices.filter((d) => o.device === undefined || d.deviceName === o.device);
  if (devices.length === 0) {
    process.stderr.write(
      `no device named ${o.device}; the config has ${config.devices.map((d) => d.deviceName).join(", ")}\n`,
    );
    return ExitCodes.USAGE;
  }
  // A one-shot command logs only what goes wrong.
  const log = createLogger({ level: process.env.SHADOWGATE_LOG_LEVEL ?? "warn" });

  if (o.raw !== undefined) {
    const name = o.raw;
    const matches = devices.filter((d) => d.points.some((p) => p.name === name));
    const [hit] = matches;
    if (!hit || matches.length > 1) {
      process.stderr.write(
        matches.length > 1
          ? `point ${name} exists in ${matches.map((d) => d.deviceName).join(", ")}; name one with --device\n`
          : `no point named ${name}\n`,
      );
      return ExitCodes.USAGE;
    }
    const gateway = new Gateway({ ...config, devices: [hit] }, log);
    try {
      const probe = await gateway.probe(hit.deviceName, name);
      if (!probe.ok) {
        process.stderr.write(`${probe.message}\n`);
        return probe.usage ? ExitCodes.USAGE : ExitCodes.RUNTIME;
      }
      process.stdout.write(`${o.json ? JSON.stringify(probe.json) : probe.text}\n`);
      return ExitCodes.OK;
    } finally {
      await gateway.stop();
    }
  }

  const gateway = new Gateway({ ...config, devices }, log);
  try {
    await gateway.pollOnce();
  } finally {
    await gateway.stop();
  }
  const docs = devices.map((d) => [d.deviceName, gateway.shadow.document(d.deviceName)] as const);
  const { json, bad } = reportedByDevice(
    docs.filter((x): x is readonly [string, ShadowDocument] => x[1] !== undefined) as Array<
      [string, ShadowDocument]
    >,
  );
  if (o.json) process.stdout.write(`${JSON.stringify(json)}\n`);
  else process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  for (const line of bad) process.stderr.write(`bad: ${line}\n`);
  return bad.length > 0 ? ExitCodes.RUNTIME : ExitCodes.OK;
}
