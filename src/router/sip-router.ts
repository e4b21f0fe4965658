// The transaction user of `careflow serve`: every request the transaction layer hands up
// comes here and goes to exactly one service: the registrar, the proxy (new calls and
// messages to CareFlow users), loose routing of in-dialog requests, or a local answer.
import type { Binding } from '../registrar/location.ts';
import { type CallerCredentials, authenticate } from './auth.ts';
import type { CallMedia } from './call-media.ts';
import { type DialogInfo, endDialog } from './dialog-end.ts';
import type { CallTracker } from './call-tracker.ts';
import { popOwnRoutes, type FlowTokens } from '../proxy/record-route.ts';
import type { ProxyCore, ProxyTarget } from '../proxy/proxy.ts';
import type { DigestAlgorithm, DigestServer } from '../sip/digest.ts';
import { parseNameAddr } from '../sip/headers.ts';
import { createResponse, type SipRequest, type SipResponse } from '../sip/message.ts';
import type { ServerTransaction } from '../sip/transaction/common.ts';
import { newBranch, type TransactionLayer, type TransactionUser } from '../sip/transaction/layer.ts';
import { type Destination, type Flow, responseDestination, transportFromVia, viaTransportName } from '../sip/transport.ts';
import { formatHost, isSipUri, parseUri, type SipUri, unescape } from '../sip/uri.ts';
import { parseVia } from '../sip/headers.ts';

export interface Directory {
  /** Credentials of a login name (SIP username or number) for digest checks. */
  findCredentials(login: string): Promise<CallerCredentials | undefined>;
  /** The user a Request-URI user part (number or SIP username) names. */
  findUser(login: string): Promise<{ id: number; enabled: boolean } | undefined>;
}

export interface RouterDeps {
  readonly layer: TransactionLayer;
  readonly proxy: ProxyCore;
  readonly tokens: FlowTokens;
  readonly registrar: { handle(req: SipRequest, flow: Flow): Promise<SipResponse> };
  readonly location: { lookup(aor: string): Binding[] };
  readonly digest: DigestServer;
  readonly realm: string;
  readonly directory: Directory;
  readonly calls: CallTracker;
  /** SDP through the media engine where a call needs a relay or a bridge. */
  readonly media?: CallMedia;
  /** Our domain and addresses ("myself"). */
  isLocal(host: string, port?: number): boolean;
  /** Is this stream connection still open? */
  connectionAlive(id: number): boolean;
  /** The digest algorithms to offer a client on this flow (default: all configured, in order). */
  offerAlgorithms?(flow: Flow): readonly DigestAlgorithm[] | undefined;
  readonly noAnswerMs: number;
  readonly serverHeader: string;
  readonly log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, err?: unknown) => void;
}

const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, UPDATE, INFO, PRACK, REFER, NOTIFY, REGISTER';
const SUPPORTED = new Set(['path', 'outbound', 'gruu', 'timer', 'replaces', '100rel', 'norefersub']);

export class SipRouter implements TransactionUser {
  readonly #d: RouterDeps;

  constructor(deps: RouterDeps) {
    this.#d = deps;
  }

  onRequest(req: SipRequest, flow: Flow, tx: ServerTransaction | undefined): void {
    if (tx === undefined) {
      this.#routeAck(req, flow);
      return;
    }
    this.#handle(req, flow, tx).catch((e: unknown) => {
      this.#d.log('error', `${req.method} ${req.callId}: handler failed`, e);
      if (tx.lastResponse === undefined || tx.lastResponse.status < 200) tx.respond(this.#reply(req, 500));
    });
  }

  onStrayResponse(res: SipResponse, _flow: Flow): void {
    // §16.7 / RFC 6026 §8.2: a 2xx to INVITE that matches no transaction is forwarded
    // statelessly when the top Via is ours; anything else is dropped (RFC 4475 bcast).
    if (res.status < 200 || res.status >= 300 || res.cseq.method !== 'INVITE') return;
    let top;
    try {
      top = res.via;
    } catch {
      return;
    }
    if (!this.#d.isLocal(top.host, top.port)) return;
    res.removeFirst('via');
    const next = res.first('via');
    if (next === undefined) return;
    const via = parseVia(next);
    const t = transportFromVia(via.transport) ?? 'udp';
    const port = Number(via.params.get('rport') ?? via.port ?? 5060);
    const pseudo: Flow = { transport: t, remoteAddress: via.params.get('received') ?? via.host, remotePort: port, localAddress: '', localPort: 0 };
    this.#d.layer.sendStateless(res, responseDestination(via, pseudo));
  }

  #reply(req: SipRequest, status: number, reason?: string): SipResponse {
    const res = createResponse(req, status, reason, status > 100 ? 'cf' + Math.random().toString(36).slice(2, 10) : undefined);
    res.append('server', this.#d.serverHeader);
    return res;
  }

  async #handle(req: SipRequest, flow: Flow, tx: ServerTransaction): Promise<void> {
    const m = req.method;
    if (m === 'CANCEL') return this.#onCancel(req, tx);
    // §16.4: a pre-loaded or recorded route pointing at us is removed (loose routing).
    const routed = req.has('route') ? popOwnRoutes(req, (h, p) => this.#d.isLocal(h, p)) : undefined;
    if (req.toTag !== undefined) return this.#inDialog(req, flow, tx, routed);
    // §16.3 step 3: Max-Forwards 0 -> 483 (an OPTIONS addressed to us is answered instead).
    const mf = req.get('max-forwards');
    let uri: SipUri;
    try {
      uri = req.requestUri;
    } catch {
      return tx.respond(this.#reply(req, 400, 'Bad Request-URI'));
    }
    // §8.2.2.1 / RFC 4475 unkscm: schemes we do not serve get 416 (never route on To).
    if (!isSipUri(uri)) return tx.respond(this.#reply(req, 416));
    const toUs = this.#d.isLocal(uri.host, uri.port);
    const forMe = toUs && (uri.user === undefined || m === 'REGISTER');
    if (mf !== undefined && Number(mf) === 0 && !(forMe && m === 'OPTIONS')) return tx.respond(this.#reply(req, 483));
    // §16.3 step 5 (Proxy-Require) and §8.2.2.3 (Require, for requests we answer ourselves).
    const unsupported = this.#unsupported(req.getAll('proxy-require').concat(forMe ? req.getAll('require') : []));
    if (unsupported.length > 0) {
      const res = this.#reply(req, 420);
      res.append('unsupported', unsupported.join(', '));
      return tx.respond(res);
    }
    if (m === 'REGISTER') {
      if (!toUs) return tx.respond(this.#reply(req, 403, 'Not our domain'));
      const res = await this.#d.registrar.handle(req, flow);
      res.append('server', this.#d.serverHeader);
      // A challenge is sent statelessly (§8.2.7): a retransmission just gets a new one.
      return res.status === 401 ? tx.respondStateless(res) : tx.respond(res);
    }
    if (forMe) {
      if (m === 'OPTIONS') return tx.respond(this.#options(req));
      return tx.respond(this.#reply(req, m === 'BYE' ? 481 : 405));
    }
    if (!toUs) return tx.respond(this.#reply(req, 403, 'Relaying Denied'));
    // §16.3 step 4: loop detection, for what the proxy would forward (not REGISTER, not ours).
    if (this.#d.proxy.isLooped(req, (h, p) => this.#d.isLocal(h, p))) return tx.respond(this.#reply(req, 482));
    if (m !== 'INVITE' && m !== 'MESSAGE' && m !== 'OPTIONS') {
      const res = this.#reply(req, m === 'BYE' || m === 'ACK' || m === 'PRACK' || m === 'UPDATE' ? 481 : 405);
      if (res.status === 405) res.append('allow', ALLOW);
      return tx.respond(res);
    }
    return this.#newCall(req, flow, tx, uri);
  }

  #unsupported(values: string[]): string[] {
    const out: string[] = [];
    for (const v of values) for (const t of v.split(',')) if (t.trim() !== '' && !SUPPORTED.has(t.trim().toLowerCase())) out.push(t.trim());
    return out;
  }

  #options(req: SipRequest): SipResponse {
    const res = this.#reply(req, 200);
    res.append('allow', ALLOW);
    res.append('accept', 'application/sdp, text/plain');
    res.append('supported', 'path, outbound');
    return res;
  }

  /** A new INVITE / MESSAGE / OPTIONS for a CareFlow user: authenticate, locate, fork. */
  async #newCall(req: SipRequest, flow: Flow, tx: ServerTransaction, uri: SipUri): Promise<void> {
    const d = this.#d;
    const auth = await authenticate(req, 'proxy-authorization', d.realm, d.digest, (l) => d.directory.findCredentials(l));
    if (!auth.ok) {
      const res = this.#reply(req, 407);
      for (const c of d.digest.challenge(d.realm, auth.stale, d.offerAlgorithms?.(flow))) res.append('proxy-authenticate', c);
      // Stateless (§8.2.7), as Kamailio's auth_challenge: a lost 407 makes the caller
      // retransmit its INVITE, which gets a fresh challenge; the ACK for it is absorbed as an
      // ACK without a transaction and without our Route.
      return tx.respondStateless(res);
    }
    const caller = auth.caller;
    // The From user must be the authenticated user (no caller-ID spoofing between users).
    const fromUser = req.from.uri.user !== undefined ? unescape(req.from.uri.user) : '';
    if (fromUser !== caller.sipUsername && fromUser !== caller.number) return tx.respond(this.#reply(req, 403, 'From does not match the authenticated user'));
    stripOwnCredentials(req, d.realm);
    const isInvite = req.method === 'INVITE';
    if (isInvite) tx.respond(this.#reply(req, 100)); // §16.2
    const login = uri.user !== undefined ? unescape(uri.user) : '';
    const callee = login === '' ? undefined : await d.directory.findUser(login);
    const record = { callId: req.callId, callerUserId: caller.userId, callerUri: req.from.uriText, calleeUri: req.to.uriText, ...(callee ? { calleeUserId: callee.id } : {}) };
    if (callee === undefined) {
      if (isInvite) d.calls.rejected(record, 404);
      return tx.respond(this.#reply(req, 404));
    }
    const bindings = callee.enabled ? d.location.lookup(String(callee.id)) : [];
    if (bindings.length === 0) {
      if (isInvite) d.calls.rejected(record, 480);
      return tx.respond(this.#reply(req, 480));
    }
    let targets = bindings.map((b) => targetOf(b, d.connectionAlive));
    const media = isInvite ? d.media : undefined;
    if (media !== undefined) {
      targets = await media.planInvite(req, flow, targets.map((target, i) => ({ target, binding: bindings[i]! })));
      // The caller may have cancelled while the media engine was asked (we answered 487).
      if (tx.lastResponse !== undefined && tx.lastResponse.status >= 200) return void media.end(req.callId);
      if (targets.length === 0) {
        void media.end(req.callId);
        d.calls.rejected(record, 503);
        return tx.respond(this.#reply(req, 503, 'Media Bridge Unavailable'));
      }
    }
    if (isInvite) d.calls.start({ ...record, fromTag: req.fromTag ?? '' });
    d.proxy.forward({
      serverTx: tx, request: req, flow, targets, recordRoute: isInvite,
      ...(isInvite ? { noAnswerMs: d.noAnswerMs } : {}),
      ...(media !== undefined ? { rewriteResponse: media.rewriteResponse } : {}),
      onOutcome: (o) => {
        if (!isInvite) return;
        if (o.kind === 'answered') {
          d.calls.answered(req.callId, o.target.label, media?.answered(req.callId, o.target, o.response));
        } else {
          d.calls.failed(req.callId, o.response.status, o);
          if (media !== undefined) void media.end(req.callId);
        }
      },
    });
  }

  /**
   * A relayed or bridged call whose audio stopped: BYE to both sides (RFC 3326 Reason: Q.850
   * 102, recovery on timer expiry), logged as ended by media_timeout, media released.
   */
  endIdleCall(callId: string, dialog: DialogInfo | undefined): void {
    const d = this.#d;
    d.log('warn', `call ${callId}: no audio for too long; ending it`);
    d.calls.mediaTimedOut(callId);
    const release = (): void => { if (d.media !== undefined) void d.media.end(callId); };
    if (dialog === undefined) return release();
    endDialog(dialog, d.layer, d.proxy, 'Q.850;cause=102;text="media timeout"').then(release, release);
  }

  /** §16.10: answer the CANCEL, then cancel the branches of the matching INVITE. */
  #onCancel(req: SipRequest, tx: ServerTransaction): void {
    const inv = this.#d.layer.findInviteFor(req);
    if (inv === undefined) return tx.respond(this.#reply(req, 481));
    tx.respond(createResponse(req, 200, undefined, inv.lastResponse?.toTag ?? 'cf' + Math.random().toString(36).slice(2, 10)));
    if (!this.#d.proxy.cancel(inv)) {
      // Not proxied (challenged or still being authenticated): answer the INVITE ourselves.
      if (inv.lastStatus < 200) inv.respond(this.#reply(inv.request, 487));
    }
  }

  /**
   * In-dialog requests follow the route we recorded (§16.4, §16.12). Async so that a failure
   * after a wait (the call record, the media engine) reaches onRequest's handler like any other.
   */
  async #inDialog(req: SipRequest, flow: Flow, tx: ServerTransaction, routed: ReturnType<typeof popOwnRoutes>): Promise<void> {
    if (routed === undefined) {
      // Not routed through us: we hold no dialog state to serve it (§12.2.2).
      return tx.respond(this.#reply(req, 481));
    }
    const dest = this.#dialogDestination(req, routed);
    if (dest === undefined) return tx.respond(this.#reply(req, 403, 'Route not recorded by this server'));
    stripOwnCredentials(req, this.#d.realm);
    const target: ProxyTarget = { uri: req.uri, destination: dest, label: req.uri };
    const media = this.#d.media;
    if (req.method === 'BYE') {
      const written = this.#d.calls.ended(req.callId, req.fromTag);
      if (media !== undefined) void media.end(req.callId);
      // The call log commits the calls that ended in this event-loop turn together; the BYE
      // leaves once its call's record is on disk, so no 200 for it (the hang-up confirmed)
      // can reach the caller before the record would survive a kill -9.
      if (written !== undefined) await written;
    }
    let rewrite: ((res: SipResponse) => Promise<void>) | undefined;
    if (media !== undefined && (req.method === 'INVITE' || req.method === 'UPDATE')) {
      // A re-INVITE / UPDATE with a new offer (hold, resume) in a call the engine relays.
      try {
        rewrite = await media.inDialog(req);
      } catch (e) {
        this.#d.log('error', `media engine re-offer for ${req.callId} failed`, e);
        return tx.respond(this.#reply(req, 500, 'Media Engine Failure'));
      }
    }
    this.#d.proxy.forward({
      serverTx: tx, request: req, flow, targets: [target], recordRoute: false,
      ...(rewrite !== undefined ? { rewriteResponse: rewrite } : {}),
    });
  }

  #dialogDestination(req: SipRequest, routed: NonNullable<ReturnType<typeof popOwnRoutes>>): Destination | undefined {
    // Only a Route we recorded (its flow token verifies) is followed: a Route forged to point at
    // us must not turn the server into an open relay.
    const downstream = routed.ftag !== undefined && req.fromTag === routed.ftag;
    const token = downstream ? routed.calleeToken : routed.callerToken;
    const flowDest = token !== undefined ? this.#d.tokens.decode(token) : undefined;
    if (flowDest === undefined) return undefined;
    // More Route values: the next hop is the next Route (§16.12); else the flow we recorded for
    // the side this request goes to (From tag = the caller's: toward the callee).
    const next = req.first('route');
    if (next !== undefined) {
      try {
        return destinationOfUri(parseNameAddr(next).uri);
      } catch {
        return undefined;
      }
    }
    return flowDest;
  }

  /** ACK for a 2xx (§13.2.2.4) travels end to end: loose-route it statelessly. */
  #routeAck(req: SipRequest, _flow: Flow): void {
    const routed = req.has('route') ? popOwnRoutes(req, (h, p) => this.#d.isLocal(h, p)) : undefined;
    if (routed === undefined) return; // ACK for a response we sent ourselves: absorbed
    const dest = this.#dialogDestination(req, routed);
    if (dest === undefined) return;
    const mf = Number(req.get('max-forwards') ?? '70');
    if (mf <= 0) return;
    req.set('max-forwards', String(mf - 1));
    stripOwnCredentials(req, this.#d.realm);
    const out = this.#d.proxy.interfaceFor(dest.transport);
    if (out === undefined) return;
    req.prepend('via', `SIP/2.0/${viaTransportName(out.transport)} ${formatHost(out.host)}:${out.port};branch=${newBranch()};rport`);
    this.#d.layer.sendStateless(req, dest);
  }
}

const REALM_RE = /realm\s*=\s*(?:"([^"]*)"|([^\s,]+))/i;

/**
 * §22.3: Proxy-Authorization values for our realm were meant for us (phones resend them on
 * every request of a dialog); they are not forwarded, so the callee never sees the caller's
 * login name or digest. Values for other realms pass untouched.
 */
export function stripOwnCredentials(req: SipRequest, realm: string): void {
  if (!req.has('proxy-authorization')) return;
  const keep = req.getAll('proxy-authorization').filter((v) => {
    const m = REALM_RE.exec(v);
    return m === null || (m[1] ?? m[2]) !== realm;
  });
  req.remove('proxy-authorization');
  for (const v of keep) req.append('proxy-authorization', v);
}

/**
 * Where to send a request for a binding. Stream transports: the connection the phone opened
 * (RFC 5626 §5.3). UDP: the Contact address, unless the REGISTER came from another host,
 * which means NAT: then the source address and port it came from (RFC 3581 symmetric response).
 */
export function bindingDestination(b: Binding, connectionAlive: (id: number) => boolean = () => true): Destination {
  const f = b.flow;
  if (f.transport !== 'udp') {
    if (f.connectionId !== undefined && connectionAlive(f.connectionId)) {
      return { transport: f.transport, address: f.remoteAddress, port: f.remotePort, connectionId: f.connectionId };
    }
    // The phone's connection is gone (server restart, network change): its source port was
    // ephemeral, so open a new connection to the address its Contact names.
    try {
      const fromContact = destinationOfUri(parseUri(b.contact));
      if (fromContact !== undefined) return { ...fromContact, transport: f.transport };
    } catch {
      /* fall through */
    }
    return { transport: f.transport, address: f.remoteAddress, port: f.remotePort };
  }
  if (b.instance !== undefined) return { transport: 'udp', address: f.remoteAddress, port: f.remotePort };
  try {
    const u = parseUri(b.contact);
    if (u.host === f.remoteAddress) return { transport: 'udp', address: u.host, port: u.port ?? 5060 };
  } catch {
    /* fall through to the flow */
  }
  return { transport: 'udp', address: f.remoteAddress, port: f.remotePort };
}

function targetOf(b: Binding, connectionAlive: (id: number) => boolean): ProxyTarget {
  return { uri: b.contact, destination: bindingDestination(b, connectionAlive), label: b.contact };
}

function destinationOfUri(u: SipUri): Destination | undefined {
  const tp = (u.params.get('transport') ?? (u.scheme === 'sips' ? 'tls' : 'udp'))?.toLowerCase();
  const t = transportFromVia(tp ?? 'udp');
  if (t === undefined || u.host === '') return undefined;
  return { transport: t, address: u.host, port: u.port ?? (t === 'tls' ? 5061 : 5060) };
}


