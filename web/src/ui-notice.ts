// The #notice banner: why a call ended, a lost connection, an ended session. It shows one
// message at a time, can be dismissed, and hides itself after ~8 s unless it is sticky
// (a lost connection stays until the phone is back online).

import { byId, formatDuration } from './dom.ts';
import type { CallEnd, EndKind } from './call-info.ts';

/** Why a call ended (answered elsewhere shows as cancelled), or the phone's own troubles. */
export type NoticeKind = Exclude<EndKind, 'answered-elsewhere'> | 'connection-lost' | 'session-ended';

const AUTO_HIDE_MS = 8_000;

export class Notice {
  readonly #el = byId('notice', HTMLElement);
  readonly #text = byId('notice-text', HTMLElement);
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor() {
    byId('notice-dismiss', HTMLButtonElement).addEventListener('click', () => this.hide());
  }

  get kind(): NoticeKind | null {
    return this.#el.hidden ? null : ((this.#el.dataset.kind as NoticeKind | undefined) ?? null);
  }

  show(kind: NoticeKind, text: string, sticky = false): void {
    this.#clearTimer();
    this.#el.dataset.kind = kind;
    this.#text.textContent = text;
    this.#el.hidden = false;
    // Errors interrupt a screen reader; call summaries wait their turn.
    this.#el.setAttribute('role', isError(kind) ? 'alert' : 'status');
    if (!sticky) this.#timer = setTimeout(() => this.hide(), AUTO_HIDE_MS);
  }

  /** Hides the notice; with a kind, only if that kind is showing. */
  hide(kind?: NoticeKind): void {
    if (kind !== undefined && this.kind !== kind) return;
    this.#clearTimer();
    this.#el.hidden = true;
    delete this.#el.dataset.kind;
    this.#text.textContent = '';
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}

function isError(kind: NoticeKind): boolean {
  return kind === 'mic-blocked' || kind === 'connection-lost' || kind === 'failed' || kind === 'session-ended';
}

export const SESSION_ENDED_TEXT = 'Your session ended. Please sign in again.';
export const CONNECTION_LOST_TEXT = 'Connection lost, reconnecting…';

export function micBlockedText(): string {
  if (!window.isSecureContext) {
    return 'The microphone only works over a secure (https) connection. Ask your administrator to enable https for the phone.';
  }
  return (
    'Your microphone is blocked. Allow it for this site (click the lock or settings icon next to ' +
    'the address, set Microphone to Allow), then try the call again.'
  );
}

/** The notice for a call that failed or ended; `peer` is the name (or number) shown. */
export function endNotice(end: CallEnd, peer: string): { kind: NoticeKind; text: string } {
  const incoming = end.call.direction === 'incoming';
  switch (end.kind) {
    case 'declined':
      return {
        kind: 'declined',
        text: end.originator === 'local' ? `You declined the call from ${peer}.` : `${peer} declined the call.`,
      };
    case 'busy':
      return { kind: 'busy', text: `${peer} is busy on another call.` };
    case 'unavailable':
      return { kind: 'unavailable', text: `${peer} is not available right now.` };
    case 'no-answer':
      return {
        kind: 'no-answer',
        text: incoming ? `Missed call from ${peer}.` : `${peer} did not answer.`,
      };
    case 'cancelled':
      return {
        kind: 'cancelled',
        text: incoming ? `Missed call from ${peer}.` : `Call to ${peer} cancelled.`,
      };
    case 'answered-elsewhere':
      return { kind: 'cancelled', text: `Call from ${peer} answered on another device.` };
    case 'mic-blocked':
      return { kind: 'mic-blocked', text: micBlockedText() };
    case 'ended': {
      const who = end.originator === 'remote' ? `${peer} ended the call` : `Call with ${peer} ended`;
      const reason = end.cause === 'Terminated' ? '' : ` (${end.cause.toLowerCase()})`;
      return { kind: 'ended', text: `${who}${reason} · ${formatDuration(end.durationSeconds)}` };
    }
    case 'failed':
      return {
        kind: 'failed',
        text: `The call ${incoming ? 'from' : 'to'} ${peer} could not be connected (${end.cause.toLowerCase()}).`,
      };
  }
}
