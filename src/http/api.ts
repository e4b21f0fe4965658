/**
 * The REST API: users, their devices (from the registrar's presence view) and the call log.
 * Every /api route but /api/health and the web phone's /api/phone/... (phone-api.ts, user sessions)
 * needs `Authorization: Bearer <adminToken>`. Other paths serve the web phone (static.ts).
 *
 *   GET    /api/health                 {status}
 *   GET    /api/users                  ?query&limit&offset -> {users, total, limit, offset}
 *   POST   /api/users                  {name, number?} -> 201 {id, number, sipUsername, password, domain}
 *   GET    /api/users/:id              user + {online, devices, deviceKinds: {web, sip}}
 *   GET    /api/users/:id/devices      {devices}
 *   POST   /api/users/:id/password     rotate -> {id, number, sipUsername, password, domain}
 *   PATCH  /api/users/:id              {name?, enabled?} -> user
 *   DELETE /api/users/:id              204
 *   GET    /api/calls                  ?limit&before&userId -> {calls, nextBefore}
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccountService } from '../accounts/account-service.ts';
import type { CallLog } from '../calls/call-log.ts';
import { CareflowError } from '../config/errors.ts';
import type { Store, User } from '../store/types.ts';
import { addPhoneRoutes, type PhoneApiOptions } from './phone-api.ts';
import { Router } from './router.ts';
import type { StaticSite } from './static.ts';
import type { ApiLogger, Reply } from './router.ts';

/** One registered device (contact binding) of a user, as the registrar sees it now. */
export interface DeviceInfo {
  readonly contact: string;
  /** udp | tcp | tls | ws | wss */
  readonly transport: string;
  /** Source address and port the registration came from, `ip:port`. */
  readonly source: string;
  /** ms since the epoch */
  readonly expiresAt: number;
  readonly userAgent?: string;
  readonly instance?: string;
}

/** The registrar's live view, provided by the server; must be cheap (in memory). */
export interface Presence {
  devicesOf(userId: number): readonly DeviceInfo[];
}

export interface HttpApiOptions {
  readonly store: Store;
  readonly accounts: AccountService;
  readonly callLog: CallLog;
  readonly presence: Presence;
  readonly adminToken: string;
  readonly logger: ApiLogger;
  /** Live counters of the SIP side (registrations, transactions, calls), for GET /api/status. */
  readonly status?: () => Record<string, number>;
  /** The web phone's own API (/api/phone/...), authenticated with user sessions. */
  readonly phone?: PhoneApiOptions;
  /** The web phone's files, served outside /api. */
  readonly site?: StaticSite;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function createHttpApi(options: HttpApiOptions): RequestHandler {
  const { store, accounts, callLog, presence } = options;
  const router = new Router(options.adminToken, options.logger);

  // A disabled user's phones can neither register nor be called (the proxy answers 480), so
  // bindings left from before they were disabled do not count as online.
  const devicesOf = (user: User): readonly DeviceInfo[] => (user.enabled ? presence.devicesOf(user.id) : []);
  const view = (user: User): Record<string, unknown> => {
    const list = devicesOf(user);
    // Presence by kind of device: a WebSocket registration (RFC 7118) is the web phone.
    const web = list.filter((d) => d.transport === 'ws' || d.transport === 'wss').length;
    return { ...user, needsRekey: accounts.needsRekey(user), online: list.length > 0, devices: list.length, deviceKinds: { web, sip: list.length - web } };
  };
  const userOf = async (id: string | undefined): Promise<User> => accounts.show(intParam(id, 'id', 1));

  router
    .add('GET', '/api/status', async (): Promise<Reply> => {
      const m = process.memoryUsage();
      const mib = (n: number): number => Math.round((n / 1048576) * 10) / 10;
      return {
        status: 200,
        body: {
          uptimeSeconds: Math.round(process.uptime()),
          memoryMiB: { rss: mib(m.rss), heapUsed: mib(m.heapUsed), heapTotal: mib(m.heapTotal), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers) },
          sip: options.status?.() ?? {},
        },
      };
    })
    .add('GET', '/api/health', async (): Promise<Reply> => {
      try {
        await store.check();
        return { status: 200, body: { status: 'ok' } };
      } catch (error) {
        options.logger.error({ err: error }, 'health check: store failed');
        return { status: 503, body: { status: 'unavailable' } };
      }
    }, { auth: false })
    .add('GET', '/api/users', async ({ url }) => {
      const q = url.searchParams;
      const query = q.get('query') ?? undefined;
      const limit = optionalInt(q.get('limit'), 'limit', 1, 1000) ?? 100;
      const offset = optionalInt(q.get('offset'), 'offset', 0, Number.MAX_SAFE_INTEGER) ?? 0;
      const [users, total] = await Promise.all([accounts.list({ query, limit, offset }), accounts.count(query)]);
      return { status: 200, body: { users: users.map(view), total, limit, offset } };
    })
    .add('POST', '/api/users', async ({ body }) => {
      const input = objectBody(await body(), ['name', 'number']);
      if (input['number'] !== undefined && typeof input['number'] !== 'string') {
        throw new CareflowError('INVALID_INPUT', 'number: expected a string like care4w-1000042, or leave it out', 'number');
      }
      const account = await accounts.add({ name: input['name'] as string, number: input['number'] });
      return { status: 201, headers: { location: `/api/users/${account.id}` }, body: account };
    })
    .add('GET', '/api/users/:id', async ({ params }) => ({ status: 200, body: view(await userOf(params['id'])) }))
    .add('GET', '/api/users/:id/devices', async ({ params }) => {
      const user = await userOf(params['id']);
      return { status: 200, body: { devices: devicesOf(user) } };
    })
    .add('POST', '/api/users/:id/password', async ({ params }) => {
      const user = await userOf(params['id']);
      return { status: 200, body: await accounts.passwd(user.id) };
    })
    .add('PATCH', '/api/users/:id', async ({ params, body }) => {
      const user = await userOf(params['id']);
      const input = objectBody(await body(), ['name', 'enabled']);
      return { status: 200, body: view(await accounts.update(user.id, { name: input['name'], enabled: input['enabled'] })) };
    })
    .add('DELETE', '/api/users/:id', async ({ params }) => {
      const user = await userOf(params['id']);
      await accounts.remove(user.id);
      return { status: 204 };
    })
    .add('GET', '/api/calls', async ({ url }) => {
      const q = url.searchParams;
      const limit = optionalInt(q.get('limit'), 'limit', 1, 1000) ?? 50;
      const calls = await callLog.list({
        limit,
        before: optionalInt(q.get('before'), 'before', 0, Number.MAX_SAFE_INTEGER),
        userId: optionalInt(q.get('userId'), 'userId', 1, Number.MAX_SAFE_INTEGER),
      });
      const last = calls.at(-1);
      return { status: 200, body: { calls, nextBefore: calls.length === limit && last !== undefined ? last.startedAt : null } };
    });

  if (options.phone !== undefined) addPhoneRoutes(router, options.phone);
  const site = options.site;
  if (site === undefined) return router.handle;
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith('/api/') || !site.handle(req, res, path)) router.handle(req, res);
  };
}

function intParam(raw: string | undefined, field: string, min: number): number {
  const value = optionalInt(raw ?? '', field, min, Number.MAX_SAFE_INTEGER);
  if (value === undefined) throw new CareflowError('INVALID_INPUT', `${field}: required`, field);
  return value;
}

function optionalInt(raw: string | null, field: string, min: number, max: number): number | undefined {
  if (raw === null) return undefined;
  if (!/^\d{1,16}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new CareflowError('INVALID_INPUT', `${field}: expected a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(raw)}`, field);
  }
  return Number(raw);
}

function objectBody(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new CareflowError('INVALID_INPUT', `expected a JSON object with ${allowed.join(', ')}`);
  }
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) throw new CareflowError('INVALID_INPUT', `${key}: unknown field; allowed: ${allowed.join(', ')}`, key);
  }
  return body as Record<string, unknown>;
}
