import { statSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../../src/store/database.js";

describe("the store's files", () => {
  it("are the service user's alone: the folder it makes 0700, the database and its WAL 0600", async () => {
    const dir = path.join(await mkdtemp(path.join(tmpdir(), "sg-db-")), "data");
    const file = path.join(dir, "shadowgate.db");
    const db = openDatabase(file);
    db.prepare(
      "INSERT INTO shadow_state (product_key, device_name, updated_at) VALUES (?, ?, ?)",
    ).run("pk", "dn", 1);
    const mode = (f: string) => (statSync(f).mode & 0o777).toString(8);
    expect(mode(dir)).toBe("700");
    expect(mode(file)).toBe("600");
    expect(mode(`${file}-wal`)).toBe("600");
    expect(mode(`${file}-shm`)).toBe("600");
    db.close();
  });
});
