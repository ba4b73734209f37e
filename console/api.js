// The console's access to the local API: calls with the session's token, the event stream, and
// the hooks the views read them with.
import { useEffect, useState } from "preact/hooks";

const TOKEN_KEY = "shadowgate.token";

export const enc = encodeURIComponent;

/** Keeps the token for this browser session only. */
export const saveToken = (token) => sessionStorage.setItem(TOKEN_KEY, token);

/** A refused API call, with the API's own error message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function api(path, init = {}) {
  let res;
  try {
    res = await fetch(path, {
      ...init,
      headers: { ...headers(), ...(init.body ? { "content-type": "application/json" } : {}) },
    });
  } catch {
    throw new ApiError(0, "the gateway does not answer (is it running, is the network up?)");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body?.error?.message ?? `HTTP ${res.status}`, body);
  return body;
}

/** Calls `load` now and whenever `deps` change; gives [data, error, reload]. */
export function useApi(load, deps) {
  const [state, setState] = useState({});
  const run = () =>
    load().then(
      (data) => setState({ data }),
      (error) => setState((s) => ({ data: s.data, error })),
    );
  useEffect(() => {
    void run();
  }, deps);
  return [state.data, state.error, run];
}

/** A clock for ages ("3 s ago") that ticks once a second. */
export function useNow() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

/**
 * The API's event stream, read with fetch (EventSource cannot send the token), reconnecting
 * after a second when it drops. Calls onEvent(type, data) and onState("live" | "reconnecting").
 */
export function streamEvents(onEvent, onState) {
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
