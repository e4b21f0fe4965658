// The call controls: the dial form (#dial), the ringing panel (#incoming) and the in-call panel
// (#incall) with its timer, mute, hold, DTMF keypad and hang-up.

import { byId, formatDuration } from './dom.ts';
import type { CallInfo } from './call-info.ts';

export interface CallHandlers {
  onDial: (text: string) => void;
  onAnswer: () => void;
  onDecline: () => void;
  onHangup: () => void;
  onMute: () => void;
  onHold: () => void;
  onDigit: (digit: string) => void;
}

export class CallView {
  readonly #dialForm = byId('dial-form', HTMLFormElement);
  readonly #dial = byId('dial', HTMLInputElement);
  readonly #dialCall = byId('dial-call', HTMLButtonElement);

  readonly #incoming = byId('incoming', HTMLElement);
  readonly #incomingName = byId('incoming-name', HTMLElement);
  readonly #incomingNumber = byId('incoming-number', HTMLElement);
  readonly #answer = byId('answer', HTMLButtonElement);

  readonly #incall = byId('incall', HTMLElement);
  readonly #peer = byId('call-peer', HTMLElement);
  readonly #state = byId('call-state', HTMLElement);
  readonly #timer = byId('call-timer', HTMLElement);
  readonly #mute = byId('mute', HTMLButtonElement);
  readonly #hold = byId('hold', HTMLButtonElement);
  readonly #keypad = byId('keypad', HTMLButtonElement);
  readonly #dtmf = byId('dtmf', HTMLElement);
  readonly #hangup = byId('hangup', HTMLButtonElement);

  readonly #handlers: CallHandlers;
  #tick: ReturnType<typeof setInterval> | null = null;
  #confirmedAt: number | null = null;
  #returnFocus: HTMLElement | null = null;

  constructor(handlers: CallHandlers) {
    this.#handlers = handlers;
    this.#dialForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.#dial.value.trim();
      if (text) this.#handlers.onDial(text);
      else this.#dial.focus();
    });
    byId('answer', HTMLButtonElement).addEventListener('click', () => handlers.onAnswer());
    byId('decline', HTMLButtonElement).addEventListener('click', () => handlers.onDecline());
    this.#hangup.addEventListener('click', () => handlers.onHangup());
    this.#mute.addEventListener('click', () => handlers.onMute());
    this.#hold.addEventListener('click', () => handlers.onHold());
    this.#keypad.addEventListener('click', () => this.#toggleKeypad());
    this.#dtmf.addEventListener('click', (e) => {
      const digit = (e.target as Element).closest<HTMLElement>('[data-digit]')?.dataset.digit;
      if (digit) handlers.onDigit(digit);
    });
    document.addEventListener('keydown', (e) => this.#onKey(e));
  }

  setDialDisabled(disabled: boolean): void {
    this.#dialCall.disabled = disabled;
  }

  showIncoming(name: string, number: string): void {
    this.#incomingName.textContent = name;
    this.#incomingNumber.textContent = number;
    this.#rememberFocus();
    this.#incoming.hidden = false;
    // Only take focus if nothing else has it: never steal it from someone typing.
    if (document.activeElement === document.body || document.activeElement === null) this.#answer.focus();
  }

  hideIncoming(): void {
    this.#incoming.hidden = true;
  }

  /** Shows or updates the in-call panel. */
  showCall(peerName: string, call: CallInfo): void {
    const wasHidden = this.#incall.hidden;
    if (wasHidden && call.direction === 'outgoing') this.#rememberFocus();
    this.#peer.textContent = peerName;
    this.#incall.dataset.direction = call.direction;
    this.#state.dataset.state = call.state;
    this.#state.textContent = stateText(call, peerName);
    const established = call.state === 'confirmed' || call.state === 'held';
    this.#mute.disabled = !established;
    this.#hold.disabled = !established;
    this.#keypad.disabled = !established;
    this.#mute.setAttribute('aria-pressed', String(call.muted));
    this.#hold.setAttribute('aria-pressed', String(call.heldLocally));
    if (!established) this.#setKeypadOpen(false);
    this.#setTimer(call.confirmedAt);
    this.#incall.hidden = false;
    if (wasHidden) this.#hangup.focus();
  }

  hideCall(): void {
    this.#incall.hidden = true;
    this.#setTimer(null);
    this.#setKeypadOpen(false);
    this.#state.textContent = '';
    delete this.#state.dataset.state;
    const back = this.#returnFocus;
    this.#returnFocus = null;
    if (back?.isConnected && !back.closest('[hidden]')) back.focus();
  }

  #rememberFocus(): void {
    const active = document.activeElement;
    if (active instanceof HTMLElement && active !== document.body && !this.#returnFocus) {
      this.#returnFocus = active;
    }
  }

  #setTimer(confirmedAt: number | null): void {
    if (confirmedAt === this.#confirmedAt && (confirmedAt === null || this.#tick !== null)) return;
    this.#confirmedAt = confirmedAt;
    if (this.#tick !== null) clearInterval(this.#tick);
    this.#tick = null;
    if (confirmedAt === null) {
      this.#timer.textContent = '';
      return;
    }
    const render = (): void => {
      this.#timer.textContent = formatDuration((Date.now() - confirmedAt) / 1000);
    };
    render();
    this.#tick = setInterval(render, 1000);
  }

  #toggleKeypad(): void {
    this.#setKeypadOpen(this.#dtmf.hidden);
  }

  #setKeypadOpen(open: boolean): void {
    this.#dtmf.hidden = !open;
    this.#keypad.setAttribute('aria-expanded', String(open));
  }

  /** With the keypad open, typing 0-9 * # sends the tone. */
  #onKey(e: KeyboardEvent): void {
    if (this.#dtmf.hidden || e.ctrlKey || e.metaKey || e.altKey) return;
    if (!/^[0-9*#]$/.test(e.key)) return;
    const target = e.target as Element | null;
    if (target?.closest('input, textarea, select')) return;
    e.preventDefault();
    this.#handlers.onDigit(e.key);
    const button = this.#dtmf.querySelector<HTMLElement>(`[data-digit="${CSS.escape(e.key)}"]`);
    button?.classList.add('pressed');
    setTimeout(() => button?.classList.remove('pressed'), 150);
  }
}

function stateText(call: CallInfo, peer: string): string {
  switch (call.state) {
    case 'incoming':
      return 'Incoming call…';
    case 'calling':
      return call.direction === 'incoming' ? 'Connecting…' : 'Calling…';
    case 'ringing':
      return 'Ringing…';
    case 'confirmed':
      return call.muted ? 'Connected · muted' : 'Connected';
    case 'held':
      if (call.heldLocally) return call.heldByPeer ? 'On hold (both sides)' : 'On hold';
      return `${peer} put you on hold`;
    case 'idle':
      return '';
  }
}
