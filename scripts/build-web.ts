// Builds the browser web phone into web/dist:
//
//   app-HASH.js              web/src/main.ts and JsSIP, bundled and minified (esbuild)
//   styles-HASH.css          web/static/styles.css, minified
//   index.html               web/static/index.html, pointing at the hashed names (not hashed
//                            itself: the server sends it no-cache)
//   sw.js                    web/src/sw.ts, with the shell list and a cache name derived from
//                            the shell's contents (unhashed: browsers fetch /sw.js by name)
//   manifest.webmanifest, icon.svg, icon-192.png, icon-512.png, icon-maskable-512.png
//   *.gz, *.br               gzip (level 9) and brotli copies of every text file
//   build.json               sizes, raw and compressed, and the first-load total
//
// Run: node scripts/build-web.ts   (Node 24, type stripping). Replaces web/dist entirely, and
// only once everything has built: a failed build leaves the previous one in place.

import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';
import { renderIcons } from './web-icons.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const STATIC_DIR = path.join(ROOT, 'web', 'static');
const DIST = path.join(ROOT, 'web', 'dist');
const TARGET = ['es2022', 'chrome110'];
const TEXT_EXTENSIONS = new Set(['.html', '.css', '.js', '.mjs', '.webmanifest', '.svg', '.json', '.txt']);
/** Static files the build processes itself rather than copying. */
const PROCESSED_STATIC = new Set(['index.html', 'styles.css']);

export interface FileReport {
  name: string;
  bytes: number;
  /** Compressed sizes; null for binary files, which are served as they are. */
  gzip: number | null;
  br: number | null;
}

export interface BuildReport {
  files: FileReport[];
  firstLoad: { files: string[]; bytes: number; gzip: number; br: number };
}

class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

/** The bundle outputs, keyed by their name in web/dist. */
async function bundleApp(): Promise<{ files: Map<string, Uint8Array>; app: string; styles: string }> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [
      { in: 'web/src/main.ts', out: 'app' },
      { in: 'web/static/styles.css', out: 'styles' },
    ],
    outdir: DIST,
    entryNames: '[name]-[hash]',
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: TARGET,
    sourcemap: false,
    charset: 'utf8',
    define: { 'process.env.NODE_ENV': '"production"' },
    write: false,
    logLevel: 'error',
  });
  const files = new Map<string, Uint8Array>();
  for (const out of result.outputFiles) files.set(path.relative(DIST, out.path), out.contents);
  const names = [...files.keys()];
  const app = names.find((n) => /^app-[A-Z0-9]+\.js$/.test(n));
  const styles = names.find((n) => /^styles-[A-Z0-9]+\.css$/.test(n));
  if (!app || !styles) throw new BuildError(`esbuild did not produce app-HASH.js and styles-HASH.css (got ${names.join(', ')})`);
  return { files, app, styles };
}

async function bundleServiceWorker(cacheName: string, shell: string[]): Promise<Uint8Array> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: ['web/src/sw.ts'],
    outfile: path.join(DIST, 'sw.js'),
    bundle: true,
    minify: true,
    format: 'iife',
    platform: 'browser',
    target: TARGET,
    sourcemap: false,
    charset: 'utf8',
    define: { __CACHE_NAME__: JSON.stringify(cacheName), __SHELL__: JSON.stringify(shell) },
    write: false,
    logLevel: 'error',
  });
  const out = result.outputFiles[0];
  if (!out) throw new BuildError('esbuild produced no sw.js');
  return out.contents;
}

/** Points index.html's `/app.js` and `/styles.css` at the hashed names. */
function rewriteIndex(html: string, app: string, styles: string): string {
  const replacements: [string, string][] = [
    ['src="/app.js"', `src="/${app}"`],
    ['href="/styles.css"', `href="/${styles}"`],
  ];
  for (const [from, to] of replacements) {
    const count = html.split(from).length - 1;
    if (count !== 1) throw new BuildError(`web/static/index.html must contain ${from} exactly once (found ${count})`);
    html = html.replace(from, to);
  }
  // Drop comments and the indentation; whitespace inside elements is left alone.
  return html.replace(/<!--[\s\S]*?-->/g, '').replace(/\n\s+/g, '\n');
}

/** Every icon the manifest lists must be in the build, or installing the app fails quietly. */
function checkManifest(files: Map<string, Uint8Array>): void {
  const raw = files.get('manifest.webmanifest');
  if (!raw) throw new BuildError('web/static/manifest.webmanifest is missing');
  let manifest: { icons?: { src?: unknown }[] };
  try {
    manifest = JSON.parse(Buffer.from(raw).toString('utf8')) as typeof manifest;
  } catch (err) {
    throw new BuildError(`manifest.webmanifest is not valid JSON: ${(err as Error).message}`);
  }
  for (const icon of manifest.icons ?? []) {
    const src = typeof icon.src === 'string' ? icon.src.replace(/^\//, '') : '';
    if (!files.has(src)) throw new BuildError(`manifest.webmanifest lists icon "${String(icon.src)}", which the build does not produce`);
  }
}

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function isText(name: string): boolean {
  return TEXT_EXTENSIONS.has(path.extname(name));
}

async function writeOutputs(files: Map<string, Uint8Array>): Promise<FileReport[]> {
  const reports: FileReport[] = [];
  for (const [name, contents] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const file = path.join(DIST, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, contents);
    if (!isText(name)) {
      reports.push({ name, bytes: contents.length, gzip: null, br: null });
      continue;
    }
    const gz = gzipSync(contents, { level: 9 });
    const br = brotliCompressSync(contents, {
      params: {
        [zlib.BROTLI_PARAM_QUALITY]: zlib.BROTLI_MAX_QUALITY,
        [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT,
        [zlib.BROTLI_PARAM_SIZE_HINT]: contents.length,
      },
    });
    await writeFile(`${file}.gz`, gz);
    await writeFile(`${file}.br`, br);
    reports.push({ name, bytes: contents.length, gzip: gz.length, br: br.length });
  }
  return reports;
}

function printReport(report: BuildReport, elapsedMs: number): void {
  const n = (v: number | null): string => (v === null ? '-' : v.toLocaleString('en-US'));
  const width = Math.max(24, ...report.files.map((f) => f.name.length)) + 2;
  const row = (name: string, raw: string, gz: string, br: string): string =>
    name.padEnd(width) + raw.padStart(10) + gz.padStart(10) + br.padStart(10);
  const lines = [
    `web phone built into ${path.relative(process.cwd(), DIST) || DIST} in ${Math.round(elapsedMs)} ms`,
    '',
    row('file', 'raw', 'gzip', 'br'),
    '-'.repeat(width + 30),
    ...report.files.map((f) => row(f.name, n(f.bytes), n(f.gzip), n(f.br))),
    '-'.repeat(width + 30),
    row('first load', n(report.firstLoad.bytes), n(report.firstLoad.gzip), n(report.firstLoad.br)),
    `  (${report.firstLoad.files.join(', ')})`,
  ];
  console.log(lines.join('\n'));
}

async function main(): Promise<void> {
  const started = performance.now();
  // Everything is built in memory first: a failed build leaves the previous web/dist alone.
  const { files, app, styles } = await bundleApp();

  for (const entry of await readdir(STATIC_DIR, { withFileTypes: true })) {
    if (!entry.isFile() || PROCESSED_STATIC.has(entry.name)) continue;
    files.set(entry.name, await readFile(path.join(STATIC_DIR, entry.name)));
  }
  const html = await readFile(path.join(STATIC_DIR, 'index.html'), 'utf8');
  files.set('index.html', Buffer.from(rewriteIndex(html, app, styles)));
  for (const icon of renderIcons()) files.set(icon.name, icon.contents);
  checkManifest(files);

  // The app shell the service worker pre-caches. The PNG icons are left out: only installing
  // the app needs them, and the browser fetches those itself.
  const shellFiles = ['index.html', app, styles, 'manifest.webmanifest', 'icon.svg'];
  const shell = shellFiles.map((name) => (name === 'index.html' ? '/' : `/${name}`));
  const fingerprint = shellFiles.map((name) => `${name}:${sha256(files.get(name) ?? '')}`).join('\n');
  const cacheName = `careflow-shell-${sha256(fingerprint).slice(0, 12)}`;
  files.set('sw.js', await bundleServiceWorker(cacheName, shell));

  await rm(DIST, { recursive: true, force: true });
  await mkdir(DIST, { recursive: true });
  const reports = await writeOutputs(files);
  // What a first visit downloads: the page, its script and stylesheet, the favicon, the
  // manifest, and the service worker (which pre-caches the same files, from the HTTP cache).
  const firstLoadFiles = [...shellFiles, 'sw.js'];
  const firstLoad = { files: firstLoadFiles, bytes: 0, gzip: 0, br: 0 };
  for (const name of firstLoadFiles) {
    const r = reports.find((f) => f.name === name);
    if (!r) throw new BuildError(`${name} is missing from the build`);
    firstLoad.bytes += r.bytes;
    firstLoad.gzip += r.gzip ?? r.bytes;
    firstLoad.br += r.br ?? r.bytes;
  }
  const report: BuildReport = { files: reports, firstLoad };
  await writeFile(path.join(DIST, 'build.json'), `${JSON.stringify(report, null, 2)}\n`);
  printReport(report, performance.now() - started);
}

try {
  await main();
} catch (err) {
  // esbuild has already printed its diagnostics (logLevel 'error'); say what failed and stop.
  const message = err instanceof Error ? err.message : String(err);
  console.error(`\nbuild-web: FAILED: ${message}`);
  process.exitCode = 1;
}
