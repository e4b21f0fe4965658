// The colleague directory (#search, #directory): filters as you type, shows presence live from
// the event stream, and calls a colleague with one click.
//
// The server returns at most 500 colleagues. When the list is that long it may be cut short,
// so a search also asks the server (debounced) and shows its matches too.

import type { DirectoryUser, PresenceEvent } from './api.ts';
import { byId, fold, h, icon, initials } from './dom.ts';

const SERVER_LIMIT = 500;
const SEARCH_DEBOUNCE_MS = 250;

export interface DirectoryHandlers {
  onCall: (user: DirectoryUser) => void;
  /** Server-side search, used when the full list may be truncated. */
  search: (query: string) => Promise<DirectoryUser[]>;
}

export class DirectoryView {
  readonly #list = byId('directory', HTMLUListElement);
  readonly #search = byId('search', HTMLInputElement);
  readonly #empty = byId('directory-empty', HTMLElement);
  readonly #handlers: DirectoryHandlers;
  /** Everyone we know about (the full list plus server search results), by id. */
  readonly #known = new Map<number, DirectoryUser>();
  #order: number[] = [];
  #remote: { query: string; ids: number[] } | null = null;
  #meId: number | null = null;
  #truncated = false;
  #loaded = false;
  #callsDisabled = false;
  #debounce: ReturnType<typeof setTimeout> | null = null;

  constructor(handlers: DirectoryHandlers) {
    this.#handlers = handlers;
    this.#search.addEventListener('input', () => this.#onInput());
    this.#search.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.#search.value) {
        this.#search.value = '';
        this.#onInput();
      }
    });
    this.#list.addEventListener('click', (e) => {
      const button = (e.target as Element).closest('button.call');
      const id = Number(button?.closest('li')?.dataset.userId);
      const user = this.#known.get(id);
      if (button && user) this.#handlers.onCall(user);
    });
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  setMe(userId: number | null): void {
    this.#meId = userId;
  }

  setUsers(users: DirectoryUser[]): void {
    this.#known.clear();
    for (const user of users) this.#known.set(user.id, user);
    this.#order = users.map((u) => u.id);
    this.#truncated = users.length >= SERVER_LIMIT;
    this.#remote = null;
    this.#loaded = true;
    this.#render();
    if (this.#truncated && this.#query()) this.#scheduleServerSearch();
  }

  reset(): void {
    this.#known.clear();
    this.#order = [];
    this.#remote = null;
    this.#loaded = false;
    this.#search.value = '';
    this.#list.replaceChildren();
    this.#empty.hidden = true;
  }

  /** Applies a presence event; returns false for a colleague not in the list (a newcomer). */
  applyPresence(event: PresenceEvent): boolean {
    const user = this.#known.get(event.userId);
    if (!user) return false;
    user.online = event.online;
    user.devices = event.devices;
    const li = this.#list.querySelector<HTMLLIElement>(`li[data-user-id="${event.userId}"]`);
    if (li) this.#fillPresence(li, user);
    return true;
  }

  /** The colleague whose number or SIP username is this URI user part. */
  findByUser(userPart: string): DirectoryUser | undefined {
    const wanted = userPart.toLowerCase();
    for (const user of this.#known.values()) {
      if (user.number.toLowerCase() === wanted || user.sipUsername.toLowerCase() === wanted) return user;
    }
    return undefined;
  }

  /** The colleague with exactly this name (so typing a name into the dial field works). */
  findByName(name: string): DirectoryUser | undefined {
    const wanted = fold(name.trim());
    for (const user of this.#known.values()) if (fold(user.name) === wanted) return user;
    return undefined;
  }

  /** Disables the call buttons while a call is in progress (one call at a time). */
  setCallsDisabled(disabled: boolean): void {
    this.#callsDisabled = disabled;
    for (const button of this.#list.querySelectorAll<HTMLButtonElement>('button.call')) {
      button.disabled = disabled;
    }
  }

  #query(): string {
    return this.#search.value.trim();
  }

  #onInput(): void {
    this.#render();
    if (this.#truncated) this.#scheduleServerSearch();
  }

  #scheduleServerSearch(): void {
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      const query = this.#query();
      if (!query) {
        this.#remote = null;
        return;
      }
      this.#handlers.search(query).then(
        (users) => {
          if (this.#query() !== query) return;
          for (const user of users) this.#known.set(user.id, user);
          this.#remote = { query, ids: users.map((u) => u.id) };
          this.#render();
        },
        () => undefined, // The local matches stay; a 401 is handled by the app.
      );
    }, SEARCH_DEBOUNCE_MS);
  }

  #visible(): DirectoryUser[] {
    const query = this.#query();
    const ids = [...this.#order];
    if (this.#remote && this.#remote.query === query) {
      for (const id of this.#remote.ids) if (!ids.includes(id)) ids.push(id);
    }
    const users = ids.map((id) => this.#known.get(id)).filter((u): u is DirectoryUser => u !== undefined);
    const matching = query ? users.filter((u) => matches(u, query)) : users;
    // Yourself first, then everyone in the server's order (by name): rows never jump around
    // when presence changes.
    const me = matching.filter((u) => u.id === this.#meId);
    return [...me, ...matching.filter((u) => u.id !== this.#meId)];
  }

  #render(): void {
    const users = this.#visible();
    this.#list.replaceChildren(...users.map((u) => this.#row(u)));
    const query = this.#query();
    this.#empty.hidden = !this.#loaded || users.length > 0;
    this.#empty.textContent = query ? `No colleague matches “${query}”.` : 'No colleagues yet.';
  }

  #row(user: DirectoryUser): HTMLLIElement {
    const self = user.id === this.#meId;
    const dot = h('span', { class: 'dot' });
    const li = h(
      'li',
      { class: 'contact', 'data-number': user.number, 'data-user-id': String(user.id), 'data-self': self },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(user.name), dot),
      h(
        'span',
        { class: 'who' },
        h('span', { class: 'name' }, user.name, self && h('span', { class: 'you' }, ' (you)')),
        h(
          'span',
          { class: 'meta' },
          h('span', { class: 'number' }, user.number),
          h('span', { class: 'presence' }),
        ),
      ),
      !self &&
        h(
          'button',
          { type: 'button', class: 'call', 'aria-label': `Call ${user.name}`, disabled: this.#callsDisabled },
          icon('phone'),
          h('span', { class: 'label' }, 'Call'),
        ),
    );
    this.#fillPresence(li, user);
    return li;
  }

  #fillPresence(li: HTMLLIElement, user: DirectoryUser): void {
    li.dataset.online = String(user.online);
    li.dataset.web = String(user.devices.web);
    li.dataset.sip = String(user.devices.sip);
    const kinds = [user.devices.web > 0 && 'web', user.devices.sip > 0 && 'phone'].filter(Boolean);
    const presence = li.querySelector('.presence');
    if (!presence) return;
    presence.textContent = !user.online ? 'Offline' : kinds.length ? `Online · ${kinds.join(', ')}` : 'Online';
  }
}

function matches(user: DirectoryUser, query: string): boolean {
  const q = fold(query);
  if (fold(user.name).includes(q)) return true;
  if (user.number.toLowerCase().includes(q) || user.sipUsername.toLowerCase().includes(q)) return true;
  // "1000002" finds "care4w-1000002"; "100 0002" too.
  const digits = q.replace(/\D/g, '');
  return digits.length >= 2 && digits === q.replace(/[\s-]/g, '') && user.number.replace(/\D/g, '').includes(digits);
}
