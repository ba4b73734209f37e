import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { deviceKey, type DeviceKey } from "./subdevices.js";

/**
 * Sub-device secrets kept in files: the one an operator writes (`cloud.subDevices.secrets`,
 * YAML `"pk/dn": secret`) and the one the gateway keeps of secrets it registered dynamically
 * (`<dataDir>/subdevice-secrets.json`). Both are readable by their owner only: a secret signs
 * the device's logins, so a file others can read is refused rather than used.
 */

/** The file of dynamically registered secrets, in the data folder. */
export const REGISTERED_SECRETS_FILE = "subdevice-secrets.json";

/** Group and other permission bits: any of them set makes a secrets file too open. */
const OPEN_BITS = 0o077;

export type SecretsRead =
  { ok: true; secrets: ReadonlyMap<string, string> } | { ok: false; message: string };

/** Reads an operator's secrets file; never throws (the message says what is wrong and how to fix it). */
export function readSecretsFile(file: string): SecretsRead {
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (e) {
    return { ok: false, message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code}` };
  }
  if ((mode & OPEN_BITS) !== 0) {
    const octal = (mode & 0o777).toString(8);
    return {
      ok: false,
      message: `${file} is readable by others (mode ${octal}): it holds device secrets; run chmod 600 ${file}`,
    };
  }
  let value: unknown;
  try {
    value = parse(text, { maxAliasCount: 0 });
  } catch (e) {
    return { ok: false, message: `${file} is not YAML: ${(e as Error).message.split("\n")[0]}` };
  }
  if (value === null || value === undefined) return { ok: true, secrets: new Map() };
  if (typeof value !== "object" || Array.isArray(value))
    return { ok: false, message: `${file} must map "productKey/deviceName" to its deviceSecret` };
  const secrets = new Map<string, string>();
  for (const [key, secret] of Object.entries(value)) {
    if (!/^[^/\s]+\/[^/\s]+$/.test(key))
      return { ok: false, message: `${file}: key "${key}" is not productKey/deviceName` };
    if (typeof secret !== "string" || secret === "")
      return { ok: false, message: `${file}: the secret of ${key} is not a non-empty string` };
    secrets.set(key, secret);
  }
  return { ok: true, secrets };
}

/** The secrets the gateway registered earlier; an absent or unreadable file holds none. */
export function readRegisteredSecrets(dataDir: string): Map<string, string> {
  const file = path.join(dataDir, REGISTERED_SECRETS_FILE);
  try {
    const value: unknown = JSON.parse(readFileSync(file, "utf8"));
    if (typeof value !== "object" || value === null) return new Map();
    return new Map(
      Object.entries(value).filter((e): e is [string, string] => typeof e[1] === "string"),
    );
  } catch {
    return new Map();
  }
}

/** Adds registered secrets to the data folder's file, owner-only, replaced whole (no torn file). */
export function saveRegisteredSecrets(
  dataDir: string,
  added: ReadonlyArray<DeviceKey & { deviceSecret: string }>,
): void {
  const all = readRegisteredSecrets(dataDir);
  for (const d of added) all.set(deviceKey(d), d.deviceSecret);
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, REGISTERED_SECRETS_FILE);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(Object.fromEntries(all), null, 2), { mode: 0o600 });
  renameSync(tmp, file);
}
