/**
 * SIP over WebSocket (RFC 7118) on the HTTP(S) listener: `GET /sip` with
 * `Sec-WebSocket-Protocol: sip` upgrades to a WebSocket whose messages are SIP messages,
 * handed to the SIP transport layer as a `ws` (plain HTTP) or `wss` (HTTPS) connection.
 *
 * - §4.1: the client MUST offer the `sip` sub-protocol; a handshake without it is refused
 *   (HTTP 400), as is any other path (404).
 * - Liveness: a WebSocket ping every `pingIntervalMs`; a peer that has not answered the
 *   previous ping is cut off, so a browser that vanished (laptop lid shut, network gone)
 *   drops its registration within two intervals instead of at expiry.
 * - At most `maxConnections` WebSocket connections; more get HTTP 503.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import type { TransportLayer } from '../sip/transport-layer.ts';

export interface SipWebSocketOptions {
  readonly transports: TransportLayer;
  /** Largest WebSocket message accepted (bytes); larger ones close the connection (1009). */
  readonly maxMessageBytes?: number;
  readonly maxConnections?: number;
  readonly pingIntervalMs?: number;
  readonly log?: (msg: string, err?: unknown) => void;
}

export const SIP_WS_PATH = '/sip';

export class SipWebSocketEndpoint {
  readonly #opts: SipWebSocketOptions;
  readonly #wss: WebSocketServer;
  readonly #alive = new WeakMap<WebSocket, boolean>();
  readonly #timer: NodeJS.Timeout;

  constructor(opts: SipWebSocketOptions) {
    this.#opts = opts;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxMessageBytes ?? 65_535,
      clientTracking: true,
      perMessageDeflate: false, // SIP messages are small; deflate costs ~300 KiB per connection
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
    });
    this.#timer = setInterval(() => this.#ping(), opts.pingIntervalMs ?? 30_000);
    this.#timer.unref();
  }

  get connections(): number {
    return this.#wss.clients.size;
  }

  /** Serve `ws` on a plain HTTP server and `wss` on an HTTPS one. */
  attach(server: Server, transport: 'ws' | 'wss'): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head, transport));
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, transport: 'ws' | 'wss'): void {
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0];
    if (path !== SIP_WS_PATH) return refuse(socket, 404, 'Not Found');
    const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim().toLowerCase());
    // RFC 7118 §4.1: the `sip` sub-protocol is mandatory.
    if (!offered.includes('sip')) return refuse(socket, 400, 'Bad Request', 'offer the WebSocket sub-protocol "sip" (RFC 7118)');
    if (this.#wss.clients.size >= (this.#opts.maxConnections ?? 10_000)) return refuse(socket, 503, 'Service Unavailable');
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const remote = { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 };
      const local = { address: req.socket.localAddress ?? '', port: req.socket.localPort ?? 0 };
      this.#alive.set(ws, true);
      ws.on('pong', () => this.#alive.set(ws, true));
      try {
        this.#opts.transports.acceptWebSocket(ws, transport, remote, local);
      } catch (e) {
        this.#opts.log?.('websocket accept failed', e);
        ws.terminate();
      }
    });
  }

  #ping(): void {
    for (const ws of this.#wss.clients) {
      if (this.#alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      this.#alive.set(ws, false);
      try {
        ws.ping();
      } catch {
        ws.terminate();
      }
    }
  }

  close(): void {
    clearInterval(this.#timer);
    for (const ws of this.#wss.clients) ws.terminate();
    this.#wss.close();
  }
}

function refuse(socket: Duplex, status: number, reason: string, detail = ''): void {
  const body = detail === '' ? reason : `${reason}: ${detail}`;
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}
