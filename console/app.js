// The field engineer's console: the devices and the last config reload; one device's points
// live, each with its raw words under every byte order, its history and a form to set it; the
// edge shadow beside the cloud's. Served by the local API as static files (no build step, no
// CDN), it calls the same API with the token the engineer types in (kept for the browser
// session only).
import { h, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";
import { api, enc, saveToken, streamEvents, useApi, useNow } from "./api.js";
import { CloudCompare } from "./cloud.js";
import { deepMerge, fmtAge, fmtTime, fmtValue, leaves, seconds } from "./format.js";
import { PointDetail } from "./point.js";

const html = htm.bind(h);

function TokenForm({ onToken, message }) {
  const [value, setValue] = useState("");
  return html`<form
    onSubmit=${(e) => {
      e.preventDefault();
      saveToken(value);
      onToken();
    }}
  >
    <p role="alert">${message}</p>
    <label for="token">API token</label>${" "}
    <input id="token" type="password" value=${value} onInput=${(e) => setValue(e.target.value)} />
    ${" "}<button type="submit">Open</button>
  </form>`;
}

function cloudText(c) {
  if (!c) return "no cloud";
  return `${c.state}${c.reason ? `: ${c.reason}` : ""}`;
}

function Devices({ devices, now }) {
  return html`<table>
    <caption>
      Devices
    </caption>
    <thead>
      <tr>
        <th scope="col">Device</th>
        <th scope="col">Source</th>
        <th scope="col">Cloud</th>
        <th scope="col" class="wide">Outbox</th>
        <th scope="col" class="wide">Last poll</th>
        <th scope="col" class="wide">Overruns</th>
      </tr>
    </thead>
    <tbody>
      ${devices.map(
        (d) =>
          html`<tr data-device=${d.name}>
            <td><a href=${`#/device/${enc(d.name)}`}>${d.name}</a></td>
            <td class=${d.online ? "good" : "bad"}>
              ${d.source} ${d.connection ?? (d.online ? "online" : "offline")}
            </td>
            <td class=${d.cloud?.state === "refused" || d.cloud?.state === "offline" ? "bad" : ""}>
              ${cloudText(d.cloud)}
            </td>
            <td class="wide num">${d.outbox ?? "-"}</td>
            <td class="wide">${fmtAge(d.lastPoll === undefined ? undefined : now - d.lastPoll)}</td>
            <td class=${`wide num ${d.overruns ? "bad" : ""}`}>${d.overruns ?? "-"}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

/** The last config reload (SIGHUP, the API, or a watched file): applied, or every problem. */
function Reload({ refreshed }) {
  // Read again with the device list: a reload by SIGHUP or a watched file shows up by itself.
  const [data, error, reload] = useApi(() => api("/api/v1/reload"), [refreshed]);
  const [asking, setAsking] = useState(false);
  const ask = async () => {
    setAsking(true);
    await api("/api/v1/reload", { method: "POST" }).catch(() => undefined);
    setAsking(false);
    await reload();
  };
  const last = data?.last;
  let body;
  if (error) body = html`<p role="alert" class="bad">${error.message}</p>`;
  else if (!data) body = html`<p>Loading…</p>`;
  else if (!last) body = html`<p>No reload since the gateway started.</p>`;
  else if (last.reply.status === "applied") {
    const plan = last.reply.plan;
    body = html`<p class="good" data-reload="applied">
        ${`Applied ${fmtTime(last.at)} (${last.trigger}): `}
        ${
          plan === "rebuilt"
            ? "the gateway was rebuilt"
            : `added ${plan.added.join(", ") || "none"}, changed ${plan.changed.join(", ") || "none"}, removed ${plan.removed.join(", ") || "none"}${plan.reconnected ? "; the cloud link reconnected" : ""}`
        }
      </p>
      ${last.reply.restartNeeded && html`<p class="bad">Only a restart applies: ${last.reply.restartNeeded.join(", ")}</p>`}`;
  } else if (last.reply.status === "refused") {
    body = html`<div data-reload="refused">
      <p class="bad">
        ${`Refused ${fmtTime(last.at)} (${last.trigger}): the running config stays in place. ${last.reply.problems.length} problem${last.reply.problems.length === 1 ? "" : "s"}:`}
      </p>
      <ul class="problems">
        ${last.reply.problems.map((p) => html`<li><code>${p}</code></li>`)}
      </ul>
      ${last.reply.omitted && html`<p>and ${last.reply.omitted} more (see the log)</p>`}
    </div>`;
  } else
    body = html`<p class="bad" data-reload="failed">
      Failed ${fmtTime(last.at)}: ${last.reply.reason}
    </p>`;
  return html`<section aria-labelledby="reload-h">
    <h2 id="reload-h">Last config reload</h2>
    ${body}
    <button type="button" onClick=${ask} disabled=${asking}>Reload the config now</button>
  </section>`;
}

function reporting(def) {
  const parts = [def.onChange ? "on change" : "heartbeat only"];
  if (def.deadband !== undefined) parts.push(`deadband ${def.deadband}`);
  if (def.heartbeatMs !== undefined) parts.push(`heartbeat ${seconds(def.heartbeatMs)}`);
  return parts.join(", ");
}

function Device({ name, event, now }) {
  const [detail, detailError, loadDetail] = useApi(
    () => api(`/api/v1/devices/${enc(name)}`),
    [name],
  );
  const [view, setView] = useState(undefined);
  const [error, setError] = useState(undefined);
  const [filter, setFilter] = useState("");
  const [open, setOpen] = useState(undefined);
  // The API's shadow: state.reported (values and _commands), state.desired (pending),
  // metadata.reported (each point's quality).
  const load = () =>
    api(`/api/v1/devices/${enc(name)}/shadow`).then(
      (r) =>
        setView({
          reported: r.state.reported,
          desired: r.state.desired,
          points: r.metadata.reported,
        }),
      (e) => setError(e.message),
    );
  useEffect(() => {
    void load();
  }, [name]);
  // Live values from the event stream, merged over the loaded shadow. A quality change may be
  // the connection's (lost, back): the device's states are read again with it, as after a link
  // change.
  useEffect(() => {
    if (!event) return;
    if (event.type === "link") return void loadDetail();
    if (event.device !== name || !view) return;
    if (event.type === "point")
      setView({ ...view, reported: deepMerge(view.reported, event.reported) });
    else if (event.type === "command") void load();
    else if (event.type === "quality") {
      void load();
      void loadDetail();
    }
  }, [event]);
  if (error || detailError)
    return html`<p role="alert" class="bad">${error ?? detailError.message}</p>`;
  if (!view || !detail) return html`<p>Loading ${name}…</p>`;
  const values = leaves(view.reported);
  const defs = detail.definitions.filter((d) => d.name.includes(filter));
  return html`<section>
    <h2>${name}</h2>
    <p><a href="#/">All devices</a></p>
    <p>
      ${`Source ${detail.source}: `}
      <span class=${detail.online ? "good" : "bad"} data-connection>${detail.connection}</span>
      ${`; cloud: ${cloudText(detail.cloud)}; outbox ${detail.outbox ?? "-"}; overruns ${detail.overruns ?? "-"}. Mapping `}
      <code>${detail.file}</code>.
    </p>
    <label for="filter">Filter points</label>${" "}
    <input id="filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} />
    <table>
      <caption>
        Points of ${name}
      </caption>
      <thead>
        <tr>
          <th scope="col">Point</th>
          <th scope="col">Value</th>
          <th scope="col">Quality</th>
          <th scope="col" class="wide">Age</th>
          <th scope="col" class="wide">Reporting</th>
          <th scope="col"><span class="sr-only">Details</span></th>
        </tr>
      </thead>
      <tbody>
        ${defs.flatMap((def) => {
          const p = def.name;
          const q = view.points[p] ?? { quality: "uncertain", reason: "not read yet" };
          const shown = open === p;
          const rows = [
            html`<tr data-point=${p}>
              <th scope="row">${p}</th>
              <td class="num">
                <span data-value>${fmtValue(values[p] ?? null)}</span
                >${def.unit ? ` ${def.unit}` : ""}
              </td>
              <td class=${q.quality === "good" ? "good" : "bad"} data-quality>
                ${q.quality}${q.reason ? `: ${q.reason}` : ""}
              </td>
              <td class="wide">
                ${fmtAge(q.timestamp === undefined ? undefined : now - q.timestamp)}
              </td>
              <td class="wide">${reporting(def)}</td>
              <td>
                <button
                  type="button"
                  aria-expanded=${shown}
                  aria-controls=${`detail-${p}`}
                  onClick=${() => setOpen(shown ? undefined : p)}
                >
                  ${shown ? "Hide" : "Details"}<span class="sr-only"> of ${p}</span>
                </button>
              </td>
            </tr>`,
          ];
          if (shown)
            rows.push(
              html`<tr id=${`detail-${p}`}>
                <td colspan="6"><${PointDetail} device=${name} def=${def} onDone=${load} /></td>
              </tr>`,
            );
          return rows;
        })}
      </tbody>
    </table>
    <section aria-labelledby="cloud-h">
      <h2 id="cloud-h">Edge and cloud</h2>
      ${detail.cloud ? html`<${CloudCompare} device=${name} edge=${view} />` : html`<p>The config has no cloud section.</p>`}
    </section>
  </section>`;
}

function App() {
  const [route, setRoute] = useState(location.hash);
  const [devices, setDevices] = useState(undefined);
  const [needToken, setNeedToken] = useState(undefined);
  const [stream, setStream] = useState("connecting");
  const [event, setEvent] = useState(undefined);
  const [attempt, setAttempt] = useState(0);
  const [refreshed, setRefreshed] = useState(0);
  const now = useNow();
  useEffect(() => {
    const on = () => setRoute(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  const loadDevices = () =>
    api("/api/v1/devices").then(
      (r) => {
        setNeedToken(undefined);
        setDevices(r.devices);
        setRefreshed((n) => n + 1);
      },
      (e) => (e.status === 401 ? setNeedToken(e.message) : undefined),
    );
  useEffect(() => {
    void loadDevices();
  }, [attempt]);
  // The list's states (connection, cloud, outbox) change without a point event: read every 5 s.
  useEffect(() => {
    if (devices === undefined) return undefined;
    const t = setInterval(() => void loadDevices(), 5000);
    return () => clearInterval(t);
  }, [devices === undefined]);
  useEffect(() => {
    if (devices === undefined) return undefined;
    return streamEvents(
      (type, data) => {
        setEvent({ ...data, type });
        if (type === "link" || type === "quality") void loadDevices();
      },
      (state) => setStream(state),
    );
  }, [devices === undefined]);
  if (needToken !== undefined)
    return html`<${TokenForm} message=${needToken} onToken=${() => setAttempt(attempt + 1)} />`;
  if (devices === undefined) return html`<p>Loading…</p>`;
  const device = /^#\/device\/(.+)$/.exec(route)?.[1];
  return html`<div>
    <h1>Shadowgate</h1>
    <p class=${`status ${stream === "live" ? "good" : "bad"}`} role="status" data-stream=${stream}>
      Live updates: ${stream === "live" ? "connected" : "lost, reconnecting…"}
    </p>
    ${
      device
        ? html`<${Device} name=${decodeURIComponent(device)} event=${event} now=${now} />`
        : html`<${Devices} devices=${devices} now=${now} /><${Reload} refreshed=${refreshed} />`
    }
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
