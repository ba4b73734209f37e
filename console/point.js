// One point's details: where it is read, its raw words under every byte order, its history,
// and the form that sets it.
import { h } from "preact";
import { useState } from "preact/hooks";
import htm from "htm";
import { api, enc, useApi } from "./api.js";
import { fmtTime, fmtValue } from "./format.js";

const html = htm.bind(h);

/** The device's history of one point as a line (numbers, booleans) or its last values. */
function Sparkline({ device, point }) {
  const [data, error] = useApi(
    () => api(`/api/v1/devices/${enc(device)}/points/${enc(point)}/history?max=120`),
    [device, point],
  );
  if (error) return html`<p class="muted">History: ${error.message}</p>`;
  if (!data) return html`<p>Loading the history…</p>`;
  const values = data.values;
  if (values.length === 0) return html`<p class="muted">History: no values recorded yet.</p>`;
  const numeric = values.every((v) => typeof v.value === "number" || typeof v.value === "boolean");
  const first = values[0];
  const last = values[values.length - 1];
  const count = `${values.length} value${values.length === 1 ? "" : "s"}`;
  const label = `History of ${point}: ${count} from ${fmtTime(first.ts)} to ${fmtTime(last.ts)}`;
  if (!numeric)
    return html`<p>
      ${label}, the last:
      ${values
        .slice(-5)
        .map((v) => fmtValue(v.value))
        .join(", ")}
    </p>`;
  const ys = values.map((v) => Number(v.value));
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const t0 = first.ts;
  const span = Math.max(1, last.ts - t0);
  const W = 240;
  const H = 40;
  const pts = values
    .map((v, i) => {
      const x = values.length === 1 ? W / 2 : ((v.ts - t0) / span) * (W - 4) + 2;
      const y = hi === lo ? H / 2 : H - 2 - ((ys[i] - lo) / (hi - lo)) * (H - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
  return html`<figure class="spark">
    <svg
      role="img"
      aria-label=${`${label}, between ${lo} and ${hi}`}
      width=${W}
      height=${H}
      viewBox=${`0 0 ${W} ${H}`}
    >
      <polyline points=${pts} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
    <figcaption>
      ${`${count}, ${lo} to ${hi}, last ${fmtValue(last.value)} at ${fmtTime(last.ts)}`}
    </figcaption>
  </figure>`;
}

/** The point's words read from the device now, and their value under every byte order. */
function RawWords({ device, point }) {
  const [data, error, again] = useApi(
    () => api(`/api/v1/devices/${enc(device)}/points/${enc(point)}/raw`),
    [device, point],
  );
  if (error?.status === 422) return html`<p class="muted">Raw words: ${error.message}</p>`;
  // A device that did not answer may answer the next time: the button stays.
  if (error)
    return html`<p>
      <span class="bad" role="alert">${`Raw words: ${error.message}`}</span>${" "}
      <button type="button" onClick=${again}>Read again</button>
    </p>`;
  if (!data) return html`<p>Reading the raw words…</p>`;
  const hex = data.words.map((w) => `0x${w.toString(16).toUpperCase().padStart(4, "0")}`).join(" ");
  return html`<div>
    <p>
      Words <code data-words>${hex}</code> (decimal ${data.words.join(" ")}) ${" "}<button
        type="button"
        onClick=${again}
      >
        Read again
      </button>
    </p>
    <table class="raw">
      <caption>
        ${point} under each byte order
      </caption>
      <thead>
        <tr>
          <th scope="col">Byte order</th>
          <th scope="col">Value</th>
        </tr>
      </thead>
      <tbody>
        ${data.values.map(
          (r) =>
            html`<tr class=${r.configured ? "configured" : ""} data-order=${r.byteOrder}>
              <th scope="row">${r.byteOrder}${r.configured ? " (configured)" : ""}</th>
              <td class="num">${fmtValue(r.value)}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

function SetPoint({ device, point, onDone }) {
  const [value, setValue] = useState("");
  const [result, setResult] = useState(undefined);
  const id = `set-${point}`;
  const submit = async (e) => {
    e.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = value;
    }
    if (!confirm(`Write ${JSON.stringify(parsed)} to ${point} on ${device}?`)) return;
    try {
      const r = await api(`/api/v1/devices/${enc(device)}/points/${enc(point)}`, {
        method: "PUT",
        body: JSON.stringify({ value: parsed }),
      });
      setResult({
        ok: true,
        text: `${r.outcome.status}, read back ${JSON.stringify(r.outcome.value)}`,
      });
      onDone();
    } catch (err) {
      setResult({ ok: false, text: err.message });
    }
  };
  return html`<form onSubmit=${submit}>
    <label for=${id}>New value for ${point}</label>${" "}
    <input id=${id} size="8" value=${value} onInput=${(e) => setValue(e.target.value)} />
    ${" "}<button type="submit">Set</button>
    ${result && html`<span role="status" class=${result.ok ? "good" : "bad"}> ${result.text}</span>`}
  </form>`;
}

export function PointDetail({ device, def, onDone }) {
  return html`<div class="detail">
    <p>
      ${"Read from "}<code>${def.where}</code>
      ${def.defined && html`${", defined at "}<code>${def.defined}</code>`}
      ${def.writable ? `. Writable${def.min !== undefined || def.max !== undefined ? ` (${def.min ?? "-∞"} to ${def.max ?? "∞"})` : ""}.` : ". Read-only."}
    </p>
    <${RawWords} device=${device} point=${def.name} />
    <${Sparkline} device=${device} point=${def.name} />
    ${def.writable && html`<${SetPoint} device=${device} point=${def.name} onDone=${onDone} />`}
  </div>`;
}
