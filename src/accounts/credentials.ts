/**
 * SIP credentials: generated passwords and the HA1 digests stored instead of them.
 *
 * HA1 = H(username ":" realm ":" password) (RFC 2617 §3.2.2.2, RFC 7616 §3.4.2), hex.
 * `username` is the login name the phone sends, so a user gets one HA1 pair for the SIP
 * username and one for the number. `realm` is the configured domain: changing the domain
 * invalidates every HA1; `careflow user passwd ID` re-keys a user (with a new password,
 * since the old one is not kept).
 */
import { createHash, randomBytes } from 'node:crypto';
import { CareflowError } from '../config/errors.ts';
import type { DigestAlgorithm } from '../config/schema.ts';
import type { UserDigests } from '../store/types.ts';

/** Letters and digits without the look-alikes 0 O o 1 l I: URL-safe, easy to type on a phone. */
export const PASSWORD_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789';
export const GENERATED_PASSWORD_LENGTH = 20; // 20 * log2(56) = 116 bits
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 128;

const NODE_HASH: Readonly<Record<DigestAlgorithm, string>> = { 'MD5': 'md5', 'SHA-256': 'sha256' };

/** HA1 for one algorithm, lower-case hex. */
export function ha1(algorithm: DigestAlgorithm, username: string, realm: string, password: string): string {
  return createHash(NODE_HASH[algorithm]).update(`${username}:${realm}:${password}`, 'utf8').digest('hex');
}

/** The four HA1s stored for a user: both algorithms, both login names. */
export function userDigests(login: { readonly sipUsername: string; readonly number: string }, realm: string, password: string): UserDigests {
  return {
    realm,
    ha1Md5: ha1('MD5', login.sipUsername, realm, password),
    ha1Sha256: ha1('SHA-256', login.sipUsername, realm, password),
    ha1Md5Number: ha1('MD5', login.number, realm, password),
    ha1Sha256Number: ha1('SHA-256', login.number, realm, password),
  };
}

/** A strong random password from PASSWORD_ALPHABET (rejection sampling: no modulo bias). */
export function generatePassword(length: number = GENERATED_PASSWORD_LENGTH): string {
  const size = PASSWORD_ALPHABET.length;
  const limit = 256 - (256 % size);
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit) out += PASSWORD_ALPHABET[byte % size];
      if (out.length === length) break;
    }
  }
  return out;
}

/** Checks an operator-chosen password; `field` names the flag or column in the error. */
export function checkPassword(password: string, field: string = 'password'): string {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new CareflowError('INVALID_INPUT', `${field}: too short (${password.length} characters); use at least ${MIN_PASSWORD_LENGTH}, or leave it out to get a generated one`, field);
  }
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new CareflowError('INVALID_INPUT', `${field}: longer than ${MAX_PASSWORD_LENGTH} characters`, field);
  }
  if (!/^[\x21-\x7e]+$/.test(password)) {
    throw new CareflowError('INVALID_INPUT', `${field}: use printable ASCII without spaces (many phones cannot type anything else)`, field);
  }
  return password;
}
