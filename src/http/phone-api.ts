/**
 * The web phone's API: sign-in, the colleague directory with presence, the user's own call
 * history and a live presence stream. Authenticated with the user's web session token
 * (`Authorization: Bearer <token>`), never with the admin token.
 *
 *   POST /api/phone/session    {login, password} -> session (401 alike for any wrong login; 429 when limited)
 *   GET  /api/phone/session    -> session (a fresh token, HA1 and TURN credentials)
 *   GET  /api/phone/directory  ?query -> {users: [{id, name, number, sipUsername, online, devices: {web, sip}}]}
 *   GET  /api/phone/calls      ?limit -> {calls: [{id, direction, peer, startedAt, answeredAt, endedAt, disposition, durationSeconds}]}
 *   GET  /api/phone/events     text/event-stream of {"type":"presence","userId","online","devices"}
 *
 * A session is {token, expiresAt, user, sip: {domain, realm, uri, authorizationUser, ha1, wsPath},
 * iceServers, iceTransportPolicy}. JsSIP registers with the HA1, so the browser keeps no password.
 */
import type { ServerResponse } from 'node:http';
import type { AccountService } from '../accounts/account-service.ts';
import type { CallLog } from '../calls/call-log.ts';
import { CareflowError } from '../config/errors.ts';
import type { PresenceHub } from '../presence/presence-hub.ts';
import type { User } from '../store/types.ts';
import { type IceConfig, iceServersFor } from '../web/ice-servers.ts';
import type { LoginLimiter, SignedIn, WebCredentials, WebSessions } from '../web/sessions.ts';
import type { RequestContext, Reply, Router } from './router.ts';

export interface PhoneApiOptions {
  readonly sessions: WebSessions;
  readonly limiter: LoginLimiter;
  readonly accounts: AccountService;
  readonly callLog: CallLog;
  readonly presence: PresenceHub;
  readonly domain: string;
  readonly ice: IceConfig;
  /** Heartbeat comment interval on event streams (proxies close idle connections). */
  readonly heartbeatMs?: number;
}

const DIRECTORY_LIMIT = 500;

export function addPhoneRoutes(router: Router, o: PhoneApiOptions): void {
  const unauthorized = (): CareflowError => new CareflowError('UNAUTHORIZED', 'your session ended; sign in again');

  const userOf = async (ctx: RequestContext): Promise<WebCredentials> => {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(ctx.req.headers.authorization ?? '');
    const c = m === null ? undefined : await o.sessions.verify(m[1]!);
    if (c === undefined) throw unauthorized();
    return c;
  };

  const sessionBody = async (s: SignedIn): Promise<Record<string, unknown>> => {
    const user = await o.accounts.show(s.userId);
    return {
      token: s.token,
      expiresAt: s.expiresAt,
      user: { id: user.id, name: user.name, number: user.number, sipUsername: user.sipUsername },
      sip: {
        domain: o.domain, realm: o.domain, uri: `sip:${user.sipUsername}@${o.domain}`,
        authorizationUser: user.sipUsername, ha1: s.ha1, wsPath: '/sip',
      },
      iceServers: iceServersFor(o.ice, String(user.id)),
      iceTransportPolicy: o.ice.iceTransportPolicy,
    };
  };

  router
    .add('POST', '/api/phone/session', async (ctx): Promise<Reply> => {
      const source = ctx.req.socket.remoteAddress ?? '';
      const wait = o.limiter.retryAfter(source);
      if (wait > 0) {
        return {
          status: 429,
          headers: { 'retry-after': String(wait) },
          body: { error: { code: 'RATE_LIMITED', message: `too many failed sign-ins; try again in ${wait} seconds` } },
        };
      }
      const body = await ctx.body();
      const input = body !== null && typeof body === 'object' ? (body as Record<string, unknown>) : {};
      const login = typeof input['login'] === 'string' ? input['login'].trim() : '';
      const password = typeof input['password'] === 'string' ? input['password'] : '';
      if (login === '' || password === '') {
        throw new CareflowError('INVALID_INPUT', 'send {"login": "<your number or SIP username>", "password": "..."}', login === '' ? 'login' : 'password');
      }
      const signed = login.length <= 64 && password.length <= 256 ? await o.sessions.signIn(login, password) : undefined;
      if (signed === undefined) {
        o.limiter.fail(source);
        // The same answer for an unknown login, a wrong password and a disabled user.
        throw new CareflowError('UNAUTHORIZED', 'wrong number, user name or password');
      }
      o.limiter.succeed(source);
      return { status: 200, body: await sessionBody(signed) };
    }, { auth: false })
    .add('GET', '/api/phone/session', async (ctx) => {
      const m = /^Bearer[ ]+(\S+)\s*$/i.exec(ctx.req.headers.authorization ?? '');
      const signed = m === null ? undefined : await o.sessions.refresh(m[1]!);
      if (signed === undefined) throw unauthorized();
      return { status: 200, body: await sessionBody(signed) };
    }, { auth: false })
    .add('GET', '/api/phone/directory', async (ctx) => {
      await userOf(ctx);
      const query = ctx.url.searchParams.get('query')?.trim() || undefined;
      const users = await o.accounts.list({ query, limit: DIRECTORY_LIMIT, offset: 0 });
      return { status: 200, body: { users: users.filter((u) => u.enabled).map((u) => entry(u, o.presence)) } };
    }, { auth: false })
    .add('GET', '/api/phone/calls', async (ctx) => {
      const me = await userOf(ctx);
      const raw = ctx.url.searchParams.get('limit') ?? '50';
      if (!/^\d{1,3}$/.test(raw) || Number(raw) < 1 || Number(raw) > 200) {
        throw new CareflowError('INVALID_INPUT', `limit: expected a whole number from 1 to 200, got ${JSON.stringify(raw)}`, 'limit');
      }
      const rows = await o.callLog.list({ limit: Number(raw), userId: me.userId });
      const people = new Map<number, User | undefined>();
      const person = async (id: number | null): Promise<User | undefined> => {
        if (id === null) return undefined;
        if (!people.has(id)) people.set(id, await o.accounts.find(id));
        return people.get(id);
      };
      const calls = [];
      for (const c of rows) {
        const out = c.callerUserId === me.userId;
        const peerId = out ? c.calleeUserId : c.callerUserId;
        const peer = await person(peerId);
        calls.push({
          id: c.id,
          direction: out ? 'out' : 'in',
          peer: { name: peer?.name ?? '', number: peer?.number ?? uriUser(out ? c.calleeUri : c.callerUri) },
          startedAt: c.startedAt, answeredAt: c.answeredAt, endedAt: c.endedAt,
          disposition: c.disposition,
          durationSeconds: c.answeredAt !== null ? Math.max(0, Math.round((c.endedAt - c.answeredAt) / 1000)) : 0,
        });
      }
      return { status: 200, body: { calls } };
    }, { auth: false })
    .add('GET', '/api/phone/events', async (ctx) => {
      await userOf(ctx);
      return { status: 200, stream: (res) => streamPresence(res, o.presence, o.heartbeatMs ?? 25_000) };
    }, { auth: false });
}

function entry(u: User, presence: PresenceHub): Record<string, unknown> {
  const devices = presence.devices(u.id);
  return { id: u.id, name: u.name, number: u.number, sipUsername: u.sipUsername, online: devices.web + devices.sip > 0, devices };
}

/** Server-Sent Events (HTML Living Standard §9.2): one `data:` line of JSON per change. */
function streamPresence(res: ServerResponse, presence: PresenceHub, heartbeatMs: number): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no', // nginx: do not buffer the stream
  });
  res.write(': careflow presence\n\n');
  const unsubscribe = presence.subscribe((s) => {
    res.write(`data: ${JSON.stringify({ type: 'presence', userId: s.userId, online: s.online, devices: s.devices })}\n\n`);
  });
  const heartbeat = setInterval(() => res.write(': ping\n\n'), heartbeatMs);
  heartbeat.unref();
  res.on('close', () => {
    clearInterval(heartbeat);
    unsubscribe();
  });
}

function uriUser(uri: string): string {
  const m = /^(?:sips?|tel):([^@;>]+)/i.exec(uri.replace(/^.*</, ''));
  return m?.[1] ?? uri;
}
