import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { jsonSchemas } from "../config/json-schema.js";
import { ExitCodes } from "../core/errors.js";
import { scenarioJsonSchema } from "./scenario/schema.js";

export async function schemasCommand(o: { out: string }): Promise<number> {
  await mkdir(o.out, { recursive: true });
  const schemas = { ...jsonSchemas(), "scenario.schema.json": scenarioJsonSchema() };
  for (const [name, schema] of Object.entries(schemas)) {
    const file = path.join(o.out, name);
    await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
    process.stdout.write(`wrote ${file}\n`);
  }
  return ExitCodes.OK;
}
