/**
 * Register layouts for the Modbus benchmarks and the request counts of reference strategies.
 * Pure functions, shared by the benchmark and the simulator host so both agree on every word.
 */
import { seededRandom } from "../../../test/helpers/random.js";

/** FC3/FC4 limit of the Modbus application protocol spec. */
export const MAX_REGISTERS_PER_READ = 125;

/**
 * The word the simulator holds at `address` of slave `slave` (0-based slave index): varies with
 * both, so a read from the wrong address or the wrong slave shows up as a wrong value.
 */
export function registerValue(slave: number, address: number): number {
  return (Math.imul(address, 40503) + Math.imul(slave + 1, 2654435761)) >>> 16;
}

/**
 * `count` uint16 points at consecutive registers from `start`.
 * @returns 0-based PDU addresses, ascending
 */
export function contiguousLayout(count: number, start: number = 0): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}

/**
 * `count` uint16 points, each followed by a gap of 0..maxGap unused registers drawn uniformly
 * from a seeded PRNG: the same layout on every run. The first point is at register 0.
 * @returns 0-based PDU addresses, ascending
 */
export function gappedLayout(count: number, seed: number, maxGap: number): number[] {
  const random = seededRandom(seed);
  const out = [];
  let address = 0;
  for (let i = 0; i < count; i++) {
    out.push(address);
    address += 1 + Math.floor(random() * (maxGap + 1));
  }
  return out;
}

/**
 * Requests of the greedy "fill gaps up to `maxGap` registers" strategy over single-register
 * points: a request grows while the next point's gap is at most `maxGap` and the request stays
 * within `cap` registers. For this pair of constraints greedy is also the minimum: any request
 * set can be shifted to start where greedy starts without needing more requests.
 * @param addresses  ascending, unique
 */
export function fillGapsRequests(
  addresses: readonly number[],
  maxGap: number,
  cap: number = MAX_REGISTERS_PER_READ,
): number {
  let requests = 0;
  let start = -1;
  let end = -1;
  for (const a of addresses) {
    if (requests > 0 && a - end - 1 <= maxGap && a - start + 1 <= cap) {
      end = a;
      continue;
    }
    requests++;
    start = a;
    end = a;
  }
  return requests;
}

/**
 * Registers spanned from the first to the last point.
 * @param addresses  ascending
 */
export function span(addresses: readonly number[]): number {
  const first = addresses[0];
  const last = addresses[addresses.length - 1];
  return first === undefined || last === undefined ? 0 : last - first + 1;
}
