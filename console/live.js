// live.js — follows the changes of one chat: an EventSource on …/stream?since=R (the browser resends
// Last-Event-ID itself when it reconnects); when the stream route refuses (404, 503, no stream),
// polling of the changes feed …/messages?since=R every 2 s instead.
import { request } from './api.js';

const POLL_MS = 2000;

// base: the chat's API path; since: the chat revision already reflected on the page;
// on: { change(msg), state('live'|'reconnecting'|'offline', mode), gone(), error(e) }.
// Returns { stop() }.
export function follow(base, since, on) {
  let rev = since;
  let es = null;
  let timer = null;
  let stopped = false;
  let failures = 0;

  const stop = () => {
    stopped = true;
    es?.close();
    clearTimeout(timer);
  };
  const seen = (m) => {
    if (typeof m?.revision === 'number' && m.revision > rev) rev = m.revision;
    on.change(m);
  };

  function stream() {
    on.state('reconnecting', 'stream'); // connecting
    es = new EventSource(`${base}/stream?since=${rev}`);
    es.onopen = () => on.state('live', 'stream');
    es.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; } // not a change: ignore
      seen(m);
    };
    es.addEventListener('chat_deleted', () => { stop(); on.gone(); });
    es.onerror = () => {
      if (stopped) return;
      if (es.readyState === EventSource.CLOSED) { // refused, the browser will not retry
        es = null;
        poll();
      } else {
        on.state(navigator.onLine === false ? 'offline' : 'reconnecting', 'stream');
      }
    };
  }

  async function poll() {
    if (stopped) return;
    try {
      let url = `${base}/messages?since=${rev}&per_page=200`;
      while (url && !stopped) {
        const { data, next } = await request('GET', url);
        if (stopped) return;
        const page = Array.isArray(data) ? data : [];
        page.forEach(seen);
        url = page.length ? next : null;
      }
      failures = 0;
      on.state('live', 'polling');
    } catch (e) {
      if (stopped) return;
      if (e.status === 404) { stop(); on.gone(); return; }
      failures += 1;
      on.state(failures > 3 || navigator.onLine === false ? 'offline' : 'reconnecting', 'polling');
      if (failures === 1) on.error(e);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  if (typeof EventSource === 'function') stream();
  else poll();
  return { stop };
}
