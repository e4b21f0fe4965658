// Stream framing for connection-oriented transports (RFC 3261 §18.3): a message ends
// Content-Length octets after the empty line; Content-Length is mandatory on streams.
// CRLF keep-alives (RFC 5626 §4.4.1): a double CRLF ("ping") between messages is answered
// with a single CRLF ("pong"); a single CRLF is a pong and is ignored.
import { EMPTY, type SipMessage, SipRequest } from './message.ts';
import { DEFAULT_LIMITS, findHeaderEnd, type ParseLimits, parseHead, SipParseError } from './parser.ts';

export type FrameEvent =
  | { readonly kind: 'message'; readonly message: SipMessage }
  /** A message that failed to parse but could be framed: answer it (if a request), keep going. */
  | { readonly kind: 'error'; readonly error: SipParseError }
  /** Framing is lost (bad or huge Content-Length, oversize header): close the connection. */
  | { readonly kind: 'fatal'; readonly error: SipParseError }
  | { readonly kind: 'ping' };

const PING = Buffer.from('\r\n\r\n');
const CL_RE = /^(?:content-length|l)[ \t]*:([^\r\n]*)$/im;
const CL_RE_ALL = /^(?:content-length|l)[ \t]*:/gim;

export class StreamFramer {
  #buf: Buffer = EMPTY;
  #limits: ParseLimits;
  #dead = false;

  constructor(limits: ParseLimits = DEFAULT_LIMITS) {
    this.#limits = limits;
  }

  /** Bytes waiting for the rest of a message. */
  get pending(): number {
    return this.#buf.length;
  }

  push(chunk: Buffer): FrameEvent[] {
    if (this.#dead) return [];
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const events: FrameEvent[] = [];
    for (;;) {
      const ev = this.#next();
      if (ev === undefined) break;
      events.push(ev);
      if (ev.kind === 'fatal') {
        this.#dead = true;
        this.#buf = EMPTY;
        break;
      }
    }
    return events;
  }

  #next(): FrameEvent | undefined {
    let buf = this.#buf;
    // Keep-alives and stray CR/LF bytes before a start line (§7.5). Decided byte by byte on at
    // most 4 bytes, so the events do not depend on how the stream was split into reads: a
    // CRLFCRLF is a ping; a proper prefix of one at the end of the buffer waits for more (a lone
    // CRLF pong stays pending without an event); any other CR or LF is skipped.
    let i = 0;
    while (i < buf.length && (buf[i] === 0x0d || buf[i] === 0x0a)) {
      const n = Math.min(4, buf.length - i);
      if (buf.compare(PING, 0, n, i, i + n) === 0) break; // a ping here, or the start of one
      i++;
    }
    if (i > 0) {
      buf = buf.subarray(i);
      this.#buf = buf;
    }
    if (buf.length > 0 && (buf[0] === 0x0d || buf[0] === 0x0a)) {
      if (buf.length < 4) return undefined;
      this.#buf = buf.subarray(4);
      return { kind: 'ping' };
    }
    if (buf.length === 0) return undefined;
    const headEnd = findHeaderEnd(buf);
    if (headEnd < 0) {
      if (buf.length > this.#limits.maxMessageBytes) return { kind: 'fatal', error: new SipParseError(413, 'Message Too Large') };
      return undefined;
    }
    const head = buf.toString('utf8', 0, headEnd);
    const m = CL_RE.exec(head);
    let cl = 0;
    // Two Content-Length headers (RFC 4475 §3.1.2.14 mcl01) make framing ambiguous.
    if ((head.match(CL_RE_ALL)?.length ?? 0) > 1) return { kind: 'fatal', error: new SipParseError(400, 'Multiple Content-Length headers') };
    if (m !== null) {
      const v = m[1]!.trim();
      if (!/^\d{1,10}$/.test(v)) return { kind: 'fatal', error: new SipParseError(400, 'Invalid Content-Length') };
      cl = Number(v);
    }
    if (headEnd + cl > this.#limits.maxMessageBytes) return { kind: 'fatal', error: new SipParseError(413, 'Message Too Large') };
    if (buf.length < headEnd + cl) return undefined;
    const body = buf.subarray(headEnd, headEnd + cl);
    this.#buf = buf.subarray(headEnd + cl);
    let message: SipMessage;
    try {
      message = parseHead(head, this.#limits);
    } catch (e) {
      if (e instanceof SipParseError) return { kind: 'error', error: e };
      throw e;
    }
    // §18.3: Content-Length MUST be used with stream-oriented transports.
    if (m === null) {
      return { kind: 'error', error: new SipParseError(400, 'Missing Content-Length', message instanceof SipRequest ? message : undefined) };
    }
    message.body = Buffer.from(body);
    return { kind: 'message', message };
  }
}
