// How the server delivers the web phone: compressed, cached right, with security headers,
// nothing outside web/dist reachable; the PWA manifest and its icons; the service worker
// keeping the app shell available offline (in Chromium). Prints what a first visit downloads.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { requireChromium } from './chromium.ts';
import { ROOT, startServer } from './harness.ts';
import { expectVisible, openPhone } from './webphone.ts';

const server = await startServer();
const base = `http://127.0.0.1:${server.httpPort}`;

function assetNames(html: string): string[] {
  return [...html.matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((m) => m[1]!);
}

test('index.html: revalidated (ETag, 304), strict CSP and no-sniff; brotli and gzip for those who ask', async () => {
  const plain = await fetch(`${base}/`, { headers: { 'accept-encoding': 'identity' } });
  assert.equal(plain.status, 200);
  assert.equal(plain.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(plain.headers.get('cache-control'), 'no-cache');
  assert.match(plain.headers.get('content-security-policy') ?? '', /default-src 'self'.*script-src 'self'/);
  assert.equal(plain.headers.get('x-content-type-options'), 'nosniff');
  const html = await plain.text();
  assert.match(html, /<title>/i);
  const etag = plain.headers.get('etag')!;
  assert.equal((await fetch(`${base}/`, { headers: { 'if-none-match': etag } })).status, 304);
  // node's fetch decompresses by itself; read the raw bytes through a manual request.
  for (const [enc, inflate] of [['br', brotliDecompressSync], ['gzip', gunzipSync]] as const) {
    const raw = await import('node:http').then((http) => new Promise<{ enc: string | undefined; body: Buffer }>((resolve, reject) => {
      http.get(`${base}/`, { headers: { 'accept-encoding': enc } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ enc: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      }).on('error', reject);
    }));
    assert.equal(raw.enc, enc);
    assert.equal(inflate(raw.body).toString(), html);
  }
});

test('hashed assets are immutable; the service worker and manifest are not; a first visit downloads under 100 KB compressed', async () => {
  const html = await (await fetch(`${base}/`)).text();
  const names = assetNames(html);
  const js = names.find((n) => /\/app-[A-Za-z0-9]+\.js$/.test(n));
  const css = names.find((n) => /\/styles-[A-Za-z0-9]+\.css$/.test(n));
  assert.ok(js !== undefined && css !== undefined, `assets in index.html: ${names.join(' ')}`);
  for (const n of [js, css]) assert.equal((await fetch(`${base}${n}`)).headers.get('cache-control'), 'public, max-age=31536000, immutable', n);
  const sw = await fetch(`${base}/sw.js`);
  assert.equal(sw.status, 200);
  assert.equal(sw.headers.get('cache-control'), 'no-cache');
  assert.equal(sw.headers.get('content-type'), 'text/javascript; charset=utf-8');
  const build = JSON.parse(readFileSync(join(ROOT, 'web', 'dist', 'build.json'), 'utf8')) as { firstLoad: { bytes: number; gzip: number; br: number } };
  console.log(`web phone first load: ${build.firstLoad.bytes} bytes, ${build.firstLoad.gzip} gzip, ${build.firstLoad.br} brotli`);
  assert.ok(build.firstLoad.gzip < 100_000, `first load ${build.firstLoad.gzip} bytes gzip`);
});

test('the manifest names the app and its 192 and 512 px PNG icons, which are real PNGs of those sizes', async () => {
  const res = await fetch(`${base}/manifest.webmanifest`);
  assert.equal(res.headers.get('content-type'), 'application/manifest+json; charset=utf-8');
  const m = (await res.json()) as { name: string; start_url: string; display: string; icons: Array<{ src: string; sizes: string; type: string; purpose?: string }> };
  assert.equal(m.start_url, '/');
  assert.equal(m.display, 'standalone');
  for (const size of [192, 512]) {
    const icon = m.icons.find((i) => i.sizes === `${size}x${size}` && i.type === 'image/png' && (i.purpose ?? 'any').includes('any'));
    assert.ok(icon, `a ${size} px icon`);
    const png = Buffer.from(await (await fetch(`${base}${icon.src}`)).arrayBuffer());
    assert.equal(png.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'PNG signature');
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [size, size], 'IHDR width and height');
  }
  assert.ok(m.icons.some((i) => i.purpose === 'maskable'), 'a maskable icon for Android');
});

test('nothing outside the built files is served; API paths stay JSON', async () => {
  for (const path of ['/package.json', '/../package.json', '/%2e%2e/package.json', '/web/dist/index.html', '/secrets.json', '/src/server.ts']) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 404, path);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, path);
  }
  assert.equal((await fetch(`${base}/api/users`)).status, 401);
});

test('in Chromium the service worker takes the shell offline: the page still opens without the server', async () => {
  requireChromium();
  const p = await openPhone('offline', `${base}/`);
  const active = await p.page.evaluate(async () => {
    type Reg = { active: { state: string } | null };
    const nav = (globalThis as unknown as { navigator: { serviceWorker: { ready: Promise<Reg> } } }).navigator;
    const reg = await Promise.race([nav.serviceWorker.ready, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    // `ready` resolves while the worker may still be activating; wait (bounded) for activated.
    for (let i = 0; i < 100 && reg?.active?.state !== 'activated'; i++) await new Promise((r) => setTimeout(r, 100));
    return reg?.active?.state ?? 'none';
  });
  assert.equal(active, 'activated');
  await p.browser.context.setOffline(true);
  await p.page.reload({ timeout: 10_000 });
  await expectVisible(p, '#view-signin');
  await p.browser.context.setOffline(false);
});
