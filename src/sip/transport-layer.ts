// UDP, TCP and TLS transports behind one `send(message, destination)` (RFC 3261 §18).
// - Datagrams are parsed whole (§18.3); stream connections are framed by Content-Length with
//   CRLF keep-alive pings answered (RFC 5626 §4.4.1).
// - The server side stamps `received`/`rport` on the top Via of requests (§18.2.1, RFC 3581).
// - Malformed requests get a stateless 4xx when a response can be routed, else are dropped;
//   malformed responses are dropped (§18.1.2 / RFC 4475).
// - Connections are kept by id and by remote address so that responses and requests toward a
//   client reuse the connection it opened (§18.2.2, RFC 5626 §5.3).
// - UDP datagrams sent during one turn of the event loop leave together at its end, in order
//   (datagram-batch.ts): a burst wakes the peer once instead of once per datagram.
// - WebSocket connections (RFC 7118) are accepted by whoever owns the HTTP server and handed
//   in through `acceptWebSocket`: one SIP message per WebSocket message (§5), no framing.
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import tls from 'node:tls';
import { isUtf8 } from 'node:buffer';
import { DatagramBatch } from './datagram-batch.ts';
import { StreamFramer } from './framing.ts';
import { parseVia, type Via } from './headers.ts';
import { createResponse, type SipMessage, SipRequest } from './message.ts';
import { DEFAULT_LIMITS, type ParseLimits, parseDatagram, SipParseError } from './parser.ts';
import {
  type Destination, type Flow, flowKey, type MessageSender, responseDestination, stampVia,
  type TransportHandler, type TransportName,
} from './transport.ts';

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
}

export interface TransportLayerOptions {
  readonly udp?: ListenOptions;
  readonly tcp?: ListenOptions;
  readonly tls?: ListenOptions & { readonly cert: Buffer | string; readonly key: Buffer | string };
  readonly limits?: ParseLimits;
  /** Close a stream connection after this long without traffic (ms). Default 15 min. */
  readonly idleTimeoutMs?: number;
  /** Accepted TCP/TLS connections at most (Kamailio's tcp_max_connections); more are refused. Default 10,000. */
  readonly maxConnections?: number;
  /** Answer requests at their source address:port even without ;rport (Kamailio force_rport). */
  readonly forceRport?: boolean;
  readonly log?: (level: 'debug' | 'warn' | 'error', msg: string, err?: unknown) => void;
  /** A stream or WebSocket connection closed (RFC 5626 §5.3: its flow is gone). */
  readonly onConnectionClosed?: (connectionId: number, flow: Flow) => void;
}

/**
 * What the transport layer needs of a WebSocket (structurally the `ws` package's WebSocket),
 * so that src/sip/ does not depend on an HTTP or WebSocket library.
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: Buffer, options: { binary: boolean }): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

interface Connection {
  readonly id: number;
  readonly flow: Flow;
  write(data: Buffer): void;
  /** Close gracefully (after pending writes). */
  end(): void;
  destroy(): void;
  readonly destroyed: boolean;
}

export interface TransportStats {
  received: number;
  sent: number;
  parseErrors: number;
  dropped: number;
  connections: number;
}

export class TransportLayer implements MessageSender {
  readonly #opts: TransportLayerOptions;
  readonly #limits: ParseLimits;
  #handler: TransportHandler | undefined;
  #udp4: dgram.Socket | undefined;
  #stopped = false;
  /** UDP sends of this event-loop turn, sent together (see datagram-batch.ts). */
  readonly #udpOut = new DatagramBatch((e) => this.#log('debug', 'UDP send failed', e));
  #udp6: dgram.Socket | undefined;
  readonly #servers: net.Server[] = [];
  #tls: tls.Server | undefined;
  readonly #connections = new Map<number, Connection>();
  readonly #byRemote = new Map<string, number>();
  #nextConnId = 1;
  readonly stats: TransportStats = { received: 0, sent: 0, parseErrors: 0, dropped: 0, connections: 0 };
  /** Addresses the transports are bound to (after listen), for Via/Record-Route. */
  readonly bound: { udp?: { address: string; port: number }; tcp?: { address: string; port: number }; tls?: { address: string; port: number } } = {};

  constructor(opts: TransportLayerOptions) {
    this.#opts = opts;
    this.#limits = opts.limits ?? DEFAULT_LIMITS;
  }

  setHandler(h: TransportHandler): void {
    this.#handler = h;
  }

  async listen(): Promise<void> {
    const { udp, tcp, tls: tlsOpts } = this.#opts;
    if (udp !== undefined) {
      const type = udp.host.includes(':') ? 'udp6' : 'udp4';
      const sock = dgram.createSocket({
        type, reuseAddr: false, recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024, lookup: literalLookup,
      });
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind(udp.port, udp.host, () => {
          sock.off('error', reject);
          resolve();
        });
      });
      // After bind, errors are failed sends (unreachable destinations): not fatal.
      sock.on('error', (e) => this.#log('debug', 'UDP send failed', e));
      const a = sock.address();
      // The local address is fixed once bound: read it once, not with a system call per datagram.
      const local = { address: a.address, port: a.port };
      sock.on('message', (buf, rinfo) => this.#onDatagram(local, buf, rinfo));
      this.bound.udp = { address: a.address, port: a.port };
      if (type === 'udp6') this.#udp6 = sock;
      else this.#udp4 = sock;
    }
    if (tcp !== undefined) {
      const server = net.createServer({ noDelay: true }, (s) => this.#accept(s, 'tcp'));
      server.maxConnections = this.#opts.maxConnections ?? 10_000;
      this.bound.tcp = await listenServer(server, tcp);
      this.#servers.push(server);
    }
    if (tlsOpts !== undefined) await this.listenTls(tlsOpts);
  }

  /** Starts the TLS listener (at start, or later when a certificate has been obtained). */
  async listenTls(o: ListenOptions & { readonly cert: Buffer | string; readonly key: Buffer | string }): Promise<void> {
    if (this.#tls !== undefined) return;
    const server = tls.createServer({ cert: o.cert, key: o.key }, (s) => this.#accept(s, 'tls'));
    server.maxConnections = this.#opts.maxConnections ?? 10_000;
    this.bound.tls = await listenServer(server, o);
    this.#tls = server;
    this.#servers.push(server);
  }

  /** A renewed certificate: new connections use it, open ones keep theirs. */
  setTlsCertificate(cert: Buffer | string, key: Buffer | string): void {
    this.#tls?.setSecureContext({ cert, key });
  }

  #log(level: 'debug' | 'warn' | 'error', msg: string, err?: unknown): void {
    this.#opts.log?.(level, msg, err);
  }

  // ---- receiving ----------------------------------------------------------------------

  #onDatagram(local: { address: string; port: number }, buf: Buffer, rinfo: dgram.RemoteInfo): void {
    // RFC 5626 §4.4.1 / STUN keep-alives on UDP: ignore tiny datagrams of CR/LF.
    if (buf.length <= 4 && buf.every((b) => b === 0x0d || b === 0x0a || b === 0)) return;
    const flow: Flow = { transport: 'udp', remoteAddress: rinfo.address, remotePort: rinfo.port, localAddress: local.address, localPort: local.port };
    let msg: SipMessage;
    try {
      msg = parseDatagram(buf, this.#limits);
    } catch (e) {
      this.#onParseError(e, flow);
      return;
    }
    this.#deliver(msg, flow);
  }

  #onParseError(e: unknown, flow: Flow): void {
    this.stats.parseErrors++;
    if (!(e instanceof SipParseError)) {
      this.#log('error', 'parser failure', e);
      return;
    }
    const req = e.request;
    if (req === undefined) return; // responses and unroutable garbage are dropped
    try {
      // Stateless error response (§8.2.6): the request's Via, From, To, Call-ID and CSeq are
      // copied as received, even when one of them is what was wrong with it.
      const res = createResponse(req, e.status, e.message.replace(/[\r\n]/g, ' ').slice(0, 100));
      const top = req.first('via');
      const via = top !== undefined ? parseViaSafe(top) : undefined;
      if (top !== undefined && via !== undefined) {
        const stamped = stampVia(top, via, flow, this.#opts.forceRport === true);
        if (stamped !== undefined) res.set('via', [stamped.text, ...req.getAll('via').slice(1)].join(', '));
        this.send(res, responseDestination(stamped?.via ?? via, flow));
      } else {
        // The Via cannot route a response (RFC 4475 badinv01, badvers): the packet's source can.
        const dest: Destination = { transport: flow.transport, address: flow.remoteAddress, port: flow.remotePort };
        this.send(res, flow.connectionId !== undefined ? { ...dest, connectionId: flow.connectionId } : dest);
      }
    } catch {
      this.stats.dropped++;
    }
  }

  #deliver(msg: SipMessage, flow: Flow): void {
    this.stats.received++;
    if (msg instanceof SipRequest) {
      // §18.2.1: received / rport on the top Via.
      const stamped = stampVia(msg.first('via')!, msg.via, flow, this.#opts.forceRport === true);
      if (stamped !== undefined) msg.replaceTopVia(stamped.text, stamped.via);
    }
    try {
      this.#handler?.onMessage(msg, flow);
    } catch (e) {
      this.#log('error', 'message handler failed', e);
    }
  }

  #accept(socket: net.Socket, transport: TransportName, remote?: { address: string; port: number }): Connection {
    const framer = new StreamFramer(this.#limits);
    const conn = this.#register(transport, remote ?? { address: normaliseAddr(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 },
      { address: normaliseAddr(socket.localAddress ?? ''), port: socket.localPort ?? 0 }, {
        write: (data) => socket.write(data),
        end: () => socket.end(),
        destroy: () => socket.destroy(),
        destroyed: () => socket.destroyed,
      });
    socket.setNoDelay(true);
    socket.setTimeout(this.#opts.idleTimeoutMs ?? 15 * 60_000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => this.#onStreamData(conn, framer, chunk));
    socket.on('error', (e) => this.#log('debug', `connection ${conn.id} error`, e));
    socket.on('close', () => this.#closed(conn));
    return conn;
  }

  /**
   * RFC 7118: a WebSocket connection whose handshake (sub-protocol `sip`) the HTTP side
   * completed. Each WebSocket message carries exactly one SIP message (§5).
   */
  acceptWebSocket(ws: WebSocketLike, transport: 'ws' | 'wss', remote: { address: string; port: number }, local: { address: string; port: number }): number {
    const conn = this.#register(transport, { address: normaliseAddr(remote.address), port: remote.port }, { address: normaliseAddr(local.address), port: local.port }, {
      // §5: text frames carry UTF-8 messages; a message with a binary body goes in a binary frame.
      write: (data) => ws.send(data, { binary: !isUtf8(data) }),
      end: () => ws.close(1000),
      destroy: () => ws.terminate(),
      destroyed: () => ws.readyState > 1, // CLOSING or CLOSED
    });
    ws.on('message', (data) => this.#onWebSocketMessage(conn, data));
    ws.on('error', (e) => this.#log('debug', `websocket ${conn.id} error`, e));
    ws.on('close', () => this.#closed(conn));
    return conn.id;
  }

  #register(
    transport: TransportName, remote: { address: string; port: number }, local: { address: string; port: number },
    io: { write(data: Buffer): void; end(): void; destroy(): void; destroyed(): boolean },
  ): Connection {
    const id = this.#nextConnId++;
    const flow: Flow = { transport, remoteAddress: remote.address, remotePort: remote.port, localAddress: local.address, localPort: local.port, connectionId: id };
    const conn: Connection = {
      id, flow, write: io.write, end: io.end, destroy: io.destroy,
      get destroyed() { return io.destroyed(); },
    };
    this.#connections.set(id, conn);
    this.#byRemote.set(flowKey(flow), id);
    this.stats.connections = this.#connections.size;
    return conn;
  }

  #closed(conn: Connection): void {
    if (!this.#connections.delete(conn.id)) return;
    if (this.#byRemote.get(flowKey(conn.flow)) === conn.id) this.#byRemote.delete(flowKey(conn.flow));
    this.stats.connections = this.#connections.size;
    try {
      this.#opts.onConnectionClosed?.(conn.id, conn.flow);
    } catch (e) {
      this.#log('error', 'connection close handler failed', e);
    }
  }

  #onWebSocketMessage(conn: Connection, data: Buffer | ArrayBuffer | Buffer[]): void {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    // RFC 5626 §4.4.1 style CRLF keep-alives are not used over WebSocket (it has ping/pong),
    // but some clients send them anyway: answer a double CRLF, ignore a single one.
    if (buf.length <= 4 && buf.every((b) => b === 0x0d || b === 0x0a)) {
      if (buf.length === 4) conn.write(Buffer.from('\r\n'));
      return;
    }
    if (buf.length > this.#limits.maxMessageBytes) {
      this.stats.parseErrors++;
      conn.destroy(); // a peer that ignores the limit is not worth an answer
      return;
    }
    let msg: SipMessage;
    try {
      msg = parseDatagram(buf, this.#limits);
    } catch (e) {
      this.#onParseError(e, conn.flow);
      return;
    }
    this.#deliver(msg, conn.flow);
  }

  #onStreamData(conn: Connection, framer: StreamFramer, chunk: Buffer): void {
    let events;
    try {
      events = framer.push(chunk);
    } catch (e) {
      this.#log('error', 'framer failure', e);
      conn.destroy();
      return;
    }
    for (const ev of events) {
      if (ev.kind === 'message') this.#deliver(ev.message, conn.flow);
      else if (ev.kind === 'ping') conn.write(Buffer.from('\r\n')); // RFC 5626 §4.4.1 pong
      else if (ev.kind === 'error') this.#onParseError(ev.error, conn.flow);
      else {
        // Framing lost (RFC 4475 §3.1.2.3 ncl, mcl01): answer if we can, then close.
        this.#onParseError(ev.error, conn.flow);
        conn.end();
      }
    }
  }

  // ---- sending ------------------------------------------------------------------------

  send(message: SipMessage, dest: Destination): boolean {
    return this.sendRaw(message.toBuffer(), dest);
  }

  sendRaw(data: Buffer, dest: Destination): boolean {
    if (this.#stopped) return false;
    if (dest.transport === 'udp') {
      const sock = dest.address.includes(':') ? this.#udp6 ?? this.#udp4 : this.#udp4 ?? this.#udp6;
      if (sock === undefined) return false;
      // Never send to broadcast / unspecified addresses (RFC 4475 §3.1.2.20 bcast).
      if (dest.address === '255.255.255.255' || dest.address === '0.0.0.0') return false;
      // A port from the wire (Via rport, a Contact) out of range would make the socket throw.
      if (!Number.isInteger(dest.port) || dest.port < 1 || dest.port > 65535) return false;
      this.#udpOut.send(sock, data, dest.port, dest.address);
      this.stats.sent++;
      return true;
    }
    let conn = dest.connectionId !== undefined ? this.#connections.get(dest.connectionId) : undefined;
    if (conn === undefined) {
      const id = this.#byRemote.get(flowKey({ transport: dest.transport, remoteAddress: dest.address, remotePort: dest.port }));
      conn = id !== undefined ? this.#connections.get(id) : undefined;
    }
    if (conn === undefined || conn.destroyed) {
      if (dest.transport !== 'tcp' && dest.transport !== 'tls') return false;
      conn = this.#connect(dest);
      if (conn === undefined) return false;
    }
    conn.write(data);
    this.stats.sent++;
    return true;
  }

  #connect(dest: Destination): Connection | undefined {
    if (!net.isIP(dest.address)) return undefined; // DNS (RFC 3263) is not used for clients
    const socket =
      dest.transport === 'tls'
        ? tls.connect({ host: dest.address, port: dest.port, rejectUnauthorized: false })
        : net.connect({ host: dest.address, port: dest.port });
    // The flow's remote side is known before the connection is up.
    return this.#accept(socket, dest.transport, { address: dest.address, port: dest.port });
  }

  hasConnection(id: number): boolean {
    const c = this.#connections.get(id);
    return c !== undefined && !c.destroyed;
  }

  async close(): Promise<void> {
    // From here on nothing is sent: a transaction or timer still running during shutdown (a
    // response relayed by the proxy, a retransmission) gets `false` from sendRaw instead of an
    // exception from a closed socket, and no new connection is opened.
    this.#stopped = true;
    for (const c of [...this.#connections.values()]) c.destroy();
    this.#connections.clear();
    this.#byRemote.clear();
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.#udpOut.flush(); // what was sent before close() still goes out
    this.#udp4?.close();
    this.#udp6?.close();
  }
}

function listenServer(server: net.Server, o: ListenOptions): Promise<{ address: string; port: number }> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      const a = server.address() as net.AddressInfo;
      resolve({ address: a.address, port: a.port });
    });
  });
}

function parseViaSafe(text: string): Via | undefined {
  try {
    return parseVia(text);
  } catch {
    return undefined;
  }
}

function normaliseAddr(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * dgram's address lookup, answered in place for IP literals (what every destination here is:
 * received addresses and resolved next hops). The default, dns.lookup, answers a literal
 * through process.nextTick: one more callback per datagram sent (bench/RESULTS.md).
 */
function literalLookup(host: string, family: number | dns.LookupOneOptions, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const f = net.isIP(host);
  if (f !== 0) cb(null, host, f);
  else dns.lookup(host, family as dns.LookupOneOptions, cb);
}

