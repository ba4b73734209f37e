/**
 * A gateway config and its mapping files written to a temporary directory and loaded the way
 * `shadowgate run` loads them (loadConfig: schema, compile, cross-checks), so a benchmark runs
 * the real composition root with the poll interval and send window it chooses. YAML is a
 * superset of JSON, so the files are written as JSON.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DIALECT } from "./common.js";
import { formatProblem, loadConfig } from "./dist.js";
import type { LoadedConfig } from "../../../src/config/load.js";

export interface DeviceSpec {
  productKey: string;
  deviceName: string;
  source: string;
  /** Modbus unit id; default 1. */
  unitId?: number;
  /** An Alibaba sub-device's own secret (B13). */
  deviceSecret?: string;
  /** e.g. "100ms" */
  pollInterval: string;
  /** as in a mapping file */
  points: Record<string, Record<string, unknown>>;
}

export interface GatewaySpec {
  /** as in gateway.yaml */
  sources: Record<string, Record<string, unknown>>;
  /** as in gateway.yaml; none: a gateway without a cloud section */
  cloud?: Record<string, unknown>;
  /** as in gateway.yaml */
  api?: Record<string, unknown>;
  devices: DeviceSpec[];
}

/** @param prefix  for the temporary directory's name */
export async function writeGatewayConfig(
  prefix: string,
  spec: GatewaySpec,
): Promise<{ dir: string; config: LoadedConfig }> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  mkdirSync(join(dir, "mappings"));
  mkdirSync(join(dir, "data"));
  const file = join(dir, "gateway.yaml");
  writeFileSync(
    file,
    JSON.stringify({
      version: 1,
      gateway: { name: prefix, dataDir: "./data" },
      log: { level: "warn" },
      sources: spec.sources,
      ...(spec.cloud && { cloud: spec.cloud }),
      ...(spec.api && { api: spec.api }),
      mappings: "./mappings",
    }),
  );
  for (const d of spec.devices) {
    writeFileSync(
      join(dir, "mappings", `${d.deviceName}.yaml`),
      JSON.stringify({
        version: 1,
        // In the AWS dialect the device is the thing of its deviceName.
        device:
          DIALECT === "aws"
            ? { thingName: d.deviceName }
            : {
                productKey: d.productKey,
                deviceName: d.deviceName,
                ...(d.deviceSecret !== undefined && { deviceSecret: d.deviceSecret }),
              },
        source: d.source,
        unitId: d.unitId ?? 1,
        pollInterval: d.pollInterval,
        points: d.points,
      }),
    );
  }
  const loaded = await loadConfig(file, {});
  if (!loaded.ok) {
    throw new Error(
      `generated config is invalid:\n${loaded.problems.map((p) => formatProblem(p)).join("\n")}`,
    );
  }
  return { dir, config: loaded.config };
}
