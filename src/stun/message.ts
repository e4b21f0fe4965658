// STUN messages (RFC 5389, RFC 8489): encoding, decoding, XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY
// and FINGERPRINT; one codec for the doctor's STUN/TURN client (src/deploy/stun.ts) and the
// embedded media engine's ICE-lite responder (src/media/embedded/stun.ts).
//
// RFC 5389 §6, the message header:
//
//     0                   1                   2                   3
//     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |0 0|     STUN Message Type     |         Message Length        |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                         Magic Cookie                          |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//    |                     Transaction ID (96 bits)                  |
//    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// followed by attributes: type (16 bits), length (16 bits), value padded to 4 bytes (§15).
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { crc32 } from 'node:zlib';

export const MAGIC_COOKIE = 0x2112a442;
/** The fixed header's size (§6). */
export const STUN_HEADER = 20;
const HEADER = STUN_HEADER;

export const STUN_TYPE = {
  bindingRequest: 0x0001, bindingSuccess: 0x0101, bindingError: 0x0111,
  allocateRequest: 0x0003, allocateSuccess: 0x0103, allocateError: 0x0113,
  refreshRequest: 0x0004, refreshSuccess: 0x0104, refreshError: 0x0114,
} as const;

export const STUN_ATTR = {
  mappedAddress: 0x0001, username: 0x0006, messageIntegrity: 0x0008, errorCode: 0x0009, lifetime: 0x000d,
  xorRelayedAddress: 0x0016, realm: 0x0014, nonce: 0x0015, requestedTransport: 0x0019, xorMappedAddress: 0x0020,
  useCandidate: 0x0025, software: 0x8022, fingerprint: 0x8028,
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
  options: { readonly integrityKey?: Buffer | string; readonly fingerprint?: boolean } = {},
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
export function mappedAddress(message: StunMessage): TransportAddress | undefined {
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

/** §15.4: recomputes MESSAGE-INTEGRITY with `key` and compares (in constant time). */
export function verifyIntegrity(message: StunMessage, key: Buffer | string): boolean {
  let at = HEADER;
  for (const a of message.attributes) {
    if (a.type === STUN_ATTR.messageIntegrity) {
      if (a.value.length !== 20) return false;
      const signed = Buffer.from(message.raw.subarray(0, at));
      signed.writeUInt16BE(at + 24 - HEADER, 2);
      return timingSafeEqual(createHmac('sha1', key).update(signed).digest(), a.value);
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

/** §15.2 XOR-MAPPED-ADDRESS's value for `address:port` (IPv4, IPv4-mapped IPv6, or IPv6). */
export function encodeXorAddress(address: string, port: number, transactionId: Buffer): Buffer {
  const v4 = isIPv4(address) ? address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const v = Buffer.alloc(v4 !== undefined ? 8 : 20);
  v[1] = v4 !== undefined ? 0x01 : 0x02;
  v.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  if (v4 !== undefined) {
    const ip = v4.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
    v.writeUInt32BE((ip ^ MAGIC_COOKIE) >>> 0, 4);
    return v;
  }
  const mask = Buffer.alloc(16);
  mask.writeUInt32BE(MAGIC_COOKIE, 0);
  transactionId.copy(mask, 4);
  const ip = ipv6Bytes(address);
  for (let i = 0; i < 16; i++) v[4 + i] = ip[i]! ^ mask[i]!;
  return v;
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('%')[0]!.split('::');
  const part = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.slice(0, 8).forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16) || 0, 2 * i));
  return out;
}
