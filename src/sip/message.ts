// The SIP message model (RFC 3261 §7). Headers are kept as received, one entry per header
// line, under their canonical lower-case long names; the few a hop needs (Via, CSeq, Call-ID,
// From, To) are parsed on first use and cached (lazy parsing, as Kamailio's parse_headers).
import {
  canonicalName, type CSeq, isListHeader, type NameAddr, parseCSeq, parseNameAddr, parseVia,
  printableName, splitList, type Via,
} from './headers.ts';
import { parseUri, type SipUri } from './uri.ts';

export interface HeaderField {
  /** canonical lower-case long name, e.g. `via`, `call-id`. */
  readonly name: string;
  value: string;
}

const CRLF = '\r\n';

export abstract class SipMessage {
  readonly headers: HeaderField[];
  body: Buffer;
  // Parsed forms of the headers a hop reads, computed on first use (plain fields, not a Map of
  // closures: every message on the hot path reads several of them).
  #via: Via | undefined;
  #callId: string | undefined;
  #cseq: CSeq | undefined;
  #from: NameAddr | undefined;
  #to: NameAddr | undefined;

  constructor(headers: HeaderField[], body: Buffer) {
    this.headers = headers;
    this.body = body;
  }

  abstract startLine(): string;

  /** The value of the first header line with this name (not split at commas). */
  get(name: string): string | undefined {
    const n = canonicalName(name);
    for (const h of this.headers) if (h.name === n) return h.value;
    return undefined;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Every individual value of a header, list headers split at commas (§7.3.1). */
  getAll(name: string): string[] {
    const n = canonicalName(name);
    const out: string[] = [];
    const list = isListHeader(n);
    for (const h of this.headers) {
      if (h.name !== n) continue;
      if (list) for (const v of splitList(h.value)) out.push(v);
      else out.push(h.value);
    }
    return out;
  }

  /** The first individual value of a list header (e.g. the top Via). */
  first(name: string): string | undefined {
    const n = canonicalName(name);
    for (const h of this.headers) {
      if (h.name !== n) continue;
      if (!isListHeader(n) || !h.value.includes(',')) return h.value;
      return splitList(h.value)[0];
    }
    return undefined;
  }

  set(name: string, value: string): void {
    const n = canonicalName(name);
    this.#invalidate(n);
    const i = this.headers.findIndex((h) => h.name === n);
    if (i < 0) this.headers.push({ name: n, value });
    else {
      this.headers[i] = { name: n, value };
      for (let j = this.headers.length - 1; j > i; j--) if (this.headers[j]!.name === n) this.headers.splice(j, 1);
    }
  }

  append(name: string, value: string): void {
    const n = canonicalName(name);
    this.#invalidate(n);
    this.headers.push({ name: n, value });
  }

  /** Inserts a header line before the first line of the same name (or at the top). */
  prepend(name: string, value: string): void {
    const n = canonicalName(name);
    this.#invalidate(n);
    const i = this.headers.findIndex((h) => h.name === n);
    this.headers.splice(i < 0 ? 0 : i, 0, { name: n, value });
  }

  remove(name: string): void {
    const n = canonicalName(name);
    this.#invalidate(n);
    for (let j = this.headers.length - 1; j >= 0; j--) if (this.headers[j]!.name === n) this.headers.splice(j, 1);
  }

  /** Removes the first individual value of a list header; returns it. */
  removeFirst(name: string): string | undefined {
    const n = canonicalName(name);
    this.#invalidate(n);
    const i = this.headers.findIndex((h) => h.name === n);
    if (i < 0) return undefined;
    const h = this.headers[i]!;
    const values = h.value.includes(',') ? splitList(h.value) : [h.value];
    const first = values.shift();
    if (values.length === 0) this.headers.splice(i, 1);
    else this.headers[i] = { name: n, value: values.join(', ') };
    return first;
  }

  /**
   * Replaces the first Via value with `text`, whose parsed form is `parsed` (the transport's
   * received/rport stamp, §18.2.1): the cache is updated instead of parsing the Via again.
   */
  replaceTopVia(text: string, parsed: Via): void {
    const i = this.headers.findIndex((h) => h.name === 'via');
    if (i < 0) return;
    const h = this.headers[i]!;
    const value = h.value.includes(',') ? [text, ...splitList(h.value).slice(1)].join(', ') : text;
    this.headers[i] = { name: 'via', value };
    this.#via = parsed;
  }

  /** Drops the parsed form of header `n` after a change to its lines. */
  #invalidate(n: string): void {
    if (n === 'via') this.#via = undefined;
    else if (n === 'call-id') this.#callId = undefined;
    else if (n === 'cseq') this.#cseq = undefined;
    else if (n === 'from') this.#from = undefined;
    else if (n === 'to') this.#to = undefined;
  }

  /** Top Via; throws HeaderError when missing or malformed. */
  get via(): Via {
    if (this.#via !== undefined) return this.#via;
    const v = this.first('via');
    if (v === undefined) throw new MissingHeaderError('Via');
    return (this.#via = parseVia(v));
  }

  get callId(): string {
    if (this.#callId !== undefined) return this.#callId;
    const v = this.get('call-id');
    if (v === undefined || v === '') throw new MissingHeaderError('Call-ID');
    return (this.#callId = v);
  }

  get cseq(): CSeq {
    if (this.#cseq !== undefined) return this.#cseq;
    const v = this.get('cseq');
    if (v === undefined) throw new MissingHeaderError('CSeq');
    return (this.#cseq = parseCSeq(v));
  }

  get from(): NameAddr {
    if (this.#from !== undefined) return this.#from;
    const v = this.get('from');
    if (v === undefined) throw new MissingHeaderError('From');
    return (this.#from = parseNameAddr(v));
  }

  get to(): NameAddr {
    if (this.#to !== undefined) return this.#to;
    const v = this.get('to');
    if (v === undefined) throw new MissingHeaderError('To');
    return (this.#to = parseNameAddr(v));
  }

  get fromTag(): string | undefined {
    return this.from.params.get('tag') ?? undefined;
  }

  get toTag(): string | undefined {
    return this.to.params.get('tag') ?? undefined;
  }

  /** Serialises with a recomputed Content-Length (§20.14; required on stream transports). */
  toBuffer(): Buffer {
    let head = this.startLine() + CRLF;
    for (const h of this.headers) {
      if (h.name === 'content-length') continue;
      head += printableName(h.name) + ': ' + h.value + CRLF;
    }
    head += 'Content-Length: ' + this.body.length + CRLF + CRLF;
    if (this.body.length === 0) return Buffer.from(head, 'utf8');
    return Buffer.concat([Buffer.from(head, 'utf8'), this.body]);
  }

  toString(): string {
    return this.toBuffer().toString('utf8');
  }
}

export class MissingHeaderError extends Error {
  readonly code = 'SIP_HEADER_MISSING';
  constructor(header: string) {
    super(`missing ${header} header`);
  }
}

export class SipRequest extends SipMessage {
  method: string;
  #uri: string;
  #requestUri: SipUri | undefined;

  constructor(method: string, uri: string, headers: HeaderField[] = [], body: Buffer = EMPTY) {
    super(headers, body);
    this.method = method;
    this.#uri = uri;
  }

  /** Request-URI as text. */
  get uri(): string {
    return this.#uri;
  }

  set uri(text: string) {
    this.#uri = text;
    this.#requestUri = undefined;
  }

  /** The Request-URI parsed, once (the parser, the router and the registrar all read it); throws UriError. */
  get requestUri(): SipUri {
    return (this.#requestUri ??= parseUri(this.#uri));
  }

  override startLine(): string {
    return `${this.method} ${this.uri} SIP/2.0`;
  }

  clone(): SipRequest {
    return new SipRequest(this.method, this.uri, this.headers.map((h) => ({ ...h })), this.body);
  }
}

export class SipResponse extends SipMessage {
  status: number;
  reason: string;

  constructor(status: number, reason: string, headers: HeaderField[] = [], body: Buffer = EMPTY) {
    super(headers, body);
    this.status = status;
    this.reason = reason;
  }

  override startLine(): string {
    return `SIP/2.0 ${this.status} ${this.reason}`;
  }

  clone(): SipResponse {
    return new SipResponse(this.status, this.reason, this.headers.map((h) => ({ ...h })), this.body);
  }
}

export const EMPTY = Buffer.alloc(0);

export function isRequest(m: SipMessage): m is SipRequest {
  return m instanceof SipRequest;
}

/** Default reason phrases (§21). */
export const REASONS: Readonly<Record<number, string>> = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued', 183: 'Session Progress',
  200: 'OK', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 407: 'Proxy Authentication Required',
  408: 'Request Timeout', 410: 'Gone', 413: 'Request Entity Too Large', 414: 'Request-URI Too Long',
  415: 'Unsupported Media Type', 416: 'Unsupported URI Scheme', 420: 'Bad Extension',
  421: 'Extension Required', 423: 'Interval Too Brief', 480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops',
  484: 'Address Incomplete', 485: 'Ambiguous', 486: 'Busy Here', 487: 'Request Terminated',
  488: 'Not Acceptable Here', 491: 'Request Pending', 500: 'Server Internal Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Server Time-out',
  505: 'Version Not Supported', 513: 'Message Too Large', 600: 'Busy Everywhere', 603: 'Decline',
  604: 'Does Not Exist Anywhere', 606: 'Not Acceptable',
};

/**
 * Builds a response to a request (§8.2.6.2): copies Via (all, in order), From, To, Call-ID
 * and CSeq; adds a To tag when given and the To has none.
 */
export function createResponse(req: SipRequest, status: number, reason?: string, toTag?: string): SipResponse {
  const headers: HeaderField[] = [];
  for (const h of req.headers) {
    if (h.name === 'via' || h.name === 'from' || h.name === 'call-id' || h.name === 'cseq') headers.push({ ...h });
    else if (h.name === 'to') {
      let value = h.value;
      if (toTag !== undefined && status > 100 && !hasTag(req)) value += `;tag=${toTag}`;
      headers.push({ name: 'to', value });
    }
  }
  // §8.2.6.1: a 100 Trying copies Timestamp.
  if (status === 100) {
    const ts = req.get('timestamp');
    if (ts !== undefined) headers.push({ name: 'timestamp', value: ts });
  }
  return new SipResponse(status, reason ?? REASONS[status] ?? 'Unknown', headers);
}

function hasTag(req: SipRequest): boolean {
  try {
    return req.toTag !== undefined;
  } catch {
    return /;\s*tag\s*=/i.test(req.get('to') ?? '');
  }
}
