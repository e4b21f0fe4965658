// The service worker: caches the app shell (index.html and the hashed assets) so the phone
// opens offline and installs as an app. It never touches /api/ or /sip: the API and the SIP
// WebSocket always go to the network.
//
// The build replaces __CACHE_NAME__ (bumped by a hash of the asset list) and __SHELL__
// (the paths to pre-cache). A new build means a new sw.js, which installs, takes over and
// deletes the old cache.

export {};

declare const __CACHE_NAME__: string;
declare const __SHELL__: readonly string[];

// This file is type-checked with the DOM library; the few worker types it needs are here.
interface ExtendableEvent extends Event {
  waitUntil(promise: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
}
interface ServiceWorkerScope {
  readonly location: Location;
  skipWaiting(): Promise<void>;
  readonly clients: { claim(): Promise<void> };
  addEventListener(type: 'install' | 'activate', listener: (event: ExtendableEvent) => void): void;
  addEventListener(type: 'fetch', listener: (event: FetchEvent) => void): void;
}

const worker = self as unknown as ServiceWorkerScope;
const CACHE = __CACHE_NAME__;
const SHELL = new Set(__SHELL__);
const CACHE_PREFIX = 'careflow-shell-';

worker.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // `no-cache` revalidates with the server: the shell is exactly this build's, and files
      // the page has just downloaded come back as cheap 304s rather than a second download.
      await cache.addAll([...SHELL].map((path) => new Request(path, { cache: 'no-cache' })));
      await worker.skipWaiting();
    })(),
  );
});

worker.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name);
      }
      await worker.clients.claim();
    })(),
  );
});

worker.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== worker.location.origin || isNetworkOnly(url.pathname)) return;
  if (request.mode === 'navigate') {
    event.respondWith(networkFirst(request));
  } else if (SHELL.has(url.pathname)) {
    event.respondWith(cacheFirst(request));
  }
});

function isNetworkOnly(path: string): boolean {
  return path === '/api' || path.startsWith('/api/') || path === '/sip' || path.startsWith('/sip/');
}

/** Pages: the network (index.html is sent no-cache), the cached shell when offline. */
async function networkFirst(request: Request): Promise<Response> {
  try {
    return await fetch(request);
  } catch (err) {
    const cached = await caches.match('/', { cacheName: CACHE });
    if (cached) return cached;
    throw err;
  }
}

/** Hashed assets never change under the same name: the cache is always right. */
async function cacheFirst(request: Request): Promise<Response> {
  const cached = await caches.match(request, { cacheName: CACHE });
  return cached ?? fetch(request);
}
