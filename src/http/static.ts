/**
 * Serves the built web phone (`web/dist`, made by `scripts/build-web.ts`): `/` is
 * index.html, every other file by its exact name. Files are read into memory once at
 * start-up (a few hundred KiB), with their pre-compressed `.br` / `.gz` twins, so a request
 * never touches the disk and no path from a request is ever joined to a file system path.
 *
 * Caching: content-hashed assets (`app-XXXXXXXX.js`) are immutable for a year; index.html,
 * the service worker and the manifest are revalidated (ETag) on every load.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve } from 'node:path';

export const WEB_DIST = resolve(import.meta.dirname, '..', '..', 'web', 'dist');

interface Asset {
  readonly type: string;
  readonly body: Buffer;
  readonly br: Buffer | undefined;
  readonly gzip: Buffer | undefined;
  readonly etag: string;
  readonly immutable: boolean;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** Same-origin everything; the SIP WebSocket and the API are on this origin too. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; " +
    "connect-src 'self' ws: wss:; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'permissions-policy': 'microphone=(self), camera=(), geolocation=()',
};

export class StaticSite {
  readonly #assets = new Map<string, Asset>();

  /** Loads `dir`; an absent or empty directory gives a site that serves a "not built" page. */
  constructor(dir: string = WEB_DIST) {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      if (name.endsWith('.gz') || name.endsWith('.br') || name === 'build.json') continue;
      const path = join(dir, name);
      if (!statSync(path).isFile()) continue;
      const type = TYPES[extname(name)];
      if (type === undefined) continue;
      const body = readFileSync(path);
      this.#assets.set(`/${name}`, {
        type, body,
        br: existsSync(`${path}.br`) ? readFileSync(`${path}.br`) : undefined,
        gzip: existsSync(`${path}.gz`) ? readFileSync(`${path}.gz`) : undefined,
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
        immutable: /-[A-Za-z0-9]{8,}\.(?:js|css|png|svg)$/.test(name),
      });
    }
  }

  /** True when the web phone was built. */
  get built(): boolean {
    return this.#assets.has('/index.html');
  }

  /** Total bytes of the assets as stored (uncompressed). */
  get bytes(): number {
    let n = 0;
    for (const a of this.#assets.values()) n += a.body.length;
    return n;
  }

  /** Answers GET/HEAD for a known file and returns true; false for anything else. */
  handle(req: IncomingMessage, res: ServerResponse, pathname: string): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const key = pathname === '/' || pathname === '/index.html' ? '/index.html' : pathname;
    const asset = this.#assets.get(key);
    if (asset === undefined) {
      if (key !== '/index.html') return false;
      const text = '<!doctype html><title>CareFlow</title><p>The web phone is not built. Run <code>npm run build:web</code> and restart the server.</p>';
      res.writeHead(503, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS }).end(text);
      return true;
    }
    const headers: Record<string, string> = {
      'content-type': asset.type,
      'cache-control': asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      etag: asset.etag,
      vary: 'accept-encoding',
      ...SECURITY_HEADERS,
    };
    if (key === '/sw.js') headers['service-worker-allowed'] = '/';
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, headers).end();
      return true;
    }
    const accept = String(req.headers['accept-encoding'] ?? '');
    let body = asset.body;
    if (asset.br !== undefined && /\bbr\b/.test(accept)) {
      body = asset.br;
      headers['content-encoding'] = 'br';
    } else if (asset.gzip !== undefined && /\bgzip\b/.test(accept)) {
      body = asset.gzip;
      headers['content-encoding'] = 'gzip';
    }
    headers['content-length'] = String(body.length);
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }
}
