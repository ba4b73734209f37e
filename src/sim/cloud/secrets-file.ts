import { readFile } from "node:fs/promises";
import { z } from "zod";
import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import { parseProfileText, type ProfileFormat } from "../profile-file.js";
import type { DeviceSecret } from "./sessions.js";

/**
 * The secrets file of `shadowgate cloud --secrets FILE`: a YAML (or JSON, which YAML reads)
 * map of `"productKey/deviceName": deviceSecret`, gateways and sub-devices alike:
 *
 *   a1Gateway/gw-01: "gateway secret"
 *   a1Boiler/boiler-01: "sub-device secret"
 *
 * Errors name the file, line:col and the key, never a value: the values are secrets.
 */

// A secret of digits only reads as a YAML number, which could lose digits: it must be quoted.
const secret = z
  .string({ error: "the secret is not a string; quote it" })
  .min(1, "the secret is empty");
const schema = z.record(z.string(), secret).nullable();

type Parsed = z.infer<typeof schema>;

const FORMAT: ProfileFormat<Parsed, DeviceSecret[]> = {
  schema,
  compile(parsed, _source, issues) {
    const out: DeviceSecret[] = [];
    for (const [key, deviceSecret] of Object.entries(parsed ?? {})) {
      // The names become topic levels, so no wildcard; "/" splits the key itself.
      const m = /^([^/+#\s]+)\/([^/+#\s]+)$/.exec(key);
      if (!m) {
        issues.push({ path: [key], message: "the key is not productKey/deviceName" });
        continue;
      }
      out.push({ productKey: m[1] ?? "", deviceName: m[2] ?? "", deviceSecret });
    }
    return out;
  },
  kinds: "",
};

/** Reads a secrets file; throws ShadowgateError SG_CONFIG_* naming the file and line. */
export async function loadSecretsFile(file: string): Promise<DeviceSecret[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new ShadowgateError(
      ErrorCodes.CONFIG_READ,
      `${file}: cannot read the secrets file: ${(e as Error).message}`,
      { file },
    );
  }
  return parseProfileText(FORMAT, text, file);
}
