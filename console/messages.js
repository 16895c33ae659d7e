// messages.js — the message list of the open chat (<ul id="messages">), oldest at the top.
// Every source (history pages, the live stream, polling, this page's own writes) goes through
// apply(), which keeps per message number the highest revision applied and ignores older ones.
import { el, when } from './dom.js';
import { newKey } from './api.js';

export class MessageList {
  // actions: { edit(n, body, key) -> Message, remove(n), error(e) }; edit and remove are async.
  constructor(ul, actions) {
    this.ul = ul;
    this.actions = actions;
    this.epoch = 0;
    this.reset();
  }

  reset() {
    this.epoch += 1;           // answers to requests made before a reset are dropped
    this.ul.replaceChildren();
    this.msgs = new Map();     // number -> message shown
    this.items = new Map();    // number -> <li>
    this.revs = new Map();     // number -> highest revision applied (Infinity once deleted)
    this.pending = new Map();  // changes to messages below the loaded range, kept until it loads
    this.floor = Infinity;     // smallest number of the loaded pages: older pages use before=floor
    this.hasOlder = false;
  }

  // A page of history (any order); hasOlder: whether messages below it remain to be loaded.
  addPage(page, hasOlder) {
    for (const m of page) {
      if (Number.isInteger(m?.number)) this.floor = Math.min(this.floor, m.number);
      this.apply(m);
    }
    this.hasOlder = hasOlder;
    for (const [n, m] of this.pending) {
      if (!hasOlder || n >= this.floor) { this.pending.delete(n); this.apply(m); }
    }
  }

  // A message or a tombstone: insert new, replace edited, remove deleted; skip what is not newer.
  apply(m) {
    const n = m?.number;
    if (!Number.isInteger(n)) return;
    if (this.hasOlder && n < this.floor) { // not loaded yet (a gap would follow): keep for later
      const p = this.pending.get(n);
      if (!p || !(p.revision >= m.revision)) this.pending.set(n, m);
      return;
    }
    const known = this.revs.get(n);
    if (known === Infinity || (known !== undefined && m.revision != null && m.revision <= known)) return;
    if (m.deleted) { this.drop(n); return; }
    if (m.revision != null) this.revs.set(n, m.revision);
    const old = this.items.get(n);
    const draft = old?.querySelector('.edit-body')?.value; // an edit in progress survives
    const focused = old?.contains(document.activeElement) ? document.activeElement.classList[0] : null;
    const li = this.render(m);
    this.msgs.set(n, m);
    this.items.set(n, li);
    if (old) old.replaceWith(li); else this.insert(li, n);
    if (draft !== undefined) this.startEdit(n, draft, Boolean(focused));
    else if (focused) li.querySelector(`.${focused}`)?.focus();
  }

  // Remove a message for good (deleted here or elsewhere).
  drop(n) {
    this.revs.set(n, Infinity);
    this.pending.delete(n);
    this.msgs.delete(n);
    const li = this.items.get(n);
    if (!li) return;
    this.items.delete(n);
    if (li.contains(document.activeElement)) {
      const near = li.nextElementSibling ?? li.previousElementSibling;
      (near?.querySelector('.delete') ?? this.ul).focus();
    }
    li.remove();
  }

  insert(li, n) {
    let after = this.ul.lastElementChild;
    while (after && Number(after.dataset.number) > n) after = after.previousElementSibling;
    if (after) after.after(li); else this.ul.prepend(li);
  }

  render(m) {
    const n = m.number;
    const edited = m.updated_at && m.updated_at !== m.created_at;
    return el('li', { class: 'msg', 'data-number': n, 'data-testid': 'message' },
      el('div', { class: 'meta' },
        el('span', { class: 'num' }, `#${n}`),
        el('time', { datetime: m.created_at }, when(m.created_at)),
        edited ? el('span', { class: 'edited' }, '(edited)') : null,
        el('span', { class: 'actions' },
          el('button', { type: 'button', class: 'edit icon', 'aria-label': `Edit message ${n}`,
            title: 'Edit', onclick: () => this.startEdit(n) }, '✎'),
          el('button', { type: 'button', class: 'delete icon', 'aria-label': `Delete message ${n}`,
            title: 'Delete', onclick: (ev) => this.remove(n, ev.currentTarget) }, '✕'))),
      el('div', { class: 'body' }, String(m.body ?? '')));
  }

  // Edit in place: a form replaces the body; Enter saves, Shift+Enter is a newline, Escape cancels.
  startEdit(n, draft, focus = true) {
    const li = this.items.get(n);
    const m = this.msgs.get(n);
    if (!li || !m || li.classList.contains('editing')) return;
    li.classList.add('editing');
    const body = li.querySelector('.body');
    body.hidden = true;
    const key = newKey();
    const epoch = this.epoch;
    const ta = el('textarea', { class: 'edit-body', rows: 3, 'aria-label': `New text of message ${n}` });
    ta.value = draft ?? m.body ?? '';
    const save = el('button', { type: 'submit', class: 'save' }, 'Save');
    const cancel = el('button', { type: 'button', class: 'cancel', onclick: () => this.closeEdit(n) }, 'Cancel');
    const form = el('form', { class: 'edit-form' }, ta, el('div', { class: 'row' }, save, cancel));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (save.disabled) return;
      save.disabled = true;
      try {
        const updated = await this.actions.edit(n, ta.value, key.for(ta.value));
        if (epoch !== this.epoch) return;
        this.apply(updated);
        this.closeEdit(n);
      } catch (e) {
        this.actions.error(e);
      } finally {
        save.disabled = false;
      }
    });
    ta.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.closeEdit(n);
      else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); save.click(); }
    });
    body.after(form);
    if (focus) ta.focus();
  }

  closeEdit(n) {
    const li = this.items.get(n);
    const m = this.msgs.get(n);
    if (!li || !m || !li.classList.contains('editing')) return;
    const fresh = this.render(m);
    this.items.set(n, fresh);
    li.replaceWith(fresh);
    fresh.querySelector('.edit').focus();
  }

  async remove(n, button) {
    const epoch = this.epoch;
    button.disabled = true;
    try {
      await this.actions.remove(n);
      if (epoch === this.epoch) this.drop(n);
    } catch (e) {
      this.actions.error(e);
      if (e.status === 404 && epoch === this.epoch) this.drop(n); // already gone
    } finally {
      button.disabled = false;
    }
  }
}
