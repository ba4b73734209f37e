import { ErrorCodes, ShadowgateError } from "../../core/errors.js";
import type { ModbusLink } from "./modbus-link.js";

/**
 * `shadowgate scan`'s search: which unit ids answer, and which holding and input register
 * ranges they let read, in a bounded number of requests, never writing. A unit answers when it
 * sends anything back to a one-register read, data or an exception; silence is absence. A read
 * refused with exception 02 (illegal address) or 03 (illegal value: some devices refuse long
 * reads), or not answered, marks what it asked as not readable as one (walk() finds the runs);
 * exception 01 (illegal function) means the unit has no such table.
 */

export type ScanTable = "holding" | "input";

export interface ScanOptions {
  readonly units: readonly number[];
  /** First and last register address (0-based) to probe, inclusive. */
  readonly from: number;
  readonly to: number;
  /** Requests per unit at most; beyond it the unit's result is marked incomplete. */
  readonly maxRequestsPerUnit: number;
  /** Called as the scan moves on (for a progress line). */
  readonly progress?: (what: string) => void;
}

export interface UnitScan {
  readonly unitId: number;
  /** Readable ranges per table: [first address, count], in order. */
  readonly ranges: Readonly<Record<ScanTable, ReadonlyArray<readonly [number, number]>>>;
  readonly requests: number;
  /** The request budget ran out before every address was settled. */
  readonly incomplete: boolean;
}

const BLOCK = 125;

type Outcome = "ok" | "refused" | "no-table" | "silent";

/**
 * The connection a scan reads through. A link may give up on a connection after several
 * unanswered requests in a row (a TCP gateway before silent units does that on purpose), so
 * a request that finds it closed opens it again and counts as unanswered.
 */
class ScanLink {
  private link: ModbusLink | undefined;

  constructor(private readonly open: () => Promise<ModbusLink>) {}

  /** Reads one block and says what came back (never throws for a device's answer). */
  async probe(unitId: number, table: ScanTable, address: number, count: number): Promise<Outcome> {
    this.link ??= await this.open();
    try {
      await this.link.read(unitId, table, address, count);
      return "ok";
    } catch (err) {
      if (!(err instanceof ShadowgateError)) throw err;
      if (err.code === ErrorCodes.MODBUS_EXCEPTION) {
        return err.details["exceptionCode"] === 1 ? "no-table" : "refused";
      }
      if (err.code === ErrorCodes.MODBUS_TIMEOUT) return "silent";
      if (err.code === ErrorCodes.MODBUS_DISCONNECTED) {
        this.link = undefined;
        return "silent";
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.link?.close("scan done");
  }
}

/**
 * Scans every unit in turn through connections `open` makes; only units that answered are in
 * the result.
 */
export async function scanUnits(
  open: () => Promise<ModbusLink>,
  opts: ScanOptions,
): Promise<UnitScan[]> {
  const link = new ScanLink(open);
  try {
    return await scanAll(link, opts);
  } finally {
    await link.close();
  }
}

async function scanAll(link: ScanLink, opts: ScanOptions): Promise<UnitScan[]> {
  const found: UnitScan[] = [];
  for (const unitId of opts.units) {
    opts.progress?.(`unit ${unitId}`);
    const first = await link.probe(unitId, "holding", opts.from, 1);
    const alt = first === "silent" ? await link.probe(unitId, "input", opts.from, 1) : first;
    if (alt === "silent") continue;
    found.push(await scanUnit(link, unitId, opts));
  }
  return found;
}

/** The unit's request budget is spent. */
class OutOfRequests extends Error {}

async function scanUnit(link: ScanLink, unitId: number, opts: ScanOptions): Promise<UnitScan> {
  let requests = 2;
  let incomplete = false;
  const ranges: Record<ScanTable, Array<[number, number]>> = { holding: [], input: [] };
  for (const table of ["holding", "input"] as const) {
    opts.progress?.(`unit ${unitId}, ${table} registers`);
    let noTable = false;
    /** Whether [address, address + count) reads; a unit without the table reads nothing. */
    const reads = async (address: number, count: number): Promise<boolean> => {
      if (noTable) return false;
      if (requests >= opts.maxRequestsPerUnit) throw new OutOfRequests();
      requests++;
      const outcome = await link.probe(unitId, table, address, count);
      if (outcome === "no-table") noTable = true;
      return outcome === "ok";
    };
    const found: Array<[number, number]> = [];
    try {
      await walk(reads, opts.from, opts.to, found);
    } catch (err) {
      if (!(err instanceof OutOfRequests)) throw err;
      incomplete = true;
    }
    ranges[table] = noTable ? [] : merge(found);
  }
  return { unitId, ranges, requests, incomplete };
}

/**
 * Walks [from, to] in runs: a readable register starts a run, grown a block of up to 125 at a
 * time and, where a block is refused, by halving to its readable prefix; an unreadable one
 * starts a gap, crossed in steps that double (1, 2, 4...) until a register reads, then halved
 * back to the first readable one (exact where a gap is one block of refusals, as on devices
 * whose maps are blocks with holes between). Requests grow with the number of runs and the
 * logarithm of their lengths, not with the address range.
 */
async function walk(
  reads: (address: number, count: number) => Promise<boolean>,
  from: number,
  to: number,
  found: Array<[number, number]>,
): Promise<void> {
  let a = from;
  while (a <= to) {
    if (await reads(a, 1)) {
      let end = a + 1;
      while (end <= to) {
        const k = Math.min(BLOCK, to - end + 1);
        if (await reads(end, k)) {
          end += k;
          continue;
        }
        let lo = 0; // a readable prefix's length
        let hi = k; // a refused one's
        while (hi - lo > 1) {
          const mid = (lo + hi) >> 1;
          if (await reads(end, mid)) lo = mid;
          else hi = mid;
        }
        end += lo;
        break;
      }
      found.push([a, end - a]);
      a = end;
      continue;
    }
    let lo = a; // refused
    let step = 1;
    let hi: number | undefined;
    while (lo < to) {
      const next = Math.min(lo + step, to);
      if (await reads(next, 1)) {
        hi = next;
        break;
      }
      lo = next;
      step *= 2;
    }
    if (hi === undefined) return;
    let first: number = hi;
    while (first - lo > 1) {
      const mid: number = (lo + first) >> 1;
      if (await reads(mid, 1)) first = mid;
      else lo = mid;
    }
    a = first;
  }
}

/** Adjacent or overlapping ranges as one, in address order. */
function merge(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Array<[number, number]> = [];
  for (const [a, n] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[0] + last[1]) last[1] = Math.max(last[1], a + n - last[0]);
    else out.push([a, n]);
  }
  return out;
}

/**
 * A draft mapping file for one scanned unit: every readable register as a uint16 point named by
 * its table and address, a comment per block. `validate` takes it as it stands once `source`
 * names a source of the gateway config.
 */
export function draftMapping(scan: UnitScan, source: string, header: readonly string[]): string {
  const lines = [
    ...header.map((h) => `# ${h}`),
    "# Every readable register as a uint16; rename, type (float32, int16, scale) and delete",
    "# points as the device's manual says, and name the device.",
    "version: 1",
    `device: { productKey: CHANGE_ME, deviceName: unit-${scan.unitId} }`,
    `source: ${source}`,
    `unitId: ${scan.unitId}`,
    "pollInterval: 1s",
  ];
  const points: string[] = [];
  for (const table of ["holding", "input"] as const) {
    const prefix = table === "holding" ? "hr" : "ir";
    for (const [a, n] of scan.ranges[table]) {
      points.push(`  # ${table} registers ${a}-${a + n - 1} (${n})`);
      for (let k = a; k < a + n; k++) {
        points.push(`  ${prefix}_${k}: { table: ${table}, offset: ${k}, type: uint16 }`);
      }
    }
  }
  if (points.length === 0) lines.push("points: {} # nothing readable in the scanned range");
  else lines.push("points:", ...points);
  return `${lines.join("\n")}\n`;
}
