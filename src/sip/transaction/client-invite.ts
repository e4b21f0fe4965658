// INVITE client transaction, RFC 3261 §17.1.1 (Figure 5) as updated by RFC 6026 §7.2:
//
//                     |INVITE from TU
//   Timer A fires     |INVITE sent
//   Reset A,          V                      Timer B fires
//   INVITE sent +-----------+                or Transport Err.
//     +---------|           |---------------+inform TU
//     |         |  Calling  |               |
//     +-------->|           |-------------->|
//               +-----------+ 2xx           |
//                  |  |       2xx to TU     |
//                  |  |1xx                  |
//   300-699 +------+  |1xx to TU            |
//  ACK sent |         V                     |
// resp. to TU|   +-----------+ 2xx to TU  +----------+
//           |   | Proceeding|----------->| Accepted | Timer M fires -> Terminated
//           |   +-----------+            +----------+ (2xx retransmissions to TU)
//           V   300-699 | ACK sent, resp. to TU
//        +-----------+<-+
//        | Completed |  300-699 from transport: ACK sent
//        +-----------+  Timer D fires -> Terminated
import { EMPTY, SipRequest, type SipResponse } from '../message.ts';
import type { Timer } from '../timer-wheel.ts';
import { type Destination, isReliable } from '../transport.ts';
import { type ClientTransaction, type ClientTransactionUser, safe, type TransactionContext } from './common.ts';

type State = 'Calling' | 'Proceeding' | 'Accepted' | 'Completed' | 'Terminated';

export class InviteClientTransaction implements ClientTransaction {
  readonly key: string;
  #request: SipRequest | undefined;
  readonly destination: Destination;
  state: State = 'Calling';
  gotProvisional = false;
  readonly #ctx: TransactionContext;
  readonly #tu: ClientTransactionUser;
  #bytes: Buffer;
  #timerA: Timer | undefined;
  #timerB: Timer | undefined;
  #timerDM: Timer | undefined;
  #intervalA: number;
  #ack: Buffer | undefined;

  constructor(ctx: TransactionContext, key: string, request: SipRequest, destination: Destination, tu: ClientTransactionUser) {
    this.#ctx = ctx;
    this.key = key;
    this.#request = request;
    this.destination = destination;
    this.#tu = tu;
    this.#bytes = request.toBuffer();
    this.#intervalA = ctx.timers.T1;
  }

  get request(): SipRequest {
    if (this.#request === undefined) throw new Error(`transaction ${this.key} has a final response; its request was released`);
    return this.#request;
  }

  /** After the final response only the ACK (non-2xx) or nothing needs to be kept. */
  #release(): void {
    this.#request = undefined;
    this.#bytes = EMPTY;
  }

  start(): void {
    if (!this.#send(this.#bytes)) return;
    // §17.1.1.2: Timer A only for unreliable transports; Timer B = 64*T1 always.
    if (!isReliable(this.destination.transport)) this.#timerA = this.#ctx.wheel.schedule(this.#intervalA, () => this.#onTimerA());
    this.#timerB = this.#ctx.wheel.schedule(64 * this.#ctx.timers.T1, () => this.#onTimerB());
  }

  #send(bytes: Buffer): boolean {
    const ok = this.#ctx.sender.sendRaw(bytes, this.destination);
    if (!ok) {
      // §17.1.4: a transport error is reported to the TU as a timeout would be.
      this.#terminate();
      safe(this.#ctx, () => this.#tu.onTimeout(this, 'transport'));
    }
    return ok;
  }

  #onTimerA(): void {
    if (this.state !== 'Calling') return;
    this.#intervalA *= 2; // §17.1.1.2: doubled at each retransmission
    if (!this.#send(this.#bytes)) return;
    this.#timerA = this.#ctx.wheel.schedule(this.#intervalA, () => this.#onTimerA());
  }

  #onTimerB(): void {
    // §17.1.1.2: Timer B only times out a transaction still in Calling; once a provisional
    // arrived, the TU (a proxy's Timer C, §16.8) decides how long to wait.
    if (this.state !== 'Calling') return;
    this.#terminate();
    safe(this.#ctx, () => this.#tu.onTimeout(this, 'timeout'));
  }

  receiveResponse(res: SipResponse): void {
    const s = res.status;
    switch (this.state) {
      case 'Calling':
      case 'Proceeding':
        this.#ctx.wheel.cancel(this.#timerA);
        if (s < 200) {
          this.state = 'Proceeding';
          this.gotProvisional = true;
          this.#ctx.wheel.cancel(this.#timerB);
        } else if (s < 300) {
          // RFC 6026 §7.2: 2xx moves to Accepted; Timer M = 64*T1 absorbs nothing but keeps
          // the transaction so retransmitted 2xx still reach the TU (not treated as stray).
          this.state = 'Accepted';
          this.#ctx.wheel.cancel(this.#timerB);
          this.#release();
          this.#timerDM = this.#ctx.wheel.schedule(64 * this.#ctx.timers.T1, this.#end);
        } else {
          this.state = 'Completed';
          this.#ctx.wheel.cancel(this.#timerB);
          this.#sendAck(res);
          this.#release();
          // §17.1.1.2: Timer D >= 32 s for unreliable transports, zero for reliable.
          const d = isReliable(this.destination.transport) ? 0 : this.#ctx.timers.D;
          this.#timerDM = this.#ctx.wheel.schedule(d, this.#end);
        }
        safe(this.#ctx, () => this.#tu.onResponse(res, this));
        return;
      case 'Accepted':
        // RFC 6026 §7.2: retransmitted 2xx are passed to the TU; other responses are absorbed.
        if (s >= 200 && s < 300) safe(this.#ctx, () => this.#tu.onResponse(res, this));
        return;
      case 'Completed':
        // §17.1.1.2: a retransmitted final response is answered with the same ACK, not passed up.
        if (s >= 300 && this.#ack !== undefined) this.#send(this.#ack);
        return;
      case 'Terminated':
        return;
    }
  }

  /** §17.1.1.3: the ACK for a non-2xx final response belongs to this transaction. */
  #sendAck(res: SipResponse): void {
    const req = this.#request;
    if (req === undefined) return;
    const ack = new SipRequest('ACK', req.uri, []);
    ack.append('via', req.first('via')!);
    for (const r of req.getAll('route')) ack.append('route', r);
    ack.append('max-forwards', '70');
    ack.append('from', req.get('from')!);
    ack.append('to', res.get('to') ?? req.get('to')!);
    ack.append('call-id', req.get('call-id')!);
    ack.append('cseq', `${req.cseq.seq} ACK`);
    this.#ack = ack.toBuffer();
    this.#send(this.#ack);
  }

  terminate(): void {
    this.#terminate();
  }

  /**
   * Timer D/M's callback, made once: an arrow written in receiveResponse would share that
   * call's closure context with the one that hands `res` to the TU, and so keep the response
   * (and the datagram under its body) alive for Timer M's 32 s.
   */
  readonly #end = (): void => this.#terminate();

  #terminate(): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    this.#ctx.wheel.cancel(this.#timerA);
    this.#ctx.wheel.cancel(this.#timerB);
    this.#ctx.wheel.cancel(this.#timerDM);
    this.#ctx.terminated(this.key);
  }
}

