/**
 * The small part of STUN (RFC 5389) and TURN (RFC 5766) that `careflow doctor` needs: a
 * Binding request to learn this machine's public address (or to see that a TURN server
 * answers), and an Allocate with long-term credentials to see that the TURN server accepts
 * the ones CareFlow derives from `turnSecret`.
 *
 * RFC 5389 §6, the message header:
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |0 0|     STUN Message Type     |         Message Length        |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                         Magic Cookie                          |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                     Transaction ID (96 bits)                  |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * followed by attributes: type (16 bits), length (16 bits), value padded to 4 bytes (§15).
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP, connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { crc32 } from 'node:zlib';

export const MAGIC_COOKIE = 0x2112a442;
const HEADER = 20;

export const STUN_TYPE = {
  bindingRequest: 0x0001, bindingSuccess: 0x0101, bindingError: 0x0111,
  allocateRequest: 0x0003, allocateSuccess: 0x0103, allocateError: 0x0113,
  refreshRequest: 0x0004, refreshSuccess: 0x0104, refreshError: 0x0114,
} as const;

export const STUN_ATTR = {
  mappedAddress: 0x0001, username: 0x0006, messageIntegrity: 0x0008, errorCode: 0x0009, lifetime: 0x000d,
  xorRelayedAddress: 0x0016, realm: 0x0014, nonce: 0x0015, requestedTransport: 0x0019, xorMappedAddress: 0x0020,
  software: 0x8022, fingerprint: 0x8028,
} as const;

export interface StunAttribute {
  readonly type: number;
  readonly value: Buffer;
}

export interface StunMessage {
  readonly type: number;
  readonly transactionId: Buffer;
  readonly attributes: readonly StunAttribute[];
  /** The message as received (for MESSAGE-INTEGRITY and FINGERPRINT checks). */
  readonly raw: Buffer;
}

export interface TransportAddress {
  readonly address: string;
  readonly port: number;
}

export function newTransactionId(): Buffer {
  return randomBytes(12);
}

function header(type: number, length: number, transactionId: Buffer): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(length, 2);
  h.writeUInt32BE(MAGIC_COOKIE, 4);
  transactionId.copy(h, 8);
  return h;
}

function attribute(type: number, value: Buffer): Buffer {
  const out = Buffer.alloc(4 + Math.ceil(value.length / 4) * 4);
  out.writeUInt16BE(type, 0);
  out.writeUInt16BE(value.length, 2);
  value.copy(out, 4);
  return out;
}

/**
 * Encodes a message. With `integrityKey`, MESSAGE-INTEGRITY is appended (§15.4: HMAC-SHA1 over
 * the message up to it, the length field already counting it); with `fingerprint`, FINGERPRINT
 * last (§15.5: CRC-32 of everything before it, XOR 0x5354554e).
 */
export function encodeStun(
  type: number,
  transactionId: Buffer,
  attributes: readonly StunAttribute[],
  options: { readonly integrityKey?: Buffer; readonly fingerprint?: boolean } = {},
): Buffer {
  let body = Buffer.concat(attributes.map((a) => attribute(a.type, a.value)));
  if (options.integrityKey !== undefined) {
    const signed = Buffer.concat([header(type, body.length + 24, transactionId), body]);
    const mac = createHmac('sha1', options.integrityKey).update(signed).digest();
    body = Buffer.concat([body, attribute(STUN_ATTR.messageIntegrity, mac)]);
  }
  if (options.fingerprint === true) {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE((crc32(Buffer.concat([header(type, body.length + 8, transactionId), body])) ^ 0x5354554e) >>> 0);
    body = Buffer.concat([body, attribute(STUN_ATTR.fingerprint, crc)]);
  }
  return Buffer.concat([header(type, body.length, transactionId), body]);
}

/** Decodes one whole message; undefined when the bytes are not STUN (§6: top bits 0, the cookie). */
export function decodeStun(raw: Buffer): StunMessage | undefined {
  if (raw.length < HEADER || (raw[0]! & 0xc0) !== 0 || raw.readUInt32BE(4) !== MAGIC_COOKIE) return undefined;
  const length = raw.readUInt16BE(2);
  if (length % 4 !== 0 || raw.length < HEADER + length) return undefined;
  const attributes: StunAttribute[] = [];
  let at = HEADER;
  while (at + 4 <= HEADER + length) {
    const type = raw.readUInt16BE(at);
    const size = raw.readUInt16BE(at + 2);
    if (at + 4 + size > HEADER + length) return undefined;
    attributes.push({ type, value: raw.subarray(at + 4, at + 4 + size) });
    at += 4 + Math.ceil(size / 4) * 4;
  }
  return { type: raw.readUInt16BE(0), transactionId: raw.subarray(8, 20), attributes, raw: raw.subarray(0, HEADER + length) };
}

export function getAttribute(message: StunMessage, type: number): Buffer | undefined {
  return message.attributes.find((a) => a.type === type)?.value;
}

/** §15.2 XOR-MAPPED-ADDRESS (also XOR-RELAYED-ADDRESS, RFC 5766 §14.5): port and address XORed with the cookie (and, for IPv6, the transaction id). */
export function xorAddress(message: StunMessage, type: number = STUN_ATTR.xorMappedAddress): TransportAddress | undefined {
  const value = getAttribute(message, type);
  if (value === undefined || value.length < 8) return undefined;
  const port = value.readUInt16BE(2) ^ (MAGIC_COOKIE >>> 16);
  const family = value[1];
  if (family === 0x01) {
    const a = (value.readUInt32BE(4) ^ MAGIC_COOKIE) >>> 0;
    return { address: [a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff].join('.'), port };
  }
  if (family === 0x02 && value.length >= 20) {
    const mask = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), message.transactionId]);
    const bytes = Buffer.from(value.subarray(4, 20).map((b, i) => b ^ mask[i]!));
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
    // The WHATWG URL parser writes an IPv6 address in its canonical, compressed form (RFC 5952).
    return { address: new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1), port };
  }
  return undefined;
}

/** §15.1 MAPPED-ADDRESS, for old servers that do not send the XOR form. */
function mappedAddress(message: StunMessage): TransportAddress | undefined {
  const value = getAttribute(message, STUN_ATTR.mappedAddress);
  if (value === undefined || value.length < 8 || value[1] !== 0x01) return undefined;
  return { address: [...value.subarray(4, 8)].join('.'), port: value.readUInt16BE(2) };
}

/** §15.6 ERROR-CODE: class * 100 + number, and the reason phrase. */
export function errorCode(message: StunMessage): { code: number; reason: string } | undefined {
  const value = getAttribute(message, STUN_ATTR.errorCode);
  if (value === undefined || value.length < 4) return undefined;
  return { code: (value[2]! & 0x07) * 100 + value[3]!, reason: value.subarray(4).toString('utf8') };
}

/** §15.4: recomputes MESSAGE-INTEGRITY with `key` and compares. */
export function verifyIntegrity(message: StunMessage, key: Buffer): boolean {
  let at = HEADER;
  for (const a of message.attributes) {
    if (a.type === STUN_ATTR.messageIntegrity) {
      const signed = Buffer.from(message.raw.subarray(0, at));
      signed.writeUInt16BE(at + 24 - HEADER, 2);
      return createHmac('sha1', key).update(signed).digest().equals(a.value);
    }
    at += 4 + Math.ceil(a.value.length / 4) * 4;
  }
  return false;
}

/** §15.5: checks FINGERPRINT, the last attribute. */
export function verifyFingerprint(message: StunMessage): boolean {
  const last = message.attributes.at(-1);
  if (last?.type !== STUN_ATTR.fingerprint || last.value.length !== 4) return false;
  return ((crc32(message.raw.subarray(0, message.raw.length - 8)) ^ 0x5354554e) >>> 0) === last.value.readUInt32BE(0);
}

/** §15.4 long-term credentials: key = MD5(username ":" realm ":" password). */
export function longTermKey(username: string, realm: string, password: string): Buffer {
  return createHash('md5').update(`${username}:${realm}:${password}`).digest();
}

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
    while (buffered.length >= HEADER && buffered.length >= HEADER + buffered.readUInt16BE(2)) {
      const size = HEADER + buffered.readUInt16BE(2);
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
