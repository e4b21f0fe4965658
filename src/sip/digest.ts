// Digest access authentication, server side: RFC 3261 §22.4, RFC 7616 (HTTP Digest) with the
// SHA-256 algorithm for SIP of RFC 8760. Only qop=auth is offered and accepted.
//
//   challenge  = "Digest" realm, nonce, opaque, algorithm, qop="auth" [, stale=true]
//   credentials = "Digest" username, realm, nonce, uri, response, algorithm, cnonce, qop, nc [, opaque]
//   response   = H( HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H( method ":" uri ) )   (RFC 7616 §3.4.1)
//   HA1        = H( username ":" realm ":" password )                                    (RFC 7616 §3.4.2)
//
// Nonces are stateless (RFC 7616 §5.4 suggests time-stamped, keyed-hash nonces):
//
//    0                   6                  14                           30 bytes
//   +-------------------+------------------+-----------------------------+
//   | issue time (ms)   | 8 random bytes   | HMAC-SHA256(secret, time |  |
//   | 48-bit big endian |                  | random | realm)[0..16)      |
//   +-------------------+------------------+-----------------------------+
//   base64url-encoded: 40 characters.
//
// The only per-nonce state is the replay table (nonce -> highest accepted nonce-count),
// bounded in size; see `#checkNonceCount`.
import { hash, randomFillSync, timingSafeEqual } from 'node:crypto';
import { detach } from './headers.ts';

export type DigestAlgorithm = 'MD5' | 'SHA-256';

export interface DigestServerOptions {
  /** HMAC key for nonces (at least 16 bytes; keep it across restarts so nonces stay valid). */
  readonly secret: Buffer;
  /** Nonce lifetime; an older nonce with a correct response is reported `stale`. */
  readonly nonceTtlMs: number;
  /** Offered in this order (RFC 8760 §2.4: the preferred algorithm first). */
  readonly algorithms: ReadonlyArray<DigestAlgorithm>;
  /** Clock (ms since the epoch); injectable for tests. */
  readonly now?: () => number;
  /** Upper bound of the nonce-count replay table (default 200,000 nonces). */
  readonly maxTrackedNonces?: number;
}

/** The parameters of an Authorization / Proxy-Authorization `Digest` value (RFC 7616 §3.4). */
export interface DigestCredentials {
  readonly username: string;
  readonly realm: string;
  readonly nonce: string;
  readonly uri: string;
  readonly response: string;
  /** Upper-cased; `MD5` when absent (RFC 7616 §3.4). */
  readonly algorithm: string;
  readonly cnonce: string | undefined;
  readonly qop: string | undefined;
  readonly nc: string | undefined;
  readonly opaque: string | undefined;
}

export type DigestVerdict = 'ok' | 'stale' | 'invalid';

const NONCE_BYTES = 30;
const NONCE_CHARS = 40;
const NONCE_RE = /^[A-Za-z0-9_-]{40}$/;
const NC_RE = /^[0-9a-fA-F]{8}$/;
const HEX_RE = /^[0-9a-fA-F]+$/;
const TIME_BYTES = 6;
const RANDOM_BYTES = 8;
const MAC_BYTES = 16;
/** What the opaque value's HMAC covers before the realm. */
const OPAQUE_LABEL = Buffer.from('opaque\0', 'latin1');
/** SHA-256 block size (RFC 2104 B). */
const HMAC_BLOCK = 64;

function hashName(algorithm: string): 'md5' | 'sha256' | undefined {
  if (algorithm === 'MD5') return 'md5';
  if (algorithm === 'SHA-256') return 'sha256';
  // `-sess` variants (RFC 7616 §3.4.2) are not supported: rejected as invalid.
  return undefined;
}

/** HA1 = H(username ":" realm ":" password), lower-case hex (RFC 7616 §3.4.2). */
export function ha1(algorithm: DigestAlgorithm, username: string, realm: string, password: string): string {
  return hash(hashName(algorithm)!, `${username}:${realm}:${password}`);
}

/**
 * The expected `response` for qop=auth (RFC 7616 §3.4.1): H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
 * Exported for tests and for a UAC side.
 */
export function digestResponse(
  algorithm: DigestAlgorithm, ha1Hex: string, nonce: string, nc: string, cnonce: string, qop: string,
  method: string, uri: string,
): string {
  // One-shot crypto.hash: a third of the cost of a createHash object (no object, no fetch).
  const h = hashName(algorithm)!;
  const ha2 = hash(h, `${method}:${uri}`);
  return hash(h, `${ha1Hex}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`);
}

export class DigestServer {
  /**
   * HMAC-SHA256 keyed with the secret (RFC 2104), as two one-shot hashes over the prepared
   * pads: H((K ^ opad) || H((K ^ ipad) || m)). A createHmac object per nonce cost 5-7 µs.
   * #inner holds K ^ ipad followed by room for m; #outer holds K ^ opad followed by the inner hash.
   */
  #inner: Buffer;
  readonly #outer = Buffer.alloc(HMAC_BLOCK + 32);
  readonly #ttl: number;
  readonly #algorithms: ReadonlyArray<DigestAlgorithm>;
  readonly #now: () => number;
  readonly #maxTracked: number;
  /** nonce (canonical base64url) -> highest nonce-count accepted; insertion order = first use. */
  readonly #seen = new Map<string, number>();
  /** Nonces issued at or before this time that are not in #seen may have been evicted. */
  #evictedUpTo = -Infinity;
  readonly #pool = Buffer.alloc(4096);
  #poolPos = 4096;
  readonly #opaque = new Map<string, string>();

  constructor(opts: DigestServerOptions) {
    if (opts.secret.length < 16) throw new RangeError('digest secret must be at least 16 bytes');
    if (opts.algorithms.length === 0) throw new RangeError('at least one digest algorithm is required');
    if (!(opts.nonceTtlMs > 0)) throw new RangeError('nonceTtlMs must be positive');
    // RFC 2104 §2: a key longer than the block is hashed first, a shorter one padded with zeros.
    const key = opts.secret.length > HMAC_BLOCK ? hash('sha256', opts.secret, 'buffer') : opts.secret;
    this.#inner = Buffer.alloc(HMAC_BLOCK + TIME_BYTES + RANDOM_BYTES + 256, 0);
    for (let i = 0; i < HMAC_BLOCK; i++) {
      this.#inner[i] = (key[i] ?? 0) ^ 0x36;
      this.#outer[i] = (key[i] ?? 0) ^ 0x5c;
    }
    this.#ttl = opts.nonceTtlMs;
    this.#algorithms = [...opts.algorithms];
    this.#now = opts.now ?? Date.now;
    this.#maxTracked = opts.maxTrackedNonces ?? 200_000;
  }

  get algorithms(): ReadonlyArray<DigestAlgorithm> {
    return this.#algorithms;
  }

  /**
   * One challenge value per configured algorithm, in the configured order (RFC 8760 §2.4,
   * RFC 7616 §3.7: one header field per algorithm). All share one nonce, as in RFC 7616 §3.9.1.
   * The caller sends them as WWW-Authenticate (401) or Proxy-Authenticate (407).
   * `only` narrows the offer to those of the configured algorithms, for a client known to
   * mishandle several challenges (the server's offer may differ per client, RFC 8760 §2.4);
   * ignored when none of them is configured.
   */
  challenge(realm: string, stale = false, only?: readonly DigestAlgorithm[]): string[] {
    const nonce = this.#issueNonce(realm);
    const opaque = this.#opaqueFor(realm);
    const r = quoteString(realm);
    const tail = stale ? ', qop="auth", stale=true' : ', qop="auth"';
    const narrowed = only === undefined ? [] : this.#algorithms.filter((a) => only.includes(a));
    const order = narrowed.length > 0 ? narrowed : this.#algorithms;
    return order.map((a) => `Digest realm=${r}, nonce="${nonce}", opaque="${opaque}", algorithm=${a}${tail}`);
  }

  /**
   * Checks credentials against the stored HA1 (hex, for `creds.algorithm`).
   * - `invalid`: wrong realm/algorithm/qop, forged nonce, wrong response, malformed fields.
   * - `stale`: the response is right but the nonce expired, or its nonce-count was already
   *   used (a replay, or a nonce forgotten under flood): a fresh challenge with stale=true
   *   lets the phone retry without asking for a password (RFC 7616 §3.3 "stale").
   */
  verify(creds: DigestCredentials, method: string, ha1Hex: string, realm: string): DigestVerdict {
    const algorithm = creds.algorithm as DigestAlgorithm;
    // RFC 8760 §2.5 / RFC 7616 §3.4: only algorithms we offered; -sess is not offered.
    if (!this.#algorithms.includes(algorithm) || hashName(algorithm) === undefined) return 'invalid';
    // RFC 3261 §22.4 / RFC 7616 §3.4: the realm must be one we challenged with.
    if (creds.realm !== realm) return 'invalid';
    // RFC 7616 §3.4: we only offer qop=auth; its cnonce and nc are then mandatory. A missing
    // qop (RFC 2069 compatibility) is refused: without nc there is no replay protection.
    if (creds.qop === undefined || creds.qop.toLowerCase() !== 'auth') return 'invalid';
    if (creds.cnonce === undefined || creds.cnonce === '' || creds.nc === undefined || !NC_RE.test(creds.nc)) return 'invalid';
    // RFC 7616 §3.4: opaque is returned unchanged; tolerate its absence, not a different value.
    if (creds.opaque !== undefined && creds.opaque !== this.#opaqueFor(realm)) return 'invalid';
    const issued = this.#checkNonce(creds.nonce, realm);
    if (issued === undefined) return 'invalid';

    const expected = digestResponse(algorithm, ha1Hex, creds.nonce, creds.nc, creds.cnonce, creds.qop, method, creds.uri);
    const given = creds.response.toLowerCase();
    if (given.length !== expected.length || !HEX_RE.test(given)) return 'invalid';
    if (!timingSafeEqual(Buffer.from(given, 'latin1'), Buffer.from(expected, 'latin1'))) return 'invalid';

    // RFC 7616 §3.3: stale only when the digest is valid for that nonce and the nonce is not.
    const now = this.#now();
    const age = now - issued;
    if (age > this.#ttl || age < -this.#ttl) return 'stale';
    const nc = parseInt(creds.nc, 16);
    if (nc === 0) return 'invalid';
    return this.#checkNonceCount(creds.nonce, issued, nc, now) ? 'ok' : 'stale';
  }

  /** Number of nonces in the replay table (for metrics). */
  get trackedNonces(): number {
    return this.#seen.size;
  }

  #issueNonce(realm: string): string {
    const buf = Buffer.allocUnsafe(NONCE_BYTES);
    buf.writeUIntBE(Math.max(0, Math.floor(this.#now())), 0, TIME_BYTES);
    this.#random(buf, TIME_BYTES, RANDOM_BYTES);
    this.#mac(buf, realm).copy(buf, TIME_BYTES + RANDOM_BYTES, 0, MAC_BYTES);
    return buf.toString('base64url');
  }

  /** The nonce's MAC: HMAC-SHA256(secret, time || random || realm). */
  #mac(buf: Buffer, realm: string): Buffer {
    return this.#hmac(buf.subarray(0, TIME_BYTES + RANDOM_BYTES), realm);
  }

  /** HMAC-SHA256(secret, head || UTF-8 of tail) over the prepared pads (see #inner). */
  #hmac(head: Buffer, tail: string): Buffer {
    const start = HMAC_BLOCK + head.length;
    const tailBytes = Buffer.byteLength(tail, 'utf8');
    if (start + tailBytes > this.#inner.length) {
      const bigger = Buffer.alloc(start + tailBytes);
      this.#inner.copy(bigger, 0, 0, HMAC_BLOCK);
      this.#inner = bigger;
    }
    head.copy(this.#inner, HMAC_BLOCK);
    this.#inner.write(tail, start, 'utf8');
    hash('sha256', this.#inner.subarray(0, start + tailBytes), 'buffer').copy(this.#outer, HMAC_BLOCK);
    return hash('sha256', this.#outer, 'buffer');
  }

  /** Returns the issue time of an authentic nonce for this realm, else undefined. */
  #checkNonce(nonce: string, realm: string): number | undefined {
    if (nonce.length !== NONCE_CHARS || !NONCE_RE.test(nonce)) return undefined;
    const buf = Buffer.from(nonce, 'base64url');
    if (buf.length !== NONCE_BYTES) return undefined;
    const mac = this.#mac(buf, realm);
    if (!timingSafeEqual(mac.subarray(0, MAC_BYTES), buf.subarray(TIME_BYTES + RANDOM_BYTES))) return undefined;
    return buf.readUIntBE(0, TIME_BYTES);
  }

  /**
   * RFC 7616 §3.4 / §5.5: a nonce-count must grow with every use of a nonce; phones reuse one
   * nonce across re-REGISTERs with nc 1, 2, 3... Memory is bounded: expired entries are
   * dropped from the oldest end, and above `maxTrackedNonces` the oldest is evicted and the
   * eviction watermark raised, so an evicted (or never-seen older) nonce is answered `stale`
   * instead of becoming replayable.
   */
  #checkNonceCount(nonce: string, issued: number, nc: number, now: number): boolean {
    const prev = this.#seen.get(nonce);
    if (prev !== undefined) {
      if (nc <= prev) return false;
      this.#seen.set(nonce, nc);
      return true;
    }
    if (issued <= this.#evictedUpTo) return false;
    this.#sweep(now);
    if (this.#seen.size >= this.#maxTracked) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) {
        this.#seen.delete(oldest);
        this.#evictedUpTo = Math.max(this.#evictedUpTo, issuedAt(oldest));
      }
    }
    // A copy: the given nonce is a slice of the whole message.
    this.#seen.set(detach(nonce), nc);
    return true;
  }

  /** Drops a few expired entries from the oldest end (amortised O(1) per insertion). */
  #sweep(now: number): void {
    let budget = 4;
    for (const key of this.#seen.keys()) {
      if (budget-- === 0 || now - issuedAt(key) <= this.#ttl) return;
      this.#seen.delete(key);
    }
  }

  #random(into: Buffer, offset: number, length: number): void {
    if (this.#poolPos + length > this.#pool.length) {
      randomFillSync(this.#pool);
      this.#poolPos = 0;
    }
    this.#pool.copy(into, offset, this.#poolPos, this.#poolPos + length);
    this.#poolPos += length;
  }

  #opaqueFor(realm: string): string {
    let o = this.#opaque.get(realm);
    if (o === undefined) {
      o = this.#hmac(OPAQUE_LABEL, realm).subarray(0, 12).toString('base64url');
      if (this.#opaque.size < 64) this.#opaque.set(realm, o);
    }
    return o;
  }
}

function issuedAt(nonce: string): number {
  return Buffer.from(nonce.slice(0, 8), 'base64url').readUIntBE(0, TIME_BYTES);
}

function quoteString(s: string): string {
  return `"${s.replace(/(["\\])/g, '\\$1')}"`;
}

// ---- Authorization parsing (RFC 7616 §3.4, RFC 7235 §2.1, RFC 3261 §25.1) ----------------
//
//   credentials = "Digest" LWS digest-response *(COMMA digest-response)
//   auth-param  = token EQUAL ( token / quoted-string )

const FIELDS = new Set(['username', 'realm', 'nonce', 'uri', 'response', 'algorithm', 'cnonce', 'qop', 'nc', 'opaque']);

/** Parses one Authorization / Proxy-Authorization value; undefined for non-Digest or malformed. */
export function parseAuthorization(value: string): DigestCredentials | undefined {
  const s = value;
  const n = s.length;
  let i = 0;
  while (i < n && isWs(s.charCodeAt(i))) i++;
  const schemeStart = i;
  while (i < n && isTokenChar(s.charCodeAt(i))) i++;
  if (s.slice(schemeStart, i).toLowerCase() !== 'digest') return undefined;
  if (i >= n || !isWs(s.charCodeAt(i))) return undefined;
  const p: Record<string, string> = Object.create(null) as Record<string, string>;
  let first = true;
  for (;;) {
    while (i < n && isWs(s.charCodeAt(i))) i++;
    if (i >= n) break;
    if (!first) {
      if (s[i] !== ',') return undefined;
      i++;
      while (i < n && isWs(s.charCodeAt(i))) i++;
      if (i >= n) break; // tolerate a trailing comma
      if (s[i] === ',') continue; // and empty list elements (RFC 7230 §7)
    }
    first = false;
    const nameStart = i;
    while (i < n && isTokenChar(s.charCodeAt(i))) i++;
    if (i === nameStart) return undefined;
    const name = s.slice(nameStart, i).toLowerCase();
    while (i < n && isWs(s.charCodeAt(i))) i++;
    if (s[i] !== '=') return undefined;
    i++;
    while (i < n && isWs(s.charCodeAt(i))) i++;
    let v: string;
    const close = s[i] === '"' ? s.indexOf('"', i + 1) : -1;
    if (close > 0 && s.lastIndexOf('\\', close) <= i) {
      // quoted-string without quoted-pairs (the common case)
      v = s.slice(i + 1, close);
      i = close + 1;
    } else if (s[i] === '"') {
      i++;
      v = '';
      let closed = false;
      let runStart = i;
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c === 0x5c) {
          // quoted-pair (RFC 3261 §25.1)
          if (i + 1 >= n) return undefined;
          v += s.slice(runStart, i) + s[i + 1];
          i += 2;
          runStart = i;
        } else if (c === 0x22) {
          v += s.slice(runStart, i);
          i++;
          closed = true;
          break;
        } else i++;
      }
      if (!closed) return undefined;
    } else {
      // token (lenient: some UAs send uri or nonce unquoted, so anything up to ',' or LWS)
      const vs = i;
      while (i < n && s[i] !== ',' && s[i] !== '"' && !isWs(s.charCodeAt(i))) i++;
      if (i === vs) return undefined;
      v = s.slice(vs, i);
    }
    if (FIELDS.has(name)) {
      // RFC 7616 §3.4: each directive at most once.
      if (p[name] !== undefined) return undefined;
      p[name] = v;
    }
  }
  const { username, realm, nonce, uri, response } = p;
  if (username === undefined || realm === undefined || nonce === undefined || uri === undefined || response === undefined) return undefined;
  return {
    username, realm, nonce, uri, response,
    algorithm: (p['algorithm'] ?? 'MD5').toUpperCase(),
    cnonce: p['cnonce'], qop: p['qop'], nc: p['nc'], opaque: p['opaque'],
  };
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

/** token characters (RFC 3261 §25.1). */
function isTokenChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
    || c === 0x2d || c === 0x2e || c === 0x21 || c === 0x25 || c === 0x2a || c === 0x5f
    || c === 0x2b || c === 0x60 || c === 0x27 || c === 0x7e;
}
