import { z } from "zod";
import { gatewayConfigSchema } from "./gateway-schema.js";
import { mappingFileSchema } from "./mapping-schema.js";

/** The JSON Schemas editors use (yaml-language-server), generated from the zod schemas. */
export function jsonSchemas(): Record<string, unknown> {
  const make = (schema: z.ZodType, title: string) => ({
    ...z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }),
    title,
  });
  return {
    "gateway.schema.json": make(gatewayConfigSchema, "Shadowgate gateway config"),
    "mapping.schema.json": make(mappingFileSchema, "Shadowgate mapping file"),
  };
}
