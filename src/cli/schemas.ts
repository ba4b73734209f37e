import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { jsonSchemas } from "../config/json-schema.js";
import { ExitCodes } from "../core/errors.js";

export async function schemasCommand(o: { out: string }): Promise<number> {
  await mkdir(o.out, { recursive: true });
  for (const [name, schema] of Object.entries(jsonSchemas())) {
    const file = path.join(o.out, name);
    await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
    process.stdout.write(`wrote ${file}\n`);
  }
  return ExitCodes.OK;
}
