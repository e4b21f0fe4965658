// Header field values (RFC 3261 §20, §25.1): names and compact forms, comma-separated lists,
// Via, name-addr (From/To/Contact/Route/Record-Route), CSeq, generic parameters.
import { parseHostPort, parseUri, type SipUri, UriError } from './uri.ts';

export class HeaderError extends Error {
  readonly code = 'SIP_HEADER_INVALID';
}

/** RFC 3261 §7.3.3 compact forms (plus RFC 3515/3841/4028/3903 ones in common use). */
const COMPACT: Record<string, string> = {
  i: 'call-id', m: 'contact', e: 'content-encoding', l: 'content-length', c: 'content-type',
  f: 'from', s: 'subject', k: 'supported', t: 'to', v: 'via', o: 'event', r: 'refer-to',
  b: 'referred-by', u: 'allow-events', x: 'session-expires', j: 'reject-contact', a: 'accept-contact',
  d: 'request-disposition', y: 'identity', n: 'identity-info',
};

/** Canonical printable names used when we serialise a header we created. */
const PRINTABLE: Record<string, string> = {
  'call-id': 'Call-ID', cseq: 'CSeq', 'www-authenticate': 'WWW-Authenticate', 'mime-version': 'MIME-Version',
  'record-route': 'Record-Route', 'max-forwards': 'Max-Forwards', 'min-expires': 'Min-Expires',
};

const canonicalCache = new Map<string, string>();

/** Lower-cased long form of a header name (memoised: the same few names recur in every message). */
export function canonicalName(name: string): string {
  const known = canonicalCache.get(name);
  if (known !== undefined) return known;
  const lower = name.toLowerCase();
  const canonical = COMPACT[lower] ?? lower;
  // Bounded: header names are attacker-chosen. Only tokens are kept, so that a hit in
  // headerFieldName below also answers "is it a token".
  if (canonicalCache.size < 1024 && isToken(name)) canonicalCache.set(name, canonical);
  return canonical;
}

/** The canonical name of a header name as received, or undefined when it is not a token (§7.3.1). */
export function headerFieldName(raw: string): string | undefined {
  const known = canonicalCache.get(raw);
  if (known !== undefined) return known;
  return raw !== '' && isToken(raw) ? canonicalName(raw) : undefined;
}

const printableCache = new Map<string, string>();

export function printableName(canonical: string): string {
  const p = PRINTABLE[canonical] ?? printableCache.get(canonical);
  if (p !== undefined) return p;
  const made = canonical.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());
  // Bounded: header names are attacker-chosen.
  if (printableCache.size < 1024) printableCache.set(canonical, made);
  return made;
}

/**
 * Headers whose values may be combined into one comma-separated line (§7.3.1). Others
 * (WWW-Authenticate, Authorization, ..., Date) contain commas inside one value.
 */
const NOT_LISTS = new Set([
  'www-authenticate', 'authorization', 'proxy-authenticate', 'proxy-authorization', 'date',
  'call-id', 'cseq', 'from', 'to', 'content-length', 'content-type', 'max-forwards', 'subject',
  'user-agent', 'server', 'organization', 'retry-after', 'timestamp', 'expires', 'min-expires',
  'reply-to', 'priority', 'mime-version', 'content-disposition',
]);

export function isListHeader(canonical: string): boolean {
  return !NOT_LISTS.has(canonical);
}

/** Splits at commas outside quoted strings and <...> (§7.3.1). */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  let inQuote = false;
  let inAngle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c) i++; // quoted-pair
      else if (c === 0x22) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x3c) inAngle = true;
    else if (c === 0x3e) inAngle = false;
    else if (c === 0x2c && !inAngle) {
      out.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (inQuote) throw new HeaderError('unterminated quoted string');
  out.push(value.slice(start).trim());
  return out;
}

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

export type Params = Map<string, string | null>;

/** Parses `;name=value;flag` generic-params (§25.1); quoted values keep their quotes stripped. */
export function parseParams(s: string): Params {
  const params: Params = new Map();
  let i = 0;
  const n = s.length;
  while (i < n) {
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
    if (i >= n) break;
    if (s[i] !== ';') throw new HeaderError(`expected ';' in parameters at "${s.slice(i, i + 20)}"`);
    i++;
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
    let j = i;
    while (j < n && s[j] !== '=' && s[j] !== ';' && s[j] !== ' ' && s[j] !== '\t') j++;
    const name = s.slice(i, j);
    if (!isToken(name)) throw new HeaderError(`invalid parameter name "${name}"`);
    while (j < n && (s[j] === ' ' || s[j] === '\t')) j++;
    let value: string | null = null;
    if (s[j] === '=') {
      j++;
      while (j < n && (s[j] === ' ' || s[j] === '\t')) j++;
      if (s[j] === '"') {
        const end = findQuoteEnd(s, j);
        value = unquote(s.slice(j, end + 1));
        j = end + 1;
      } else {
        let k = j;
        while (k < n && s[k] !== ';' && s[k] !== ' ' && s[k] !== '\t') k++;
        value = s.slice(j, k);
        if (value === '') throw new HeaderError(`empty value for parameter "${name}"`);
        j = k;
      }
    }
    params.set(name.toLowerCase(), value);
    i = j;
  }
  return params;
}

export function formatParams(p: ReadonlyMap<string, string | null>): string {
  let s = '';
  for (const [k, v] of p) {
    if (v === null) s += `;${k}`;
    else s += /^[A-Za-z0-9\-.!%*_+`'~:[\]]*$/.test(v) && v !== '' ? `;${k}=${v}` : `;${k}=${quote(v)}`;
  }
  return s;
}

function findQuoteEnd(s: string, start: number): number {
  for (let i = start + 1; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') return i;
  }
  throw new HeaderError('unterminated quoted string');
}

export function unquote(q: string): string {
  return q.slice(1, -1).replace(/\\(.)/g, '$1');
}

export function quote(s: string): string {
  return `"${s.replace(/(["\\])/g, '\\$1')}"`;
}

// ---- Via (§20.42) -----------------------------------------------------------------------

export interface Via {
  /** e.g. `UDP`, upper-cased. */
  readonly transport: string;
  readonly host: string;
  readonly port: number | undefined;
  readonly params: Params;
  readonly branch: string | undefined;
}

export function parseVia(value: string): Via {
  const m = /^SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+/i.exec(value);
  if (m === null) throw new HeaderError('invalid Via sent-protocol');
  const rest = value.slice(m[0].length);
  const semi = rest.indexOf(';');
  // sent-by = host [ COLON port ]; LWS only around the colon (COLON = SWS ":" SWS), not inside
  // the host. split/trim rather than /\s*:\s*/g, which backtracks quadratically on long LWS.
  const rawSentBy = semi < 0 ? rest : rest.slice(0, semi);
  const sentBy = /\s/.test(rawSentBy) ? rawSentBy.split(':').map((p) => p.trim()).join(':') : rawSentBy;
  let hp;
  try {
    hp = parseHostPort(sentBy);
  } catch (e) {
    throw new HeaderError(`invalid Via sent-by: ${(e as Error).message}`);
  }
  const params = semi < 0 ? new Map<string, string | null>() : parseParams(rest.slice(semi));
  const branch = params.get('branch') ?? undefined;
  return { transport: m[1]!.toUpperCase(), host: hp.host, port: hp.port, params, branch };
}

// ---- name-addr / addr-spec (§20.10, §25.1) -------------------------------------------------

export interface NameAddr {
  readonly displayName: string | undefined;
  readonly uri: SipUri;
  /** The URI text as it appeared (for forwarding untouched). */
  readonly uriText: string;
  readonly params: ReadonlyMap<string, string | null>;
  /** Was the URI enclosed in <>? */
  readonly bracketed: boolean;
}

/**
 * Parses `["Display" | token LWS] <uri> *(;param)` or `addr-spec *(;param)`.
 * Without angle brackets, URI parameters become header parameters (§20.10), so a URI that
 * contains `,`, `;` or `?` must be bracketed.
 */
export function parseNameAddr(value: string): NameAddr {
  const v = value.trim();
  let displayName: string | undefined;
  let i = 0;
  if (v.startsWith('"')) {
    const end = findQuoteEnd(v, 0);
    displayName = unquote(v.slice(0, end + 1));
    i = end + 1;
  }
  const lt = v.indexOf('<', i);
  if (lt >= 0) {
    const before = v.slice(i, lt).trim();
    if (displayName === undefined && before !== '') {
      // Unquoted display name: *(token LWS) (§25.1); RFC 4475 §3.1.2.15 rejects ','.
      if (!before.split(/\s+/).every(isToken)) throw new HeaderError('invalid display name');
      displayName = before;
    } else if (displayName !== undefined && before !== '') throw new HeaderError('junk after display name');
    const gt = v.indexOf('>', lt);
    if (gt < 0) throw new HeaderError('missing >');
    const uriText = v.slice(lt + 1, gt);
    if (uriText !== uriText.trim()) throw new HeaderError('whitespace inside <addr-spec>');
    const uri = parseUriOrThrow(uriText);
    return { displayName, uri, uriText, params: parseParams(v.slice(gt + 1)), bracketed: true };
  }
  if (displayName !== undefined) throw new HeaderError('display name without <uri>');
  const semi = v.indexOf(';');
  const uriText = (semi < 0 ? v : v.slice(0, semi)).trimEnd();
  if (/[\s,?]/.test(uriText)) throw new HeaderError('addr-spec with reserved characters must be in < >');
  const uri = parseUriOrThrow(uriText);
  return { displayName: undefined, uri, uriText, params: semi < 0 ? new Map() : parseParams(v.slice(semi)), bracketed: false };
}

function parseUriOrThrow(text: string): SipUri {
  try {
    return parseUri(text);
  } catch (e) {
    if (e instanceof UriError) throw new HeaderError(e.message);
    throw e;
  }
}

export function formatNameAddr(na: { displayName?: string | undefined; uriText: string; params: ReadonlyMap<string, string | null> }): string {
  const dn = na.displayName !== undefined && na.displayName !== '' ? `${quote(na.displayName)} ` : '';
  return `${dn}<${na.uriText}>${formatParams(na.params)}`;
}

// ---- CSeq (§20.16) ---------------------------------------------------------------------

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

export function parseCSeq(value: string): CSeq {
  const m = /^(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)$/.exec(value.trim());
  if (m === null) throw new HeaderError('invalid CSeq');
  const seq = Number(m[1]);
  // §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned integer.
  if (seq > 0xffffffff) throw new HeaderError('CSeq number exceeds 2**32-1');
  return { seq, method: m[2]! };
}

/** Parses a decimal delta-seconds / count with a bound; returns undefined when invalid. */
export function parseUint(value: string, max: number): number | undefined {
  const t = value.trim();
  if (!/^\d{1,10}$/.test(t)) return undefined;
  const n = Number(t);
  return n <= max ? n : undefined;
}

/**
 * A copy of `s` that keeps nothing else alive. Strings cut out of a parsed message (a branch,
 * a host) are V8 slices of the whole header section, and strings built from them are chains of
 * such slices: a value kept for long (a transaction key for Timer J's 32 s, a binding for
 * hours) would keep the message's ~600 bytes with it. Short strings are copied by V8 anyway.
 */
export function detach(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

