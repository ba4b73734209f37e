import type { z } from "zod";
import type { Dialect } from "../dialect.js";
import { alibabaDialect } from "./alibaba/index.js";
import { alibabaCloudSchema } from "./alibaba/config.js";

/**
 * The cloud dialects, keyed by the config's `cloud.dialect`. Each brings its own config keys
 * (dialects/<name>/config.ts) on top of the common ones (cloud-config.ts).
 *
 * The `cloud` section's schema is the union of the dialects' schemas, keyed by `dialect`. With
 * one dialect the union is that dialect's schema itself, so the generated JSON Schema and the
 * config's error messages stay as they were; the next one makes it
 * `z.discriminatedUnion("dialect", [alibabaCloudSchema, ...])` (zod takes a discriminator with
 * a default there, so a section without `dialect` still reads as Alibaba).
 */
export const cloudSchema = alibabaCloudSchema;

export type CloudConfig = z.output<typeof cloudSchema>;
export type DialectName = CloudConfig["dialect"];

const DIALECTS: { readonly [N in DialectName]: Dialect<Extract<CloudConfig, { dialect: N }>> } = {
  alibaba: alibabaDialect,
};

export const DIALECT_NAMES = Object.keys(DIALECTS) as readonly DialectName[];

/** The dialect the cloud section names. */
export function dialectFor(name: DialectName): Dialect<CloudConfig> {
  return DIALECTS[name];
}
