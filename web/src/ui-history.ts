// Recent calls (#history), newest first, each with a call-back button.

import type { CallRecord, Disposition } from './api.ts';
import { byId, formatDuration, formatWhen, h, icon } from './dom.ts';

export class HistoryView {
  readonly #list = byId('history', HTMLUListElement);
  readonly #empty = byId('history-empty', HTMLElement);
  readonly #onCall: (number: string, name: string) => void;
  #callsDisabled = false;

  constructor(onCall: (number: string, name: string) => void) {
    this.#onCall = onCall;
    this.#list.addEventListener('click', (e) => {
      const li = (e.target as Element).closest('button.redial')?.closest('li');
      const number = li?.dataset.number;
      if (number) this.#onCall(number, li.dataset.name ?? number);
    });
  }

  render(calls: CallRecord[]): void {
    this.#list.replaceChildren(...calls.map((call) => this.#row(call)));
    this.#empty.hidden = calls.length > 0;
  }

  reset(): void {
    this.#list.replaceChildren();
    this.#empty.hidden = true;
  }

  setCallsDisabled(disabled: boolean): void {
    this.#callsDisabled = disabled;
    for (const button of this.#list.querySelectorAll<HTMLButtonElement>('button.redial')) {
      button.disabled = disabled;
    }
  }

  #row(call: CallRecord): HTMLLIElement {
    const name = call.peer.name || call.peer.number;
    const incoming = call.direction === 'in';
    const missed = incoming && call.disposition !== 'answered';
    const directionText = missed ? 'Missed call' : incoming ? 'Incoming call' : 'Outgoing call';
    const outcome =
      call.disposition === 'answered'
        ? formatDuration(call.durationSeconds)
        : dispositionLabel(call.disposition, incoming);
    return h(
      'li',
      {
        class: 'call-record',
        'data-disposition': call.disposition,
        'data-direction': call.direction,
        'data-number': call.peer.number,
        'data-name': name,
        'data-missed': missed,
      },
      h(
        'span',
        { class: 'direction', title: directionText },
        icon(missed ? 'missed' : incoming ? 'incoming' : 'outgoing'),
        h('span', { class: 'sr-only' }, `${directionText}: `),
      ),
      h(
        'span',
        { class: 'who' },
        h('span', { class: 'name' }, name),
        h(
          'span',
          { class: 'meta' },
          name !== call.peer.number && h('span', { class: 'number' }, call.peer.number),
          h('time', { datetime: new Date(call.startedAt).toISOString() }, formatWhen(call.startedAt)),
          h('span', { class: 'outcome' }, outcome),
        ),
      ),
      call.peer.number &&
        h(
          'button',
          {
            type: 'button',
            class: 'redial',
            'aria-label': `Call ${name} back`,
            title: `Call ${name} back`,
            disabled: this.#callsDisabled,
          },
          icon('phone'),
        ),
    );
  }
}

function dispositionLabel(disposition: Disposition, incoming: boolean): string {
  switch (disposition) {
    case 'answered':
      return 'Answered';
    case 'busy':
      return 'Busy';
    case 'no_answer':
      return incoming ? 'Missed' : 'No answer';
    case 'cancelled':
      return incoming ? 'Missed' : 'Cancelled';
    case 'failed':
      return 'Failed';
    case 'unavailable':
      return 'Unavailable';
    case 'declined':
      return 'Declined';
    default:
      return String(disposition);
  }
}
