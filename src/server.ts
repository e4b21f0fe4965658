// Wires the parts of `careflow serve` together, in one place (STYLE §2): store, transports,
// transactions, registrar + location (with write-behind persistence), proxy, call log, HTTP.
import { createHmac } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AcmeManager } from './deploy/acme.ts';
import { advertisedHost } from './config/advertise.ts';
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { AccountService } from './accounts/account-service.ts';
import { CallLog } from './calls/call-log.ts';
import { databasePath, ensureDataDir } from './config/data-dir.ts';
import type { Config } from './config/schema.ts';
import { createDdnsUpdater } from './deploy/ddns.ts';
import { createHttpApi } from './http/api.ts';
import { SipWebSocketEndpoint } from './http/sip-websocket.ts';
import { StaticSite } from './http/static.ts';
import { PresenceHub } from './presence/presence-hub.ts';
import { LoginLimiter, WebSessions } from './web/sessions.ts';
import { FlowTokens, type LocalInterface } from './proxy/record-route.ts';
import { ProxyCore } from './proxy/proxy.ts';
import { bindingPersistence } from './registrar/binding-store.ts';
import { LocationService } from './registrar/location.ts';
import { Registrar } from './registrar/registrar.ts';
import { WriteBehind } from './registrar/write-behind.ts';
import { CallMedia } from './router/call-media.ts';
import { CallTracker } from './router/call-tracker.ts';
import { RtpEngineDriver } from './media/rtpengine.ts';
import { EmbeddedMediaEngine } from './media/embedded/embedded-engine.ts';
import { SipRouter } from './router/sip-router.ts';
import { DigestServer } from './sip/digest.ts';
import { TransactionLayer } from './sip/transaction/layer.ts';
import { TransportLayer } from './sip/transport-layer.ts';
import { SqliteStore } from './store/sqlite-store.ts';
import { createLogger, type Logger } from './logger.ts';

export const VERSION = '0.1.0';

export interface RunningServer {
  readonly sipPort: number;
  readonly httpPort: number;
  /** HTTPS + WSS port, when a certificate is configured. */
  readonly httpsPort: number | undefined;
  readonly location: LocationService;
  stop(): Promise<void>;
}

/** Addresses of this machine, for "is this Request-URI / Route for us" (Kamailio's `myself`). */
function localAddresses(): Set<string> {
  const out = new Set<string>(['127.0.0.1', '::1', 'localhost']);
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(a.address.toLowerCase());
  return out;
}

/** The API logs pino-style `(fields, message)`; fields other than `err` (method, path) go in the line. */
function httpLogLine(fields: object, msg: string | undefined): string {
  const rest = Object.entries(fields).filter(([k]) => k !== 'err').map(([k, v]) => `${k}=${String(v)}`);
  return `${msg ?? 'http'}${rest.length > 0 ? ' ' + rest.join(' ') : ''}`;
}

export async function startServer(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const secrets = ensureDataDir(config);
  let location: LocationService | undefined;
  const store = new SqliteStore(databasePath(config), { backgroundCheckpoints: true });
  const secret = Buffer.from(secrets.nonceSecret, 'hex');
  const derive = (label: string): Buffer => createHmac('sha256', secret).update(label).digest();
  const realm = config.domain;

  // TLS (SIP over TLS, HTTPS, WSS): certificate files, or a certificate from an ACME CA —
  // obtained before the TLS listeners start when there is none yet, renewed in place.
  // acme-client (and its HTTP and crypto dependencies, ~37 MiB of RSS) loads only when used.
  const acme: AcmeManager | undefined = config.acme !== undefined
    ? new (await import('./deploy/acme.ts')).AcmeManager({
      domain: config.domain, email: config.acme.email, directoryUrl: config.acme.directoryUrl, dataDir: config.dataDir,
      http: config.acme.httpListen, httpsPort: config.http.tlsListen.port, renewDays: config.acme.renewDays,
      checkSeconds: config.acme.checkSeconds, log: (level, msg, err) => logger[level](msg, err),
    })
    : undefined;
  let tlsPair: { cert: string | Buffer; key: string | Buffer } | undefined =
    config.sip.tls !== undefined ? { cert: readFileSync(config.sip.tls.cert), key: readFileSync(config.sip.tls.key) } : undefined;
  if (acme !== undefined) {
    await acme.start();
    tlsPair = await acme.ensure();
  }

  const transports = new TransportLayer({
    udp: config.sip.listen,
    tcp: config.sip.listen,
    ...(tlsPair !== undefined ? { tls: { ...config.sip.tlsListen, ...tlsPair } } : {}),
    forceRport: config.sip.forceRport,
    log: (level, msg, err) => logger[level](msg, err),
    // RFC 5626 §5.3: an outbound (reg-id) binding lives as long as its connection. A
    // WebSocket client (RFC 7118) cannot be reached any other way: all its bindings go.
    onConnectionClosed: (id, flow) => location?.removeByConnection(id, flow.transport !== 'ws' && flow.transport !== 'wss'),
  });
  await transports.listen();

  // HTTP(S) first: its ports are part of our identity (WebSocket Via / Record-Route). Requests
  // wait for the API, built below.
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const serveHttp = (req: IncomingMessage, res: ServerResponse): void => {
    if (handler !== undefined) handler(req, res);
    else res.writeHead(503, { 'retry-after': '1' }).end();
  };
  const http: HttpServer = createHttpServer(serveHttp);
  const httpPort = await listenHttp(http, config.http.listen);
  let https: HttpsServer | undefined = tlsPair !== undefined ? createHttpsServer(tlsPair, serveHttp) : undefined;
  const httpsPort = https !== undefined ? await listenHttp(https, config.http.tlsListen) : undefined;
  const layer = new TransactionLayer({ sender: transports, onError: (e) => logger.error('transaction user failed', e) });
  transports.setHandler(layer);

  location = new LocationService({ log: (m, e) => logger.error(m, e) });
  // Flushed 4 times a second: each batch is one short synchronous transaction (~7.5 us a row),
  // so even at 8,000 REGISTER/s no flush holds the event loop for long.
  const writeBehind = new WriteBehind({ location, persistence: bindingPersistence(store), flushIntervalMs: 250, log: (m, e) => logger.error(m, e) });
  const restored = await writeBehind.restore();
  const digest = new DigestServer({ secret: derive('digest-nonce'), nonceTtlMs: config.auth.nonceTtlSeconds * 1000, algorithms: config.auth.algorithms });
  const host = advertisedHost(config);
  const addrs = localAddresses();
  addrs.add(host);
  const sipPort = transports.bound.udp?.port ?? config.sip.listen.port;
  const ports = new Set([sipPort, transports.bound.tls?.port ?? -1, httpPort, httpsPort ?? -1]);
  const isLocal = (h: string, port?: number): boolean => {
    const lh = h.toLowerCase();
    // A URI without a port names the default port: accept it as ours too, as a phone that
    // was told only the server name will send (port checks matter when several servers share a host).
    return (lh === realm || addrs.has(lh)) && (port === undefined || ports.has(port));
  };
  const findCredentials = async (login: string) => {
    const c = await store.findCredentials(login);
    // HA1s computed for another realm can never match: treat as a wrong password.
    if (c === undefined || c.realm !== realm) return c === undefined ? undefined : { ...c, ha1Md5: '', ha1Sha256: '' };
    return c;
  };
  // JsSIP 3.13 (the web phone) knows only MD5 and, given several WWW-Authenticate headers,
  // keeps the last one (its parser's setHeader): WebSocket clients are offered MD5 alone
  // when MD5 is configured at all.
  const WS_OFFER = ['MD5'] as const;
  const offerAlgorithms = (flow: { transport: string }): readonly 'MD5'[] | undefined => (flow.transport === 'ws' || flow.transport === 'wss' ? WS_OFFER : undefined);
  const registrar = new Registrar({
    location, digest, realm, offerAlgorithms,
    isLocalDomain: (h: string) => isLocal(h),
    findCredentials: async (login: string) => {
      const c = await findCredentials(login);
      return c === undefined ? undefined : { aor: String(c.userId), enabled: c.enabled, ha1Md5: c.ha1Md5, ha1Sha256: c.ha1Sha256 };
    },
    minExpires: config.registrar.minExpires,
    maxExpires: config.registrar.maxExpires,
    defaultExpires: config.registrar.defaultExpires,
  });

  const interfaces: Record<string, LocalInterface> = {
    udp: { transport: 'udp', host, port: sipPort },
    tcp: { transport: 'tcp', host, port: transports.bound.tcp?.port ?? sipPort },
  };
  if (transports.bound.tls !== undefined) interfaces['tls'] = { transport: 'tls', host, port: transports.bound.tls.port };
  // RFC 7118 §6 / RFC 5658: a call between a browser and a phone crosses from the ws(s)
  // interface to udp/tcp/tls, so the proxy double record-routes.
  interfaces['ws'] = { transport: 'ws', host, port: httpPort };
  if (httpsPort !== undefined) interfaces['wss'] = { transport: 'wss', host, port: httpsPort };
  const tokens = new FlowTokens(derive('flow-token'));
  const proxy = new ProxyCore({ layer, tokens, interfaces });
  const callLog = new CallLog(store);
  const calls = new CallTracker(callLog, (m, e) => logger.error(m, e));
  // The media engine: RTPEngine when configured, else the embedded one (so that a browser can
  // call a SIP phone out of the box); `off` leaves SDP alone.
  const engine = config.media.engine === 'rtpengine' ? new RtpEngineDriver({ instances: config.media.rtpengine })
    : config.media.engine === 'embedded' ? new EmbeddedMediaEngine({ rtpPorts: config.media.rtpPorts, advertiseAddress: host })
      : undefined;
  const media = new CallMedia(engine, (level, msg, err) => logger[level](msg, err));
  const router = new SipRouter({
    layer, proxy, tokens, registrar, location, digest, realm, calls, isLocal, offerAlgorithms, media,
    connectionAlive: (id) => transports.hasConnection(id),
    directory: {
      findCredentials,
      // The same cached lookup as authentication: a login is a SIP username or a number.
      findUser: async (login) => {
        const c = await store.findCredentials(login);
        return c === undefined ? undefined : { id: c.userId, enabled: c.enabled };
      },
    },
    noAnswerMs: config.proxy.noAnswerSeconds * 1000,
    serverHeader: `CareFlow/${VERSION}`,
    log: (level, msg, err) => logger[level](msg, err),
  });
  layer.setUser(router);
  // Relayed and bridged calls whose audio stopped are ended (the engine is asked every 10 s
  // at most; a third of the timeout for short ones).
  const mediaTimeoutMs = config.media.timeoutSeconds * 1000;
  media.watch({ intervalMs: Math.min(10_000, Math.ceil(mediaTimeoutMs / 3)), timeoutMs: mediaTimeoutMs, onIdle: (id, dialog) => router.endIdleCall(id, dialog) });

  const accounts = new AccountService({ store, domain: realm, numbers: config.numbers });
  const presence = new PresenceHub(location, (m, e) => logger.error(m, e));
  const sessions = new WebSessions({
    realm, secret: derive('web-session'), ttlMs: config.web.sessionDays * 86_400_000, findCredentials,
  });
  const site = new StaticSite();
  if (!site.built) logger.warn('web phone not built (web/dist missing): run `npm run build:web`; / answers 503 until then');
  const websockets = new SipWebSocketEndpoint({ transports, log: (m, e) => logger.warn(m, e) });
  websockets.attach(http, 'ws');
  if (https !== undefined) websockets.attach(https, 'wss');
  // A renewed certificate replaces the old one in place; a first one (the CA was unreachable
  // at start) starts the TLS listeners.
  acme?.onCertificate((pair) => {
    if (https !== undefined) {
      https.setSecureContext(pair);
      transports.setTlsCertificate(pair.cert, pair.key);
      return;
    }
    void (async () => {
      await transports.listenTls({ ...config.sip.tlsListen, ...pair });
      const server = createHttpsServer(pair, serveHttp);
      const port = await listenHttp(server, config.http.tlsListen);
      https = server;
      websockets.attach(server, 'wss');
      if (transports.bound.tls !== undefined) {
        interfaces['tls'] = { transport: 'tls', host, port: transports.bound.tls.port };
        ports.add(transports.bound.tls.port);
      }
      interfaces['wss'] = { transport: 'wss', host, port };
      ports.add(port);
      logger.info(`careflow: TLS listeners started: sip tls :${transports.bound.tls?.port ?? '?'} https :${port}`);
    })().catch((e: unknown) => logger.error('starting the TLS listeners failed', e));
  });
  handler = createHttpApi({
    store, accounts, callLog, adminToken: secrets.adminToken, site,
    phone: {
      sessions, limiter: new LoginLimiter(), accounts, callLog, presence, domain: realm, ice: config.webrtc,
    },
    status: () => ({
      registrations: location.count(), registeredUsers: location.aorCount(), activeCalls: calls.active, mediaSessions: media.active,
      serverTransactions: layer.serverCount, clientTransactions: layer.clientCount, proxyContexts: proxy.activeContexts,
      connections: transports.stats.connections, received: transports.stats.received, sent: transports.stats.sent,
      parseErrors: transports.stats.parseErrors, websockets: websockets.connections, presenceSubscribers: presence.subscribers,
    }),
    presence: {
      devicesOf: (userId) => location.lookup(String(userId)).map((b) => ({
        contact: b.contact, transport: b.flow.transport, source: `${b.flow.remoteAddress}:${b.flow.remotePort}`, expiresAt: b.expiresAt,
        ...(b.userAgent !== undefined ? { userAgent: b.userAgent } : {}), ...(b.instance !== undefined ? { instance: b.instance } : {}),
      })),
    },
    logger: {
      info: (o, m) => logger.info(httpLogLine(o, m)),
      warn: (o, m) => logger.warn(httpLogLine(o, m), (o as { err?: unknown }).err),
      error: (o, m) => logger.error(httpLogLine(o, m), (o as { err?: unknown }).err),
    },
  });
  // Dynamic DNS (src/deploy/ddns.ts): checks the public address now and every interval.
  const ddns = config.ddns !== undefined ? createDdnsUpdater(config.ddns, logger) : undefined;
  ddns?.start();
  logger.info(`careflow: listening sip udp+tcp ${config.sip.listen.host}:${sipPort}${transports.bound.tls ? ` tls :${transports.bound.tls.port}` : ''} http ${config.http.listen.host}:${httpPort}${httpsPort !== undefined ? ` https :${httpsPort}` : ''} domain ${realm} (${restored} registrations restored)`);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await ddns?.stop();
      await acme?.close();
      websockets.close();
      presence.close();
      for (const server of https !== undefined ? [http, https] : [http]) {
        server.close();
        server.closeAllConnections();
      }
      await transports.close();
      layer.close();
      await media.close(); // every relayed or bridged call's media released
      await calls.close();
      await writeBehind.close();
      location.close();
      await store.close();
    })();
    return stopping;
  };
  return { sipPort, httpPort, httpsPort, location, stop };
}

function listenHttp(server: HttpServer, at: { host: string; port: number }): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}
