// What the transaction layer sees of the transports (RFC 3261 §18): send bytes to a
// destination, receive messages with the flow they came on. Flows identify connections so
// that responses and later requests reuse the connection a client opened (§18.2.2, RFC 5626
// §5.3: the only way to reach a client behind NAT over TCP/TLS/WS).
import type { Via } from './headers.ts';
import type { SipMessage } from './message.ts';
import { isIPv4, isIPv6 } from './uri.ts';

export type TransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/** Where a message came from (or leaves through). */
export interface Flow {
  readonly transport: TransportName;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Set for connection-oriented transports: the connection the message arrived on. */
  readonly connectionId?: number;
}

export interface Destination {
  readonly transport: TransportName;
  readonly address: string;
  readonly port: number;
  /** Prefer this existing connection (connection reuse / RFC 5626 flow). */
  readonly connectionId?: number;
}

export function isReliable(t: TransportName): boolean {
  return t !== 'udp';
}

export function viaTransportName(t: TransportName): string {
  return t.toUpperCase();
}

export function transportFromVia(v: string): TransportName | undefined {
  const t = v.toLowerCase();
  return t === 'udp' || t === 'tcp' || t === 'tls' || t === 'ws' || t === 'wss' ? t : undefined;
}

export function defaultPort(t: TransportName): number {
  return t === 'tls' ? 5061 : t === 'ws' ? 80 : t === 'wss' ? 443 : 5060;
}

/** Sends serialised messages; implemented by the transport layer, used by transactions. */
export interface MessageSender {
  /** Returns false when the destination cannot be reached (no connection, bad address). */
  send(message: SipMessage, dest: Destination): boolean;
  /** The same for bytes already serialised (retransmissions). */
  sendRaw(data: Buffer, dest: Destination): boolean;
}

/** The handlers a transport layer calls; exceptions thrown by them are caught by the caller. */
export interface TransportHandler {
  onMessage(message: SipMessage, flow: Flow): void;
}

/**
 * §18.2.2 (with RFC 3581 §4): where a server sends a response.
 * Reliable: the connection the request came on (else a new one to received/sent-by).
 * Unreliable: `received`:`rport` when rport was requested, else `received` (or sent-by
 * host) and the sent-by port. maddr is not supported (multicast is out of scope).
 */
export function responseDestination(via: Via, flow: Flow): Destination {
  const received = via.params.get('received') ?? undefined;
  const rport = via.params.get('rport');
  const t = transportFromVia(via.transport) ?? flow.transport;
  if (isReliable(flow.transport)) {
    const dest: Destination = {
      transport: flow.transport,
      address: received ?? flow.remoteAddress,
      port: flow.remotePort,
    };
    return flow.connectionId !== undefined ? { ...dest, connectionId: flow.connectionId } : dest;
  }
  if (rport !== undefined && rport !== null && rport !== '') {
    return { transport: t === 'udp' ? 'udp' : flow.transport, address: received ?? flow.remoteAddress, port: Number(rport) };
  }
  return { transport: 'udp', address: received ?? via.host, port: via.port ?? defaultPort(t) };
}

/**
 * §18.2.1: the server transport adds `received` when the sent-by host differs from the packet's
 * source address, and RFC 3581 §4 fills in `rport` with the source port when it is present
 * without a value. Returns the new Via text, or undefined when nothing changed.
 */
export function stampVia(viaText: string, via: Via, flow: Flow, forceRport = false): { text: string; via: Via } | undefined {
  let text = viaText;
  let rport = via.params.get('rport');
  const params = new Map(via.params);
  if (forceRport && rport === undefined) {
    // Kamailio's force_rport(): behave as if the client had asked for rport (RFC 3581),
    // so answers reach clients behind NAT that do not ask for it.
    text += ';rport';
    rport = null;
  }
  const hostIsAddress = isIPv4(via.host) || isIPv6(via.host);
  const needReceived = !hostIsAddress || normaliseAddress(via.host) !== normaliseAddress(flow.remoteAddress);
  let changed = false;
  if ((needReceived || rport === null) && !via.params.has('received')) {
    text += `;received=${flow.remoteAddress}`;
    params.set('received', flow.remoteAddress);
    changed = true;
  }
  if (rport === null) {
    text = text.replace(/;\s*rport(?=\s*(;|$))/i, `;rport=${flow.remotePort}`);
    params.set('rport', String(flow.remotePort));
    changed = true;
  }
  return changed ? { text, via: { ...via, params } } : undefined;
}

function normaliseAddress(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a.toLowerCase();
}

export function flowKey(f: { transport: TransportName; remoteAddress: string; remotePort: number }): string {
  return `${f.transport}:${f.remoteAddress}:${f.remotePort}`;
}
