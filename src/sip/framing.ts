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
    const buf = this.#buf;
    // Keep-alives and stray CRLFs before a start line (§7.5).
    let i = 0;
    while (i < buf.length && (buf[i] === 0x0d || buf[i] === 0x0a)) i++;
    if (i > 0) {
      const ping = i >= 4 && buf[0] === 0x0d && buf[1] === 0x0a && buf[2] === 0x0d && buf[3] === 0x0a;
      if (i === buf.length && !ping && i < 4) {
        // Could be the start of a ping split across reads: wait. A lone CRLF pong stays
        // pending without an event and is skipped when a message follows.
        return undefined;
      }
      this.#buf = buf.subarray(ping ? 4 : i);
      if (ping) return { kind: 'ping' };
      return this.#next();
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
