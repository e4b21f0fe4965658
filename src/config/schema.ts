/**
 * The configuration schema: every setting, where it comes from (env var, flag, JSON key),
 * its default and its validation. Validated once, with zod, into a frozen `Config`.
 */
import { isIP } from 'node:net';
import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';

export type DigestAlgorithm = 'MD5' | 'SHA-256';
export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = ['MD5', 'SHA-256'];
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

export interface Config {
  /** The JSON config file that was read, if any (absolute path). */
  readonly configFile: string | undefined;
  /** Absolute path of the data directory (database, secrets). */
  readonly dataDir: string;
  /** SIP domain; also the digest realm, so changing it invalidates stored HA1s. */
  readonly domain: string;
  readonly sip: {
    /** UDP and TCP listen address. */
    readonly listen: HostPort;
    /** TLS listen address; used only when `tls` is set. */
    readonly tlsListen: HostPort;
    readonly tls: TlsFiles | undefined;
    /** Answer every request at its packet's source address and port (Kamailio's force_rport()). */
    readonly forceRport: boolean;
    /** Address written into Via and Record-Route; undefined: the listen address or the first public IPv4. */
    readonly advertise: string | undefined;
  };
  readonly http: {
    readonly listen: HostPort;
    /** HTTPS (and WSS) listen address; used only when `sip.tls` is set (the same certificate). */
    readonly tlsListen: HostPort;
  };
  /** ICE servers handed to web phones (RFC 8489 STUN, RFC 8656 TURN). */
  readonly webrtc: {
    readonly stunUrls: readonly string[];
    readonly turnUrls: readonly string[];
    /** coturn `static-auth-secret` (use-auth-secret): TURN credentials are derived from it. */
    readonly turnSecret: string | undefined;
    readonly turnTtlSeconds: number;
    /** `relay` forces every browser call through TURN (hides addresses; costs bandwidth). */
    readonly iceTransportPolicy: 'all' | 'relay';
  };
  readonly web: {
    /** How long a web phone stays signed in without the password. */
    readonly sessionDays: number;
  };
  readonly numbers: { readonly prefix: string; readonly start: number };
  readonly auth: {
    /** Challenge order: phones that read one challenge read the first. */
    readonly algorithms: readonly DigestAlgorithm[];
    readonly nonceTtlSeconds: number;
  };
  readonly registrar: {
    readonly minExpires: number;
    readonly maxExpires: number;
    readonly defaultExpires: number;
  };
  readonly proxy: {
    /** Ring time before the proxy gives up with no_answer (480 to the caller). */
    readonly noAnswerSeconds: number;
  };
  readonly media: {
    /** UDP ports for RTP (and RTCP): the media engine's range, opened by `careflow firewall`. */
    readonly rtpPorts: { readonly min: number; readonly max: number };
    /** RTPEngine ng control addresses, in failover order; empty: no RTPEngine. */
    readonly rtpengine: readonly HostPort[];
    /** Which engine relays and bridges: RTPEngine when addresses are set (auto), else the embedded one. */
    readonly engine: 'embedded' | 'rtpengine' | 'off';
    /** A relayed or bridged call whose audio stopped this long is ended (seconds). */
    readonly timeoutSeconds: number;
  };
  /** Certificates from an ACME CA (src/deploy/acme.ts); undefined when off. */
  readonly acme: AcmeConfig | undefined;
  /** The dynamic DNS updater (src/deploy/ddns.ts); undefined when off. */
  readonly ddns: DdnsConfig | undefined;
  readonly logLevel: LogLevel;
  /** V8 heap policy: small (keep RSS near the live data), fast (throughput), auto (small on hosts with <= 4 GiB). */
  readonly memoryMode: 'auto' | 'small' | 'fast';
}

export interface AcmeConfig {
  readonly email: string | undefined;
  readonly directoryUrl: string;
  /** The HTTP-01 challenge listener (port 80 on the internet). */
  readonly httpListen: HostPort;
  readonly renewDays: number;
  readonly checkSeconds: number;
}

export type DdnsProviderName = 'duckdns';

export interface DdnsConfig {
  readonly provider: DdnsProviderName;
  /** DuckDNS subdomains, without `.duckdns.org`. */
  readonly domains: readonly string[];
  /** The account token: a secret, never logged. */
  readonly token: string;
  /** The provider's update endpoint (DuckDNS: https://www.duckdns.org/update). */
  readonly updateUrl: string;
  /** Answers the caller's public IPv4 address as plain text (https://api.ipify.org). */
  readonly ipUrl: string;
  readonly intervalSeconds: number;
}

/** One setting and its three names. `key` is also the JSON config file key. */
export interface ConfigField {
  readonly key: string;
  readonly env: string;
  readonly flag: string;
  readonly help: string;
}

export const CONFIG_FIELDS = [
  { key: 'dataDir', env: 'CAREFLOW_DATA_DIR', flag: '--data-dir', help: 'data directory (default ./data)' },
  { key: 'domain', env: 'CAREFLOW_DOMAIN', flag: '--domain', help: 'SIP domain and digest realm (default: first non-internal IPv4)' },
  { key: 'sipListen', env: 'CAREFLOW_SIP_LISTEN', flag: '--sip-listen', help: 'SIP UDP+TCP host:port (default 0.0.0.0:5060)' },
  { key: 'sipTlsListen', env: 'CAREFLOW_SIP_TLS_LISTEN', flag: '--sip-tls-listen', help: 'SIP TLS host:port (default 0.0.0.0:5061)' },
  { key: 'tlsCert', env: 'CAREFLOW_TLS_CERT', flag: '--tls-cert', help: 'TLS certificate file (PEM); enables SIP TLS with --tls-key' },
  { key: 'tlsKey', env: 'CAREFLOW_TLS_KEY', flag: '--tls-key', help: 'TLS private key file (PEM)' },
  { key: 'httpListen', env: 'CAREFLOW_HTTP_LISTEN', flag: '--http-listen', help: 'HTTP (web phone, API, SIP over WebSocket) host:port (default 0.0.0.0:8080)' },
  { key: 'httpsListen', env: 'CAREFLOW_HTTPS_LISTEN', flag: '--https-listen', help: 'HTTPS + WSS host:port, enabled with the TLS certificate (default 0.0.0.0:8443)' },
  { key: 'stunUrls', env: 'CAREFLOW_STUN_URLS', flag: '--stun-urls', help: 'STUN servers for web phones, comma list like stun:turn.example.org:3478 (default none)' },
  { key: 'turnUrls', env: 'CAREFLOW_TURN_URLS', flag: '--turn-urls', help: 'TURN servers, comma list like turn:turn.example.org:3478?transport=udp (default none)' },
  { key: 'turnSecret', env: 'CAREFLOW_TURN_SECRET', flag: '--turn-secret', help: "the TURN server's shared secret (coturn static-auth-secret); required with --turn-urls" },
  { key: 'turnTtl', env: 'CAREFLOW_TURN_TTL', flag: '--turn-ttl', help: 'lifetime of TURN credentials handed to web phones, seconds (default 43200)' },
  { key: 'iceTransportPolicy', env: 'CAREFLOW_ICE_TRANSPORT_POLICY', flag: '--ice-transport-policy', help: 'all|relay: relay sends every browser call through TURN (default all)' },
  { key: 'webSessionDays', env: 'CAREFLOW_WEB_SESSION_DAYS', flag: '--web-session-days', help: 'days a web phone stays signed in (default 30)' },
  { key: 'numberPrefix', env: 'CAREFLOW_NUMBER_PREFIX', flag: '--number-prefix', help: 'prefix of new numbers (default care4w-)' },
  { key: 'numberStart', env: 'CAREFLOW_NUMBER_START', flag: '--number-start', help: 'first number (default 1000001)' },
  { key: 'authAlgorithms', env: 'CAREFLOW_AUTH_ALGORITHMS', flag: '--auth-algorithms', help: 'digest challenges offered, in order: MD5, SHA-256 or both (default MD5; see README before adding SHA-256)' },
  { key: 'regMinExpires', env: 'CAREFLOW_REG_MIN_EXPIRES', flag: '--reg-min-expires', help: 'shortest registration, seconds (default 60)' },
  { key: 'regMaxExpires', env: 'CAREFLOW_REG_MAX_EXPIRES', flag: '--reg-max-expires', help: 'longest registration, seconds (default 3600)' },
  { key: 'regDefaultExpires', env: 'CAREFLOW_REG_DEFAULT_EXPIRES', flag: '--reg-default-expires', help: 'registration when none asked, seconds (default 3600)' },
  { key: 'sipForceRport', env: 'CAREFLOW_SIP_FORCE_RPORT', flag: '--sip-force-rport', help: 'answer requests at their source address:port even without ;rport, true|false (default true)' },
  { key: 'sipAdvertise', env: 'CAREFLOW_SIP_ADVERTISE', flag: '--sip-advertise', help: 'address put in Via/Record-Route, e.g. the public IP of a server behind NAT (default: listen address)' },
  { key: 'noAnswerSeconds', env: 'CAREFLOW_NO_ANSWER_SECONDS', flag: '--no-answer-seconds', help: 'ring time before a call ends as no_answer, seconds (default 60)' },
  { key: 'memoryMode', env: 'CAREFLOW_MEMORY_MODE', flag: '--memory-mode', help: 'auto|small|fast: small keeps the heap nearest the live data (V8 --optimize-for-size), fast spends less CPU per call with a bounded heap (default auto: small on hosts with <= 4 GiB RAM)' },
  { key: 'logLevel', env: 'CAREFLOW_LOG_LEVEL', flag: '--log-level', help: 'fatal|error|warn|info|debug|trace (default info)' },
  { key: 'nonceTtl', env: 'CAREFLOW_NONCE_TTL', flag: '--nonce-ttl', help: 'digest nonce lifetime, seconds (default 300)' },
  { key: 'mediaTimeout', env: 'CAREFLOW_MEDIA_TIMEOUT', flag: '--media-timeout', help: 'end a relayed or bridged call after this many seconds without audio (default 60)' },
  { key: 'mediaEngine', env: 'CAREFLOW_MEDIA_ENGINE', flag: '--media-engine', help: 'auto|embedded|rtpengine|off: who relays and bridges audio (default auto: RTPEngine when CAREFLOW_RTPENGINE is set, else embedded)' },
  { key: 'rtpengine', env: 'CAREFLOW_RTPENGINE', flag: '--rtpengine', help: 'RTPEngine ng control address(es), comma list like 127.0.0.1:2223 (default none)' },
  { key: 'acme', env: 'CAREFLOW_ACME', flag: '--acme', help: "on|off: get the TLS certificate for the domain from Let's Encrypt (ACME HTTP-01 on port 80) and renew it (default off)" },
  { key: 'acmeEmail', env: 'CAREFLOW_ACME_EMAIL', flag: '--acme-email', help: 'contact address for the ACME account (expiry notices), optional' },
  { key: 'acmeDirectory', env: 'CAREFLOW_ACME_DIRECTORY', flag: '--acme-directory', help: "ACME directory URL (default Let's Encrypt production)" },
  { key: 'acmeHttpListen', env: 'CAREFLOW_ACME_HTTP_LISTEN', flag: '--acme-http-listen', help: 'host:port answering HTTP-01 challenges (default 0.0.0.0:80)' },
  { key: 'acmeRenewDays', env: 'CAREFLOW_ACME_RENEW_DAYS', flag: '--acme-renew-days', help: 'renew when the certificate expires within this many days (default 30)' },
  { key: 'acmeCheckSeconds', env: 'CAREFLOW_ACME_CHECK_SECONDS', flag: '--acme-check-seconds', help: 'how often the certificate is checked for renewal, seconds (default 43200)' },
  { key: 'rtpPorts', env: 'CAREFLOW_RTP_PORTS', flag: '--rtp-ports', help: 'UDP port range for RTP media, LOW-HIGH within 1024-65535 (default 10000-20000)' },
  { key: 'ddnsProvider', env: 'CAREFLOW_DDNS_PROVIDER', flag: '--ddns-provider', help: 'dynamic DNS updater: duckdns or none (default none)' },
  { key: 'duckdnsDomains', env: 'CAREFLOW_DUCKDNS_DOMAINS', flag: '--duckdns-domains', help: 'DuckDNS subdomains to point here, comma list like careflow-home (for careflow-home.duckdns.org)' },
  { key: 'duckdnsToken', env: 'CAREFLOW_DUCKDNS_TOKEN', flag: '--duckdns-token', help: 'DuckDNS account token (secret, never logged; prefer the env var or config file to a flag)' },
  { key: 'ddnsIntervalSeconds', env: 'CAREFLOW_DDNS_INTERVAL_SECONDS', flag: '--ddns-interval-seconds', help: 'how often the public address is checked, seconds (default 300)' },
  { key: 'duckdnsUrl', env: 'CAREFLOW_DUCKDNS_URL', flag: '--duckdns-url', help: 'DuckDNS update endpoint (default https://www.duckdns.org/update)' },
  { key: 'ddnsIpUrl', env: 'CAREFLOW_DDNS_IP_URL', flag: '--ddns-ip-url', help: 'URL answering the public IPv4 address as plain text (default https://api.ipify.org)' },
] as const satisfies readonly ConfigField[];

export type ConfigKey = (typeof CONFIG_FIELDS)[number]['key'];

export const DEFAULTS: Readonly<Record<Exclude<ConfigKey, 'domain' | 'tlsCert' | 'tlsKey' | 'sipAdvertise' | 'turnSecret' | 'ddnsProvider' | 'duckdnsDomains' | 'duckdnsToken' | 'acmeEmail'>, string>> = {
  dataDir: './data',
  sipListen: '0.0.0.0:5060',
  sipTlsListen: '0.0.0.0:5061',
  httpListen: '0.0.0.0:8080',
  httpsListen: '0.0.0.0:8443',
  stunUrls: '',
  turnUrls: '',
  turnTtl: '43200',
  iceTransportPolicy: 'all',
  webSessionDays: '30',
  numberPrefix: 'care4w-',
  numberStart: '1000001',
  // MD5 only: baresip 1.0 (libre 2.x) rejects a 401 that carries any non-MD5 challenge, even
  // after an MD5 one, and SIPp 3.6 and many desk phones know MD5 only (README, Configuration).
  authAlgorithms: 'MD5',
  regMinExpires: '60',
  regMaxExpires: '3600',
  regDefaultExpires: '3600',
  noAnswerSeconds: '60',
  sipForceRport: 'true',
  logLevel: 'info',
  memoryMode: 'auto',
  nonceTtl: '300',
  rtpPorts: '10000-20000',
  acme: 'off',
  acmeDirectory: 'https://acme-v02.api.letsencrypt.org/directory',
  acmeHttpListen: '0.0.0.0:80',
  acmeRenewDays: '30',
  acmeCheckSeconds: '43200',
  rtpengine: '',
  mediaEngine: 'auto',
  mediaTimeout: '60',
  ddnsIntervalSeconds: '300',
  duckdnsUrl: 'https://www.duckdns.org/update',
  ddnsIpUrl: 'https://api.ipify.org',
};

const show = (value: unknown): string => JSON.stringify(value) ?? String(value);

/** A field that takes a string (env, flag) or a JSON value (file) and checks it with `parse`. */
function field<T>(parse: (text: string) => T | string): z.ZodType<T> {
  return z.unknown().transform((value, ctx) => {
    const text = typeof value === 'number' ? String(value) : value;
    if (typeof text !== 'string') {
      ctx.addIssue({ code: 'custom', message: `expected a string, got ${show(value)}` });
      return z.NEVER;
    }
    const result = parse(text.trim());
    if (typeof result === 'string' && result.startsWith('\0')) {
      ctx.addIssue({ code: 'custom', message: result.slice(1) });
      return z.NEVER;
    }
    return result as T;
  }) as unknown as z.ZodType<T>;
}
const fail = (message: string): string => `\0${message}`;

export function parseHostPort(text: string, example: string): HostPort | string {
  const bad = fail(`expected host:port like ${example}, got ${show(text)}`);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!m) return bad;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (port > 65535) return fail(`port must be 0-65535 in ${show(text)} (like ${example})`);
  if (m[1] !== undefined && isIP(host) !== 6) return bad;
  return { host, port };
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function parseDomain(text: string): string {
  if (HOSTNAME.test(text)) return text.toLowerCase();
  if (text.startsWith('[') && text.endsWith(']') && isIP(text.slice(1, -1)) === 6) return text.toLowerCase();
  return fail(`expected a host name or IP address like sip.example.org or 192.0.2.10 (IPv6 in brackets), got ${show(text)}`);
}

function int(min: number, max: number, unit: string): z.ZodType<number> {
  return field((text) => {
    if (!/^\d+$/.test(text)) return fail(`expected a whole number of ${unit}, got ${show(text)}`) as never;
    const n = Number(text);
    if (n < min || n > max) return fail(`must be between ${min} and ${max} ${unit}, got ${n}`) as never;
    return n;
  });
}

function readableFile(text: string): string {
  const path = resolve(text);
  try {
    accessSync(path, constants.R_OK);
  } catch {
    return fail(`file ${show(path)} does not exist or is not readable; give the path of a PEM file`);
  }
  return path;
}

function algorithms(text: string): readonly DigestAlgorithm[] | string {
  const list = text.split(',').map((s) => s.trim().toUpperCase()).filter((s) => s !== '');
  if (list.length === 0) return fail('expected a comma list of MD5, SHA-256 (e.g. MD5,SHA-256), got nothing');
  const out: DigestAlgorithm[] = [];
  for (const name of list) {
    const algorithm = DIGEST_ALGORITHMS.find((a) => a === name);
    if (algorithm === undefined) return fail(`unknown digest algorithm ${show(name)}; use MD5, SHA-256 or both, like MD5,SHA-256`);
    if (out.includes(algorithm)) return fail(`${algorithm} is listed twice in ${show(text)}`);
    out.push(algorithm);
  }
  return out;
}

function portRange(text: string): { min: number; max: number } | string {
  const m = /^(\d{1,5})\s*-\s*(\d{1,5})$/.exec(text);
  if (m === null) return fail(`expected a port range LOW-HIGH like 10000-20000, got ${show(text)}`);
  const min = Number(m[1]);
  const max = Number(m[2]);
  if (min < 1024 || max > 65535) return fail(`ports must lie within 1024-65535, got ${show(text)}; use a range like 10000-20000`);
  if (min > max) return fail(`the low port must not exceed the high port in ${show(text)}; write it as ${max}-${min}`);
  return { min, max };
}

function httpUrl(text: string, example: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(`expected an http(s) URL like ${example}, got ${show(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(`expected an http: or https: URL like ${example}, got ${show(text)}`);
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    return fail(`give the URL without user, password, query or fragment, like ${example}`);
  }
  return url.href;
}

/** DuckDNS subdomains: `careflow-home` or `careflow-home.duckdns.org`, comma separated. */
function duckdnsDomains(text: string): string[] | string {
  const out: string[] = [];
  for (const raw of text.split(',')) {
    const name = raw.trim().toLowerCase().replace(/\.duckdns\.org$/, '');
    if (name === '') continue;
    if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
      return fail(`expected DuckDNS subdomains like careflow-home (for careflow-home.duckdns.org), got ${show(raw.trim())}`);
    }
    if (!out.includes(name)) out.push(name);
  }
  return out.length > 0 ? out : fail('expected at least one DuckDNS subdomain, like careflow-home');
}

/** The DuckDNS token (a UUID). A secret: no message ever shows the value. */
const duckdnsToken: z.ZodType<string> = z.unknown().transform((value, ctx) => {
  const text = typeof value === 'string' ? value.trim() : '';
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)) {
    ctx.addIssue({ code: 'custom', message: 'expected the token shown on duckdns.org, a UUID like 01234567-89ab-cdef-0123-456789abcdef (the value given is not shown: it is a secret)' });
    return z.NEVER;
  }
  return text.toLowerCase();
}) as unknown as z.ZodType<string>;

const configSchema = z
  .object({
    dataDir: field((t) => (t === '' ? fail('must not be empty; give a directory like ./data') : resolve(t))),
    domain: field(parseDomain),
    sipListen: field((t) => parseHostPort(t, '0.0.0.0:5060')),
    sipTlsListen: field((t) => parseHostPort(t, '0.0.0.0:5061')),
    tlsCert: field(readableFile).optional(),
    tlsKey: field(readableFile).optional(),
    httpListen: field((t) => parseHostPort(t, '0.0.0.0:8080')),
    httpsListen: field((t) => parseHostPort(t, '0.0.0.0:8443')),
    stunUrls: field((t) => iceUrls(t, ['stun', 'stuns'], 'stun:turn.example.org:3478')),
    turnUrls: field((t) => iceUrls(t, ['turn', 'turns'], 'turn:turn.example.org:3478?transport=udp')),
    turnSecret: field((t) => (t.length >= 16 ? t : fail('must be at least 16 characters; use the static-auth-secret from turnserver.conf'))).optional(),
    turnTtl: int(300, 7 * 86_400, 'seconds'),
    iceTransportPolicy: field<'all' | 'relay'>((t) => (t === 'all' || t === 'relay' ? t : fail(`expected all or relay, got ${show(t)}`))),
    webSessionDays: int(1, 365, 'days'),
    numberPrefix: field((t) =>
      /^[A-Za-z0-9._-]{0,20}$/.test(t) && !t.toLowerCase().startsWith('careflow_')
        ? t
        : fail(`expected up to 20 letters, digits, '.', '_' or '-' (not starting with careflow_), like care4w-, got ${show(t)}`),
    ),
    numberStart: int(0, 999_999_999_999, 'digits'),
    authAlgorithms: field(algorithms),
    regMinExpires: int(1, 86_400, 'seconds'),
    regMaxExpires: int(1, 604_800, 'seconds'),
    regDefaultExpires: int(1, 604_800, 'seconds'),
    noAnswerSeconds: int(5, 600, 'seconds'),
    sipForceRport: field((t) => (/^(true|1|yes|on)$/i.test(t) ? true : /^(false|0|no|off)$/i.test(t) ? false : fail(`expected true or false, got ${show(t)}`))),
    sipAdvertise: field((t) => (isIP(t) !== 0 || HOSTNAME.test(t) ? t : fail(`expected an IP address or host name like 203.0.113.7, got ${show(t)}`))).optional(),
    memoryMode: field<'auto' | 'small' | 'fast'>((t) => (t === 'auto' || t === 'small' || t === 'fast' ? t : fail(`expected auto, small or fast, got ${show(t)}`))),
    logLevel: field<LogLevel>((t) => LOG_LEVELS.find((l) => l === t.toLowerCase()) ?? fail(`expected one of ${LOG_LEVELS.join(', ')}, got ${show(t)}`)),
    nonceTtl: int(10, 86_400, 'seconds'),
    rtpPorts: field(portRange),
    acme: field((t) => (/^(on|true|yes|1)$/i.test(t) ? true : /^(off|false|no|0)$/i.test(t) ? false : fail(`expected on or off, got ${show(t)}`))),
    acmeEmail: field((t) => (/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(t) ? t : fail(`expected an e-mail address like admin@example.org, got ${show(t)}`))).optional(),
    acmeDirectory: field((t) => (/^https:\/\/\S+$/.test(t) ? t : fail(`expected an https:// ACME directory URL like https://acme-v02.api.letsencrypt.org/directory, got ${show(t)}`))),
    acmeHttpListen: field((t) => parseHostPort(t, '0.0.0.0:80')),
    acmeRenewDays: int(1, 36_500, 'days'),
    acmeCheckSeconds: int(2, 604_800, 'seconds'),
    mediaTimeout: int(5, 3600, 'seconds'),
    mediaEngine: field<'auto' | 'embedded' | 'rtpengine' | 'off'>((t) => (t === 'auto' || t === 'embedded' || t === 'rtpengine' || t === 'off' ? t : fail(`expected auto, embedded, rtpengine or off, got ${show(t)}`))),
    rtpengine: field((t) => {
      const out: HostPort[] = [];
      for (const part of t.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
        const hp = parseHostPort(part, '127.0.0.1:2223');
        if (typeof hp === 'string') return hp;
        out.push(hp);
      }
      return out;
    }),
    ddnsProvider: field<DdnsProviderName | 'none'>((t) => (t === 'duckdns' || t === 'none' ? t : fail(`expected duckdns or none, got ${show(t)}`))).optional(),
    duckdnsDomains: field(duckdnsDomains).optional(),
    duckdnsToken: duckdnsToken.optional(),
    ddnsIntervalSeconds: int(60, 86_400, 'seconds'),
    duckdnsUrl: field((t) => httpUrl(t, 'https://www.duckdns.org/update')),
    ddnsIpUrl: field((t) => httpUrl(t, 'https://api.ipify.org')),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.mediaEngine === 'rtpengine' && c.rtpengine.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['mediaEngine'], message: 'rtpengine needs its address: set CAREFLOW_RTPENGINE=host:port (its --listen-ng), or use auto' });
    }
    if (c.acme && isIP(c.domain) !== 0) {
      ctx.addIssue({ code: 'custom', path: ['acme'], message: `ACME certificates are for DNS names; set CAREFLOW_DOMAIN to the server's name (e.g. care.example.org), not the address ${c.domain}` });
    }
    if (c.acme && (c.tlsCert !== undefined || c.tlsKey !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['acme'], message: 'use either ACME or certificate files (CAREFLOW_TLS_CERT/KEY), not both' });
    }
    if (c.regMinExpires > c.regMaxExpires) {
      ctx.addIssue({ code: 'custom', path: ['regMinExpires'], message: `must not exceed the maximum (${c.regMaxExpires}); lower it or raise the maximum` });
    }
    if (c.regDefaultExpires < c.regMinExpires || c.regDefaultExpires > c.regMaxExpires) {
      ctx.addIssue({ code: 'custom', path: ['regDefaultExpires'], message: `must lie between the minimum (${c.regMinExpires}) and the maximum (${c.regMaxExpires})` });
    }
    if (c.turnUrls.length > 0 && c.turnSecret === undefined) {
      ctx.addIssue({ code: 'custom', path: ['turnSecret'], message: "TURN servers need the shared secret: set CAREFLOW_TURN_SECRET to coturn's static-auth-secret" });
    }
    if (c.iceTransportPolicy === 'relay' && c.turnUrls.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['iceTransportPolicy'], message: 'relay needs a TURN server: set CAREFLOW_TURN_URLS and CAREFLOW_TURN_SECRET, or use all' });
    }
    if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.tlsCert === undefined ? 'tlsCert' : 'tlsKey'],
        message: 'TLS needs both a certificate and a key file; set both or neither',
      });
    }
    if (c.ddnsProvider === 'duckdns') {
      if (c.duckdnsDomains === undefined) ctx.addIssue({ code: 'custom', path: ['duckdnsDomains'], message: 'DuckDNS needs your subdomains: set CAREFLOW_DUCKDNS_DOMAINS, like careflow-home' });
      if (c.duckdnsToken === undefined) ctx.addIssue({ code: 'custom', path: ['duckdnsToken'], message: 'DuckDNS needs your account token: set CAREFLOW_DUCKDNS_TOKEN to the token shown on duckdns.org' });
    } else if (c.duckdnsDomains !== undefined || c.duckdnsToken !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['ddnsProvider'], message: 'DuckDNS domains or token are set but the updater is off: set CAREFLOW_DDNS_PROVIDER=duckdns, or remove them' });
    }
  });

export interface ZodIssueLike {
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** Validates merged raw values; returns the typed config or the issues. */
export function validateConfig(
  raw: Readonly<Record<string, unknown>>,
  configFile: string | undefined,
): { ok: true; config: Config } | { ok: false; issues: readonly ZodIssueLike[] } {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, issues: parsed.error.issues };
  const c = parsed.data;
  const config: Config = {
    configFile,
    dataDir: c.dataDir,
    domain: c.domain,
    sip: {
      listen: c.sipListen,
      tlsListen: c.sipTlsListen,
      tls: c.tlsCert !== undefined && c.tlsKey !== undefined ? { cert: c.tlsCert, key: c.tlsKey } : undefined,
      forceRport: c.sipForceRport,
      advertise: c.sipAdvertise,
    },
    http: { listen: c.httpListen, tlsListen: c.httpsListen },
    webrtc: {
      stunUrls: c.stunUrls, turnUrls: c.turnUrls, turnSecret: c.turnSecret, turnTtlSeconds: c.turnTtl,
      iceTransportPolicy: c.iceTransportPolicy,
    },
    web: { sessionDays: c.webSessionDays },
    numbers: { prefix: c.numberPrefix, start: c.numberStart },
    auth: { algorithms: c.authAlgorithms, nonceTtlSeconds: c.nonceTtl },
    registrar: { minExpires: c.regMinExpires, maxExpires: c.regMaxExpires, defaultExpires: c.regDefaultExpires },
    proxy: { noAnswerSeconds: c.noAnswerSeconds },
    media: {
      rtpPorts: c.rtpPorts, rtpengine: c.rtpengine, timeoutSeconds: c.mediaTimeout,
      engine: c.mediaEngine === 'auto' ? (c.rtpengine.length > 0 ? 'rtpengine' : 'embedded') : c.mediaEngine,
    },
    acme: c.acme
      ? { email: c.acmeEmail, directoryUrl: c.acmeDirectory, httpListen: c.acmeHttpListen, renewDays: c.acmeRenewDays, checkSeconds: c.acmeCheckSeconds }
      : undefined,
    ddns:
      c.ddnsProvider === 'duckdns' && c.duckdnsDomains !== undefined && c.duckdnsToken !== undefined
        ? {
            provider: 'duckdns', domains: c.duckdnsDomains, token: c.duckdnsToken, updateUrl: c.duckdnsUrl, ipUrl: c.ddnsIpUrl,
            intervalSeconds: c.ddnsIntervalSeconds,
          }
        : undefined,
    logLevel: c.logLevel,
    memoryMode: c.memoryMode,
  };
  return { ok: true, config: deepFreeze(config) };
}

/** RFC 7064 (stun:/stuns:) and RFC 7065 (turn:/turns:) URIs, comma separated. */
function iceUrls(text: string, schemes: readonly string[], example: string): string[] | string {
  const out: string[] = [];
  for (const raw of text.split(',')) {
    const url = raw.trim();
    if (url === '') continue;
    const m = /^([a-z]+):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/.exec(url);
    if (m === null || !schemes.includes(m[1]!) || (m[3] !== undefined && Number(m[3]) > 65535)) {
      return fail(`expected ${schemes.join(':/')}: URLs like ${example}, got ${show(url)}`);
    }
    if (m[4] !== undefined && !m[1]!.startsWith('turn')) return fail(`?transport= is for turn: URLs only, got ${show(url)}`);
    out.push(url);
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
