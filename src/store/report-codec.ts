import type { JsonObject, JsonValue } from "../core/types.js";
import type { Db } from "./database.js";

/**
 * The compact encoding of a report row (schema 4). A report of ~92 leaves was ~1.3 KB of JSON,
 * a float32 reading alone 17 digits ("23.456781387329102"), and SQLite's write rate here is
 * bytes-bound (B5: ~60 MB/s into a WAL file), so JSON capped ingest at ~15k such reports/s.
 * Encoded, the same report is ~0.5 KB.
 *
 * A row is byte FORMAT, then one entry per leaf in the report's key order:
 *   varint(pathId * 16 + tag), then the value by tag:
 *   0 null; 1 false; 2 true; 3 integer, zigzag varint; 4 float32 (4 bytes LE), for numbers that
 *   a float32 holds exactly (what float32 registers decode to); 5 float64 (8 bytes LE);
 *   6 string, varint byte length + UTF-8; 7 other JSON (arrays, empty objects), length + UTF-8;
 *   8 + k (k = 1..4), a decimal with k digits after the point (a scaled register, 27.42) as the
 *   zigzag varint m with m / 10^k giving back exactly the same number.
 * A leaf's path (its keys from the top, ["line0", "p003"]) is numbered once in the
 * `report_paths` table, shared by every device: a site's devices mostly share their mappings.
 * A path is added in the transaction of the first row that uses it, so a reader that loads the
 * paths after reading rows always finds theirs. Rows written before schema 4 are JSON text, and
 * are read as such: the column keeps both (SQLite stores a BLOB in a TEXT column as it is).
 *
 * Decoding gives what JSON.parse(JSON.stringify(report)) would: non-finite numbers are null.
 * The encoder is on the ingest path (every report of every poll cycle), hence the hand-written
 * varints into one reused byte array.
 */
const FORMAT = 1;
const TAG = { null: 0, false: 1, true: 2, int: 3, f32: 4, f64: 5, string: 6, json: 7 } as const;
const DECIMAL = 8;
/** 10^k for the decimal tags. */
const POW10 = [1, 10, 100, 1000, 10000];
/** Integers (and decimals' m) up to this size as varints; larger ones as float64. */
const INT_LIMIT = 2 ** 30;

interface PathNode {
  /** The path's number, or -1 while no row used it as a leaf. */
  id: number;
  kids: Map<string, PathNode> | undefined;
  readonly key: string;
  readonly parent: PathNode | undefined;
}

const node = (key: string, parent: PathNode | undefined): PathNode => ({
  id: -1,
  kids: undefined,
  key,
  parent,
});

/** Sets an own property, even one named __proto__, as JSON.parse would. */
function put(obj: JsonObject, key: string, value: JsonValue): void {
  if (key === "__proto__")
    Object.defineProperty(obj, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  else obj[key] = value;
}

export class ReportCodec {
  private readonly root = node("", undefined);
  /** Paths by number, for decoding. */
  private readonly paths: Array<readonly string[]> = [];
  /** Numbered inside the current write transaction: forgotten if it rolls back. */
  private fresh: PathNode[] = [];
  /** The highest path number known here, and what it was when the transaction began. */
  private maxId = 0;
  private maxBefore = 0;
  /** Grows to the largest report seen and is reused: SQLite copies what it is given. */
  private buf = Buffer.allocUnsafe(4096);
  private view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  private pos = 0;
  private readonly addPath;
  private readonly pathsAfter;

  /** `db` may be read-only, and may predate schema 4 (then every row is JSON). */
  constructor(private readonly db: Db) {
    const hasTable =
      db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'report_paths'")
        .get() !== undefined;
    this.addPath = hasTable
      ? db.prepare<[string], { id: number }>(
          `INSERT INTO report_paths (path) VALUES (?)
           ON CONFLICT (path) DO UPDATE SET path = excluded.path RETURNING id`,
        )
      : undefined;
    this.pathsAfter = hasTable
      ? db.prepare<[number], { id: number; path: string }>(
          "SELECT id, path FROM report_paths WHERE id > ? ORDER BY id",
        )
      : undefined;
    this.loadPaths();
  }

  /**
   * The report's row value. Call inside `transaction`, which stores it. The Buffer is reused by
   * the next call.
   */
  encode(reported: JsonObject): Buffer {
    this.buf[0] = FORMAT;
    this.pos = 1;
    this.object(reported, this.root);
    return this.buf.subarray(0, this.pos);
  }

  /**
   * Runs `write` in a transaction of the codec's database (the rows it encodes are stored
   * there): if it rolls back, the paths it numbered are not in the file, and are forgotten.
   */
  transaction<T>(write: () => T): T {
    this.fresh = [];
    this.maxBefore = this.maxId;
    try {
      const result = this.db.transaction(write)();
      this.fresh = [];
      return result;
    } catch (err) {
      for (const n of this.fresh) {
        delete this.paths[n.id];
        n.id = -1;
      }
      this.maxId = this.maxBefore;
      this.fresh = [];
      throw err;
    }
  }

  /** A row's `reported` value back as the report: a Buffer (schema 4) or JSON text (before). */
  decode(value: Buffer | string): JsonObject {
    if (typeof value === "string") return JSON.parse(value) as JsonObject;
    if (value[0] !== FORMAT) throw new Error(`report row in unknown format ${value[0]}`);
    const out: JsonObject = {};
    let pos = 1;
    const varint = (): number => {
      let n = 0;
      let scale = 1;
      for (;;) {
        const b = value[pos++];
        if (b === undefined) throw new Error("report row truncated");
        n += (b & 0x7f) * scale;
        if (b < 0x80) return n;
        scale *= 128;
      }
    };
    const text = (): string => {
      const len = varint();
      if (pos + len > value.length) throw new Error("report row truncated");
      const s = value.toString("utf8", pos, pos + len);
      pos += len;
      return s;
    };
    while (pos < value.length) {
      const head = varint();
      const tag = head % 16;
      const id = (head - tag) / 16;
      let leaf: JsonValue;
      switch (tag) {
        case TAG.null:
          leaf = null;
          break;
        case TAG.false:
          leaf = false;
          break;
        case TAG.true:
          leaf = true;
          break;
        case TAG.int:
          leaf = unzigzag(varint());
          break;
        case TAG.f32:
          leaf = value.readFloatLE(pos);
          pos += 4;
          break;
        case TAG.f64:
          leaf = value.readDoubleLE(pos);
          pos += 8;
          break;
        case TAG.string:
          leaf = text();
          break;
        case TAG.json:
          leaf = JSON.parse(text()) as JsonValue;
          break;
        default: {
          const p = POW10[tag - DECIMAL];
          if (p === undefined) throw new Error(`report row with unknown tag ${tag}`);
          leaf = unzigzag(varint()) / p;
        }
      }
      this.set(out, this.path(id), leaf);
    }
    return out;
  }

  private path(id: number): readonly string[] {
    let p = this.paths[id];
    if (p === undefined) {
      this.loadPaths(); // numbered by the writer after this reader loaded them
      p = this.paths[id];
      if (p === undefined)
        throw new Error(`report row names path ${id}, which is not in report_paths`);
    }
    return p;
  }

  private set(out: JsonObject, path: readonly string[], leaf: JsonValue): void {
    let obj = out;
    const last = path.length - 1;
    for (let i = 0; i < last; i++) {
      const key = path[i] as string;
      let next = Object.hasOwn(obj, key) ? obj[key] : undefined;
      if (typeof next !== "object" || next === null || Array.isArray(next)) {
        next = {};
        put(obj, key, next);
      }
      obj = next;
    }
    put(obj, path[last] as string, leaf);
  }

  private loadPaths(): void {
    if (!this.pathsAfter) return;
    for (const r of this.pathsAfter.all(this.maxId)) {
      const keys = JSON.parse(r.path) as string[];
      this.paths[r.id] = keys;
      this.maxId = r.id;
      let n = this.root;
      for (const k of keys) {
        n.kids ??= new Map();
        let kid = n.kids.get(k);
        if (!kid) n.kids.set(k, (kid = node(k, n)));
        n = kid;
      }
      n.id = r.id;
    }
  }

  private object(obj: JsonObject, at: PathNode): void {
    const kids = (at.kids ??= new Map());
    for (const key in obj) {
      const v = obj[key];
      if (v === undefined || !Object.hasOwn(obj, key)) continue; // as JSON.stringify
      let kid = kids.get(key);
      if (kid === undefined) kids.set(key, (kid = node(key, at)));
      if (typeof v === "object" && v !== null && !Array.isArray(v) && hasKeys(v)) {
        this.object(v, kid);
      } else this.leaf(v, kid);
    }
  }

  private leaf(v: JsonValue, at: PathNode): void {
    if (at.id < 0) this.number(at);
    const id = at.id * 16;
    this.room(24); // a head and any number
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return this.varint(id + TAG.null);
      if (Number.isInteger(v)) {
        if (v > -INT_LIMIT && v < INT_LIMIT) {
          this.varint(id + TAG.int);
          return this.varint(zigzag(v));
        }
      } else if (Math.fround(v) === v) {
        this.varint(id + TAG.f32);
        this.view.setFloat32(this.pos, v, true);
        this.pos += 4;
        return;
      } else {
        for (let k = 1; k < POW10.length; k++) {
          const p = POW10[k] as number;
          const m = Math.round(v * p);
          if (m > -INT_LIMIT && m < INT_LIMIT && m / p === v) {
            this.varint(id + DECIMAL + k);
            return this.varint(zigzag(m));
          }
        }
      }
      this.varint(id + TAG.f64);
      this.view.setFloat64(this.pos, v, true);
      this.pos += 8;
    } else if (typeof v === "string") {
      this.varint(id + TAG.string);
      this.text(v);
    } else if (v === true) this.varint(id + TAG.true);
    else if (v === false) this.varint(id + TAG.false);
    else if (v === null) this.varint(id + TAG.null);
    else {
      this.varint(id + TAG.json);
      this.text(JSON.stringify(v));
    }
  }

  private number(at: PathNode): void {
    if (!this.addPath) throw new Error("the database has no report_paths table (schema < 4)");
    const keys: string[] = [];
    for (let n: PathNode | undefined = at; n !== this.root && n; n = n.parent) keys.unshift(n.key);
    // RETURNING the existing number if another writer on the file numbered the path first.
    const id = this.addPath.get(JSON.stringify(keys))?.id;
    if (id === undefined) throw new Error("report_paths returned no id");
    this.paths[id] = keys;
    this.maxId = Math.max(this.maxId, id);
    at.id = id;
    this.fresh.push(at);
  }

  /** 0 <= n < 2^31 (heads and zigzagged values); room for it made by the caller. */
  private varint(n: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (n >= 0x80) {
      buf[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  private text(s: string): void {
    // Enum labels and the like are short ASCII: copied by hand, as Buffer's UTF-8 calls into C++
    // cost more than the copy.
    if (s.length < 64) {
      this.room(s.length + 1);
      const buf = this.buf;
      const start = this.pos;
      let pos = start + 1;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[pos++] = c;
      }
      if (i === s.length) {
        buf[start] = s.length; // a one-byte varint
        this.pos = pos;
        return;
      }
    }
    const len = Buffer.byteLength(s);
    this.room(len + 8);
    this.varint(len);
    this.pos += this.buf.write(s, this.pos, "utf8");
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
    this.view = new DataView(bigger.buffer, bigger.byteOffset, bigger.length);
  }
}

const zigzag = (v: number): number => (v >= 0 ? v * 2 : -v * 2 - 1);
const unzigzag = (z: number): number => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

function hasKeys(o: JsonObject): boolean {
  for (const k in o) if (Object.hasOwn(o, k)) return true;
  return false;
}
