// Non-INVITE client transaction, RFC 3261 §17.1.2 (Figure 6):
//
//   Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
//   Timer E: retransmit (T1 doubling up to T2 in Trying; T2 in Proceeding), unreliable only.
//   Timer F (64*T1) or transport error in Trying/Proceeding: inform TU, Terminated.
//   Timer K: T4 for unreliable transports, zero for reliable.
import { EMPTY, type SipRequest, type SipResponse } from '../message.ts';
import type { Timer } from '../timer-wheel.ts';
import { type Destination, isReliable } from '../transport.ts';
import { type ClientTransaction, type ClientTransactionUser, safe, type TransactionContext } from './common.ts';

type State = 'Trying' | 'Proceeding' | 'Completed' | 'Terminated';

export class NonInviteClientTransaction implements ClientTransaction {
  readonly key: string;
  #request: SipRequest | undefined;
  readonly destination: Destination;
  state: State = 'Trying';
  gotProvisional = false;
  readonly #ctx: TransactionContext;
  readonly #tu: ClientTransactionUser;
  #bytes: Buffer;
  #timerE: Timer | undefined;
  #timerF: Timer | undefined;
  #timerK: Timer | undefined;
  #intervalE: number;

  constructor(ctx: TransactionContext, key: string, request: SipRequest, destination: Destination, tu: ClientTransactionUser) {
    this.#ctx = ctx;
    this.key = key;
    this.#request = request;
    this.destination = destination;
    this.#tu = tu;
    this.#bytes = request.toBuffer();
    this.#intervalE = ctx.timers.T1;
  }

  get request(): SipRequest {
    if (this.#request === undefined) throw new Error(`transaction ${this.key} has completed; its request was released`);
    return this.#request;
  }

  start(): void {
    if (!this.#send()) return;
    if (!isReliable(this.destination.transport)) this.#timerE = this.#ctx.wheel.schedule(this.#intervalE, () => this.#onTimerE());
    this.#timerF = this.#ctx.wheel.schedule(64 * this.#ctx.timers.T1, () => this.#onTimerF());
  }

  #send(): boolean {
    if (this.#ctx.sender.sendRaw(this.#bytes, this.destination)) return true;
    this.#terminate();
    safe(this.#ctx, () => this.#tu.onTimeout(this, 'transport')); // §17.1.4
    return false;
  }

  #onTimerE(): void {
    if (this.state !== 'Trying' && this.state !== 'Proceeding') return;
    // §17.1.2.2: in Trying the interval doubles up to T2; in Proceeding it is T2.
    this.#intervalE = this.state === 'Trying' ? Math.min(2 * this.#intervalE, this.#ctx.timers.T2) : this.#ctx.timers.T2;
    if (!this.#send()) return;
    this.#timerE = this.#ctx.wheel.schedule(this.#intervalE, () => this.#onTimerE());
  }

  #onTimerF(): void {
    if (this.state !== 'Trying' && this.state !== 'Proceeding') return;
    this.#terminate();
    safe(this.#ctx, () => this.#tu.onTimeout(this, 'timeout'));
  }

  receiveResponse(res: SipResponse): void {
    if (this.state === 'Completed' || this.state === 'Terminated') return; // §17.1.2.2: absorbed
    if (res.status < 200) {
      this.state = 'Proceeding';
      this.gotProvisional = true;
    } else {
      this.state = 'Completed';
      // Timer K only absorbs response retransmissions: nothing of the request is needed.
      this.#request = undefined;
      this.#bytes = EMPTY;
      this.#ctx.wheel.cancel(this.#timerE);
      this.#ctx.wheel.cancel(this.#timerF);
      const k = isReliable(this.destination.transport) ? 0 : this.#ctx.timers.T4;
      this.#timerK = this.#ctx.wheel.schedule(k, this.#end);
    }
    safe(this.#ctx, () => this.#tu.onResponse(res, this));
  }

  terminate(): void {
    this.#terminate();
  }

  /** Timer K's callback, made once (see the INVITE client transaction's #end: it must not hold `res`). */
  readonly #end = (): void => this.#terminate();

  #terminate(): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    this.#ctx.wheel.cancel(this.#timerE);
    this.#ctx.wheel.cancel(this.#timerF);
    this.#ctx.wheel.cancel(this.#timerK);
    this.#ctx.terminated(this.key);
  }
}
