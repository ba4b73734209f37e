import { ExitCodes } from "../core/errors.js";
import { createLogger } from "../core/logger.js";
import { Gateway } from "../daemon/gateway.js";
import type { ShadowDocument } from "../shadow/edge-shadow.js";
import { createDriver } from "../south/registry.js";
import { formatRaw, allByteOrders, reportedByDevice } from "./output.js";
import { loadOrReport } from "./validate.js";

export async function readCommand(o: {
  config: string;
  device?: string;
  json?: boolean;
  raw?: string;
}): Promise<number> {
  const config = await loadOrReport(o.config);
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
    const matches = devices.flatMap((d) =>
      d.protocol === "modbus"
        ? d.points.filter((p) => p.name === o.raw).map((p) => ({ d, p }))
        : [],
    );
    const [hit] = matches;
    if (!hit || matches.length > 1) {
      process.stderr.write(
        matches.length > 1
          ? `point ${o.raw} exists in ${matches.map((m) => m.d.deviceName).join(", ")}; name one with --device\n`
          : `no Modbus point named ${o.raw} (--raw shows registers)\n`,
      );
      return ExitCodes.USAGE;
    }
    if (hit.p.table === "coil" || hit.p.table === "discreteInput") {
      process.stderr.write(`${o.raw} is a ${hit.p.table}: one bit, no byte order to compare\n`);
      return ExitCodes.USAGE;
    }
    const source = config.gateway.sources[hit.d.sourceId];
    if (!source || source.protocol === "opcua") {
      process.stderr.write(
        `--raw reads Modbus registers; ${hit.d.sourceId} is not a Modbus source\n`,
      );
      return ExitCodes.USAGE;
    }
    const driver = createDriver(hit.d.sourceId, source, log);
    await driver.start();
    try {
      const [sample] = await driver.read({
        unitId: hit.d.unitId,
        points: [
          { key: hit.p.name, table: hit.p.table, address: hit.p.address, count: hit.p.count },
        ],
      });
      if (!sample?.data || sample.quality.status !== "good") {
        const reason =
          sample && sample.quality.status !== "good" ? sample.quality.reason : "no answer";
        process.stderr.write(`${hit.d.deviceName} ${hit.p.name}: ${reason}\n`);
        return ExitCodes.RUNTIME;
      }
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({ device: hit.d.deviceName, point: hit.p.name, words: sample.data, values: allByteOrders(hit.p, sample.data) })}\n`,
        );
      } else process.stdout.write(`${formatRaw(hit.d.deviceName, hit.p, sample.data)}\n`);
      return ExitCodes.OK;
    } finally {
      await driver.stop();
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
