// Helpers of the registrar (RFC 3261 §10.3): delta-seconds and q-value formats, the URI
// normalisation that keys bindings (§19.1.4), Contact parameters echoed verbatim (RFC 4475
// cparam01/02), and building lean Binding records (the location service holds 100,000s).
import { detach as flat } from '../sip/headers.ts';
import type { SipRequest } from '../sip/message.ts';
import type { SipUri } from '../sip/uri.ts';
import type { Binding, Flow } from './location.ts';

const MAX_DELTA = 0xffffffff;
const COMPARED_PARAMS = ['maddr', 'method', 'transport', 'ttl', 'user'] as const;

/** delta-seconds (§20.19/§10.2.1.1): above 2**32-1 treated as 2**32-1, malformed as 3600. */
export function parseDelta(v: string): number {
  const t = v.trim();
  if (!/^\d+$/.test(t)) return 3600;
  return Math.min(Number(t), MAX_DELTA);
}

export function hasOptionTag(req: SipRequest, tag: string): boolean {
  for (const v of req.getAll('supported')) if (v.trim().toLowerCase() === tag) return true;
  return false;
}

export function formatQ(q: number): string {
  return String(Math.round(q * 1000) / 1000);
}

/** URI reduced to the parts RFC 3261 §19.1.4 compares whenever present in either URI. */
export function normaliseUri(u: SipUri): string {
  let s = `${u.scheme}:`;
  if (u.user !== undefined) s += `${unescape(u.user)}${u.password !== undefined ? `:${u.password}` : ''}@`;
  s += u.host.includes(':') ? `[${u.host}]` : u.host;
  if (u.port !== undefined) s += `:${u.port}`;
  for (const name of COMPARED_PARAMS) {
    const v = u.params.get(name);
    if (v !== undefined) s += `;${name}=${unescape(v ?? '').toLowerCase()}`;
  }
  if (u.headers.length > 0) {
    s += '?' + u.headers.map(([k, v]) => `${k.toLowerCase()}=${unescape(v)}`).sort().join('&');
  }
  return s;
}

/**
 * The header parameters of one Contact value exactly as received, minus expires and q
 * (re-added by the registrar): RFC 4475 §3.3.13 (cparam01) keeps unknown params as sent.
 */
export function rawParamsWithout(value: string): string {
  const v = value.trim();
  let i = 0;
  if (v.startsWith('"')) {
    i = 1;
    while (i < v.length && v[i] !== '"') i += v[i] === '\\' ? 2 : 1;
  }
  const lt = v.indexOf('<', i);
  let start: number;
  if (lt >= 0) {
    const gt = v.indexOf('>', lt);
    start = gt < 0 ? v.length : gt + 1;
  } else {
    const semi = v.indexOf(';');
    start = semi < 0 ? v.length : semi;
  }
  let out = '';
  let j = start;
  while (j < v.length) {
    // one ";param[=value]" (quoted values may contain ';')
    let k = j + 1;
    let inQuote = false;
    while (k < v.length) {
      const c = v[k];
      if (inQuote) {
        if (c === '\\') k++;
        else if (c === '"') inQuote = false;
      } else if (c === '"') inQuote = true;
      else if (c === ';') break;
      k++;
    }
    const part = v.slice(j, k).trim();
    const name = part.slice(1).split('=')[0]!.trim().toLowerCase();
    if (part !== '' && part !== ';' && name !== 'expires' && name !== 'q') out += part.replace(/\s*=\s*/, '=').replace(/^;\s*/, ';');
    j = k;
  }
  return out;
}

export interface BindingFields {
  aor: string; key: string; contact: string; params: string; q: number; expiresAt: number;
  callId: string; cseq: number; instance: string | undefined; regId: number | undefined;
  path: string[]; userAgent: string | undefined; flow: Flow; updatedAt: number;
}

/**
 * Builds a lean Binding. Strings equal to the previous binding's are reused, new ones are
 * copied flat: a substring of the parsed message would keep the whole message alive.
 */
export function makeBinding(prev: Binding | undefined, f: BindingFields): Binding {
  const b: {
    -readonly [K in keyof Binding]: Binding[K];
  } = {
    aor: prev?.aor ?? f.aor,
    key: prev?.key === f.key ? prev.key : flat(f.key),
    contact: prev?.contact === f.contact ? prev.contact : flat(f.contact),
    params: prev?.params === f.params ? prev.params : flat(f.params),
    q: f.q,
    expiresAt: f.expiresAt,
    callId: prev?.callId === f.callId ? prev.callId : flat(f.callId),
    cseq: f.cseq,
    flow: prev !== undefined && sameFlow(prev.flow, f.flow) ? prev.flow : copyFlow(f.flow),
    updatedAt: f.updatedAt,
  };
  if (f.instance !== undefined) b.instance = prev?.instance === f.instance ? prev.instance : flat(f.instance);
  if (f.regId !== undefined) b.regId = f.regId;
  if (f.path.length > 0) b.path = f.path.map(flat);
  if (f.userAgent !== undefined) b.userAgent = prev?.userAgent === f.userAgent ? prev.userAgent : flat(f.userAgent);
  return b;
}


function sameFlow(a: Flow, b: Flow): boolean {
  return a.transport === b.transport && a.remoteAddress === b.remoteAddress && a.remotePort === b.remotePort
    && a.localAddress === b.localAddress && a.localPort === b.localPort && a.connectionId === b.connectionId;
}

function copyFlow(f: Flow): Flow {
  const c: { -readonly [K in keyof Flow]: Flow[K] } = { transport: f.transport, remoteAddress: flat(f.remoteAddress), remotePort: f.remotePort };
  if (f.localAddress !== undefined) c.localAddress = f.localAddress;
  if (f.localPort !== undefined) c.localPort = f.localPort;
  if (f.connectionId !== undefined) c.connectionId = f.connectionId;
  return c;
}
