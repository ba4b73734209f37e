/**
 * Polls `cond` every `stepMs` until it holds; throws after `limitMs` naming what it waited for.
 * Bounded in time and so in count: tests await conditions with it instead of sleeping. `cond`
 * may be async, e.g. a read whose answer is checked.
 */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  limitMs = 15_000,
  stepMs = 10,
): Promise<void> {
  const end = Date.now() + limitMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
