// app.js — the chat console: wires the page to the public API. Applications (create, open by token,
// remembered in localStorage), chats, the open chat (history, live changes, send, edit, delete),
// search with highlighted matches, and the operator's list of all applications.
import { request, appPath, chatPath, uuid, newKey } from './api.js';
import { el, highlight } from './dom.js';
import { follow } from './live.js';
import { MessageList } from './messages.js';

const $ = (sel) => document.querySelector(sel);
const SAVED = 'chat-console.apps';      // localStorage: [{token, name}], newest first
const CURRENT = 'chat-console.current'; // localStorage: token of the open application
const PAGE = 30;

const state = {
  token: null, chat: null, seq: 0, live: null, chatsNext: null,
  operatorKey: '', appsNext: null, sending: false, loadingOlder: false,
};
const list = $('#messages');
const chatBase = () => chatPath(state.token, state.chat);
const sendKey = newKey();
const appKey = newKey();

const messages = new MessageList(list, {
  edit: async (n, body, key) => (await request('PUT', `${chatBase()}/messages/${n}`,
    { body: { body }, headers: { 'Idempotency-Key': key } })).data,
  remove: (n) => request('DELETE', `${chatBase()}/messages/${n}`, { headers: { 'Idempotency-Key': uuid() } }),
  error: showError,
});

// ---- errors, connection state, busy buttons ----
function showError(e) {
  $('#error').textContent = e?.code ? `${e.code}: ${e.message}` : String(e?.message ?? e);
  $('#error-dismiss').hidden = false;
}
function setConn(s, mode = '') {
  const c = $('#conn-state');
  if (c.textContent !== s) c.textContent = s;
  c.dataset.state = s;
  $('#conn-mode').textContent = mode ? `(${mode})` : '';
}
async function busy(button, fn) {
  if (button.disabled) return;
  button.disabled = true;
  try { await fn(); } catch (e) { showError(e); } finally { button.disabled = false; }
}

// ---- applications remembered on this device ----
function load(key) { try { return localStorage.getItem(key); } catch { return null; } }
function save(key, value) {
  try { if (value == null) localStorage.removeItem(key); else localStorage.setItem(key, value); } catch { /* no storage */ }
}
function saved() {
  try { const a = JSON.parse(load(SAVED)); return Array.isArray(a) ? a : []; } catch { return []; }
}
function remember(app) {
  const apps = [{ token: app.token, name: app.name }, ...saved().filter((a) => a.token !== app.token)];
  save(SAVED, JSON.stringify(apps.slice(0, 50)));
  renderSaved();
}
function forget(token) {
  save(SAVED, JSON.stringify(saved().filter((a) => a.token !== token)));
  if (load(CURRENT) === token) save(CURRENT, null);
  renderSaved();
}
function renderSaved() {
  $('#saved-apps').replaceChildren(...saved().map((a) => el('li', { class: 'row' },
    el('button', { type: 'button', class: 'link', onclick: () => openApp(a.token) }, String(a.name ?? '')),
    el('button', { type: 'button', class: 'forget icon', 'aria-label': `Forget application ${a.name}`,
      title: 'Forget', onclick: () => forget(a.token) }, '✕'))));
}

// ---- applications ----
async function openApp(token) {
  try {
    showApp((await request('GET', appPath(token))).data);
    return true;
  } catch (e) {
    showError(e);
    if (e.status === 404 && load(CURRENT) === token) save(CURRENT, null);
    return false;
  }
}
function showApp(app) {
  closeChat();
  history.replaceState(null, '', location.pathname + location.search);
  state.token = app.token;
  save(CURRENT, app.token);
  remember(app);
  $('#app-title').textContent = app.name;
  $('#app-token').textContent = app.token;
  $('#app-section').hidden = false;
  loadChats(true);
}

// ---- chats ----
function chatItem(c) {
  const count = c.messages_count ?? 0;
  return el('li', { 'data-chat': c.number },
    el('button', { type: 'button', class: 'open-chat', onclick: () => openChat(c.number) },
      `Chat #${c.number}`, el('span', { class: 'count' }, `${count} message${count === 1 ? '' : 's'}`)));
}
const chatLi = (n) => [...$('#chat-list').children].find((li) => li.dataset.chat === String(n));
function markCurrentChat() {
  for (const li of $('#chat-list').children) {
    const b = li.querySelector('button');
    if (li.dataset.chat === String(state.chat)) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
  }
}
async function loadChats(reset) {
  const url = reset ? `${appPath(state.token)}/chats?order=desc&per_page=20` : state.chatsNext;
  const token = state.token;
  if (!url) return;
  const { data, next } = await request('GET', url).catch((e) => { showError(e); return {}; });
  if (!data || token !== state.token) return;
  if (reset) $('#chat-list').replaceChildren();
  $('#chat-list').append(...data.filter((c) => !chatLi(c.number)).map(chatItem));
  state.chatsNext = next;
  $('#more-chats').hidden = !next;
  markCurrentChat();
}
function createChat() {
  return busy($('#create-chat'), async () => {
    const { data } = await request('POST', `${appPath(state.token)}/chats`, { body: {} });
    $('#chat-list').prepend(chatItem(data));
    openChat(data.number);
  });
}

// ---- the open chat ----
const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 80;
const toBottom = () => { list.scrollTop = list.scrollHeight; };
const updateOlder = () => { $('#load-older').hidden = !messages.hasOlder; };

function closeChat() {
  state.seq += 1;
  state.live?.stop();
  state.live = null;
  state.chat = null;
  messages.reset();
  $('#search-results').replaceChildren();
  $('#search-status').textContent = '';
  $('#chat-title').textContent = 'No chat open';
  $('#chat-view').hidden = true;
  $('#no-chat').hidden = false;
  setConn('offline');
  updateOlder();
  markCurrentChat();
}

async function openChat(n) {
  if (!state.token) return;
  closeChat();
  const seq = state.seq;
  const base = chatPath(state.token, n);
  state.chat = n;
  markCurrentChat();
  history.replaceState(null, '', `#chat=${n}`);
  $('#chat-title').textContent = `Chat #${n}`;
  $('#no-chat').hidden = true;
  $('#chat-view').hidden = false;
  try {
    const { data: chat } = await request('GET', base); // its revision: where the stream starts
    const { data: page, next } = await request('GET', `${base}/messages?order=desc&per_page=${PAGE}`);
    if (seq !== state.seq) return;
    chatLi(n)?.replaceWith(chatItem(chat));
    markCurrentChat();
    messages.addPage(page, Boolean(next) && page.length > 0);
    updateOlder();
    toBottom();
    state.live = follow(base, chat.revision ?? 0, {
      change: (m) => { const stay = nearBottom(); messages.apply(m); if (stay) toBottom(); },
      state: setConn,
      error: showError,
      gone: () => {
        if (seq !== state.seq) return;
        closeChat();
        chatLi(n)?.remove();
        history.replaceState(null, '', location.pathname + location.search);
        showError({ code: 'chat_deleted', message: `chat #${n} was deleted` });
      },
    });
  } catch (e) {
    if (seq === state.seq) showError(e);
  }
}

async function loadOlder() {
  if (state.loadingOlder || !messages.hasOlder) return;
  const seq = state.seq;
  state.loadingOlder = true;
  try {
    const url = `${chatBase()}/messages?order=desc&per_page=${PAGE}&before=${messages.floor}`;
    const { data, next } = await request('GET', url);
    if (seq !== state.seq) return;
    const height = list.scrollHeight;
    messages.addPage(data, Boolean(next) && data.length > 0);
    list.scrollTop += list.scrollHeight - height; // keep the same messages in view
    updateOlder();
  } catch (e) {
    showError(e);
  } finally {
    state.loadingOlder = false;
  }
}

async function send() {
  const body = $('#composer').value;
  const n = state.chat;
  const seq = state.seq;
  if (state.sending || n == null || body === '') return;
  state.sending = true;
  $('#send').disabled = true;
  try {
    const { data } = await request('POST', `${chatBase()}/messages`,
      { body: { body }, headers: { 'Idempotency-Key': sendKey.for(`${n}\n${body}`) } });
    sendKey.reset();
    if ($('#composer').value === body) $('#composer').value = '';
    if (seq === state.seq) { messages.apply(data); toBottom(); }
  } catch (e) {
    showError(e); // the key stays: sending the same text again is a safe retry
  } finally {
    state.sending = false;
    $('#send').disabled = false;
  }
}

async function search(q) {
  const seq = state.seq;
  if (!q) {
    $('#search-results').replaceChildren();
    $('#search-status').textContent = '';
    return;
  }
  try {
    const { data } = await request('GET', `${chatBase()}/messages/search?q=${encodeURIComponent(q)}&per_page=50`);
    if (seq !== state.seq) return;
    $('#search-results').replaceChildren(...data.map((m) => el('li', { 'data-number': m.number },
      el('button', { type: 'button', class: 'link num', 'aria-label': `Show message ${m.number}`,
        onclick: () => messages.items.get(m.number)?.scrollIntoView({ block: 'center' }) }, `#${m.number}`),
      ' ', el('span', { class: 'body' }, highlight(String(m.body ?? ''), q)))));
    $('#search-status').textContent = `${data.length} result${data.length === 1 ? '' : 's'} for “${q}”`;
  } catch (e) {
    showError(e);
  }
}

// ---- operator: all applications ----
async function listAllApps(url) {
  const { data, next } = await request('GET', url,
    { headers: { Authorization: `Bearer ${state.operatorKey}` } });
  const apps = Array.isArray(data) ? data : (data?.applications ?? []);
  if (url === '/applications') $('#all-apps').replaceChildren();
  $('#all-apps').append(...apps.map((a) => el('li', {},
    el('button', { type: 'button', class: 'link', onclick: () => openApp(a.token) }, String(a.name ?? '')),
    el('span', { class: 'count' }, ` ${a.chats_count ?? 0} chats`))));
  state.appsNext = next;
  $('#more-apps').hidden = !next;
  $('#all-apps-section').hidden = false;
}

// ---- wiring ----
const onSubmit = (id, fn) => $(id).addEventListener('submit', (ev) => { ev.preventDefault(); fn(); });

onSubmit('#create-app-form', () => busy($('#create-app'), async () => {
  const name = $('#app-name').value;
  const { data } = await request('POST', '/applications',
    { body: { name }, headers: { 'Idempotency-Key': appKey.for(name) } });
  appKey.reset();
  $('#app-name').value = '';
  showApp(data);
}));
onSubmit('#open-app-form', () => busy($('#open-app'), async () => {
  if (await openApp($('#token-input').value.trim())) $('#token-input').value = '';
}));
onSubmit('#operator-form', () => busy($('#list-apps'), async () => {
  state.operatorKey = $('#operator-key').value;
  $('#all-apps-section').hidden = true;
  await listAllApps('/applications');
}));
onSubmit('#search-form', () => search($('#search-input').value.trim()));
onSubmit('#composer-form', send);

$('#composer').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); send(); }
});
$('#error-dismiss').addEventListener('click', () => {
  $('#error').textContent = '';
  $('#error-dismiss').hidden = true;
});
$('#create-chat').addEventListener('click', createChat);
$('#refresh-chats').addEventListener('click', () => loadChats(true));
$('#more-chats').addEventListener('click', () => loadChats(false));
$('#more-apps').addEventListener('click', () => busy($('#more-apps'), () => listAllApps(state.appsNext)));
$('#load-older').addEventListener('click', loadOlder);
list.addEventListener('scroll', () => { if (list.scrollTop < 40) loadOlder(); });
window.addEventListener('offline', () => { if (state.live) setConn('offline'); });

const hashChat = () => {
  const m = /^#chat=(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : null;
};
window.addEventListener('hashchange', () => {
  const n = hashChat();
  if (n && n !== state.chat && state.token) openChat(n);
});

// Start: the remembered application, and the chat named in the hash.
renderSaved();
const startChat = hashChat();
const current = load(CURRENT);
if (current) {
  openApp(current).then((ok) => {
    if (ok && startChat) openChat(startChat);
  });
}
