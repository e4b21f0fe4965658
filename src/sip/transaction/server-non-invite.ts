// Non-INVITE server transaction, RFC 3261 §17.2.2 (Figure 8):
//
//   Trying --1xx from TU--> Proceeding --200-699 from TU--> Completed --Timer J--> Terminated
//   A retransmitted request is absorbed in Trying, answered with the last response otherwise.
//   Timer J = 64*T1 for unreliable transports, zero for reliable. Completed on UDP is kept by
//   the layer's CompletedTable (completed.ts), not by this object.
import type { SipRequest, SipResponse } from '../message.ts';
import type { Timer } from '../timer-wheel.ts';
import { type Destination, type Flow, isReliable } from '../transport.ts';
import { safe, type ServerTransaction, type TransactionContext } from './common.ts';

type State = 'Trying' | 'Proceeding' | 'Terminated';

export class NonInviteServerTransaction implements ServerTransaction {
  readonly key: string;
  readonly flow: Flow;
  state: State = 'Trying';
  #request: SipRequest | undefined;
  #lastResponse: SipResponse | undefined;
  onTerminated: ((reason: 'normal' | 'timeout' | 'transport') => void) | undefined;
  readonly #ctx: TransactionContext;
  readonly #dest: Destination;
  #lastBytes: Buffer | undefined;
  /** Guards against a TU that never answers: the transaction is dropped after 64*T1 + T4. */
  #guard: Timer | undefined;

  constructor(ctx: TransactionContext, key: string, request: SipRequest, flow: Flow, dest: Destination) {
    this.#ctx = ctx;
    this.key = key;
    this.#request = request;
    this.flow = flow;
    this.#dest = dest;
    this.#guard = ctx.wheel.schedule(64 * ctx.timers.T1 + ctx.timers.T4, () => this.#terminate('timeout'));
  }

  /** The request; after the final response only its retransmissions matter, so it is released. */
  get request(): SipRequest {
    if (this.#request === undefined) throw new Error(`transaction ${this.key} has completed; its request was released`);
    return this.#request;
  }

  get lastResponse(): SipResponse | undefined {
    return this.#lastResponse;
  }

  respond(res: SipResponse): void {
    if (this.state === 'Terminated') return; // §17.2.2: final sent already
    this.#lastResponse = res;
    this.#lastBytes = res.toBuffer();
    if (!this.#ctx.sender.sendRaw(this.#lastBytes, this.#dest)) {
      this.#terminate('transport');
      return;
    }
    if (res.status < 200) {
      this.state = 'Proceeding';
      return;
    }
    // Completed. On UDP, Timer J (64*T1) keeps the final response to answer retransmissions:
    // the layer's Completed table holds just its bytes (a registrar at 2,000 REGISTER/s has
    // 64,000), and this object ends here. On reliable transports Timer J is zero.
    this.#request = undefined;
    this.#lastResponse = undefined;
    if (!isReliable(this.flow.transport)) this.#ctx.completed(this.key, this.#lastBytes, this.#dest);
    this.#lastBytes = undefined;
    this.#terminate('normal');
  }

  receiveRequest(_req: SipRequest): void {
    // Trying absorbs it; Proceeding answers with the last provisional (Completed: the layer's table).
    if (this.state === 'Proceeding' && this.#lastBytes !== undefined) {
      this.#ctx.sender.sendRaw(this.#lastBytes, this.#dest);
    }
  }

  respondStateless(res: SipResponse): void {
    if (this.state === 'Terminated') return;
    this.#ctx.sender.send(res, this.#dest);
    this.#terminate('normal');
  }

  #terminate(reason: 'normal' | 'timeout' | 'transport'): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    this.#ctx.wheel.cancel(this.#guard);
    this.#ctx.terminated(this.key);
    const cb = this.onTerminated;
    if (cb !== undefined) safe(this.#ctx, () => cb(reason));
  }
}
