/**
 * A tiny router for the REST API over node:http: method + path pattern -> handler,
 * JSON bodies with a size limit, bearer-token auth with a constant-time compare, and
 * CareflowErrors turned into `{error: {code, message, field?}}` with the right status.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CareflowError } from '../config/errors.ts';
import type { CareflowErrorCode } from '../config/errors.ts';

export const BODY_LIMIT = 64 * 1024;

export interface ApiLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RequestContext {
  readonly req: IncomingMessage;
  readonly url: URL;
  readonly params: Readonly<Record<string, string>>;
  /** The parsed JSON body ({} when empty). */
  body(): Promise<unknown>;
}

export interface Reply {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** Takes over the response (event streams); `status`, `headers` and `body` are then ignored. */
  readonly stream?: (res: ServerResponse) => void;
}

export type Handler = (ctx: RequestContext) => Promise<Reply>;

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly auth: boolean;
  readonly handler: Handler;
}

const STATUS: Readonly<Partial<Record<CareflowErrorCode, number>>> = {
  INVALID_INPUT: 400, INVALID_JSON: 400, CSV_INVALID: 400, USAGE: 400, UNAUTHORIZED: 401, NOT_FOUND: 404, RATE_LIMITED: 429,
  METHOD_NOT_ALLOWED: 405, NUMBER_TAKEN: 409, BODY_TOO_LARGE: 413, UNSUPPORTED_MEDIA_TYPE: 415,
};

export class Router {
  readonly #routes: Route[] = [];
  readonly #token: Buffer;
  readonly #logger: ApiLogger;

  constructor(adminToken: string, logger: ApiLogger) {
    this.#token = digest(adminToken);
    this.#logger = logger;
  }

  /** `path` like `/api/users/:id`; `:name` matches one segment. */
  add(method: string, path: string, handler: Handler, options: { auth?: boolean } = {}): this {
    const source = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:(\w+)/g, '(?<$1>[^/]+)');
    this.#routes.push({ method, pattern: new RegExp(`^${source}/?$`), auth: options.auth ?? true, handler });
    return this;
  }

  /** The node:http request listener. Never throws; errors become JSON replies. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.#dispatch(req, res).catch((error: unknown) => {
      this.#logger.error({ err: error }, 'http handler failed');
      if (!res.headersSent) send(res, { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } });
      else res.destroy();
    });
  };

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let reply: Reply;
    try {
      reply = await this.#route(req, url);
    } catch (error) {
      reply = errorReply(error);
      if (reply.status >= 500) this.#logger.error({ err: error, method: req.method, path: url.pathname }, 'api error');
    }
    send(res, reply);
  }

  async #route(req: IncomingMessage, url: URL): Promise<Reply> {
    const allowed: string[] = [];
    for (const route of this.#routes) {
      const match = route.pattern.exec(url.pathname);
      if (match === null) continue;
      if (route.method !== req.method) {
        allowed.push(route.method);
        continue;
      }
      if (route.auth && !this.#authorized(req)) {
        return {
          status: 401,
          headers: { 'www-authenticate': 'Bearer realm="careflow"' },
          body: { error: { code: 'UNAUTHORIZED', message: 'missing or wrong admin token; send Authorization: Bearer <adminToken from secrets.json>' } },
        };
      }
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(match.groups ?? {})) params[k] = decodeURIComponent(v);
      let parsed: Promise<unknown> | undefined;
      return route.handler({ req, url, params, body: () => (parsed ??= readJson(req)) });
    }
    if (allowed.length > 0) {
      return { status: 405, headers: { allow: allowed.join(', ') }, body: { error: { code: 'METHOD_NOT_ALLOWED', message: `use ${allowed.join(' or ')} on ${url.pathname}` } } };
    }
    throw new CareflowError('NOT_FOUND', `no route ${req.method ?? ''} ${url.pathname}`);
  }

  #authorized(req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    // Always compare (a fixed-size digest) so missing and wrong tokens take the same path.
    return timingSafeEqual(digest(m?.[1] ?? ''), this.#token) && m !== null;
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export function errorReply(error: unknown): Reply {
  if (error instanceof CareflowError) {
    const status = STATUS[error.code] ?? 500;
    const message = status === 500 ? 'internal error' : error.message;
    return { status, body: { error: status === 500 ? { code: error.code, message } : error.toJSON() } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } };
}

function send(res: ServerResponse, reply: Reply): void {
  if (reply.stream !== undefined) {
    reply.stream(res);
    return;
  }
  const headers: Record<string, string> = { 'cache-control': 'no-store', ...reply.headers };
  if (reply.status === 413) headers['connection'] = 'close';
  if (reply.body === undefined) {
    res.writeHead(reply.status, headers).end();
    return;
  }
  const text = JSON.stringify(reply.body);
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = String(Buffer.byteLength(text));
  res.writeHead(reply.status, headers).end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'];
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > BODY_LIMIT) throw tooLarge();
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    // Keep reading past the limit (discarding) so the client receives the 413 reply.
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > BODY_LIMIT) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge());
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
  const size = raw.length;
  if (size === 0) return {};
  if (type !== undefined && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type)) {
    throw new CareflowError('UNSUPPORTED_MEDIA_TYPE', `send the body as application/json, not ${type}`);
  }
  const text = raw.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CareflowError('INVALID_JSON', `request body is not valid JSON: ${(error as Error).message}`);
  }
}

function tooLarge(): CareflowError {
  return new CareflowError('BODY_TOO_LARGE', `request body exceeds ${BODY_LIMIT} bytes`);
}
