// Shared pieces of the four transaction state machines (RFC 3261 §17).
import type { SipRequest, SipResponse } from '../message.ts';
import type { TimerWheel } from '../timer-wheel.ts';
import type { Destination, Flow, MessageSender } from '../transport.ts';

/** §17.1.1.1 timer values: T1 RTT estimate, T2 max non-INVITE retransmit interval, T4 max network lifetime. */
export interface TimerValues {
  readonly T1: number;
  readonly T2: number;
  readonly T4: number;
  /** Timer D (INVITE client, unreliable): at least 32 s. */
  readonly D: number;
}

export const DEFAULT_TIMERS: TimerValues = { T1: 500, T2: 4000, T4: 5000, D: 32000 };

export interface TransactionContext {
  readonly sender: MessageSender;
  readonly wheel: TimerWheel;
  readonly timers: TimerValues;
  /** Called once when a transaction reaches Terminated, so the layer forgets it. */
  terminated(key: string): void;
  /**
   * A non-INVITE server transaction over UDP sent its final response: the layer keeps just
   * the bytes for Timer J (§17.2.2) and forgets the transaction object.
   */
  completed(key: string, bytes: Buffer, dest: Destination): void;
  /** Report an exception thrown by a transaction user instead of letting it unwind the core. */
  error(e: unknown): void;
}

export interface ClientTransactionUser {
  /** Every response the transaction passes up (§17.1: provisional, final, and RFC 6026 2xx retransmissions). */
  onResponse(res: SipResponse, tx: ClientTransaction): void;
  /** Timer B / Timer F fired or the transport failed (§17.1.4): act as on a 408. */
  onTimeout(tx: ClientTransaction, reason: 'timeout' | 'transport'): void;
}

export interface ClientTransaction {
  readonly key: string;
  readonly request: SipRequest;
  readonly destination: Destination;
  readonly state: string;
  /** Was any provisional response received (needed to decide when CANCEL may be sent, §9.1)? */
  readonly gotProvisional: boolean;
  receiveResponse(res: SipResponse): void;
  /** The TU no longer cares: stop retransmitting and forget (after CANCEL/timeouts). */
  terminate(): void;
}

export interface ServerTransaction {
  readonly key: string;
  readonly request: SipRequest;
  readonly flow: Flow;
  readonly state: string;
  /** Send a response through the transaction (§17.2). */
  respond(res: SipResponse): void;
  /**
   * Send a final response statelessly (§8.2.7) and forget the transaction: for digest
   * challenges, whose retransmitted request simply gets a fresh challenge, so nothing needs
   * to be kept for Timer J/H (32 s) per challenged request.
   */
  respondStateless(res: SipResponse): void;
  receiveRequest(req: SipRequest): void;
  readonly lastResponse: SipResponse | undefined;
  /** Set by the TU: called when the transaction ends (Timer H fired = ACK never came, ...). */
  onTerminated: ((reason: 'normal' | 'timeout' | 'transport') => void) | undefined;
}

export function safe(ctx: TransactionContext, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    ctx.error(e);
  }
}
