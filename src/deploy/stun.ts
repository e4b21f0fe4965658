/**
 * The small part of STUN (RFC 5389) and TURN (RFC 5766) that `careflow doctor` needs: a
 * Binding request to learn this machine's public address (or to see that a TURN server
 * answers), and an Allocate with long-term credentials to see that the TURN server accepts
 * the ones CareFlow derives from `turnSecret`. The message codec is src/stun/message.ts.
 */
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP, connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import {
  decodeStun, encodeStun, errorCode, getAttribute, longTermKey, mappedAddress, newTransactionId, STUN_ATTR, STUN_HEADER, STUN_TYPE,
  type StunAttribute, type StunMessage, type TransportAddress, xorAddress,
} from '../stun/message.ts';

export type { TransportAddress } from '../stun/message.ts';

// ---------------------------------------------------------------- client

export type StunTransport = 'udp' | 'tcp' | 'tls';

export interface StunServer {
  readonly transport: StunTransport;
  readonly host: string;
  readonly port: number;
}

/**
 * Parses a stun:/stuns: (RFC 7064) or turn:/turns: (RFC 7065) URL: default ports 3478 and
 * 5349 (TLS); turn: uses UDP unless `?transport=tcp`.
 */
export function parseIceUrl(url: string): StunServer | undefined {
  const m = /^(stuns?|turns?):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/.exec(url);
  if (m === null) return undefined;
  const secure = m[1]!.endsWith('s');
  const host = m[2]!.replace(/^\[(.*)\]$/, '$1');
  const port = m[3] !== undefined ? Number(m[3]) : secure ? 5349 : 3478;
  const transport: StunTransport = secure ? 'tls' : m[4] === 'tcp' ? 'tcp' : 'udp';
  return { transport, host, port };
}

/** One association with a STUN server (one UDP socket or one connection): TURN allocations live on it. */
export interface StunSession {
  /** Sends a request; resolves with the answer carrying its transaction id, rejects after `timeoutMs`. */
  request(message: Buffer, timeoutMs: number): Promise<StunMessage>;
  close(): void;
}

interface Waiting {
  readonly resolve: (m: StunMessage) => void;
  readonly reject: (e: Error) => void;
}

export async function openStunSession(server: StunServer, timeoutMs: number): Promise<StunSession> {
  const address = isIP(server.host) !== 0 ? server.host : (await lookup(server.host)).address;
  const waiting = new Map<string, Waiting>();
  const deliver = (raw: Buffer): void => {
    const m = decodeStun(raw);
    if (m === undefined) return;
    const key = m.transactionId.toString('hex');
    const w = waiting.get(key);
    waiting.delete(key);
    w?.resolve(m);
  };
  const failAll = (error: Error): void => {
    for (const w of waiting.values()) w.reject(error);
    waiting.clear();
  };
  const wait = (message: Buffer, ms: number, send: () => void, retransmit: boolean): Promise<StunMessage> => {
    const key = message.subarray(8, 20).toString('hex');
    return new Promise<StunMessage>((resolve, reject) => {
      let rto = 500;
      let timer: NodeJS.Timeout | undefined;
      // §7.2.1: over UDP, retransmit after RTO (500 ms), doubling each time.
      const again = (): void => { send(); timer = setTimeout(again, rto); rto *= 2; };
      const deadline = setTimeout(() => {
        clearTimeout(timer);
        waiting.delete(key);
        reject(new Error(`no answer within ${ms} ms`));
      }, ms);
      const done = (): void => { clearTimeout(deadline); clearTimeout(timer); };
      waiting.set(key, { resolve: (m) => { done(); resolve(m); }, reject: (e) => { done(); reject(e); } });
      if (retransmit) again();
      else send();
    });
  };

  if (server.transport === 'udp') {
    const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    socket.on('message', deliver);
    socket.on('error', (e) => failAll(e));
    let closed = false;
    return {
      request: (message, ms) => wait(message, ms, () => { if (!closed) socket.send(message, server.port, address); }, true),
      close: () => { if (!closed) { closed = true; failAll(new Error('closed')); socket.close(); } },
    };
  }

  // §7.2.2: over TCP and TLS the message is its own framing (the length is in the header).
  const socket: Socket = await new Promise<Socket>((resolve, reject) => {
    const options = { host: address, port: server.port };
    const s: Socket = server.transport === 'tls'
      ? tlsConnect({ ...options, rejectUnauthorized: false, ...(isIP(server.host) === 0 ? { servername: server.host } : {}) })
      : tcpConnect(options);
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no connection within ${timeoutMs} ms`)); }, timeoutMs);
    s.once(server.transport === 'tls' ? 'secureConnect' : 'connect', () => { clearTimeout(timer); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= STUN_HEADER && buffered.length >= STUN_HEADER + buffered.readUInt16BE(2)) {
      const size = STUN_HEADER + buffered.readUInt16BE(2);
      deliver(buffered.subarray(0, size));
      buffered = buffered.subarray(size);
    }
  });
  socket.on('error', (e) => failAll(e));
  socket.on('close', () => failAll(new Error('the server closed the connection')));
  return {
    request: (message, ms) => wait(message, ms, () => socket.write(message), false),
    close: () => { socket.destroy(); },
  };
}

/** A Binding request (§10.1.1's client side): the address the server saw us at. */
export async function stunBinding(server: StunServer, timeoutMs: number): Promise<TransportAddress> {
  const session = await openStunSession(server, timeoutMs);
  try {
    const answer = await session.request(encodeStun(STUN_TYPE.bindingRequest, newTransactionId(), []), timeoutMs);
    if (answer.type === STUN_TYPE.bindingError) {
      const e = errorCode(answer);
      throw new Error(`the server refused the binding request (${e?.code ?? '?'} ${e?.reason ?? ''})`.trim());
    }
    const mapped = answer.type === STUN_TYPE.bindingSuccess ? (xorAddress(answer) ?? mappedAddress(answer)) : undefined;
    if (mapped === undefined) throw new Error('the answer carries no mapped address');
    return mapped;
  } finally {
    session.close();
  }
}

export type TurnAllocateResult =
  | { readonly kind: 'allocated'; readonly relayed: TransportAddress | undefined }
  | { readonly kind: 'rejected'; readonly code: number; readonly reason: string }
  | { readonly kind: 'error'; readonly code: number; readonly reason: string };

const REQUESTED_UDP = Buffer.from([17, 0, 0, 0]); // RFC 5766 §14.7: protocol 17 (UDP), RFFU

/**
 * RFC 5766 §6: an Allocate with long-term credentials (§10.2 of RFC 5389: the first request
 * is challenged with 401 and a REALM and NONCE), then a Refresh with LIFETIME 0 (§7) to free
 * the allocation at once. `rejected`: the server refused the credentials (401 again).
 */
export async function turnAllocate(server: StunServer, username: string, password: string, timeoutMs: number): Promise<TurnAllocateResult> {
  const session = await openStunSession(server, timeoutMs);
  try {
    const transport = { type: STUN_ATTR.requestedTransport, value: REQUESTED_UDP };
    let answer = await session.request(encodeStun(STUN_TYPE.allocateRequest, newTransactionId(), [transport]), timeoutMs);
    let key: Buffer | undefined;
    let auth: StunAttribute[] = [];
    // At most: the 401 challenge, then one 438 Stale Nonce (§10.2.4) with a fresh nonce.
    for (let round = 0; round < 2 && answer.type === STUN_TYPE.allocateError; round++) {
      const e = errorCode(answer);
      const realm = getAttribute(answer, STUN_ATTR.realm);
      const nonce = getAttribute(answer, STUN_ATTR.nonce);
      if ((e?.code !== 401 && e?.code !== 438) || realm === undefined || nonce === undefined || (e.code === 401 && key !== undefined)) break;
      key = longTermKey(username, realm.toString('utf8'), password);
      auth = [
        { type: STUN_ATTR.username, value: Buffer.from(username, 'utf8') },
        { type: STUN_ATTR.realm, value: realm },
        { type: STUN_ATTR.nonce, value: nonce },
      ];
      answer = await session.request(encodeStun(STUN_TYPE.allocateRequest, newTransactionId(), [transport, ...auth], { integrityKey: key }), timeoutMs);
    }
    if (answer.type === STUN_TYPE.allocateSuccess) {
      const relayed = xorAddress(answer, STUN_ATTR.xorRelayedAddress);
      const lifetime = { type: STUN_ATTR.lifetime, value: Buffer.alloc(4) };
      await session.request(encodeStun(STUN_TYPE.refreshRequest, newTransactionId(), [lifetime, ...auth], key !== undefined ? { integrityKey: key } : {}), timeoutMs)
        .catch(() => undefined); // the allocation times out by itself anyway
      return { kind: 'allocated', relayed };
    }
    const e = errorCode(answer) ?? { code: 0, reason: `unexpected answer type 0x${answer.type.toString(16)}` };
    return { kind: e.code === 401 && key !== undefined ? 'rejected' : 'error', code: e.code, reason: e.reason };
  } finally {
    session.close();
  }
}
