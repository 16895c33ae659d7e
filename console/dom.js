// dom.js — DOM helpers. Text only ever enters the page as text nodes (append / textContent),
// never through innerHTML, so a body like <img src=x onerror=alert(1)> shows as those characters.

// el('button', { class: 'x', 'data-number': 3, onclick: fn }, 'text', childNode, ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  node.append(...children.filter((c) => c != null)); // strings become text nodes
  return node;
}

// The text with every occurrence of every word of the query wrapped in <mark> (case-insensitive).
export function highlight(text, query) {
  const frag = document.createDocumentFragment();
  const words = query.split(/\s+/).filter(Boolean)
    .sort((a, b) => b.length - a.length)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  if (!words.length) {
    frag.append(text);
    return frag;
  }
  const parts = text.split(new RegExp(`(${words.join('|')})`, 'giu'));
  parts.forEach((part, i) => {
    if (part) frag.append(i % 2 ? el('mark', {}, part) : part); // odd parts are the matches
  });
  return frag;
}

// A readable local time for an RFC 3339 timestamp.
export const when = (t) => (t ? new Date(t).toLocaleString() : '');
