// Web phone sign-in: checks a login (CareFlow number or SIP username) and password against
// the stored HA1 digests, and issues a stateless bearer token for the phone's API calls.
//
// - No plain password is stored anywhere: the password is checked by computing its MD5 HA1
//   (RFC 7616 §3.4.2, `username:realm:password`) and comparing in constant time.
// - Unknown user and wrong password take the same path and give the same answer (no
//   enumeration), with a dummy digest compared for unknown users.
// - The token is `<userId>.<expiry>.<mac>`, the MAC covering the user's current HA1: rotating
//   the password (`careflow user passwd`) ends every web session of that user at once;
//   disabling the user does too, because every use looks the user up again.
// - Failed sign-ins are counted per source address; after too many, 429 for a while.
import { createHash, createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import type { Credentials } from '../store/types.ts';

/** What sign-in needs of a user's stored credentials (ha1Md5: for the login name looked up). */
export type WebCredentials = Pick<Credentials, 'userId' | 'sipUsername' | 'number' | 'enabled' | 'realm' | 'ha1Md5'>;

export interface SessionDeps {
  /** The same cached lookup SIP authentication uses: login = number or SIP username. */
  findCredentials(login: string): Promise<WebCredentials | undefined>;
  readonly realm: string;
  readonly secret: Buffer;
  readonly ttlMs: number;
  readonly now?: () => number;
}

export interface SignedIn {
  readonly userId: number;
  readonly sipUsername: string;
  /** MD5 HA1 of the SIP username for the realm: what JsSIP needs instead of the password. */
  readonly ha1: string;
  readonly token: string;
  readonly expiresAt: number;
}

const DUMMY_HA1 = createHash('md5').update('careflow:no-such-user').digest('hex');

export class WebSessions {
  readonly #deps: SessionDeps;
  readonly #key: KeyObject;
  readonly #now: () => number;

  constructor(deps: SessionDeps) {
    this.#deps = deps;
    this.#key = createSecretKey(deps.secret);
    this.#now = deps.now ?? Date.now;
  }

  /** undefined for a wrong login, a wrong password or a disabled user alike. */
  async signIn(login: string, password: string): Promise<SignedIn | undefined> {
    const c = await this.#deps.findCredentials(login);
    const ha1 = md5(`${login}:${this.#deps.realm}:${password}`);
    const stored = c !== undefined && c.realm === this.#deps.realm ? c.ha1Md5 : DUMMY_HA1;
    const match = safeEqualHex(ha1, stored);
    if (!match || c === undefined || !c.enabled || c.realm !== this.#deps.realm) return undefined;
    // A number login's HA1 is over the number; the SIP side authenticates as the SIP username.
    const own = login === c.sipUsername ? c : await this.#deps.findCredentials(c.sipUsername);
    if (own === undefined) return undefined;
    return this.#issue(own);
  }

  /** A fresh token and HA1 for a valid token (the page refreshes on load). */
  async refresh(token: string): Promise<SignedIn | undefined> {
    const c = await this.verify(token);
    return c === undefined ? undefined : this.#issue(c);
  }

  /** The user's credentials when the token is valid for them right now. */
  async verify(token: string): Promise<WebCredentials | undefined> {
    const m = /^(\d{1,15})\.(\d{1,15})\.([A-Za-z0-9_-]{22})$/.exec(token);
    if (m === null) return undefined;
    const userId = Number(m[1]);
    const expiresAt = Number(m[2]);
    if (expiresAt <= this.#now()) return undefined;
    const c = await this.#deps.findCredentials(`careflow_${userId}`);
    if (c === undefined || !c.enabled || c.userId !== userId || c.realm !== this.#deps.realm) return undefined;
    const want = this.#mac(userId, expiresAt, c.ha1Md5);
    const got = Buffer.from(m[3]!, 'base64url');
    return got.length === want.length && timingSafeEqual(got, want) ? c : undefined;
  }

  #issue(c: WebCredentials): SignedIn {
    const expiresAt = this.#now() + this.#deps.ttlMs;
    const mac = this.#mac(c.userId, expiresAt, c.ha1Md5).toString('base64url');
    return { userId: c.userId, sipUsername: c.sipUsername, ha1: c.ha1Md5, token: `${c.userId}.${expiresAt}.${mac}`, expiresAt };
  }

  #mac(userId: number, expiresAt: number, ha1: string): Buffer {
    return createHmac('sha256', this.#key).update(`web-session:${userId}:${expiresAt}:${ha1}`).digest().subarray(0, 16);
  }
}

/** Failed sign-ins per source address in a sliding window; bounded memory. */
export class LoginLimiter {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #failures = new Map<string, number[]>();

  constructor(opts: { maxFailures?: number; windowMs?: number; now?: () => number } = {}) {
    this.#max = opts.maxFailures ?? 10;
    this.#windowMs = opts.windowMs ?? 10 * 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Seconds to wait when `source` is blocked, else 0. */
  retryAfter(source: string): number {
    const list = this.#recent(source);
    if (list.length < this.#max) return 0;
    return Math.max(1, Math.ceil((list[0]! + this.#windowMs - this.#now()) / 1000));
  }

  fail(source: string): void {
    const list = this.#recent(source);
    list.push(this.#now());
    if (list.length > this.#max) list.shift();
    this.#failures.delete(source);
    this.#failures.set(source, list);
    // Bounded: forget the oldest sources first (Map keeps insertion order).
    if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value!);
  }

  succeed(source: string): void {
    this.#failures.delete(source);
  }

  #recent(source: string): number[] {
    const since = this.#now() - this.#windowMs;
    const list = (this.#failures.get(source) ?? []).filter((t) => t > since);
    return list;
  }
}

function md5(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

function safeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
