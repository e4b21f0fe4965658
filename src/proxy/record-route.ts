// Record-Route and loose routing for a proxy that must reach phones behind NAT.
//
// We record-route every dialog (RFC 3261 §16.6 step 4) and put two HMAC-signed flow tokens in
// our Record-Route URI (RFC 5626 §5.2 flow tokens): the caller's flow (`cf`) and the callee's
// (`ef`), plus the caller's From tag (`ftag`, as Kamailio's rr module) to tell the direction of
// a later in-dialog request. A request from the caller goes to the callee's flow and vice
// versa, so BYE and re-INVITE reach a phone at its NAT address (or over the very TCP
// connection it opened) whatever its Contact says. When the two sides use different
// transports we insert two Record-Route values, one per interface (RFC 5658 §4).
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { parseNameAddr } from '../sip/headers.ts';
import type { SipRequest } from '../sip/message.ts';
import type { Destination, Flow, TransportName } from '../sip/transport.ts';
import { formatHost } from '../sip/uri.ts';

export interface LocalInterface {
  readonly transport: TransportName;
  /** Address written into Via / Record-Route (the advertised address). */
  readonly host: string;
  readonly port: number;
}

export class FlowTokens {
  /** A KeyObject: createHmac with a raw Buffer key re-imports the key on every call. */
  readonly #secret: KeyObject;
  constructor(secret: Buffer) {
    this.#secret = createSecretKey(secret);
  }

  /** Tokens made for flows: a phone calls and is called over the same flow again and again. */
  readonly #encoded = new Map<string, string>();

  encode(f: { transport: TransportName; remoteAddress: string; remotePort: number; connectionId?: number | undefined }): string {
    const body = `${f.transport}~${f.remoteAddress}~${f.remotePort}~${f.connectionId ?? ''}`;
    const known = this.#encoded.get(body);
    if (known !== undefined) return known;
    const mac = createHmac('sha256', this.#secret).update(body).digest().subarray(0, 9);
    const token = Buffer.from(body).toString('base64url') + '.' + mac.toString('base64url');
    if (this.#encoded.size >= 10_000) this.#encoded.clear();
    this.#encoded.set(body, token);
    return token;
  }

  /** Verified tokens: the ACK, re-INVITEs and BYE of a dialog carry the same ones. */
  readonly #verified = new Map<string, Destination | undefined>();

  decode(token: string): Destination | undefined {
    if (this.#verified.has(token)) return this.#verified.get(token);
    const dest = this.#verify(token);
    if (this.#verified.size >= 10_000) this.#verified.clear();
    this.#verified.set(token, dest);
    return dest;
  }

  #verify(token: string): Destination | undefined {
    const dot = token.indexOf('.');
    if (dot <= 0) return undefined;
    const body = Buffer.from(token.slice(0, dot), 'base64url').toString();
    const mac = Buffer.from(token.slice(dot + 1), 'base64url');
    const want = createHmac('sha256', this.#secret).update(body).digest().subarray(0, 9);
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) return undefined;
    const [t, address, port, conn] = body.split('~');
    if (t === undefined || address === undefined || port === undefined) return undefined;
    const dest: Destination = { transport: t as TransportName, address, port: Number(port) };
    return conn !== undefined && conn !== '' ? { ...dest, connectionId: Number(conn) } : dest;
  }
}

export function interfaceUri(i: LocalInterface, params: string): string {
  const tp = i.transport === 'udp' ? '' : `;transport=${i.transport}`;
  return `<sip:${formatHost(i.host)}:${i.port}${tp};lr${params}>`;
}

/**
 * Record-Route values to add to an initial request, top first (§16.6 step 4, RFC 5658):
 * one when both legs use the same interface, else outbound (callee-facing) on top of inbound.
 */
export function recordRouteValues(
  tokens: FlowTokens, inbound: LocalInterface, outbound: LocalInterface, callerFlow: Flow, calleeFlow: Destination, fromTag: string,
): string[] {
  const cf = tokens.encode(callerFlow);
  const ef = tokens.encode({ transport: calleeFlow.transport, remoteAddress: calleeFlow.address, remotePort: calleeFlow.port, connectionId: calleeFlow.connectionId });
  const params = `;ftag=${fromTag};cf=${cf};ef=${ef}`;
  if (inbound.transport === outbound.transport && inbound.host === outbound.host && inbound.port === outbound.port) {
    return [interfaceUri(inbound, params)];
  }
  return [interfaceUri(outbound, params), interfaceUri(inbound, params)];
}

export interface LooseRouteResult {
  /** Our flow-token parameters from the popped Route value(s), still encoded: decode only the one needed. */
  readonly ftag: string | undefined;
  readonly callerToken: string | undefined;
  readonly calleeToken: string | undefined;
  readonly popped: number;
}

/**
 * §16.4: if the top Route value is ours, remove it (and a second one of ours, RFC 5658).
 * Returns undefined when the request's top Route is not ours.
 */
export function popOwnRoutes(req: SipRequest, isOwn: (host: string, port: number | undefined) => boolean): LooseRouteResult | undefined {
  let popped = 0;
  let ftag: string | undefined;
  let callerToken: string | undefined;
  let calleeToken: string | undefined;
  while (popped < 2) {
    const top = req.first('route');
    if (top === undefined) break;
    let na;
    try {
      na = parseNameAddr(top);
    } catch {
      break;
    }
    if (!isOwn(na.uri.host, na.uri.port)) break;
    req.removeFirst('route');
    popped++;
    const p = na.uri.params;
    ftag ??= p.get('ftag') ?? undefined;
    callerToken ??= p.get('cf') ?? undefined;
    calleeToken ??= p.get('ef') ?? undefined;
  }
  return popped === 0 ? undefined : { ftag, callerToken, calleeToken, popped };
}
