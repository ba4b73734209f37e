/**
 * The request planner's geometry: points grouped into atoms (the same footprint), atoms packed
 * into blocks (one read request each) under the size, gap and learned limits, and blocks split
 * in two when a device refuses one.
 */
import type { RawPoint } from "../../core/samples.js";
import type { ModbusTable } from "../../core/types.js";
import { lowerBound, type TableMemory } from "./table-memory.js";

/** A point and its place in the poll's input order. */
export interface Member {
  readonly point: RawPoint;
  readonly index: number;
}

/** Points with exactly the same footprint: they travel and fail together. */
export interface Atom {
  readonly address: number;
  /** Inclusive. */
  readonly end: number;
  readonly members: Member[];
}

export interface Block {
  readonly table: ModbusTable;
  readonly address: number;
  /** Inclusive. */
  readonly end: number;
  readonly atoms: readonly Atom[];
}

/**
 * Greedy left-to-right packing. Every constraint (size, gap, learned gaps and breaks) only
 * gets easier on a shorter run of consecutive atoms, so extending a request as far as it
 * goes yields the fewest requests; for contiguous points it is ceil(total / cap) whenever
 * the point sizes let requests fill up.
 */
export function pack(
  table: ModbusTable,
  atoms: readonly Atom[],
  mem: TableMemory | undefined,
  cap: number,
  maxGap: number,
): Block[] {
  const blocks: Block[] = [];
  let current: { address: number; end: number; atoms: Atom[] } | undefined;
  for (const atom of atoms) {
    if (current !== undefined && canMerge(current, atom, cap, maxGap, mem)) {
      current.end = Math.max(current.end, atom.end);
      current.atoms.push(atom);
      continue;
    }
    if (current !== undefined) blocks.push({ table, ...current });
    current = { address: atom.address, end: atom.end, atoms: [atom] };
  }
  if (current !== undefined) blocks.push({ table, ...current });
  return blocks;
}

function canMerge(
  current: { readonly address: number; readonly end: number },
  atom: Atom,
  cap: number,
  maxGap: number,
  mem: TableMemory | undefined,
): boolean {
  if (Math.max(current.end, atom.end) - current.address + 1 > cap) return false;
  const gapFirst = current.end + 1;
  const gapLast = atom.address - 1;
  if (gapLast >= gapFirst) {
    if (gapLast - gapFirst + 1 > maxGap) return false;
    if (mem?.illegal.overlaps(gapFirst, gapLast) === true) return false;
    if (mem?.noThrough.overlaps(gapFirst, gapLast) === true) return false;
  }
  if (mem !== undefined && mem.breaks.length > 0) {
    // Atoms of the request start in [current.address, atom.address]; a break b in
    // (current.address, atom.address] would sit between two of them.
    const next = mem.breaks[lowerBound(mem.breaks, current.address + 1)];
    if (next !== undefined && next <= atom.address) return false;
  }
  return true;
}

export function toAtoms(members: readonly Member[]): Atom[] {
  const sorted = [...members].sort(
    (a, b) =>
      a.point.address - b.point.address || a.point.count - b.point.count || a.index - b.index,
  );
  const atoms: Atom[] = [];
  let last: Atom | undefined;
  for (const m of sorted) {
    const end = m.point.address + m.point.count - 1;
    if (last !== undefined && last.address === m.point.address && last.end === end) {
      last.members.push(m);
    } else {
      last = { address: m.point.address, end, members: [m] };
      atoms.push(last);
    }
  }
  return atoms;
}

/**
 * Two halves of the block's atoms. Prefers a cut nearest the middle where the halves do not
 * overlap, then one where the right half starts strictly later, so that whatever is learned
 * from the halves can be stated as a gap or a break.
 */
export function split(block: Block): [Block, Block] {
  const { atoms } = block;
  const n = atoms.length;
  const mid = Math.floor(n / 2);
  let clean = -1;
  let distinct = -1;
  let leftEnd = -1;
  const leftEnds: number[] = [];
  for (const atom of atoms) {
    leftEnd = Math.max(leftEnd, atom.end);
    leftEnds.push(leftEnd);
  }
  for (let i = 1; i < n; i++) {
    const prev = atoms[i - 1];
    const cur = atoms[i];
    const endBefore = leftEnds[i - 1];
    if (prev === undefined || cur === undefined || endBefore === undefined) continue;
    const better = (best: number): boolean => best < 0 || Math.abs(i - mid) < Math.abs(best - mid);
    if (cur.address > endBefore && better(clean)) clean = i;
    if (cur.address > prev.address && better(distinct)) distinct = i;
  }
  const cut = clean > 0 ? clean : distinct > 0 ? distinct : mid;
  return [toBlock(block.table, atoms.slice(0, cut)), toBlock(block.table, atoms.slice(cut))];
}

function toBlock(table: ModbusTable, atoms: Atom[]): Block {
  let address = Infinity;
  let end = -1;
  for (const atom of atoms) {
    address = Math.min(address, atom.address);
    end = Math.max(end, atom.end);
  }
  return { table, address, end, atoms };
}
