import { z } from "zod";
import type { Dialect } from "../dialect.js";
import { alibabaDialect } from "./alibaba/index.js";
import { alibabaCloudSchema } from "./alibaba/config.js";
import { awsDialect } from "./aws/index.js";
import { awsCloudSchema } from "./aws/config.js";

/**
 * The cloud dialects, keyed by the config's `cloud.dialect`. Each brings its own config keys
 * (dialects/<name>/config.ts) on top of the common ones (cloud-config.ts).
 *
 * The `cloud` section's schema is the union of the dialects' schemas, keyed by `dialect` (zod
 * takes a discriminator with a default, so a section without `dialect` still reads as Alibaba).
 */
export const cloudSchema = z.discriminatedUnion("dialect", [alibabaCloudSchema, awsCloudSchema]);

export type CloudConfig = z.output<typeof cloudSchema>;
export type DialectName = CloudConfig["dialect"];

const DIALECTS: { readonly [N in DialectName]: Dialect<Extract<CloudConfig, { dialect: N }>> } = {
  alibaba: alibabaDialect,
  aws: awsDialect,
};

export const DIALECT_NAMES = Object.keys(DIALECTS) as readonly DialectName[];

/** The dialect the cloud section names. */
export function dialectFor(name: DialectName): Dialect<CloudConfig> {
  return DIALECTS[name];
}
