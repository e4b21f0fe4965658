// Stateful forking proxy core, RFC 3261 §16.6 (request forwarding), §16.7 (response
// processing), §16.8 (Timer C), §16.10 (CANCEL). Knows nothing of users: the caller gives it
// the targets; it forks to all of them in parallel, forwards provisionals and every 2xx,
// cancels the other branches when one answers (or a 6xx arrives), and sends the best final.
import { createHash } from 'node:crypto';
import { MAGIC_COOKIE, type TransactionLayer, uniqueToken } from '../sip/transaction/layer.ts';
import { parseVia } from '../sip/headers.ts';
import type { ClientTransaction, ServerTransaction } from '../sip/transaction/common.ts';
import { createResponse, SipRequest, type SipResponse } from '../sip/message.ts';
import type { Timer } from '../sip/timer-wheel.ts';
import { type Destination, type Flow, viaTransportName } from '../sip/transport.ts';
import { formatHost } from '../sip/uri.ts';
import { type FlowTokens, type LocalInterface, recordRouteValues } from './record-route.ts';

export interface ProxyTarget {
  /** The new Request-URI (the registered Contact URI, §16.6 step 2). */
  readonly uri: string;
  /** Where to send it: the binding's flow (NAT address / connection), §16.6 step 7. */
  readonly destination: Destination;
  /** Free label reported back when this branch answers (e.g. the device's Contact). */
  readonly label: string;
  /** A body for this branch instead of the request's (SDP rewritten by a media engine). */
  readonly body?: string;
}

export type ProxyOutcome =
  | { readonly kind: 'answered'; readonly response: SipResponse; readonly target: ProxyTarget }
  | { readonly kind: 'final'; readonly response: SipResponse; readonly cancelled: boolean; readonly noAnswer: boolean };

export interface ForwardOptions {
  readonly serverTx: ServerTransaction;
  readonly request: SipRequest;
  readonly flow: Flow;
  readonly targets: readonly ProxyTarget[];
  /** Add Record-Route (initial INVITE and other dialog-creating requests). */
  readonly recordRoute: boolean;
  /** Product ring timeout: cancel all branches and answer 408 after this long (INVITE only). */
  readonly noAnswerMs?: number;
  /** Called once with the first 2xx, and once with the final outcome when no 2xx came. */
  readonly onOutcome?: (o: ProxyOutcome) => void;
  /**
   * Rewrites a branch's response that carries a body before it is processed (a media
   * engine's answer SDP). The responses of one transaction keep their order.
   */
  readonly rewriteResponse?: (res: SipResponse, target: ProxyTarget) => Promise<void>;
}

interface Branch {
  readonly target: ProxyTarget;
  /** The request sent on this branch; released when the branch is done (kept for CANCEL). */
  request: SipRequest | undefined;
  tx: ClientTransaction | undefined;
  done: boolean;
  response: SipResponse | undefined;
  cancelPending: boolean;
  cancelSent: boolean;
  /** Cancelled because Timer C fired: its 487 counts as a 408 (§16.8). */
  timedOut: boolean;
  timerC: Timer | undefined;
}

interface Context {
  readonly serverTx: ServerTransaction;
  /** The request as received; released when the context is done. */
  request: SipRequest | undefined;
  onOutcome: ((o: ProxyOutcome) => void) | undefined;
  readonly branches: Branch[];
  finalSent: boolean;
  answered: boolean;
  cancelled: boolean;
  noAnswer: boolean;
  noAnswerTimer: Timer | undefined;
  /** Responses waiting for their rewrite, in arrival order (only with rewriteResponse). */
  queue: Promise<void> | undefined;
}

export interface ProxyCoreOptions {
  readonly layer: TransactionLayer;
  readonly tokens: FlowTokens;
  /** Our interface per transport, for Via and Record-Route. */
  readonly interfaces: Partial<Record<string, LocalInterface>>;
  /** Timer C, > 3 minutes (§16.6 step 11). */
  readonly timerCMs?: number;
}

const PREFERRED_4XX = [401, 407, 415, 420, 484];
const BRANCH_PREFIX = MAGIC_COOKIE + 'cf';

/**
 * §16.6 step 8: the part of our branch that detects loops: a hash of the Request-URI, To tag,
 * From tag, Call-ID, CSeq number, the topmost Via as we received it, and Proxy-Require /
 * Proxy-Authorization. A request that comes back with the same values has looped.
 */
export function loopHash(req: SipRequest, topVia: string): string {
  const h = createHash('sha256');
  h.update(`${req.uri}\n${req.toTag ?? ''}\n${req.fromTag ?? ''}\n${req.callId}\n${req.cseq.seq}\n${topVia}\n`);
  h.update(`${req.getAll('proxy-require').join(',')}\n${req.getAll('proxy-authorization').join(',')}`);
  return h.digest('base64url').slice(0, 16);
}

export class ProxyCore {
  readonly #layer: TransactionLayer;
  readonly #tokens: FlowTokens;
  readonly #interfaces: Partial<Record<string, LocalInterface>>;
  readonly #timerCMs: number;
  readonly #byServerTx = new WeakMap<ServerTransaction, Context>();
  #active = 0;

  constructor(o: ProxyCoreOptions) {
    this.#layer = o.layer;
    this.#tokens = o.tokens;
    this.#interfaces = o.interfaces;
    this.#timerCMs = o.timerCMs ?? 181_000;
  }

  get activeContexts(): number {
    return this.#active;
  }

  interfaceFor(transport: string): LocalInterface | undefined {
    return this.#interfaces[transport] ?? this.#interfaces['udp'];
  }

  /**
   * §16.3 step 4: the request carries a Via we inserted whose loop hash matches the request as
   * it is now (the Via below ours was its topmost when we forwarded it): it has looped (482).
   * A differing hash means a spiral (e.g. the Request-URI changed), which is allowed.
   */
  isLooped(req: SipRequest, isOwn: (host: string, port: number | undefined) => boolean): boolean {
    const vias = req.getAll('via');
    for (let i = 0; i + 1 < vias.length; i++) {
      const text = vias[i]!;
      if (!text.includes(BRANCH_PREFIX)) continue;
      let via;
      try {
        via = parseVia(text);
      } catch {
        continue;
      }
      const b = via.branch;
      if (b === undefined || !b.startsWith(BRANCH_PREFIX) || !isOwn(via.host, via.port)) continue;
      const dot = b.indexOf('.', BRANCH_PREFIX.length);
      if (b.slice(BRANCH_PREFIX.length, dot < 0 ? undefined : dot) === loopHash(req, vias[i + 1]!)) return true;
    }
    return false;
  }

  /** §16.6: forward to every target in parallel. */
  forward(opts: ForwardOptions): void {
    const ctx: Context = {
      serverTx: opts.serverTx, request: opts.request, onOutcome: opts.onOutcome, branches: [],
      finalSent: false, answered: false, cancelled: false, noAnswer: false, noAnswerTimer: undefined, queue: undefined,
    };
    const rewrite = opts.rewriteResponse;
    this.#byServerTx.set(opts.serverTx, ctx);
    this.#active++;
    const isInvite = opts.request.method === 'INVITE';
    if (isInvite && opts.noAnswerMs !== undefined) {
      ctx.noAnswerTimer = this.#layer.wheel.schedule(opts.noAnswerMs, () => {
        if (ctx.finalSent) return;
        ctx.noAnswer = true;
        this.#cancelBranches(ctx, undefined);
      });
    }
    for (const target of opts.targets) {
      const req = this.#prepare(opts, target);
      if (req === undefined) continue;
      const branch: Branch = { target, request: req, tx: undefined, done: false, response: undefined, cancelPending: false, cancelSent: false, timedOut: false, timerC: undefined };
      ctx.branches.push(branch);
    }
    if (ctx.branches.length === 0) {
      this.#sendFinal(ctx, createResponse(opts.request, 480));
      return;
    }
    for (const branch of ctx.branches) {
      const req = branch.request;
      if (req === undefined) continue;
      if (isInvite) branch.timerC = this.#layer.wheel.schedule(this.#timerCMs, () => this.#onTimerC(ctx, branch));
      branch.tx = this.#layer.request(req, branch.target.destination, {
        onResponse: rewrite === undefined ? (res) => this.#onResponse(ctx, branch, res) : (res) => this.#rewriteThenProcess(ctx, branch, res, rewrite),
        onTimeout: () => this.#onBranchFailed(ctx, branch, 408),
      });
    }
  }

  /** §16.6 steps 1-8: copy, Request-URI, Max-Forwards, Record-Route, Via. */
  #prepare(opts: ForwardOptions, target: ProxyTarget): SipRequest | undefined {
    const req = opts.request.clone();
    req.uri = target.uri;
    if (target.body !== undefined) req.body = Buffer.from(target.body, 'utf8');
    const mf = Number(req.get('max-forwards') ?? '70');
    req.set('max-forwards', String(Math.max(0, mf - 1)));
    const out = this.interfaceFor(target.destination.transport);
    const inb = this.interfaceFor(opts.flow.transport);
    if (out === undefined || inb === undefined) return undefined;
    if (opts.recordRoute) {
      const rr = recordRouteValues(this.#tokens, inb, out, opts.flow, target.destination, opts.request.fromTag ?? '');
      for (let i = rr.length - 1; i >= 0; i--) req.prepend('record-route', rr[i]!);
    }
    const branch = `${BRANCH_PREFIX}${loopHash(opts.request, opts.request.first('via') ?? '')}.${uniqueToken()}`;
    req.prepend('via', `SIP/2.0/${viaTransportName(out.transport)} ${formatHost(out.host)}:${out.port};branch=${branch};rport`);
    return req;
  }

  /**
   * Responses carrying a body the media engine must see are rewritten first; all responses of
   * the transaction wait their turn so that a 180 never overtakes the 183 before it. A failed
   * rewrite of a 2xx still forwards it (the call is up; the caller will hear nothing and the
   * failure is logged by the rewriter), of anything else as it came.
   */
  #rewriteThenProcess(ctx: Context, branch: Branch, res: SipResponse, rewrite: (res: SipResponse, target: ProxyTarget) => Promise<void>): void {
    const prev = ctx.queue ?? Promise.resolve();
    const next = prev
      .then(() => (res.status > 100 && res.body.length > 0 ? rewrite(res, branch.target) : undefined))
      .catch(() => undefined)
      .then(() => this.#onResponse(ctx, branch, res));
    ctx.queue = next;
    void next.finally(() => { if (ctx.queue === next) ctx.queue = undefined; });
  }

  #onResponse(ctx: Context, branch: Branch, res: SipResponse): void {
    const s = res.status;
    // §16.7 step 3: remove our topmost Via.
    res.removeFirst('via');
    if (!res.has('via')) return; // it was meant for us (should not happen for forwarded requests)
    if (s < 200) {
      if (branch.timerC !== undefined) {
        // §16.8: Timer C is reset on each provisional response.
        this.#layer.wheel.cancel(branch.timerC);
        branch.timerC = this.#layer.wheel.schedule(this.#timerCMs, () => this.#onTimerC(ctx, branch));
      }
      // §9.1: a CANCEL waiting for a provisional may go now.
      if (branch.cancelPending && !branch.cancelSent) this.#sendCancel(branch);
      // §16.7 step 5: provisionals other than 100 are forwarded immediately.
      if (s > 100 && !ctx.finalSent) ctx.serverTx.respond(res);
      return;
    }
    if (s < 300) {
      // §16.7 step 5 / RFC 6026: every 2xx to an INVITE is forwarded immediately, the
      // retransmissions that reach a finished branch (Timer M) included.
      ctx.serverTx.respond(res);
      if (branch.done) return;
      this.#finishBranch(branch);
      branch.response = res;
      const first = !ctx.answered;
      ctx.answered = true;
      if (!ctx.finalSent) this.#markFinal(ctx);
      // §16.7 step 10: CANCEL all other pending branches.
      this.#cancelBranches(ctx, branch);
      if (first) ctx.onOutcome?.({ kind: 'answered', response: res, target: branch.target });
      this.#maybeRelease(ctx);
      return;
    }
    if (branch.done) return;
    this.#finishBranch(branch);
    branch.response = branch.timedOut && s === 487 && ctx.request !== undefined ? createResponse(ctx.request, 408) : res;
    if (s >= 600) this.#cancelBranches(ctx, branch); // §16.7 step 5: a 6xx ends the search
    this.#maybeFinish(ctx);
  }

  #onBranchFailed(ctx: Context, branch: Branch, status: number): void {
    if (branch.done) return;
    this.#finishBranch(branch);
    // §16.7: a timeout counts as a 408 from that branch.
    if (ctx.request !== undefined) branch.response = createResponse(ctx.request, status);
    this.#maybeFinish(ctx);
    this.#maybeRelease(ctx);
  }

  #onTimerC(ctx: Context, branch: Branch): void {
    branch.timerC = undefined;
    if (branch.done) return;
    // §16.8: Timer C fired: CANCEL if a provisional arrived, else behave as if a 408 came.
    if (branch.tx?.gotProvisional === true) {
      branch.timedOut = true;
      this.#sendCancel(branch);
    } else {
      branch.tx?.terminate();
      this.#onBranchFailed(ctx, branch, 408);
    }
  }

  #finishBranch(branch: Branch): void {
    branch.done = true;
    branch.request = undefined;
    this.#layer.wheel.cancel(branch.timerC);
    branch.timerC = undefined;
  }

  #cancelBranches(ctx: Context, except: Branch | undefined): void {
    for (const b of ctx.branches) {
      if (b === except || b.done || b.cancelSent) continue;
      if (b.request?.method !== 'INVITE') continue; // §9.1: only INVITE is cancelled
      if (b.tx?.gotProvisional === true) this.#sendCancel(b);
      else b.cancelPending = true; // §9.1: wait for a provisional before sending CANCEL
    }
  }

  /** §9.1: CANCEL with the same Request-URI, Call-ID, To, From, CSeq number, top Via and Route. */
  #sendCancel(b: Branch): void {
    if (b.cancelSent || b.request === undefined) return;
    b.cancelSent = true;
    const inv = b.request;
    const c = new SipRequest('CANCEL', inv.uri, []);
    c.append('via', inv.first('via')!);
    for (const r of inv.getAll('route')) c.append('route', r);
    c.append('max-forwards', '70');
    c.append('from', inv.get('from')!);
    c.append('to', inv.get('to')!);
    c.append('call-id', inv.get('call-id')!);
    c.append('cseq', `${inv.cseq.seq} CANCEL`);
    this.#layer.request(c, b.target.destination, { onResponse: () => undefined, onTimeout: () => undefined });
  }

  /** §16.10: a CANCEL for this INVITE arrived from upstream. */
  cancel(serverTx: ServerTransaction): boolean {
    const ctx = this.#byServerTx.get(serverTx);
    if (ctx === undefined || ctx.finalSent) return false;
    ctx.cancelled = true;
    this.#cancelBranches(ctx, undefined);
    return true;
  }

  #maybeFinish(ctx: Context): void {
    if (ctx.finalSent || ctx.branches.some((b) => !b.done) || ctx.request === undefined) return;
    let best = this.#best(ctx, ctx.request);
    // §16.10: a cancelled INVITE is answered 487 even if a branch only timed out.
    if (ctx.cancelled && best.status !== 487) best = createResponse(ctx.request, 487);
    if (ctx.noAnswer && !ctx.cancelled) best = createResponse(ctx.request, 408, 'No Answer');
    this.#sendFinal(ctx, best);
  }

  /**
   * The call setup is over (final sent, every branch done): keep nothing but what forwarding
   * late 2xx retransmissions needs (the server transaction). Transactions live on up to 32 s.
   */
  #maybeRelease(ctx: Context): void {
    if (!ctx.finalSent || ctx.branches.some((b) => !b.done)) return;
    ctx.request = undefined;
    ctx.onOutcome = undefined;
    for (const b of ctx.branches) b.response = undefined;
    this.#byServerTx.delete(ctx.serverTx);
  }

  /** §16.7 step 6: 6xx first, else the lowest class, preferring 401/407/415/420/484; 503 -> 500. */
  #best(ctx: Context, request: SipRequest): SipResponse {
    const rs = ctx.branches.map((b) => b.response).filter((r): r is SipResponse => r !== undefined);
    if (rs.length === 0) return createResponse(request, 408);
    const sixxx = rs.find((r) => r.status >= 600);
    let best = sixxx;
    if (best === undefined) {
      const minClass = Math.min(...rs.map((r) => Math.floor(r.status / 100)));
      const inClass = rs.filter((r) => Math.floor(r.status / 100) === minClass);
      best = inClass.find((r) => PREFERRED_4XX.includes(r.status)) ?? inClass[0]!;
    }
    if (best.status === 503) {
      best = best.clone();
      best.status = 500;
      best.reason = 'Server Internal Error';
    }
    if (best.status === 401 || best.status === 407) {
      // §16.7 step 7: collect the challenges of every 401/407 branch.
      const chosen = best;
      best = best.clone();
      for (const r of rs) {
        if (r === chosen || (r.status !== 401 && r.status !== 407)) continue;
        for (const h of ['www-authenticate', 'proxy-authenticate']) for (const v of r.getAll(h)) best.append(h, v);
      }
    }
    return best;
  }

  #markFinal(ctx: Context): void {
    ctx.finalSent = true;
    this.#layer.wheel.cancel(ctx.noAnswerTimer);
    this.#active--;
  }

  #sendFinal(ctx: Context, res: SipResponse): void {
    if (ctx.finalSent) return;
    this.#markFinal(ctx);
    ctx.serverTx.respond(res);
    ctx.onOutcome?.({ kind: 'final', response: res, cancelled: ctx.cancelled, noAnswer: ctx.noAnswer });
    this.#maybeRelease(ctx);
  }
}
