// SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) with the comparison rules of §19.1.4.
//
//   SIP-URI  = "sip:"  [ userinfo ] hostport uri-parameters [ headers ]
//   SIPS-URI = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
//   userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//   hostport = host [ ":" port ]
//   host     = hostname / IPv4address / IPv6reference
//
// Values are kept as they appeared (escaped); `unescape` is applied only where a comparison
// needs it (§19.1.4: "characters other than those in the reserved set are equivalent to their
// %HEX HEX encoding").

/** `sip`, `sips`, `tel`, or any other absoluteURI scheme (kept opaque, RFC 3261 §19.1.1 note). */
export type UriScheme = string;

export interface SipUri {
  readonly scheme: UriScheme;
  /** user part, still %-escaped; undefined when there is no userinfo. For tel: the number. */
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** host without brackets for IPv6 (e.g. `2001:db8::1`); lower-cased. Empty for tel. */
  readonly host: string;
  readonly port: number | undefined;
  /** uri-parameters: lower-cased name -> value (null for a flag parameter like `lr`). */
  readonly params: ReadonlyMap<string, string | null>;
  /** `?` headers, still escaped, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Everything after `scheme:` for schemes other than sip/sips/tel. */
  readonly opaque?: string;
}

export function isSipUri(u: SipUri): boolean {
  return u.scheme === 'sip' || u.scheme === 'sips';
}

export class UriError extends Error {
  readonly code = 'SIP_URI_INVALID';
}

const HEX = /^[0-9a-fA-F]{2}$/;
// RFC 3261 §25.1 unreserved / user-unreserved / param-unreserved characters plus escapes.
const USER_CHARS = /^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9a-fA-F]{2})+$/;
const PASSWORD_CHARS = /^(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9a-fA-F]{2})*$/;
const HOSTNAME = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?$/;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const PARAM_CHARS = /^(?:[A-Za-z0-9\-_.!~*'()[\]/:&+$]|%[0-9a-fA-F]{2})+$/;

export function isIPv4(host: string): boolean {
  return IPV4.test(host);
}

/**
 * IPv6 address check. Accepts the RFC 5118 §4.10 "3 colons before an embedded IPv4" form
 * (`2001:db8:::192.0.2.1`) for robustness, as that RFC asks of receivers.
 */
export function isIPv6(host: string): boolean {
  if (host.length < 2 || host.length > 60 || !/^[0-9A-Fa-f:.]+$/.test(host)) return false;
  let h = host.replace(':::', '::');
  let groupsNeeded = 8;
  const lastColon = h.lastIndexOf(':');
  const tail = h.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (!IPV4.test(tail)) return false;
    h = h.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = h.indexOf('::');
  if (dbl !== h.lastIndexOf('::')) return false;
  // A single leading or trailing ':' is never valid (`:1::2`, `1::2:`).
  if ((h.startsWith(':') && !h.startsWith('::')) || (h.endsWith(':') && !h.endsWith('::'))) return false;
  const parts = h.split(':');
  if (dbl >= 0) {
    const nonEmpty = parts.filter((p) => p !== '');
    if (nonEmpty.length > groupsNeeded - 1) return false;
    return nonEmpty.every((p) => /^[0-9A-Fa-f]{1,4}$/.test(p));
  }
  return parts.length === groupsNeeded && parts.every((p) => /^[0-9A-Fa-f]{1,4}$/.test(p));
}

function parseParams(s: string, into: Map<string, string | null>): void {
  // Called with the text after a ';', so '' is an empty parameter (`sip:host;`): pname is 1*paramchar.
  for (const part of s.split(';')) {
    if (part === '') throw new UriError('empty URI parameter');
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? null : part.slice(eq + 1);
    if (!PARAM_CHARS.test(name) || (value !== null && value !== '' && !PARAM_CHARS.test(value))) {
      throw new UriError(`invalid URI parameter "${part}"`);
    }
    into.set(name.toLowerCase(), value);
  }
}

/** Parses host[:port], with IPv6 references in brackets (RFC 3261 §25.1, RFC 5118 §4.2-4.4). */
export function parseHostPort(s: string): { host: string; port: number | undefined } {
  let host: string;
  let rest: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw new UriError('unterminated IPv6 reference');
    host = s.slice(1, close);
    if (!isIPv6(host)) throw new UriError(`invalid IPv6 address "${host}"`);
    rest = s.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new UriError('junk after IPv6 reference');
  } else {
    const colon = s.indexOf(':');
    host = colon < 0 ? s : s.slice(0, colon);
    rest = colon < 0 ? '' : s.slice(colon);
    // RFC 5118 §4.2: an IPv6 address must be enclosed in brackets.
    if (rest.indexOf(':', 1) >= 0) throw new UriError('IPv6 address without [ ]');
    if (!IPV4.test(host) && !HOSTNAME.test(host)) throw new UriError(`invalid host "${host}"`);
  }
  let port: number | undefined;
  if (rest !== '') {
    const p = rest.slice(1);
    if (!/^\d{1,5}$/.test(p) || Number(p) > 65535) throw new UriError(`invalid port "${p}"`);
    port = Number(p);
  }
  return { host: host.toLowerCase(), port };
}

/** Shared by every URI without parameters or headers: SipUri's params and headers are read-only types. */
const NO_PARAMS: ReadonlyMap<string, string | null> = new Map<string, string | null>();
const NO_HEADERS: ReadonlyArray<readonly [string, string]> = Object.freeze([]);

export function parseUri(input: string): SipUri {
  const colon = input.indexOf(':');
  if (colon <= 0) throw new UriError('URI without scheme');
  const scheme = input.slice(0, colon).toLowerCase();
  const rest = input.slice(colon + 1);
  if (/[\s<>"]/.test(input)) throw new UriError('whitespace or delimiter inside URI');
  if (scheme === 'tel') return parseTel(rest);
  if (scheme !== 'sip' && scheme !== 'sips') {
    // absoluteURI (§25.1): accepted syntactically; the application answers 416 (§8.2.2.1).
    if (!/^[a-z][a-z0-9+.-]*$/.test(scheme) || rest === '') throw new UriError('invalid absolute URI');
    return { scheme, user: undefined, password: undefined, host: '', port: undefined, params: new Map(), headers: [], opaque: rest };
  }
  // The user part may contain ';' and '?' (RFC 4475 §3.1.1.2, §3.1.1.9) but never a raw '@'
  // (nor may the host or a header value), so the first '@' ends the userinfo.
  const at0 = rest.indexOf('@');
  let headersPart = '';
  let main = rest;
  const q = rest.indexOf('?', at0 < 0 ? 0 : at0);
  if (q >= 0) {
    headersPart = rest.slice(q + 1);
    main = rest.slice(0, q);
  }
  const at = at0 < 0 || at0 >= main.length ? -1 : at0;
  let user: string | undefined;
  let password: string | undefined;
  let hostAndParams = main;
  if (at >= 0) {
    const userinfo = main.slice(0, at);
    hostAndParams = main.slice(at + 1);
    const pc = userinfo.indexOf(':');
    user = pc < 0 ? userinfo : userinfo.slice(0, pc);
    password = pc < 0 ? undefined : userinfo.slice(pc + 1);
    if (user === '' || !USER_CHARS.test(user)) throw new UriError('invalid user part');
    if (password !== undefined && !PASSWORD_CHARS.test(password)) throw new UriError('invalid password');
  }
  const semi = hostAndParams.indexOf(';');
  const hostport = semi < 0 ? hostAndParams : hostAndParams.slice(0, semi);
  const { host, port } = parseHostPort(hostport);
  let params: ReadonlyMap<string, string | null> = NO_PARAMS;
  if (semi >= 0) {
    const m = new Map<string, string | null>();
    parseParams(hostAndParams.slice(semi + 1), m);
    params = m;
  }
  let headers: ReadonlyArray<readonly [string, string]> = NO_HEADERS;
  if (headersPart !== '') {
    const list: Array<[string, string]> = [];
    headers = list;
    for (const h of headersPart.split('&')) {
      const eq = h.indexOf('=');
      if (eq <= 0) throw new UriError('invalid URI header');
      list.push([h.slice(0, eq), h.slice(eq + 1)]);
    }
  }
  return { scheme, user, password, host, port, params, headers };
}

function parseTel(rest: string): SipUri {
  const semi = rest.indexOf(';');
  const number = semi < 0 ? rest : rest.slice(0, semi);
  if (!/^\+?[0-9A-Fa-f*#\-.()pw]+$/.test(number)) throw new UriError('invalid telephone-subscriber');
  const params = new Map<string, string | null>();
  if (semi >= 0) parseParams(rest.slice(semi + 1), params);
  return { scheme: 'tel', user: number, password: undefined, host: '', port: undefined, params, headers: [] };
}

export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export function formatUri(u: SipUri): string {
  if (u.opaque !== undefined) return `${u.scheme}:${u.opaque}`;
  if (u.scheme === 'tel') return `tel:${u.user ?? ''}${formatParams(u.params)}`;
  let s = `${u.scheme}:`;
  if (u.user !== undefined) s += u.password !== undefined ? `${u.user}:${u.password}@` : `${u.user}@`;
  s += formatHost(u.host);
  if (u.port !== undefined) s += `:${u.port}`;
  s += formatParams(u.params);
  if (u.headers.length > 0) s += '?' + u.headers.map(([k, v]) => `${k}=${v}`).join('&');
  return s;
}

function formatParams(p: ReadonlyMap<string, string | null>): string {
  let s = '';
  for (const [k, v] of p) s += v === null ? `;${k}` : `;${k}=${v}`;
  return s;
}

/** Decodes %HEX escapes; a malformed escape is kept literally (RFC 4475 §3.1.1.5). */
export function unescape(s: string): string {
  if (!s.includes('%')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    const hex = s.slice(i + 1, i + 3);
    if (c === '%' && HEX.test(hex)) {
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else out += c;
  }
  return out;
}

const COMPARED_IF_EITHER = ['user', 'ttl', 'method', 'maddr'] as const;

/**
 * URI equality, RFC 3261 §19.1.4: scheme, userinfo (case-sensitive, unescaped), host
 * (case-insensitive), port (absent != 5060), the user/ttl/method/maddr/transport parameters
 * when present in either, other parameters only when present in both, headers all.
 */
export function uriEquals(a: SipUri, b: SipUri): boolean {
  if (a.scheme !== b.scheme) return false;
  if (a.opaque !== undefined || b.opaque !== undefined) return a.opaque === b.opaque;
  if (a.scheme === 'tel') {
    return (a.user ?? '').replace(/[-.()]/g, '') === (b.user ?? '').replace(/[-.()]/g, '');
  }
  if ((a.user === undefined) !== (b.user === undefined)) return false;
  if (a.user !== undefined && unescape(a.user) !== unescape(b.user!)) return false;
  if ((a.password ?? '') !== (b.password ?? '')) return false;
  if (a.host !== b.host || a.port !== b.port) return false;
  for (const name of [...COMPARED_IF_EITHER, 'transport']) {
    const av = a.params.get(name);
    const bv = b.params.get(name);
    if (av === undefined && bv === undefined) continue;
    if (av === undefined || bv === undefined) return false;
    if (unescape(av ?? '').toLowerCase() !== unescape(bv ?? '').toLowerCase()) return false;
  }
  for (const [name, av] of a.params) {
    if (!b.params.has(name)) continue;
    const bv = b.params.get(name);
    if (unescape(av ?? '').toLowerCase() !== unescape(bv ?? '').toLowerCase()) return false;
  }
  if (a.headers.length !== b.headers.length) return false;
  const bh = new Map(b.headers.map(([k, v]) => [k.toLowerCase(), unescape(v)]));
  return a.headers.every(([k, v]) => bh.get(k.toLowerCase()) === unescape(v));
}
