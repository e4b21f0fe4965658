// A minimal SIP client over raw sockets (UDP, TCP, TLS) for interop tests that need exact
// control over single headers (Max-Forwards, Proxy-Require, From) or over the bytes on the
// wire (CRLF keep-alives, 1-byte writes). It parses responses itself (not with src/), does
// MD5 digest with qop=auth, and bounds every wait. Each client is closed by the test.
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect as tcpConnect, type Socket as TcpSocket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket } from 'ws';

/** `ws`/`wss`: RFC 7118 SIP over WebSocket to ws(s)://127.0.0.1:<port>/sip (the HTTP(S) port; any certificate accepted). */
export type RawTransport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

export interface RawMessage {
  /** request line or status line */
  firstLine: string;
  status: number;
  text: string;
  body: string;
  header(name: string): string | undefined;
  headers(name: string): string[];
}

export function parseRaw(text: string): RawMessage {
  const sep = text.indexOf('\r\n\r\n');
  const head = sep < 0 ? text : text.slice(0, sep);
  const body = sep < 0 ? '' : text.slice(sep + 4);
  const lines = head.split('\r\n');
  const firstLine = lines[0] ?? '';
  const values = new Map<string, string[]>();
  const compact: Record<string, string> = { v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length', c: 'content-type', k: 'supported' };
  let last: string | undefined;
  for (const line of lines.slice(1)) {
    if (/^[ \t]/.test(line) && last !== undefined) {
      const l = values.get(last)!;
      l[l.length - 1] += ' ' + line.trim();
      continue;
    }
    const c = line.indexOf(':');
    if (c <= 0) continue;
    let key = line.slice(0, c).trim().toLowerCase();
    key = compact[key] ?? key;
    const list = values.get(key) ?? [];
    list.push(line.slice(c + 1).trim());
    values.set(key, list);
    last = key;
  }
  const m = /^SIP\/2\.0 (\d{3})/.exec(firstLine);
  return {
    firstLine, status: m ? Number(m[1]) : 0, text, body,
    header: (n) => values.get(n.toLowerCase())?.[0],
    headers: (n) => values.get(n.toLowerCase()) ?? [],
  };
}

export interface Credentials { username: string; password: string }

export interface RequestSpec {
  method: string;
  uri: string;
  /** From URI user (default: the credentials' username or "anonymous") */
  fromUser?: string;
  toUri?: string;
  domain: string;
  /** extra header lines, e.g. ['Proxy-Require: foo'] */
  extra?: string[];
  maxForwards?: number;
  body?: string;
  contentType?: string;
  callId?: string;
  cseq?: number;
  /** Contact header value instead of this client's own address */
  contact?: string;
}

const rnd = (n: number): string => randomBytes(n).toString('hex');
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

/** The value of `name=` in a challenge (quoted or token). */
function param(challenge: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|[\\s,])${name}\\s*=\\s*(?:"([^"]*)"|([^\\s,]+))`, 'i').exec(challenge.replace(/^Digest\s+/i, ' '));
  return m ? (m[1] ?? m[2]) : undefined;
}

/** An Authorization / Proxy-Authorization value for an MD5 (qop=auth when offered) challenge. */
export function digestAnswer(challenge: string, creds: Credentials, method: string, uri: string): string {
  const realm = param(challenge, 'realm') ?? '';
  const nonce = param(challenge, 'nonce') ?? '';
  const opaque = param(challenge, 'opaque');
  const qop = param(challenge, 'qop');
  const ha1 = md5(`${creds.username}:${realm}:${creds.password}`);
  const ha2 = md5(`${method}:${uri}`);
  const parts = [`username="${creds.username}"`, `realm="${realm}"`, `nonce="${nonce}"`, `uri="${uri}"`, 'algorithm=MD5'];
  if (qop !== undefined && qop.split(',').map((q) => q.trim()).includes('auth')) {
    const cnonce = rnd(8);
    const nc = '00000001';
    parts.push(`response="${md5(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`)}"`, 'qop=auth', `nc=${nc}`, `cnonce="${cnonce}"`);
  } else {
    parts.push(`response="${md5(`${ha1}:${nonce}:${ha2}`)}"`);
  }
  if (opaque !== undefined) parts.push(`opaque="${opaque}"`);
  return `Digest ${parts.join(', ')}`;
}

/** One client socket; every response it receives is collected in `received`. */
export class RawSipClient {
  readonly transport: RawTransport;
  readonly received: RawMessage[] = [];
  /** raw bytes received on a stream (for keep-alive checks) */
  rawStream = '';
  localPort = 0;
  #udp: UdpSocket | undefined;
  #stream: TcpSocket | undefined;
  #ws: WebSocket | undefined;
  #serverPort: number;
  #buffer = '';
  #waiters = new Set<() => void>();

  private constructor(transport: RawTransport, serverPort: number) {
    this.transport = transport;
    this.#serverPort = serverPort;
  }

  static async open(transport: RawTransport, serverPort: number, timeoutMs = 5000): Promise<RawSipClient> {
    const c = new RawSipClient(transport, serverPort);
    await c.#open(timeoutMs);
    return c;
  }

  async #open(timeoutMs: number): Promise<void> {
    if (this.transport === 'udp') {
      const s = createSocket('udp4');
      this.#udp = s;
      s.on('message', (m) => this.#push(m.toString('latin1')));
      await new Promise<void>((res, rej) => { s.once('error', rej); s.bind(0, '127.0.0.1', () => res()); });
      this.localPort = s.address().port;
      return;
    }
    if (this.transport === 'ws' || this.transport === 'wss') {
      const ws = new WebSocket(`${this.transport}://127.0.0.1:${this.#serverPort}/sip`, 'sip', { rejectUnauthorized: false });
      this.#ws = ws;
      ws.on('message', (d: Buffer) => { this.rawStream += d.toString('latin1'); this.#push(d.toString('latin1')); });
      ws.on('error', () => { /* reported through timeouts */ });
      await new Promise<void>((res, rej) => {
        const t = setTimeout(() => rej(new Error(`ws connect to 127.0.0.1:${this.#serverPort} timed out`)), timeoutMs);
        ws.once('open', () => { clearTimeout(t); res(); });
        ws.once('error', (e) => { clearTimeout(t); rej(e); });
      });
      return;
    }
    const s = this.transport === 'tcp'
      ? tcpConnect({ host: '127.0.0.1', port: this.#serverPort })
      : tlsConnect({ host: '127.0.0.1', port: this.#serverPort, rejectUnauthorized: false });
    this.#stream = s;
    s.setEncoding('latin1');
    s.on('data', (d: string) => { this.rawStream += d; this.#buffer += d; this.#frame(); this.#wake(); });
    s.on('error', () => { /* reported through timeouts */ });
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${this.transport} connect to 127.0.0.1:${this.#serverPort} timed out`)), timeoutMs);
      s.once(this.transport === 'tls' ? 'secureConnect' : 'connect', () => { clearTimeout(t); res(); });
      s.once('error', (e) => { clearTimeout(t); rej(e); });
    });
    this.localPort = s.localPort ?? 0;
  }

  #push(text: string): void {
    this.received.push(parseRaw(text));
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Content-Length framing of the stream; skips CR/LF keep-alive bytes between messages. */
  #frame(): void {
    for (;;) {
      this.#buffer = this.#buffer.replace(/^(\r\n)+/, '');
      const end = this.#buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.#buffer.slice(0, end);
      const m = /^(?:content-length|l)\s*:\s*(\d+)/im.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (this.#buffer.length < end + 4 + len) return;
      const msg = this.#buffer.slice(0, end + 4 + len);
      this.#buffer = this.#buffer.slice(end + 4 + len);
      this.received.push(parseRaw(msg));
    }
  }

  /** Sends raw bytes; on a stream, optionally one byte per write (with a short pause). */
  async sendRaw(data: string, opts: { byteByByte?: boolean } = {}): Promise<void> {
    if (this.#ws !== undefined) {
      const ws = this.#ws;
      await new Promise<void>((res, rej) => ws.send(data, (e) => (e ? rej(e) : res())));
      return;
    }
    if (this.#udp !== undefined) {
      const s = this.#udp;
      await new Promise<void>((res, rej) => s.send(Buffer.from(data, 'latin1'), this.#serverPort, '127.0.0.1', (e) => (e ? rej(e) : res())));
      return;
    }
    const s = this.#stream!;
    if (opts.byteByByte === true) {
      // no Nagle coalescing, and a pause after every byte: one byte per TCP segment
      s.setNoDelay(true);
      const bytes = Buffer.from(data, 'latin1');
      for (let i = 0; i < bytes.length; i++) {
        await new Promise<void>((res, rej) => s.write(bytes.subarray(i, i + 1), (e) => (e ? rej(e) : res())));
        await new Promise((r) => setTimeout(r, 1));
      }
      return;
    }
    await new Promise<void>((res, rej) => s.write(Buffer.from(data, 'latin1'), (e) => (e ? rej(e) : res())));
  }

  /** Waits (bounded) until `pred` holds over what was received. */
  async waitUntil<T>(what: string, pred: () => T | undefined, timeoutMs = 5000): Promise<T> {
    const now = pred();
    if (now !== undefined) return now;
    return new Promise<T>((res, rej) => {
      const done = (): void => {
        const v = pred();
        if (v === undefined) return;
        clearTimeout(t);
        this.#waiters.delete(done);
        res(v);
      };
      const t = setTimeout(() => {
        this.#waiters.delete(done);
        rej(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received:\n${this.received.map((r) => r.firstLine).join('\n') || '(nothing)'}${this.rawStream !== '' ? `\nraw stream: ${JSON.stringify(this.rawStream.slice(-300))}` : ''}`));
      }, timeoutMs);
      this.#waiters.add(done);
    });
  }

  /** RFC 7118 §5.2: a WebSocket client has no reachable address; it uses a random .invalid name. */
  readonly #invalidHost = `${rnd(8)}.invalid`;
  #sentBy(): string {
    return this.transport === 'ws' || this.transport === 'wss' ? this.#invalidHost : `127.0.0.1:${this.localPort}`;
  }

  viaTransport(): string {
    return this.transport.toUpperCase();
  }

  /** Builds a request; returns the text and its branch. */
  build(spec: RequestSpec, creds: Credentials | undefined, authHeader?: string): { text: string; branch: string; callId: string; cseq: number; fromTag: string } {
    const branch = `z9hG4bK${rnd(8)}`;
    const callId = spec.callId ?? `${rnd(10)}@127.0.0.1`;
    const cseq = spec.cseq ?? 1;
    const fromTag = rnd(4);
    const fromUser = spec.fromUser ?? creds?.username ?? 'anonymous';
    const body = spec.body ?? '';
    const lines = [
      `${spec.method} ${spec.uri} SIP/2.0`,
      `Via: SIP/2.0/${this.viaTransport()} ${this.#sentBy()};branch=${branch};rport`,
      `Max-Forwards: ${spec.maxForwards ?? 70}`,
      `From: <sip:${fromUser}@${spec.domain}>;tag=${fromTag}`,
      `To: <${spec.toUri ?? spec.uri}>`,
      `Call-ID: ${callId}`,
      `CSeq: ${cseq} ${spec.method}`,
      `Contact: ${spec.contact ?? `<sip:${fromUser}@${this.#sentBy()}${this.transport === 'udp' ? '' : `;transport=${this.transport}`}>`}`,
      'User-Agent: careflow-interop-raw',
      ...(authHeader !== undefined ? [authHeader] : []),
      ...(spec.extra ?? []),
      ...(body !== '' ? [`Content-Type: ${spec.contentType ?? 'text/plain'}`] : []),
      `Content-Length: ${Buffer.byteLength(body, 'latin1')}`,
      '',
      body,
    ];
    return { text: lines.join('\r\n'), branch, callId, cseq, fromTag };
  }

  /** Sends one request (UDP: retransmits every 500 ms) and resolves with its final response. */
  async transaction(text: string, branch: string, timeoutMs = 5000): Promise<RawMessage> {
    const match = (): RawMessage | undefined => this.received.find((r) => r.status >= 200 && (r.header('via') ?? '').includes(branch));
    await this.sendRaw(text);
    let retrans: NodeJS.Timeout | undefined;
    if (this.transport === 'udp') retrans = setInterval(() => { if (match() === undefined) void this.sendRaw(text).catch(() => undefined); }, 500);
    try {
      return await this.waitUntil(`a final response to ${text.split('\r\n')[0]} (branch ${branch})`, match, timeoutMs);
    } finally {
      if (retrans !== undefined) clearInterval(retrans);
    }
  }

  /** ACK for a non-2xx final answer to an INVITE (same branch, To with the tag, §17.1.1.3). */
  async ackFailure(req: { text: string; branch: string; callId: string; cseq: number }, res: RawMessage): Promise<void> {
    const line = req.text.split('\r\n');
    const uri = (line[0] ?? '').split(' ')[1] ?? '';
    const get = (n: string): string => line.find((l) => l.toLowerCase().startsWith(`${n.toLowerCase()}:`)) ?? '';
    const ack = [
      `ACK ${uri} SIP/2.0`, get('Via'), 'Max-Forwards: 70', get('From'), `To: ${res.header('to') ?? ''}`,
      `Call-ID: ${req.callId}`, `CSeq: ${req.cseq} ACK`, 'Content-Length: 0', '', '',
    ].join('\r\n');
    await this.sendRaw(ack);
  }

  /**
   * Sends `spec`, answers a 401/407 challenge once with `creds` (ACKing a failed INVITE) and
   * returns every final response in order: [challenge, final] or [final].
   */
  async request(spec: RequestSpec, creds?: Credentials, timeoutMs = 5000): Promise<RawMessage[]> {
    const callId = spec.callId ?? `${rnd(10)}@127.0.0.1`;
    const first = this.build({ ...spec, callId, cseq: 1 }, creds);
    const r1 = await this.transaction(first.text, first.branch, timeoutMs);
    if (spec.method === 'INVITE' && r1.status >= 300) await this.ackFailure(first, r1);
    if (creds === undefined || (r1.status !== 401 && r1.status !== 407)) return [r1];
    const hName = r1.status === 401 ? 'www-authenticate' : 'proxy-authenticate';
    const challenge = r1.header(hName) ?? '';
    const answer = `${r1.status === 401 ? 'Authorization' : 'Proxy-Authorization'}: ${digestAnswer(challenge, creds, spec.method, spec.uri)}`;
    const second = this.build({ ...spec, callId, cseq: 2 }, creds, answer);
    const r2 = await this.transaction(second.text, second.branch, timeoutMs);
    if (spec.method === 'INVITE' && r2.status >= 300) await this.ackFailure(second, r2);
    return [r1, r2];
  }

  close(): void {
    try { this.#udp?.close(); } catch { /* closed */ }
    this.#stream?.destroy();
    this.#ws?.terminate();
  }
}

/** Opens a client, runs `fn`, always closes it. */
export async function withClient<T>(transport: RawTransport, port: number, fn: (c: RawSipClient) => Promise<T>): Promise<T> {
  const c = await RawSipClient.open(transport, port);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}
