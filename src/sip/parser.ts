// Parsing SIP messages from bytes (RFC 3261 §7, §18.3, §25) with size and count limits.
//
//   generic-message = start-line *message-header CRLF [ message-body ]
//   Request-Line    = Method SP Request-URI SP SIP-Version CRLF
//   Status-Line     = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//
// The parser splits the header section into lines (unfolding §7.3.1 continuation lines) and
// validates what every hop depends on: the start line, the mandatory headers, single-valued
// headers, the top Via, From, To, CSeq and Content-Length. Everything else is parsed lazily.
import { HeaderError, headerFieldName, parseNameAddr, parseUint, parseVia } from './headers.ts';
import { type HeaderField, SipRequest, SipResponse, type SipMessage } from './message.ts';
import { UriError } from './uri.ts';

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
  const headers: HeaderField[] = [];
  let current: { name: string; value: string } | undefined;
  let firstError: string | undefined;
  // Lines end at LF or CRLF (a lone CR stays in the line), as head.split(/\r?\n/) would cut them.
  let eol = head.indexOf('\n');
  const startLine = eol < 0 ? head : head.slice(0, eol > 0 && head.charCodeAt(eol - 1) === 0x0d ? eol - 1 : eol);
  let pos = eol < 0 ? head.length : eol + 1;
  while (pos < head.length) {
    eol = head.indexOf('\n', pos);
    const next = eol < 0 ? head.length : eol + 1;
    const end = eol < 0 ? head.length : eol > pos && head.charCodeAt(eol - 1) === 0x0d ? eol - 1 : eol;
    const start = pos;
    pos = next;
    if (end === start) continue;
    if (end - start > limits.maxHeaderLineBytes) throw new SipParseError(400, 'Header line too long');
    const c = head.charCodeAt(start);
    if (c === 0x20 || c === 0x09) {
      // §7.3.1: a line starting with whitespace continues the previous header field.
      if (current === undefined) throw new SipParseError(400, 'Continuation line without header');
      // Folding is one SP: an empty first line or a blank continuation adds no stray space.
      const more = head.slice(start, end).trim();
      if (more !== '') current.value = current.value === '' ? more : `${current.value} ${more}`;
      // The limit is on the unfolded header, which is what gets serialised again.
      if (current.value.length > limits.maxHeaderLineBytes) throw new SipParseError(400, 'Header line too long');
      continue;
    }
    // The colon is looked for in this line only: a search to the next colon anywhere would make a
    // datagram of many colon-less lines cost O(n^2).
    let colon = start;
    while (colon < end && head.charCodeAt(colon) !== 0x3a) colon++;
    const name = colon === end ? undefined : headerFieldName(head.slice(start, colon).trimEnd());
    if (name === undefined) {
      firstError ??= `malformed header line "${head.slice(start, Math.min(end, start + 40))}"`;
      current = undefined;
      continue;
    }
    current = { name, value: headerValue(head, colon + 1, end) };
    headers.push(current);
    if (headers.length > limits.maxHeaders) throw new SipParseError(400, 'Too many headers');
  }
  const msg = parseStartLine(startLine, headers, limits);
  if (firstError !== undefined) throw fail(msg, 400, firstError);
  validate(msg);
  return msg;
}

/** head[from, end) without leading and trailing whitespace, cut once in the usual "Name: value" case. */
function headerValue(head: string, from: number, end: number): string {
  // Fast path: one SP after the colon and printable ASCII at both ends; anything else is
  // String.prototype.trim's job (it also strips Unicode spaces).
  if (end - from >= 2 && head.charCodeAt(from) === 0x20) {
    const a = head.charCodeAt(from + 1);
    const z = head.charCodeAt(end - 1);
    if (a > 0x20 && a < 0x7f && z > 0x20 && z < 0x7f) return head.slice(from + 1, end);
  }
  return head.slice(from, end).trim();
}

const METHOD = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
/** Methods seen every second, known to be tokens (METHOD checks the others). */
const METHODS = new Set(['INVITE', 'ACK', 'BYE', 'CANCEL', 'REGISTER', 'OPTIONS', 'MESSAGE', 'UPDATE', 'INFO', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'REFER', 'PUBLISH']);

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
  if (!METHODS.has(method) && !METHOD.test(method)) throw fail(req, 400, 'Invalid method');
  // RFC 4475 §3.1.2.9/10/16: exactly one SP between elements; the version must be SIP/2.0.
  if (version !== 'SIP/2.0') {
    if (/^SIP\/\d+\.\d+$/.test(version)) throw fail(req, 505, 'Version Not Supported');
    throw fail(req, 400, 'Malformed Request-Line');
  }
  if (uri.length > limits.maxUriBytes) throw fail(req, 414, 'Request-URI Too Long');
  if (uri === '' || /[\s<>]/.test(uri)) throw fail(req, 400, 'Malformed Request-URI');
  try {
    void req.requestUri; // parsed once here, kept for the router and the registrar
  } catch (e) {
    if (e instanceof UriError) throw fail(req, 400, `Malformed Request-URI: ${e.message}`);
    throw e;
  }
  return req;
}

function validate(msg: SipMessage): void {
  // One pass over the header lines: presence of the mandatory ones, count of single-valued ones.
  let via = 0, from = 0, to = 0, callId = 0, cseq = 0, maxForwards = 0, contentLength = 0, contentType = 0, expires = 0, contact = 0;
  for (const h of msg.headers) {
    switch (h.name) {
      case 'via': via++; break;
      case 'from': from++; break;
      case 'to': to++; break;
      case 'call-id': callId++; break;
      case 'cseq': cseq++; break;
      case 'max-forwards': maxForwards++; break;
      case 'content-length': contentLength++; break;
      case 'content-type': contentType++; break;
      case 'expires': expires++; break;
      case 'contact': contact++; break;
    }
  }
  // Mandatory headers (§8.1.1), then single-valued ones (§7.3.1), each in this order: the first
  // fault found is the one reported.
  const missing = via === 0 ? 'via' : from === 0 ? 'from' : to === 0 ? 'to' : callId === 0 ? 'call-id' : cseq === 0 ? 'cseq' : undefined;
  if (missing !== undefined) throw fail(msg, 400, `Missing ${missing} header`);
  const multiple = callId > 1 ? 'call-id' : cseq > 1 ? 'cseq' : from > 1 ? 'from' : to > 1 ? 'to' : maxForwards > 1 ? 'max-forwards'
    : contentLength > 1 ? 'content-length' : contentType > 1 ? 'content-type' : expires > 1 ? 'expires' : undefined;
  if (multiple !== undefined) throw fail(msg, 400, `Multiple ${multiple} headers`);
  try {
    // Every Via value must parse (RFC 4475 §3.1.2.1); responses are routed by them. The top
    // Via, From, To and CSeq are parsed through the message's cached accessors: a hop that
    // reads them later does not parse them again.
    void msg.via;
    if (via > 1 || msg.get('via')!.includes(',')) {
      const vias = msg.getAll('via');
      for (let i = 1; i < vias.length; i++) parseVia(vias[i]!);
    }
    void msg.from;
    void msg.to;
    const cs = msg.cseq;
    // §8.1.1.7 / RFC 4475 §3.1.2.17: the CSeq method must match the request method.
    if (msg instanceof SipRequest && cs.method !== msg.method) throw new HeaderError('CSeq method does not match');
    if (maxForwards > 0 && parseUint(msg.get('max-forwards')!, 255) === undefined) throw new HeaderError('Invalid Max-Forwards');
    if (expires > 0 && parseUint(msg.get('expires')!, 0xffffffff) === undefined) throw new HeaderError('Invalid Expires');
    if (contact > 0) {
      for (const c of msg.getAll('contact')) {
        if (c !== '*') parseNameAddr(c);
      }
    }
  } catch (e) {
    if (e instanceof HeaderError || e instanceof UriError) throw fail(msg, 400, e.message);
    throw e;
  }
  // Not msg.callId: that getter throws MissingHeaderError for an empty value.
  if (msg.get('call-id') === '') throw fail(msg, 400, 'Empty Call-ID');
}
