// Small DOM helpers shared by the ui-* modules, plus the formatting of names, times and
// durations they all show.

/** The element with this id, checked to be of the expected class (a missing id is a bug). */
export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`#${id} is missing or not a ${type.name}`);
  return el;
}

type Child = Node | string | null | undefined | false;

/** Creates an element: `h('li', { class: 'row', 'data-id': '2' }, 'text', child)`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Inline icons (24×24, stroked with currentColor) so no icon font or image is loaded. */
const ICON_PATHS = {
  phone:
    'M5 4h3l2 5-2.5 1.5a11 11 0 0 0 6 6L15 14l5 2v3a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2',
  hangup:
    'M3 14.5v-2.2c0-.8.4-1.5 1.2-1.8a20 20 0 0 1 15.6 0c.8.3 1.2 1 1.2 1.8v2.2a1 1 0 0 1-1.2 1l-3.3-.7a1 1 0 0 1-.8-1V12a13 13 0 0 0-7.4 0v1.8a1 1 0 0 1-.8 1l-3.3.7a1 1 0 0 1-1.2-1',
  incoming: 'M17 7 7 17M7 9v8h8',
  outgoing: 'M7 17 17 7M9 7h8v8',
  missed: 'M4 7l8 8 8-8M15 7h5v5',
} as const;

export type IconName = keyof typeof ICON_PATHS;

export function icon(name: IconName, className = 'icon'): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', className);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', ICON_PATHS[name]);
  svg.append(path);
  return svg;
}

/** Up to two initials for an avatar: "Bob van Dijk" -> "BD". */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter((w) => /\p{L}|\p{N}/u.test(w));
  const first = words[0]?.[0] ?? '?';
  const last = words.length > 1 ? (words[words.length - 1]?.[0] ?? '') : '';
  return (first + last).toUpperCase();
}

/** mm:ss (minutes keep counting past 59). */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const minutes = Math.floor(s / 60);
  const seconds = s % 60;
  return `${String(minutes).padStart(2, '0')}:${String(seconds).padStart(2, '0')}`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const weekdayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short' });

/** "14:02", "Yesterday 14:02", "Mon 14:02" within a week, else "3 Mar 14:02". */
export function formatWhen(epochMs: number, now = Date.now()): string {
  const date = new Date(epochMs);
  const time = timeFormat.format(date);
  const startOfToday = new Date(now);
  startOfToday.setHours(0, 0, 0, 0);
  const dayDiff = Math.ceil((startOfToday.getTime() - epochMs) / 86_400_000);
  if (epochMs >= startOfToday.getTime()) return time;
  if (dayDiff <= 1) return `Yesterday ${time}`;
  if (dayDiff < 7) return `${weekdayFormat.format(date)} ${time}`;
  return `${dateFormat.format(date)} ${time}`;
}

/** Lower-cased text with accents removed, for matching search input against names. */
export function fold(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}
