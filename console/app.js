// The field engineer's console: the devices, one device's points live, setting a point. Served by
// the local API as static files (no build step, no CDN), it calls the same API with the token
// the engineer types in (kept for the browser session only).
import { h, render } from "preact";
import { useEffect, useState } from "preact/hooks";
import htm from "htm";

const html = htm.bind(h);
const TOKEN_KEY = "shadowgate.token";

/** A refused API call, with the API's own error message. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function api(path, init = {}) {
  const res = await fetch(path, {
    ...init,
    headers: { ...headers(), ...(init.body ? { "content-type": "application/json" } : {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

/**
 * The API's event stream, read with fetch (EventSource cannot send the token), reconnecting
 * after a second when it drops. Calls onEvent(type, data) and onState("live" | "reconnecting").
 */
function streamEvents(onEvent, onState) {
  let stopped = false;
  let controller;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const res = await fetch("/api/v1/events", {
          headers: headers(),
          signal: controller.signal,
        });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onState("live");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const type = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (type && data) onEvent(type, JSON.parse(data));
          }
        }
      } catch {
        // dropped or refused: say so and try again
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  void run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}

/** Leaves of a reported object as dotted names, `_commands` apart. */
function leaves(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj ?? {})) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (!prefix && k === "_commands") continue;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) leaves(v, name, out);
    else out[name] = v;
  }
  return out;
}

const fmtAge = (ms) =>
  ms === undefined ? "-" : ms < 1000 ? "now" : `${Math.round(ms / 1000)} s ago`;

function TokenForm({ onToken, message }) {
  const [value, setValue] = useState("");
  return html`<form
    onSubmit=${(e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, value);
      onToken();
    }}
  >
    <p role="alert">${message}</p>
    <label for="token">API token</label>${" "}
    <input id="token" type="password" value=${value} onInput=${(e) => setValue(e.target.value)} />
    ${" "}<button type="submit">Open</button>
  </form>`;
}

function Devices({ devices }) {
  return html`<table>
    <caption class="muted" style="text-align:left">
      Devices
    </caption>
    <thead>
      <tr>
        <th scope="col">Device</th>
        <th scope="col">Source</th>
        <th scope="col">Cloud</th>
        <th scope="col" class="wide">Outbox</th>
        <th scope="col" class="wide">Last poll</th>
      </tr>
    </thead>
    <tbody>
      ${devices.map(
        (d) =>
          html`<tr>
            <td><a href=${`#/device/${encodeURIComponent(d.name)}`}>${d.name}</a></td>
            <td class=${d.online ? "good" : "bad"}>
              ${d.source} ${d.online ? "online" : "offline"}
            </td>
            <td class=${d.cloud?.state === "refused" || d.cloud?.state === "offline" ? "bad" : ""}>
              ${d.cloud ? d.cloud.state : "no cloud"}${d.cloud?.reason ? `: ${d.cloud.reason}` : ""}
            </td>
            <td class="wide num">${d.outbox ?? "-"}</td>
            <td class="wide">
              ${fmtAge(d.lastPoll === undefined ? undefined : Date.now() - d.lastPoll)}
            </td>
          </tr>`,
      )}
    </tbody>
  </table>`;
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
      const r = await api(
        `/api/v1/devices/${encodeURIComponent(device)}/points/${encodeURIComponent(point)}`,
        { method: "PUT", body: JSON.stringify({ value: parsed }) },
      );
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
    ${
      result && html`<span role="status" class=${result.ok ? "good" : "bad"}> ${result.text}</span>`
    }
  </form>`;
}

function Device({ name, events }) {
  const [view, setView] = useState(undefined);
  const [error, setError] = useState(undefined);
  const [filter, setFilter] = useState("");
  // The API's shadow: state.reported (values and _commands), state.desired (pending),
  // metadata.reported (each point's quality).
  const load = () =>
    api(`/api/v1/devices/${encodeURIComponent(name)}/shadow`).then(
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
  // Live values from the event stream, merged over the loaded shadow.
  useEffect(() => {
    if (!events || events.device !== name || !view) return;
    if (events.type === "point") {
      setView({ ...view, reported: deepMerge(view.reported, events.reported) });
    } else if (events.type === "quality" || events.type === "command") void load();
  }, [events]);
  if (error) return html`<p role="alert" class="bad">${error}</p>`;
  if (!view) return html`<p>Loading ${name}…</p>`;
  const values = leaves(view.reported);
  const names = Object.keys(view.points)
    .sort()
    .filter((p) => p.includes(filter));
  const commands = view.reported._commands ?? {};
  return html`<section>
    <h2>${name}</h2>
    <p><a href="#/">All devices</a></p>
    <label for="filter">Filter points</label>${" "}
    <input id="filter" value=${filter} onInput=${(e) => setFilter(e.target.value)} />
    <table>
      <caption class="muted" style="text-align:left">
        Points of ${name}
      </caption>
      <thead>
        <tr>
          <th scope="col">Point</th>
          <th scope="col">Value</th>
          <th scope="col">Quality</th>
          <th scope="col" class="wide">Last command</th>
        </tr>
      </thead>
      <tbody>
        ${names.map((p) => {
          const q = view.points[p];
          const cmd = commands[p];
          return html`<tr data-point=${p}>
            <th scope="row">${p}</th>
            <td class="num" data-value>${JSON.stringify(values[p] ?? null)}</td>
            <td class=${q.quality === "good" ? "good" : "bad"}>
              ${q.quality}${q.reason ? `: ${q.reason}` : ""}
            </td>
            <td class="wide">
              ${cmd ? `${cmd.status}${cmd.reason ? `: ${cmd.reason}` : ""}` : "-"}
            </td>
          </tr>`;
        })}
      </tbody>
    </table>
    <h2>Set a point</h2>
    ${names.map((p) => html`<${SetPoint} device=${name} point=${p} onDone=${load} />`)}
  </section>`;
}

function deepMerge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && a?.[k] && typeof a[k] === "object"
        ? deepMerge(a[k], v)
        : v;
  }
  return out;
}

function App() {
  const [route, setRoute] = useState(location.hash);
  const [devices, setDevices] = useState(undefined);
  const [needToken, setNeedToken] = useState(undefined);
  const [stream, setStream] = useState("connecting");
  const [event, setEvent] = useState(undefined);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    const on = () => setRoute(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  useEffect(() => {
    api("/api/v1/devices").then(
      (r) => {
        setNeedToken(undefined);
        setDevices(r.devices);
      },
      (e) => (e.status === 401 ? setNeedToken(e.message) : setNeedToken(undefined)),
    );
  }, [attempt]);
  useEffect(() => {
    if (devices === undefined) return undefined;
    return streamEvents(
      (type, data) => setEvent({ ...data, type }),
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
        ? html`<${Device} name=${decodeURIComponent(device)} events=${event} />`
        : html`<${Devices} devices=${devices} />`
    }
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
