// UDP, TCP and TLS transports behind one `send(message, destination)` (RFC 3261 §18).
// - Datagrams are parsed whole (§18.3); stream connections are framed by Content-Length with
//   CRLF keep-alive pings answered (RFC 5626 §4.4.1).
// - The server side stamps `received`/`rport` on the top Via of requests (§18.2.1, RFC 3581).
// - Malformed requests get a stateless 4xx when a response can be routed, else are dropped;
//   malformed responses are dropped (§18.1.2 / RFC 4475).
// - Connections are kept by id and by remote address so that responses and requests toward a
//   client reuse the connection it opened (§18.2.2, RFC 5626 §5.3).
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
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
  /** A stream connection closed (RFC 5626 §5.3: its flow is gone). */
  readonly onConnectionClosed?: (connectionId: number) => void;
}

interface Connection {
  readonly id: number;
  readonly socket: net.Socket;
  readonly flow: Flow;
  readonly framer: StreamFramer;
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
  #udp6: dgram.Socket | undefined;
  readonly #servers: net.Server[] = [];
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
      const sock = dgram.createSocket({ type, reuseAddr: false, recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024 });
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
    if (tlsOpts !== undefined) {
      const server = tls.createServer({ cert: tlsOpts.cert, key: tlsOpts.key }, (s) => this.#accept(s, 'tls'));
      server.maxConnections = this.#opts.maxConnections ?? 10_000;
      this.bound.tls = await listenServer(server, tlsOpts);
      this.#servers.push(server);
    }
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
    const id = this.#nextConnId++;
    const flow: Flow = {
      transport,
      remoteAddress: remote?.address ?? normaliseAddr(socket.remoteAddress ?? ''),
      remotePort: remote?.port ?? socket.remotePort ?? 0,
      localAddress: normaliseAddr(socket.localAddress ?? ''),
      localPort: socket.localPort ?? 0,
      connectionId: id,
    };
    const conn: Connection = { id, socket, flow, framer: new StreamFramer(this.#limits) };
    this.#connections.set(id, conn);
    this.#byRemote.set(flowKey(flow), id);
    this.stats.connections = this.#connections.size;
    socket.setNoDelay(true);
    socket.setTimeout(this.#opts.idleTimeoutMs ?? 15 * 60_000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => this.#onStreamData(conn, chunk));
    socket.on('error', (e) => this.#log('debug', `connection ${id} error`, e));
    socket.on('close', () => {
      this.#connections.delete(id);
      if (this.#byRemote.get(flowKey(flow)) === id) this.#byRemote.delete(flowKey(flow));
      this.stats.connections = this.#connections.size;
      try {
        this.#opts.onConnectionClosed?.(id);
      } catch (e) {
        this.#log('error', 'connection close handler failed', e);
      }
    });
    return conn;
  }

  #onStreamData(conn: Connection, chunk: Buffer): void {
    let events;
    try {
      events = conn.framer.push(chunk);
    } catch (e) {
      this.#log('error', 'framer failure', e);
      conn.socket.destroy();
      return;
    }
    for (const ev of events) {
      if (ev.kind === 'message') this.#deliver(ev.message, conn.flow);
      else if (ev.kind === 'ping') conn.socket.write('\r\n'); // RFC 5626 §4.4.1 pong
      else if (ev.kind === 'error') this.#onParseError(ev.error, conn.flow);
      else {
        // Framing lost (RFC 4475 §3.1.2.3 ncl, mcl01): answer if we can, then close.
        this.#onParseError(ev.error, conn.flow);
        conn.socket.end();
      }
    }
  }

  // ---- sending ------------------------------------------------------------------------

  send(message: SipMessage, dest: Destination): boolean {
    return this.sendRaw(message.toBuffer(), dest);
  }

  sendRaw(data: Buffer, dest: Destination): boolean {
    if (dest.transport === 'udp') {
      const sock = dest.address.includes(':') ? this.#udp6 ?? this.#udp4 : this.#udp4 ?? this.#udp6;
      if (sock === undefined) return false;
      // Never send to broadcast / unspecified addresses (RFC 4475 §3.1.2.20 bcast).
      if (dest.address === '255.255.255.255' || dest.address === '0.0.0.0' || dest.port === 0) return false;
      // No completion callback: one JS call less per datagram; a failed send is reported
      // through the socket's 'error' event.
      sock.send(data, dest.port, dest.address);
      this.stats.sent++;
      return true;
    }
    let conn = dest.connectionId !== undefined ? this.#connections.get(dest.connectionId) : undefined;
    if (conn === undefined) {
      const id = this.#byRemote.get(flowKey({ transport: dest.transport, remoteAddress: dest.address, remotePort: dest.port }));
      conn = id !== undefined ? this.#connections.get(id) : undefined;
    }
    if (conn === undefined || conn.socket.destroyed) {
      if (dest.transport !== 'tcp' && dest.transport !== 'tls') return false;
      conn = this.#connect(dest);
      if (conn === undefined) return false;
    }
    conn.socket.write(data);
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
    return c !== undefined && !c.socket.destroyed;
  }

  async close(): Promise<void> {
    for (const c of this.#connections.values()) c.socket.destroy();
    this.#connections.clear();
    this.#byRemote.clear();
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
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

