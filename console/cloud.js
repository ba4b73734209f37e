// The edge shadow beside the cloud's.
import { h } from "preact";
import htm from "htm";
import { api, enc, useApi } from "./api.js";
import { fmtTime, fmtValue, leaves } from "./format.js";

const html = htm.bind(h);

/** The edge shadow beside the cloud's: values that differ, desired values, command outcomes. */
export function CloudCompare({ device, edge }) {
  const [data, error, again] = useApi(
    () => api(`/api/v1/devices/${enc(device)}/cloud?fresh=1`),
    [device],
  );
  if (error) return html`<p class="muted">Cloud shadow: ${error.message}</p>`;
  if (!data) return html`<p>Reading the cloud shadow…</p>`;
  const local = leaves(edge.reported);
  const remote = leaves(data.reported);
  const names = [...new Set([...Object.keys(local), ...Object.keys(remote)])].sort();
  const differs = names.filter((n) => JSON.stringify(local[n]) !== JSON.stringify(remote[n]));
  const desired = Object.entries(leaves(data.desired)).filter(([, v]) => v !== null);
  const pending = Object.entries(edge.desired ?? {});
  const commands = Object.entries(edge.reported._commands ?? {});
  return html`<div>
    <p>
      ${`Cloud shadow version ${data.version}, read ${fmtTime(data.readAt)}${data.fresh ? "" : " (the last read: the cloud is not reachable now)"}. `}
      ${differs.length === 0 ? "The cloud holds every reported value." : `${differs.length} value${differs.length === 1 ? " differs" : "s differ"}.`}
      ${" "}<button type="button" onClick=${again}>Read the cloud shadow again</button>
    </p>
    <table>
      <caption>
        Reported: edge and cloud
      </caption>
      <thead>
        <tr>
          <th scope="col">Point</th>
          <th scope="col">Edge</th>
          <th scope="col">Cloud</th>
          <th scope="col">Same?</th>
        </tr>
      </thead>
      <tbody>
        ${names.map((n) => {
          const same = !differs.includes(n);
          return html`<tr class=${same ? "" : "diff"} data-compare=${n}>
            <th scope="row">${n}</th>
            <td class="num">${fmtValue(local[n])}</td>
            <td class="num">${fmtValue(remote[n])}</td>
            <td class=${same ? "" : "bad"}>${same ? "same" : "differs"}</td>
          </tr>`;
        })}
      </tbody>
    </table>
    <h3>Desired</h3>
    ${
      desired.length === 0 && pending.length === 0
        ? html`<p>No desired value waits.</p>`
        : html`<ul>
            ${desired.map(([k, v]) => html`<li>cloud desired <code>${k}</code> = ${fmtValue(v)}</li>`)}
            ${pending.map(([k, v]) => html`<li>received, not executed yet: <code>${k}</code> = ${fmtValue(v)}</li>`)}
          </ul>`
    }
    <h3>Command outcomes</h3>
    ${
      commands.length === 0
        ? html`<p>No command has run yet.</p>`
        : html`<table>
            <caption>
              _commands
            </caption>
            <thead>
              <tr>
                <th scope="col">Point</th>
                <th scope="col">Outcome</th>
                <th scope="col">From</th>
                <th scope="col" class="wide">When</th>
              </tr>
            </thead>
            <tbody>
              ${commands.map(
                ([p, c]) =>
                  html`<tr>
                    <th scope="row">${p}</th>
                    <td class=${c.status === "applied" ? "good" : "bad"}>
                      ${c.status}${c.value !== undefined ? ` ${fmtValue(c.value)}` : ""}${c.reason ? `: ${c.reason}` : ""}
                    </td>
                    <td>${c.source ?? "cloud"}</td>
                    <td class="wide">
                      ${c.ts === undefined ? "-" : fmtTime(c.ts < 1e11 ? c.ts * 1000 : c.ts)}
                    </td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
  </div>`;
}
