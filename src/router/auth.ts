// Proxy authentication of callers (RFC 3261 §22.3: 407 with Proxy-Authenticate, the caller
// retries with Proxy-Authorization). An unknown login, a disabled user and a wrong password
// get the same 407 (no user enumeration); the digest is computed against a dummy HA1 when
// the user does not exist so the work done is the same.
import { type DigestCredentials, type DigestServer, parseAuthorization } from '../sip/digest.ts';
import type { SipRequest } from '../sip/message.ts';

export interface CallerCredentials {
  readonly userId: number;
  readonly sipUsername: string;
  readonly number: string;
  readonly enabled: boolean;
  readonly ha1Md5: string;
  readonly ha1Sha256: string;
}

export type AuthResult =
  | { readonly ok: true; readonly caller: CallerCredentials; readonly login: string }
  | { readonly ok: false; readonly stale: boolean };

const DUMMY_MD5 = '0'.repeat(32);
const DUMMY_SHA256 = '0'.repeat(64);

export async function authenticate(
  req: SipRequest, header: 'authorization' | 'proxy-authorization', realm: string, digest: DigestServer,
  find: (login: string) => Promise<CallerCredentials | undefined>,
): Promise<AuthResult> {
  let creds: DigestCredentials | undefined;
  for (const v of req.getAll(header)) {
    const c = parseAuthorization(v);
    // §22.3: pick the credentials for our realm.
    if (c !== undefined && c.realm === realm) {
      creds = c;
      break;
    }
  }
  if (creds === undefined) return { ok: false, stale: false };
  const login = unescapeUser(creds.username);
  const user = await find(login);
  const sha = creds.algorithm === 'SHA-256';
  const ha1 = user === undefined ? (sha ? DUMMY_SHA256 : DUMMY_MD5) : sha ? user.ha1Sha256 : user.ha1Md5;
  const verdict = digest.verify(creds, req.method, ha1, realm);
  if (verdict === 'ok' && user !== undefined && user.enabled) return { ok: true, caller: user, login };
  // A stale nonce with an otherwise right answer: ask again without a password prompt (RFC 7616 §3.3).
  return { ok: false, stale: verdict === 'stale' && user !== undefined && user.enabled };
}

function unescapeUser(u: string): string {
  try {
    return decodeURIComponent(u);
  } catch {
    return u;
  }
}
