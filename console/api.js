// api.js — a small same-origin JSON client for the chat API. A failed request throws an ApiError
// that carries the server's {"error":{"code","message"}} exactly as it came.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// API paths. The token is only ever sent to the API, never put into the page URL.
export const appPath = (token) => `/applications/${encodeURIComponent(token)}`;
export const chatPath = (token, n) => `${appPath(token)}/chats/${Number(n)}`;

// A random UUID; crypto.randomUUID exists only in secure contexts (https, localhost).
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// An Idempotency-Key tied to one composed text: a retry of the same text reuses the key,
// a different text gets a new one; reset() after success.
export function newKey() {
  let text = null;
  let key = null;
  return {
    for(t) {
      if (t !== text) { text = t; key = uuid(); }
      return key;
    },
    reset() { text = null; },
  };
}

// The rel="next" target of a Link header, as a path on this origin (or null).
export function nextLink(header) {
  for (const part of (header || '').split(',')) {
    const m = /<([^>]*)>(.*)/.exec(part);
    if (m && /\brel="?[^"]*\bnext\b/i.test(m[2])) {
      const u = new URL(m[1], location.href);
      return u.pathname + u.search;
    }
  }
  return null;
}

// request('POST', '/applications', { body: {name}, headers }) -> { data, next, status }
export async function request(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  let text;
  try {
    res = await fetch(path, init);
    text = await res.text();
  } catch (e) {
    throw new ApiError(0, 'network_error', `the server could not be reached (${e.message})`);
  }
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = data && data.error;
    throw new ApiError(res.status, err?.code ?? `http_${res.status}`,
      err?.message ?? (text.trim().slice(0, 200) || `HTTP ${res.status}`));
  }
  return { data, next: nextLink(res.headers.get('Link')), status: res.status };
}
