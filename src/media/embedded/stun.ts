// The STUN half of ICE-lite (RFC 8445 §2.5): a lite agent gathers only its host candidate,
// never sends checks, and answers the full agent's Binding requests (RFC 8445 §7.3). A
// request is valid when it carries USERNAME "<our ufrag>:<their ufrag>" and a
// MESSAGE-INTEGRITY keyed with our ice-pwd (short-term credentials, RFC 8489 §9.1); the
// success response echoes where it came from (XOR-MAPPED-ADDRESS) and is signed the same way.
//
// The message codec (header, attributes, MESSAGE-INTEGRITY, FINGERPRINT) is src/stun/message.ts.
import {
  decodeStun, encodeStun, encodeXorAddress, getAttribute, MAGIC_COOKIE, STUN_ATTR, STUN_HEADER, STUN_TYPE, verifyFingerprint, verifyIntegrity,
} from '../../stun/message.ts';

/** RFC 7983 §7: the first byte of a STUN message is 0-3. */
export function isStun(b: Buffer): boolean {
  return b.length >= STUN_HEADER && b[0]! < 4 && b.readUInt32BE(4) === MAGIC_COOKIE;
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
  if (!isStun(b)) return undefined;
  const m = decodeStun(b);
  if (m === undefined || m.type !== STUN_TYPE.bindingRequest || m.raw.length !== b.length) return undefined;
  // RFC 8489 §14.7: a FINGERPRINT, when present, is the last attribute and must match.
  if (getAttribute(m, STUN_ATTR.fingerprint) !== undefined && !verifyFingerprint(m)) return undefined;
  const username = getAttribute(m, STUN_ATTR.username)?.toString('utf8');
  const colon = username?.indexOf(':') ?? -1;
  if (username === undefined || colon < 0 || username.slice(0, colon) !== localUfrag) return undefined;
  // RFC 8489 §9.1 short-term credentials: MESSAGE-INTEGRITY keyed with our ice-pwd.
  if (!verifyIntegrity(m, localPwd)) return undefined;
  return {
    transactionId: Buffer.from(m.transactionId),
    remoteUfrag: username.slice(colon + 1),
    useCandidate: getAttribute(m, STUN_ATTR.useCandidate) !== undefined,
  };
}

/** The success response to a Binding request from `address:port`, signed with `localPwd`, FINGERPRINT last. */
export function bindingSuccess(req: BindingRequest, address: string, port: number, localPwd: string): Buffer {
  return encodeStun(STUN_TYPE.bindingSuccess, req.transactionId,
    [{ type: STUN_ATTR.xorMappedAddress, value: encodeXorAddress(address, port, req.transactionId) }],
    { integrityKey: localPwd, fingerprint: true });
}
