// INVITE server transaction, RFC 3261 §17.2.1 (Figure 7) as updated by RFC 6026 §7.1:
//
//   Proceeding --1xx from TU: send--> Proceeding (INVITE retransmission: resend last 1xx)
//   Proceeding --2xx from TU: send--> Accepted   (Timer L = 64*T1; 2xx from TU sent; INVITE
//                                                 retransmissions absorbed; ACK passed to TU)
//   Proceeding --300-699 from TU--> Completed    (Timer G retransmits, unreliable only;
//                                                 Timer H = 64*T1 -> Terminated, inform TU)
//   Completed  --ACK--> Confirmed (Timer I = T4 unreliable / 0 reliable) --> Terminated
import type { SipRequest, SipResponse } from '../message.ts';
import type { Timer } from '../timer-wheel.ts';
import { type Destination, type Flow, isReliable } from '../transport.ts';
import { safe, type ServerTransaction, type TransactionContext } from './common.ts';

type State = 'Proceeding' | 'Accepted' | 'Completed' | 'Confirmed' | 'Terminated';

export class InviteServerTransaction implements ServerTransaction {
  readonly key: string;
  readonly flow: Flow;
  state: State = 'Proceeding';
  #request: SipRequest | undefined;
  #lastResponse: SipResponse | undefined;
  onTerminated: ((reason: 'normal' | 'timeout' | 'transport') => void) | undefined;
  readonly #ctx: TransactionContext;
  readonly #dest: Destination;
  #lastBytes: Buffer | undefined;
  #timerG: Timer | undefined;
  #timerHL: Timer | undefined;
  #timerI: Timer | undefined;
  #intervalG: number;

  constructor(ctx: TransactionContext, key: string, request: SipRequest, flow: Flow, dest: Destination) {
    this.#ctx = ctx;
    this.key = key;
    this.#request = request;
    this.flow = flow;
    this.#dest = dest;
    this.#intervalG = ctx.timers.T1;
  }

  /** The INVITE; released once a final response was sent (only the bytes to resend stay). */
  get request(): SipRequest {
    if (this.#request === undefined) throw new Error(`transaction ${this.key} has a final response; its request was released`);
    return this.#request;
  }

  get lastResponse(): SipResponse | undefined {
    return this.#lastResponse;
  }

  /** Status of the last response sent (kept after the messages are released). */
  lastStatus = 0;

  respond(res: SipResponse): void {
    const s = res.status;
    if (this.state === 'Proceeding') {
      this.#lastResponse = res;
      this.lastStatus = s;
      this.#lastBytes = res.toBuffer();
      if (!this.#send(this.#lastBytes)) return;
      if (s < 200) return;
      // Timer L / H keep the transaction up to 32 s: hold the bytes, not the parsed messages.
      this.#request = undefined;
      this.#lastResponse = undefined;
      if (s < 300) {
        // RFC 6026 §7.1: Accepted; Timer L keeps the transaction to absorb INVITE retransmissions.
        // It resends nothing (2xx retransmissions are the TU's): the 2xx bytes are not kept.
        this.state = 'Accepted';
        this.#lastBytes = undefined;
        this.#timerHL = this.#ctx.wheel.schedule(64 * this.#ctx.timers.T1, () => this.#terminate('normal'));
      } else {
        this.state = 'Completed';
        if (!isReliable(this.flow.transport)) this.#timerG = this.#ctx.wheel.schedule(this.#intervalG, () => this.#onTimerG());
        this.#timerHL = this.#ctx.wheel.schedule(64 * this.#ctx.timers.T1, () => this.#terminate('timeout'));
      }
    } else if (this.state === 'Accepted' && s >= 200 && s < 300) {
      // RFC 6026 §7.1: further 2xx from the TU (retransmissions, other forks) are sent.
      this.#send(res.toBuffer());
    }
  }

  receiveRequest(req: SipRequest): void {
    if (req.method === 'ACK') {
      if (this.state === 'Completed') {
        // §17.2.1: ACK in Completed -> Confirmed; Timer I absorbs ACK retransmissions.
        this.state = 'Confirmed';
        this.#ctx.wheel.cancel(this.#timerG);
        this.#ctx.wheel.cancel(this.#timerHL);
        const i = isReliable(this.flow.transport) ? 0 : this.#ctx.timers.T4;
        this.#timerI = this.#ctx.wheel.schedule(i, () => this.#terminate('normal'));
      }
      return;
    }
    // A retransmitted INVITE: resend the last provisional (Proceeding) or final (Completed).
    if ((this.state === 'Proceeding' || this.state === 'Completed') && this.#lastBytes !== undefined) this.#send(this.#lastBytes);
  }

  #onTimerG(): void {
    if (this.state !== 'Completed' || this.#lastBytes === undefined) return;
    this.#intervalG = Math.min(2 * this.#intervalG, this.#ctx.timers.T2); // §17.2.1
    if (!this.#send(this.#lastBytes)) return;
    this.#timerG = this.#ctx.wheel.schedule(this.#intervalG, () => this.#onTimerG());
  }

  #send(bytes: Buffer): boolean {
    if (this.#ctx.sender.sendRaw(bytes, this.#dest)) return true;
    this.#terminate('transport'); // §17.2.4
    return false;
  }

  respondStateless(res: SipResponse): void {
    if (this.state === 'Terminated') return;
    this.#ctx.sender.send(res, this.#dest);
    this.#terminate('normal');
  }

  #terminate(reason: 'normal' | 'timeout' | 'transport'): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    this.#ctx.wheel.cancel(this.#timerG);
    this.#ctx.wheel.cancel(this.#timerHL);
    this.#ctx.wheel.cancel(this.#timerI);
    this.#ctx.terminated(this.key);
    const cb = this.onTerminated;
    if (cb !== undefined) safe(this.#ctx, () => cb(reason));
  }
}
