// What the views show values, times and shadows as.

/** Leaves of an object as dotted names, `_commands` apart. */
export function leaves(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj ?? {})) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (!prefix && k === "_commands") continue;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) leaves(v, name, out);
    else out[name] = v;
  }
  return out;
}

export function deepMerge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && a?.[k] && typeof a[k] === "object"
        ? deepMerge(a[k], v)
        : v;
  }
  return out;
}

export const fmtAge = (ms) =>
  ms === undefined
    ? "-"
    : ms < 1500
      ? "now"
      : ms < 120_000
        ? `${Math.round(ms / 1000)} s ago`
        : `${Math.round(ms / 60_000)} min ago`;
export const fmtTime = (ts) => new Date(ts).toLocaleString();
export const fmtValue = (v) => (v === undefined ? "-" : JSON.stringify(v));
export const seconds = (ms) => (ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`);
