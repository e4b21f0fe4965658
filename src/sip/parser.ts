// Parsing SIP messages from bytes (RFC 3261 §7, §18.3, §25) with size and count limits.
//
//   generic-message = start-line *message-header CRLF [ message-body ]
//   Request-Line    = Method SP Request-URI SP SIP-Version CRLF
//   Status-Line     = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//
// The parser splits the header section into lines (unfolding §7.3.1 continuation lines) and
// validates what every hop depends on: the start line, the mandatory headers, single-valued
// headers, the top Via, From, To, CSeq and Content-Length. Everything else is parsed lazily.
import { canonicalName, HeaderError, isToken, parseNameAddr, parseUint, parseVia } from './headers.ts';
import { type HeaderField, SipRequest, SipResponse, type SipMessage } from './message.ts';
import { parseUri, UriError } from './uri.ts';

export interface ParseLimits {
  /** Largest message accepted, header section plus body (bytes). */
  readonly maxMessageBytes: number;
  readonly maxHeaders: number;
  readonly maxHeaderLineBytes: number;
  readonly maxUriBytes: number;
}

export const DEFAULT_LIMITS: ParseLimits = {
  maxMessageBytes: 65535,
  maxHeaders: 256,
  maxHeaderLineBytes: 16384,
  maxUriBytes: 4096,
};

/**
 * A message that could not be accepted. `status` is the response to send for a request
 * (400, 413, 505...) when `message` holds enough headers to build one; responses are dropped.
 */
export class SipParseError extends Error {
  readonly code = 'SIP_PARSE_ERROR';
  readonly status: number;
  /** The request as far as it was parsed, for a stateless error response; may be undefined. */
  readonly request: SipRequest | undefined;
  constructor(status: number, reason: string, request?: SipRequest) {
    super(reason);
    this.status = status;
    this.request = request;
  }
}

const SINGLE_VALUED = ['call-id', 'cseq', 'from', 'to', 'max-forwards', 'content-length', 'content-type', 'expires'];
const MANDATORY = ['via', 'from', 'to', 'call-id', 'cseq'];
const CRLFCRLF = Buffer.from('\r\n\r\n');
const LFLF = Buffer.from('\n\n');

/** Where the header section of `buf` ends: index of the first body byte, or -1. */
export function findHeaderEnd(buf: Buffer, from = 0): number {
  // The earliest terminator wins: a bare-LF header section followed by bytes holding a CRLFCRLF
  // (a body, or the next message on a stream) ends at its own LFLF.
  const i = buf.indexOf(CRLFCRLF, from);
  const j = buf.indexOf(LFLF, from);
  if (j >= 0 && (i < 0 || j < i)) return j + 2;
  return i >= 0 ? i + 4 : -1;
}

/** Skips CRLFs that precede a start line (§7.5: implementations SHOULD ignore them). */
export function skipLeadingCrlf(buf: Buffer, from = 0): number {
  let i = from;
  while (i < buf.length && (buf[i] === 0x0d || buf[i] === 0x0a)) i++;
  return i;
}

/**
 * Parses one datagram (§18.3): the body is Content-Length octets (extra octets are discarded);
 * without Content-Length it is the rest of the datagram; a Content-Length larger than what
 * arrived is an error (400).
 */
export function parseDatagram(buf: Buffer, limits: ParseLimits = DEFAULT_LIMITS): SipMessage {
  if (buf.length > limits.maxMessageBytes) throw new SipParseError(413, 'Message Too Large');
  const start = skipLeadingCrlf(buf);
  let headEnd = findHeaderEnd(buf, start);
  // A datagram whose header section lacks the closing empty line (RFC 4475 §3.1.2.15 baddn)
  // is read to its end, so the real fault can be answered.
  if (headEnd < 0) headEnd = buf.length;
  const msg = parseHead(buf.toString('utf8', start, headEnd), limits);
  const cl = contentLength(msg);
  const available = buf.length - headEnd;
  if (cl === undefined) msg.body = buf.subarray(headEnd);
  else if (cl > available) throw fail(msg, 400, 'Content-Length larger than message');
  else msg.body = buf.subarray(headEnd, headEnd + cl);
  return msg;
}

/** Content-Length value: undefined when absent; throws 400 when malformed (§20.14, RFC 4475 §3.1.2.3). */
export function contentLength(msg: SipMessage): number | undefined {
  const v = msg.get('content-length');
  if (v === undefined) return undefined;
  const n = parseUint(v, 0x7fffffff);
  if (n === undefined) throw fail(msg, 400, 'Invalid Content-Length');
  return n;
}

function fail(msg: SipMessage | undefined, status: number, reason: string): SipParseError {
  return new SipParseError(status, reason, msg instanceof SipRequest ? msg : undefined);
}

/** Parses a complete header section (start line to the empty line) into a validated message. */
export function parseHead(head: string, limits: ParseLimits = DEFAULT_LIMITS): SipMessage {
  const lines = head.split(/\r?\n/);
  const startLine = lines[0] ?? '';
  const headers: HeaderField[] = [];
  let current: { name: string; value: string } | undefined;
  const headerErrors: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    if (line.length > limits.maxHeaderLineBytes) throw new SipParseError(400, 'Header line too long');
    const c = line.charCodeAt(0);
    if (c === 0x20 || c === 0x09) {
      // §7.3.1: a line starting with whitespace continues the previous header field.
      if (current === undefined) throw new SipParseError(400, 'Continuation line without header');
      // Folding is one SP: an empty first line or a blank continuation adds no stray space.
      const more = line.trim();
      if (more !== '') current.value = current.value === '' ? more : `${current.value} ${more}`;
      // The limit is on the unfolded header, which is what gets serialised again.
      if (current.value.length > limits.maxHeaderLineBytes) throw new SipParseError(400, 'Header line too long');
      continue;
    }
    const colon = line.indexOf(':');
    const rawName = colon < 0 ? '' : line.slice(0, colon).trimEnd();
    if (colon <= 0 || !isToken(rawName)) {
      headerErrors.push(`malformed header line "${line.slice(0, 40)}"`);
      current = undefined;
      continue;
    }
    current = { name: canonicalName(rawName), value: line.slice(colon + 1).trim() };
    headers.push(current);
    if (headers.length > limits.maxHeaders) throw new SipParseError(400, 'Too many headers');
  }
  const msg = parseStartLine(startLine, headers, limits);
  if (headerErrors.length > 0) throw fail(msg, 400, headerErrors[0]!);
  validate(msg);
  return msg;
}

const METHOD = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

function parseStartLine(line: string, headers: HeaderField[], limits: ParseLimits): SipMessage {
  if (line.startsWith('SIP/')) {
    // Status-Line; reason phrase may be empty (RFC 4475 §3.1.1.13) and contain UTF-8.
    const m = /^SIP\/(\d+\.\d+) (\d{3})(?: (.*))?$/.exec(line);
    if (m === null) throw new SipParseError(400, 'Malformed Status-Line');
    if (m[1] !== '2.0') throw new SipParseError(505, 'Version Not Supported');
    const status = Number(m[2]);
    // §7.2 / §21: status codes are 100-699.
    if (status < 100 || status > 699) throw new SipParseError(400, 'Invalid status code');
    return new SipResponse(status, m[3] ?? '', headers);
  }
  const sp1 = line.indexOf(' ');
  const sp2 = line.lastIndexOf(' ');
  if (sp1 <= 0 || sp2 === sp1) throw new SipParseError(400, 'Malformed Request-Line');
  const method = line.slice(0, sp1);
  const uri = line.slice(sp1 + 1, sp2);
  const version = line.slice(sp2 + 1);
  const req = new SipRequest(method, uri, headers);
  if (!METHOD.test(method)) throw fail(req, 400, 'Invalid method');
  // RFC 4475 §3.1.2.9/10/16: exactly one SP between elements; the version must be SIP/2.0.
  if (/^SIP\/\d+\.\d+$/.test(version) && version !== 'SIP/2.0') throw fail(req, 505, 'Version Not Supported');
  if (version !== 'SIP/2.0') throw fail(req, 400, 'Malformed Request-Line');
  if (uri.length > limits.maxUriBytes) throw fail(req, 414, 'Request-URI Too Long');
  if (uri === '' || /[\s<>]/.test(uri)) throw fail(req, 400, 'Malformed Request-URI');
  try {
    parseUri(uri);
  } catch (e) {
    if (e instanceof UriError) throw fail(req, 400, `Malformed Request-URI: ${e.message}`);
    throw e;
  }
  return req;
}

function validate(msg: SipMessage): void {
  // One pass over the header lines: presence of the mandatory ones, count of single-valued ones.
  const counts = new Map<string, number>();
  for (const h of msg.headers) counts.set(h.name, (counts.get(h.name) ?? 0) + 1);
  for (const name of MANDATORY) {
    if (!counts.has(name)) throw fail(msg, 400, `Missing ${name} header`);
  }
  for (const name of SINGLE_VALUED) {
    if ((counts.get(name) ?? 0) > 1) throw fail(msg, 400, `Multiple ${name} headers`);
  }
  try {
    // Every Via value must parse (RFC 4475 §3.1.2.1); responses are routed by them. The top
    // Via, From, To and CSeq are parsed through the message's cached accessors: a hop that
    // reads them later does not parse them again.
    void msg.via;
    const vias = (counts.get('via') ?? 0) > 1 || msg.get('via')!.includes(',') ? msg.getAll('via') : [];
    for (let i = 1; i < vias.length; i++) parseVia(vias[i]!);
    void msg.from;
    void msg.to;
    const cseq = msg.cseq;
    // §8.1.1.7 / RFC 4475 §3.1.2.17: the CSeq method must match the request method.
    if (msg instanceof SipRequest && cseq.method !== msg.method) throw new HeaderError('CSeq method does not match');
    const mf = msg.get('max-forwards');
    if (mf !== undefined && parseUint(mf, 255) === undefined) throw new HeaderError('Invalid Max-Forwards');
    const exp = msg.get('expires');
    if (exp !== undefined && parseUint(exp, 0xffffffff) === undefined) throw new HeaderError('Invalid Expires');
    for (const c of msg.getAll('contact')) {
      if (c !== '*') parseNameAddr(c);
    }
  } catch (e) {
    if (e instanceof HeaderError || e instanceof UriError) throw fail(msg, 400, e.message);
    throw e;
  }
  // Not msg.callId: that getter throws MissingHeaderError for an empty value.
  if (msg.get('call-id') === '') throw fail(msg, 400, 'Empty Call-ID');
}
