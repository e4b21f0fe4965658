// The transaction layer (RFC 3261 §17): matches incoming messages to transactions
// (§17.1.3 for responses, §17.2.3 for requests, with the RFC 2543 fallback), absorbs
// retransmissions, and hands everything else to the transaction user (TU).
import { randomBytes } from 'node:crypto';
import { detach } from '../headers.ts';
import type { SipMessage, SipRequest, SipResponse } from '../message.ts';
import { SipRequest as Request } from '../message.ts';
import { TimerWheel } from '../timer-wheel.ts';
import { type Destination, type Flow, type MessageSender, responseDestination, type TransportHandler } from '../transport.ts';
import { InviteClientTransaction } from './client-invite.ts';
import { CompletedTable } from './completed.ts';
import { NonInviteClientTransaction } from './client-non-invite.ts';
import {
  type ClientTransaction, type ClientTransactionUser, DEFAULT_TIMERS, type ServerTransaction, type TimerValues,
  type TransactionContext,
} from './common.ts';
import { InviteServerTransaction } from './server-invite.ts';
import { NonInviteServerTransaction } from './server-non-invite.ts';

export const MAGIC_COOKIE = 'z9hG4bK';

export interface TransactionUser {
  /**
   * A new request. `tx` is its server transaction; undefined for an ACK that matched no
   * INVITE server transaction (the ACK for a 2xx, §17.2.1 / RFC 6026: end to end).
   */
  onRequest(req: SipRequest, flow: Flow, tx: ServerTransaction | undefined): void;
  /** A response that matched no client transaction (§17.1.3); a proxy forwards 2xx statelessly. */
  onStrayResponse(res: SipResponse, flow: Flow): void;
}

export interface TransactionLayerOptions {
  readonly sender: MessageSender;
  readonly timers?: TimerValues;
  readonly wheel?: TimerWheel;
  readonly onError?: (e: unknown) => void;
}

export class TransactionLayer implements TransportHandler {
  readonly #server = new Map<string, ServerTransaction>();
  readonly #client = new Map<string, ClientTransaction>();
  readonly #ctx: TransactionContext;
  readonly #completed: CompletedTable;
  readonly wheel: TimerWheel;
  readonly sender: MessageSender;
  #tu: TransactionUser | undefined;

  constructor(opts: TransactionLayerOptions) {
    this.sender = opts.sender;
    this.wheel = opts.wheel ?? new TimerWheel();
    const onError = opts.onError ?? ((e: unknown) => console.error('transaction user failed:', e));
    const timers = opts.timers ?? DEFAULT_TIMERS;
    this.#completed = new CompletedTable(this.wheel, opts.sender, 64 * timers.T1);
    this.#ctx = {
      sender: opts.sender,
      wheel: this.wheel,
      timers,
      terminated: (key) => {
        this.#server.delete(key);
        this.#client.delete(key);
      },
      completed: (key, bytes, dest) => this.#completed.add(key, bytes, dest.address, dest.port),
      error: onError,
    };
  }

  setUser(tu: TransactionUser): void {
    this.#tu = tu;
  }

  /** Server transactions, those in Completed on UDP (§17.2.2) included. */
  get serverCount(): number {
    return this.#server.size + this.#completed.size;
  }

  get clientCount(): number {
    return this.#client.size;
  }

  /** From the transport layer. */
  onMessage(msg: SipMessage, flow: Flow): void {
    if (msg instanceof Request) this.#onRequest(msg, flow);
    else this.#onResponse(msg as SipResponse, flow);
  }

  #onRequest(req: SipRequest, flow: Flow): void {
    const tu = this.#tu;
    if (tu === undefined) return;
    let key = serverKey(req);
    const existing = this.#server.get(key);
    if (req.method === 'ACK') {
      // §17.2.1: an ACK matching an INVITE transaction in Completed is absorbed there; an
      // ACK for a 2xx has its own branch and goes to the TU (RFC 6026 §7.1).
      if (existing instanceof InviteServerTransaction && existing.state !== 'Accepted') existing.receiveRequest(req);
      else tu.onRequest(req, flow, undefined);
      return;
    }
    if (existing !== undefined) {
      existing.receiveRequest(req); // retransmission
      return;
    }
    if (this.#completed.retransmit(key)) return; // §17.2.2: in Completed, the response again
    // Kept for the transaction's life (Timer J: 32 s after the response on UDP): copies that
    // do not hold on to the request's text.
    const d = responseDestination(req.via, flow);
    const dest: Destination = { ...d, address: detach(d.address) };
    key = detach(key);
    const tx =
      req.method === 'INVITE'
        ? new InviteServerTransaction(this.#ctx, key, req, flow, dest)
        : new NonInviteServerTransaction(this.#ctx, key, req, flow, dest);
    this.#server.set(key, tx);
    tu.onRequest(req, flow, tx);
  }

  #onResponse(res: SipResponse, flow: Flow): void {
    let key: string;
    try {
      const branch = res.via.branch;
      if (branch === undefined) return;
      key = `${branch}|${res.cseq.method}`;
    } catch {
      return; // §18.1.2: responses whose Via or CSeq cannot be read are discarded
    }
    const tx = this.#client.get(key);
    if (tx !== undefined) tx.receiveResponse(res);
    else this.#tu?.onStrayResponse(res, flow);
  }

  /**
   * Starts a client transaction for `req` toward `dest`. The request's top Via must carry a
   * unique branch (use `newBranch()`); the transaction is keyed by it (§17.1.3).
   */
  request(req: SipRequest, dest: Destination, user: ClientTransactionUser): ClientTransaction {
    const key = `${req.via.branch ?? ''}|${req.method}`;
    const tx =
      req.method === 'INVITE'
        ? new InviteClientTransaction(this.#ctx, key, req, dest, user)
        : new NonInviteClientTransaction(this.#ctx, key, req, dest, user);
    this.#client.set(key, tx);
    tx.start();
    return tx;
  }

  /** §9.2: the INVITE server transaction a CANCEL refers to (same key with method INVITE). */
  findInviteFor(cancel: SipRequest): InviteServerTransaction | undefined {
    const tx = this.#server.get(serverKey(cancel, 'INVITE'));
    return tx instanceof InviteServerTransaction ? tx : undefined;
  }

  /** Sends outside any transaction (ACK for 2xx, stateless responses, stray 2xx forwarding). */
  sendStateless(msg: SipMessage, dest: Destination): boolean {
    return this.sender.send(msg, dest);
  }

  close(): void {
    for (const tx of this.#client.values()) tx.terminate();
    this.#client.clear();
    this.#server.clear();
    this.#completed.clear();
    this.wheel.close();
  }
}

// §8.1.1.7: a branch must be unique across space and time for all requests sent by this
// element. 96 random bits chosen at start-up plus a counter are, without a call into the
// random generator per request.
const BRANCH_PREFIX = randomBytes(12).toString('base64url');
let branchCounter = 0;

/** A process-unique string for branch parameters and tags: random prefix + counter. */
export function uniqueToken(): string {
  branchCounter = (branchCounter + 1) % Number.MAX_SAFE_INTEGER;
  return BRANCH_PREFIX + branchCounter.toString(36);
}

/** A new RFC 3261 branch: magic cookie + a unique token (§8.1.1.7). */
export function newBranch(): string {
  return MAGIC_COOKIE + uniqueToken();
}

/**
 * §17.2.3: branch + sent-by + method (ACK counts as INVITE). Requests without the magic
 * cookie fall back to the RFC 2543 rules: Request-URI, To tag, From tag, Call-ID, CSeq and top Via.
 */
export function serverKey(req: SipRequest, methodOverride?: string): string {
  const via = req.via;
  const method = methodOverride ?? (req.method === 'ACK' ? 'INVITE' : req.method);
  const sentBy = `${via.host}:${via.port ?? ''}`;
  if (via.branch !== undefined && via.branch.startsWith(MAGIC_COOKIE)) return `${via.branch}|${sentBy}|${method}`;
  return `2543|${req.uri}|${req.fromTag ?? ''}|${req.callId}|${req.cseq.seq}|${sentBy}|${via.branch ?? ''}|${method}`;
}
