// ICE servers for web phones (RFC 8445 ICE with RFC 8489 STUN / RFC 8656 TURN).
//
// TURN credentials use the "TURN REST API" scheme coturn implements with `use-auth-secret`
// (draft-uberti-behave-turn-rest-00 §2.2): username = "<expiry unix seconds>:<user>",
// credential = base64(HMAC-SHA1(shared secret, username)). The TURN server checks the MAC
// and the expiry itself, so the admin configures one shared secret and nothing per user.
import { createHmac } from 'node:crypto';

export interface IceServer {
  readonly urls: readonly string[];
  readonly username?: string;
  readonly credential?: string;
}

export interface IceConfig {
  readonly stunUrls: readonly string[];
  readonly turnUrls: readonly string[];
  readonly turnSecret: string | undefined;
  readonly turnTtlSeconds: number;
  readonly iceTransportPolicy: 'all' | 'relay';
}

export interface TurnCredentials {
  readonly username: string;
  readonly credential: string;
  /** ms since the epoch */
  readonly expiresAt: number;
}

export function turnRestCredentials(secret: string, user: string, ttlSeconds: number, nowMs: number = Date.now()): TurnCredentials {
  const expiry = Math.floor(nowMs / 1000) + ttlSeconds;
  const username = `${expiry}:${user}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential, expiresAt: expiry * 1000 };
}

/** The `iceServers` list for one signed-in user (an RTCConfiguration member). */
export function iceServersFor(config: IceConfig, user: string, nowMs: number = Date.now()): IceServer[] {
  const out: IceServer[] = [];
  if (config.stunUrls.length > 0) out.push({ urls: config.stunUrls });
  if (config.turnUrls.length > 0 && config.turnSecret !== undefined) {
    const { username, credential } = turnRestCredentials(config.turnSecret, user, config.turnTtlSeconds, nowMs);
    out.push({ urls: config.turnUrls, username, credential });
  }
  return out;
}
