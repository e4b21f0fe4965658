// REGISTER processing, RFC 3261 §10.3, with RFC 5626 (outbound: +sip.instance / reg-id),
// RFC 5627 (instance-keyed bindings), RFC 3327 (Path) and RFC 3581 (the real source of the
// request is stored as the binding's flow). No socket code: the caller hands in the parsed
// request and the flow it arrived on, and sends the returned response through the server
// transaction (which absorbs retransmissions, so a retransmitted REGISTER never reaches here).
//
// Step numbers below are RFC 3261 §10.3's:
//   1 Request-URI domain   2 Require (caller)   3 authenticate   4 authorize the AOR
//   5 AOR valid for domain   6 Contact / "*"   7 per-contact update   8 200 with all bindings
import { randomBytes } from 'node:crypto';
import { type NameAddr, parseNameAddr } from '../sip/headers.ts';
import { createResponse, type SipRequest, type SipResponse } from '../sip/message.ts';
import { type DigestAlgorithm, type DigestServer, parseAuthorization, type DigestCredentials } from '../sip/digest.ts';
import { isSipUri, parseUri, type SipUri, unescape, uriEquals } from '../sip/uri.ts';
import type { Binding, Flow, LocationService } from './location.ts';
import { parseDelta, hasOptionTag, formatQ, normaliseUri, rawParamsWithout, makeBinding } from './bindings.ts';

/** What the registrar needs about one login name (a user may have several login names). */
export interface RegistrarCredentials {
  /** The AOR id the login belongs to (CareFlow: the user id as a string). */
  readonly aor: string;
  readonly enabled: boolean;
  /** HA1 for this login name and the realm, lower-case hex. */
  readonly ha1Md5: string;
  readonly ha1Sha256: string;
}

export interface RegistrarOptions {
  readonly location: LocationService;
  readonly digest: DigestServer;
  readonly realm: string;
  /** Our domain and our own addresses ("myself", RFC 3261 §16.4). */
  isLocalDomain(host: string): boolean;
  findCredentials(login: string): Promise<RegistrarCredentials | undefined>;
  readonly minExpires: number;
  readonly maxExpires: number;
  readonly defaultExpires: number;
  /** The digest algorithms to offer a client on this flow (default: all configured, in order). */
  offerAlgorithms?(flow: Flow): readonly DigestAlgorithm[] | undefined;
  /** Called after a REGISTER added or refreshed at least one binding of the AOR. */
  onRegistered?(aor: string): void;
  /** Above this many bindings per AOR, the least recently updated is dropped (default 16). */
  readonly maxBindingsPerAor?: number;
  readonly now?: () => number;
  readonly log?: (message: string, err: unknown) => void;
}

const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/** One tentative change of step 7, committed only when every contact was accepted. */
interface Update {
  readonly key: string;
  readonly binding: Binding | undefined; // undefined: remove
}

export class Registrar {
  readonly #o: RegistrarOptions;
  readonly #now: () => number;
  readonly #log: (message: string, err: unknown) => void;
  readonly #maxBindings: number;
  readonly #dummyHa1Md5 = randomBytes(16).toString('hex');
  readonly #dummyHa1Sha256 = randomBytes(32).toString('hex');
  readonly #tagPrefix = randomBytes(4).toString('hex');
  #tagCounter = 0;
  #dateSecond = -1;
  #dateValue = '';

  constructor(opts: RegistrarOptions) {
    if (!(opts.minExpires >= 0 && opts.maxExpires >= opts.minExpires)) throw new RangeError('need 0 <= minExpires <= maxExpires');
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log ?? ((m, e) => console.error(m, e));
    this.#maxBindings = opts.maxBindingsPerAor ?? 16;
  }

  async handle(req: SipRequest, flow: Flow): Promise<SipResponse> {
    // Step 1: only domains we are responsible for. We never forward REGISTERs elsewhere, so a
    // foreign domain gets 404 (§21.4.5: "the domain in the Request-URI does not match any of
    // the domains handled by the recipient").
    let ruri: SipUri;
    try {
      ruri = req.requestUri;
    } catch {
      return this.#reply(req, 400, 'Bad Request-URI');
    }
    // §8.2.2.1: an unsupported Request-URI scheme gets 416.
    if (!isSipUri(ruri)) return this.#reply(req, 416);
    if (!this.#o.isLocalDomain(ruri.host)) return this.#reply(req, 404, 'Domain Not Served');

    let to: NameAddr;
    let callId: string;
    let cseq: number;
    try {
      to = req.to;
      callId = req.callId;
      cseq = req.cseq.seq;
    } catch {
      return this.#reply(req, 400);
    }
    // RFC 4475 §3.3.4 (unksm2): the To of a REGISTER must hold a SIP or SIPS AOR, else 400.
    if (!isSipUri(to.uri)) return this.#reply(req, 400, 'To Must Be a SIP or SIPS URI');

    // Step 3: a registrar SHOULD authenticate the UAC (§22: Digest).
    const who = await this.#authenticate(req);
    if (typeof who === 'string') return this.#challenge(req, who === 'stale', this.#o.offerAlgorithms?.(flow));

    // Step 4: the authenticated user may modify only their own AOR: the To user is the login
    // name used, or the user's other login name; otherwise 403 (MUST).
    const toUser = to.uri.user === undefined ? undefined : unescape(to.uri.user);
    if (toUser === undefined) return this.#reply(req, 403);
    if (toUser !== who.login) {
      const other = await this.#o.findCredentials(toUser);
      if (other === undefined || other.aor !== who.aor) return this.#reply(req, 403);
    }
    // Step 5: the AOR must belong to a domain we serve, else 404 (MUST).
    if (!this.#o.isLocalDomain(to.uri.host)) return this.#reply(req, 404);
    const aor = who.aor;

    // Step 6: no Contact -> a query; skip to step 8.
    let contactValues: string[];
    try {
      contactValues = req.getAll('contact');
    } catch {
      return this.#reply(req, 400, 'Invalid Contact');
    }
    const now = this.#now();
    if (contactValues.length === 0) return this.#ok(req, aor, now, false);

    const expiresHeader = req.get('expires');
    const headerExpires = expiresHeader === undefined ? undefined : parseDelta(expiresHeader);

    if (contactValues.some((v) => v.trim() === '*')) {
      // Step 6: "*" only alone and with Expires: 0, else 400 (MUST).
      if (contactValues.length !== 1 || headerExpires !== 0) return this.#reply(req, 400, 'Invalid Wildcard Contact');
      // Same Call-ID: remove only if the CSeq is higher, else the request fails (MUST).
      for (const b of this.#o.location.lookup(aor)) {
        if (b.callId === callId && cseq <= b.cseq) return this.#reply(req, 500, 'Out of Order CSeq');
      }
      this.#o.location.removeAll(aor);
      return this.#ok(req, aor, now, false);
    }

    // Step 7: each contact in turn; tentative until all succeeded.
    const updates: Update[] = [];
    let outbound = false;
    const path = req.getAll('path');
    const userAgent = req.get('user-agent');
    for (const value of contactValues) {
      let contact: NameAddr;
      try {
        contact = parseNameAddr(value);
      } catch {
        return this.#reply(req, 400, 'Invalid Contact');
      }
      if (!isSipUri(contact.uri)) return this.#reply(req, 400, 'Contact Must Be a SIP or SIPS URI');

      // Expiration: the contact's expires param, else Expires header, else our default.
      const ep = contact.params.get('expires');
      let expires = ep !== undefined ? parseDelta(ep ?? '') : headerExpires ?? this.#o.defaultExpires;
      // §10.3 step 7: 423 if 0 < expires < 1 hour and below our minimum.
      if (expires > 0 && expires < 3600 && expires < this.#o.minExpires) return this.#interval(req);
      // §10.3 step 7: the registrar MAY shorten the interval.
      if (expires > this.#o.maxExpires) expires = this.#o.maxExpires;

      // §20.10: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
      const qp = contact.params.get('q');
      if (qp === null || (qp !== undefined && !QVALUE.test(qp))) return this.#reply(req, 400, 'Invalid q-value');
      const q = qp === undefined ? 1 : Number(qp);

      // RFC 5626 §6: with +sip.instance, the binding is keyed by instance and reg-id;
      // reg-id without +sip.instance is ignored (processed as RFC 3261 says).
      const instance = contact.params.get('+sip.instance') ?? undefined;
      let regId: number | undefined;
      const rp = contact.params.get('reg-id');
      if (rp !== undefined && instance !== undefined) {
        // RFC 5626 §4.2: reg-id = 1*DIGIT, 1 to 2**31-1.
        if (rp === null || !/^\d{1,10}$/.test(rp) || Number(rp) < 1 || Number(rp) > 0x7fffffff) {
          return this.#reply(req, 400, 'Invalid reg-id');
        }
        regId = Number(rp);
        outbound = true;
      }
      const key = instance !== undefined
        ? `inst:${instance.toLowerCase()}${regId !== undefined ? `;reg-id=${regId}` : ''}`
        : this.#uriKey(aor, contact, updates);
      const existing = this.#o.location.get(aor, key);

      // §10.3 step 7: same Call-ID and a CSeq not higher than the binding's -> the update is
      // aborted and the request fails; any tentative change is dropped (all or nothing).
      if (existing !== undefined && existing.callId === callId && cseq <= existing.cseq) {
        return this.#reply(req, 500, 'Out of Order CSeq');
      }
      if (expires === 0) {
        updates.push({ key, binding: undefined });
        continue;
      }
      updates.push({
        key,
        binding: makeBinding(existing, {
          aor, key, contact: contact.uriText, params: rawParamsWithout(value), q,
          expiresAt: now + expires * 1000, callId, cseq, instance, regId,
          path, userAgent, flow, updatedAt: now,
        }),
      });
    }

    // Commit (§10.3 step 7: visible only when every update succeeded).
    let registered = false;
    for (const u of updates) {
      if (u.binding === undefined) this.#o.location.remove(aor, u.key);
      else {
        this.#o.location.upsert(u.binding);
        registered = true;
      }
    }
    this.#enforceLimit(aor);
    if (registered && this.#o.onRegistered !== undefined) {
      try {
        this.#o.onRegistered(aor);
      } catch (err) {
        this.#log(`registrar: onRegistered failed for AOR ${aor}`, err);
      }
    }
    return this.#ok(req, aor, now, outbound);
  }

  /** Returns the authenticated login, or why a challenge is sent. */
  async #authenticate(req: SipRequest): Promise<{ aor: string; login: string } | 'none' | 'stale'> {
    // §22.4: use the credentials for our realm (a request may carry several).
    let creds: DigestCredentials | undefined;
    for (const v of req.getAll('authorization')) {
      const c = parseAuthorization(v);
      if (c !== undefined && c.realm === this.#o.realm) {
        creds = c;
        break;
      }
    }
    if (creds === undefined) return 'none';
    let user: RegistrarCredentials | undefined;
    try {
      user = await this.#o.findCredentials(creds.username);
    } catch (err) {
      this.#log('registrar: credential lookup failed', err);
      throw err;
    }
    // No user enumeration: unknown and disabled logins are verified against a dummy HA1, so
    // they take the same path (and time) as a wrong password and get the identical 401.
    const usable = user !== undefined && user.enabled;
    const sha = creds.algorithm === 'SHA-256';
    const ha1 = usable ? (sha ? user!.ha1Sha256 : user!.ha1Md5) : sha ? this.#dummyHa1Sha256 : this.#dummyHa1Md5;
    const verdict = this.#o.digest.verify(creds, req.method, ha1, this.#o.realm);
    if (verdict === 'ok' && usable) return { aor: user!.aor, login: creds.username };
    return verdict === 'stale' && usable ? 'stale' : 'none';
  }

  /**
   * RFC 3261 §10.3 step 7: without +sip.instance, a contact matches an existing binding by
   * URI comparison (§19.1.4). The key is the URI reduced to what §19.1.4 always compares, so
   * equal URIs share a key; a differing URI that reduces to the same key gets a suffix.
   */
  #uriKey(aor: string, contact: NameAddr, pending: readonly Update[]): string {
    const base = `uri:${normaliseUri(contact.uri)}`;
    for (let n = 1; n < 100; n++) {
      const key = n === 1 ? base : `${base}#${n}`;
      const b = pending.find((u) => u.key === key)?.binding ?? this.#o.location.get(aor, key);
      if (b === undefined || b.contact === contact.uriText) return key;
      let same = false;
      try {
        same = uriEquals(parseUri(b.contact), contact.uri);
      } catch {
        // an unparsable stored contact never matches
      }
      if (same) return key;
    }
    return `${base}#${this.#tagCounter++}`;
  }

  /** Keeps at most maxBindingsPerAor bindings: drops the least recently updated. */
  #enforceLimit(aor: string): void {
    const live = this.#o.location.lookup(aor);
    if (live.length <= this.#maxBindings) return;
    live.sort((a, b) => a.updatedAt - b.updatedAt);
    for (let i = 0; i < live.length - this.#maxBindings; i++) this.#o.location.remove(aor, live[i]!.key);
  }

  /** Step 8: 200 listing every current binding with its remaining time (MUST), and Date (SHOULD). */
  #ok(req: SipRequest, aor: string, now: number, outbound: boolean): SipResponse {
    const res = createResponse(req, 200, undefined, this.#toTag());
    for (const b of this.#o.location.lookup(aor)) {
      const remaining = Math.max(0, Math.round((b.expiresAt - now) / 1000));
      const q = b.q === 1 ? '' : `;q=${formatQ(b.q)}`;
      res.append('contact', `<${b.contact}>${b.params}${q};expires=${remaining}`);
    }
    // RFC 3327 §5.3: the registrar returns the Path it stored when the UA supports path.
    if (hasOptionTag(req, 'path')) for (const p of req.getAll('path')) res.append('path', p);
    res.append('date', this.#date(now));
    // RFC 5626 §6: a registrar that applied outbound processing MUST add Require: outbound.
    if (outbound) res.append('require', 'outbound');
    res.append('supported', 'outbound');
    return res;
  }

  #challenge(req: SipRequest, stale: boolean, only: readonly DigestAlgorithm[] | undefined): SipResponse {
    const res = createResponse(req, 401, undefined, this.#toTag());
    // RFC 7616 §3.7 / RFC 8760 §2.4: one WWW-Authenticate per algorithm, preferred first.
    for (const c of this.#o.digest.challenge(this.#o.realm, stale, only)) res.append('www-authenticate', c);
    return res;
  }

  #interval(req: SipRequest): SipResponse {
    // §10.3 step 7 / §20.23: a 423 MUST carry Min-Expires.
    const res = createResponse(req, 423, undefined, this.#toTag());
    res.append('min-expires', String(this.#o.minExpires));
    return res;
  }

  #reply(req: SipRequest, status: number, reason?: string): SipResponse {
    return createResponse(req, status, reason, this.#toTag());
  }

  /** §8.2.6.2: a UAS adds a To tag; unique per response is enough for REGISTER. */
  #toTag(): string {
    return this.#tagPrefix + (this.#tagCounter++).toString(36);
  }

  /** RFC 1123 date (§20.17), computed once per second. */
  #date(now: number): string {
    const s = Math.floor(now / 1000);
    if (s !== this.#dateSecond) {
      this.#dateSecond = s;
      this.#dateValue = new Date(s * 1000).toUTCString();
    }
    return this.#dateValue;
  }
}
