// The STUN half of ICE-lite (RFC 8445 §2.5): a lite agent gathers only its host candidate,
// never sends checks, and answers the full agent's Binding requests (RFC 8445 §7.3). A
// request is valid when it carries USERNAME "<our ufrag>:<their ufrag>" and a
// MESSAGE-INTEGRITY keyed with our ice-pwd (short-term credentials, RFC 8489 §9.1); the
// success response echoes where it came from (XOR-MAPPED-ADDRESS) and is signed the same way.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |0 0|     STUN Message Type     |         Message Length        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                         Magic Cookie                          |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                     Transaction ID (96 bits)                  |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |         Type                  |            Length             |  attributes, each
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  padded to 4 bytes
import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { crc32 } from 'node:zlib';

const MAGIC_COOKIE = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const USERNAME = 0x0006;
const MESSAGE_INTEGRITY = 0x0008;
const XOR_MAPPED_ADDRESS = 0x0020;
const USE_CANDIDATE = 0x0025;
const FINGERPRINT = 0x8028;
const FINGERPRINT_XOR = 0x5354554e;

/** RFC 7983 §7: the first byte of a STUN message is 0-3. */
export function isStun(b: Buffer): boolean {
  return b.length >= 20 && b[0]! < 4 && b.readUInt32BE(4) === MAGIC_COOKIE;
}

export interface BindingRequest {
  readonly transactionId: Buffer;
  /** The remote agent's ufrag (the part of USERNAME after the colon). */
  readonly remoteUfrag: string;
  /** USE-CANDIDATE: the controlling agent nominates this pair (RFC 8445 §8.1.1). */
  readonly useCandidate: boolean;
}

/**
 * A Binding request addressed to us (`localUfrag`) and signed with `localPwd`; undefined for
 * anything else (responses, indications, wrong credentials, a broken FINGERPRINT).
 */
export function parseBindingRequest(b: Buffer, localUfrag: string, localPwd: string): BindingRequest | undefined {
  if (!isStun(b) || b.readUInt16BE(0) !== BINDING_REQUEST || 20 + b.readUInt16BE(2) !== b.length) return undefined;
  let username: string | undefined;
  let integrityAt = -1;
  let useCandidate = false;
  for (let off = 20; off + 4 <= b.length;) {
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 2);
    const value = off + 4;
    if (value + len > b.length) return undefined;
    if (type === USERNAME) username = b.toString('utf8', value, value + len);
    else if (type === USE_CANDIDATE) useCandidate = true;
    else if (type === MESSAGE_INTEGRITY) integrityAt = off;
    else if (type === FINGERPRINT) {
      // RFC 8489 §14.7: CRC-32 of the message up to this attribute, XORed with 0x5354554e
      if (len !== 4 || (crc32(b.subarray(0, off)) ^ FINGERPRINT_XOR) >>> 0 !== b.readUInt32BE(value)) return undefined;
    }
    off = value + len + ((4 - (len % 4)) % 4);
  }
  if (username === undefined || integrityAt < 0) return undefined;
  const colon = username.indexOf(':');
  if (colon < 0 || username.slice(0, colon) !== localUfrag) return undefined;
  // RFC 8489 §14.5: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, with the length field
  // counting up to and including it.
  const signed = Buffer.from(b.subarray(0, integrityAt));
  signed.writeUInt16BE(integrityAt + 24 - 20, 2);
  const expected = createHmac('sha1', localPwd).update(signed).digest();
  const actual = b.subarray(integrityAt + 4, integrityAt + 24);
  if (actual.length !== 20 || !timingSafeEqual(actual, expected)) return undefined;
  return { transactionId: Buffer.from(b.subarray(8, 20)), remoteUfrag: username.slice(colon + 1), useCandidate };
}

/** The success response to a Binding request from `address:port`, signed with `localPwd`. */
export function bindingSuccess(req: BindingRequest, address: string, port: number, localPwd: string): Buffer {
  const v4 = isIPv4(address) ? address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const xorAddress = v4 !== undefined ? xorV4(v4, port) : xorV6(address, port, req.transactionId);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(BINDING_SUCCESS, 0);
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  req.transactionId.copy(header, 8);
  const mapped = attribute(XOR_MAPPED_ADDRESS, xorAddress);
  // MESSAGE-INTEGRITY over header + XOR-MAPPED-ADDRESS, length counting MESSAGE-INTEGRITY
  header.writeUInt16BE(mapped.length + 24, 2);
  const mac = createHmac('sha1', localPwd).update(header).update(mapped).digest();
  const integrity = attribute(MESSAGE_INTEGRITY, mac);
  // FINGERPRINT last, the length now counting it too
  header.writeUInt16BE(mapped.length + integrity.length + 8, 2);
  const body = Buffer.concat([header, mapped, integrity]);
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE((crc32(body) ^ FINGERPRINT_XOR) >>> 0, 0);
  return Buffer.concat([body, attribute(FINGERPRINT, fp)]);
}

function attribute(type: number, value: Buffer): Buffer {
  const pad = (4 - (value.length % 4)) % 4;
  const a = Buffer.alloc(4 + value.length + pad);
  a.writeUInt16BE(type, 0);
  a.writeUInt16BE(value.length, 2);
  value.copy(a, 4);
  return a;
}

function xorV4(address: string, port: number): Buffer {
  const v = Buffer.alloc(8);
  v[1] = 0x01;
  v.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  const ip = address.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  v.writeUInt32BE((ip ^ MAGIC_COOKIE) >>> 0, 4);
  return v;
}

function xorV6(address: string, port: number, transactionId: Buffer): Buffer {
  const v = Buffer.alloc(20);
  v[1] = 0x02;
  v.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
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
