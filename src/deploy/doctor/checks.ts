/**
 * The vocabulary of `careflow doctor`: a check's result, the probes the checks ask the
 * machine through (real ones in ./probes.ts, fakes in the unit tests, so every branch can be
 * driven), and the helpers the check groups share.
 */
import { isIP } from 'node:net';
import type { HostPort } from '../../config/schema.ts';
import type { StunServer, TransportAddress, TurnAllocateResult } from '../stun.ts';

/** pass ✓, warn ! (does not fail the run), fail ✗, skip - (not applicable or not asked for). */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';
export type CheckGroup = 'system' | 'ports' | 'addresses' | 'dns' | 'certificate' | 'clock' | 'media' | 'turn';

export interface CheckResult {
  /** Stable identifier, e.g. `port.sip.udp`, `certificate.validity`. */
  readonly id: string;
  readonly group: CheckGroup;
  readonly status: CheckStatus;
  /** What was found, in plain words, one line. */
  readonly message: string;
  /** How to fix it (warn, fail) or why it was skipped and how to have it checked (skip). */
  readonly fix?: string;
}

export const pass = (id: string, group: CheckGroup, message: string): CheckResult => ({ id, group, status: 'pass', message });
export const warn = (id: string, group: CheckGroup, message: string, fix: string): CheckResult => ({ id, group, status: 'warn', message, fix });
export const fail = (id: string, group: CheckGroup, message: string, fix: string): CheckResult => ({ id, group, status: 'fail', message, fix });
export const skip = (id: string, group: CheckGroup, message: string, fix: string): CheckResult => ({ id, group, status: 'skip', message, fix });

/** This machine's addresses, as src/config/advertise.ts lists them. */
import type { InterfaceAddress } from '../../config/advertise.ts';
export type { InterfaceAddress };

export type DirKind = 'dir' | 'not-dir' | 'missing';

/** What GET /api/health gave: careflow's `{status: ok}`, its 503, some other HTTP server, or nothing. */
export type HealthAnswer =
  | { readonly kind: 'ok' }
  | { readonly kind: 'unhealthy'; readonly status: number }
  | { readonly kind: 'other'; readonly status: number }
  | { readonly kind: 'none'; readonly error: string };

export type BindResult = { readonly kind: 'free' } | { readonly kind: 'error'; readonly code: string; readonly message: string };

export type SipTransport = 'udp' | 'tcp' | 'tls';

export interface HttpDateAnswer {
  /** The Date header, if any. */
  readonly date: string | undefined;
  /** Local clock (ms) when the request was sent and when the answer arrived. */
  readonly sentAt: number;
  readonly receivedAt: number;
}

/** Everything the checks learn about the machine and the network, behind one interface. */
export interface DoctorProbes {
  /** `process.versions.node`. */
  readonly nodeVersion: string;
  now(): number;
  interfaces(): readonly InterfaceAddress[];
  dirKind(path: string): Promise<DirKind>;
  /** May this user create files in the directory? */
  writable(path: string): Promise<boolean>;
  /** Bytes available to this user on the file system holding `path` (statfs). */
  freeBytes(path: string): Promise<number>;
  health(url: string, timeoutMs: number): Promise<HealthAnswer>;
  /** Sends a SIP OPTIONS; resolves with the final answer's status, rejects when none came. */
  sipOptions(transport: SipTransport, host: string, port: number, timeoutMs: number): Promise<{ status: number; reason: string }>;
  /** Binds the port (and lets it go at once): free, or the error (EADDRINUSE, EACCES, ...). */
  bind(protocol: 'udp' | 'tcp', host: string, port: number): Promise<BindResult>;
  /** RFC 5389 Binding request; rejects when the server does not answer. */
  stunBinding(server: StunServer, timeoutMs: number): Promise<TransportAddress>;
  /** RFC 5766 Allocate with long-term credentials (freed again at once); rejects when the server does not answer. */
  turnAllocate(server: StunServer, username: string, password: string, timeoutMs: number): Promise<TurnAllocateResult>;
  /** All addresses of a name (dns.lookup); rejects with the resolver's code. */
  lookup(name: string, timeoutMs: number): Promise<string[]>;
  readFile(path: string): Promise<Buffer>;
  httpDate(url: string, timeoutMs: number): Promise<HttpDateAnswer>;
  /** RTPEngine ng `ping` to each instance: true for those answering `pong`. */
  ngPing(instances: readonly HostPort[], timeoutMs: number): Promise<boolean[]>;
  /** The kernel's ephemeral port range (net.ipv4.ip_local_port_range), if known. */
  ephemeralPorts(): Promise<{ min: number; max: number } | undefined>;
}

export interface DoctorOptions {
  /** The public address, when the admin knows it (--public-ip); else asked of the STUN server. */
  readonly publicIp?: string;
  /** Bound on every network probe (ms). */
  readonly timeoutMs: number;
  /** A URL whose Date header the clock is compared with (--time-url); unset: not checked. */
  readonly timeUrl?: string;
}

/** `[::1]` -> `::1`: config domains write IPv6 in brackets. */
export function bare(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Where to reach a listener from this machine: the wildcard addresses mean loopback. */
export function reachableHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return bare(host);
}

/** A host for a URL or a `host:port` text (IPv6 in brackets). */
export function hostText(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

export function errorText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code !== undefined && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/** Normalised for comparison: lower case, no brackets, IPv4-mapped IPv6 as IPv4. */
export function sameAddress(a: string, b: string): boolean {
  const norm = (s: string): string => bare(s).toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
  return norm(a) === norm(b);
}
