/**
 * Dynamic DNS (issue 5, item 5): keeps a name like careflow-home.duckdns.org pointing at this
 * server's public IPv4 address, for servers at home whose address changes.
 *
 * Every interval the updater asks a "what is my IP" URL (plain-text answer, like
 * https://api.ipify.org) for the public IPv4 address, and calls the provider only when the
 * address differs from the last one the provider accepted, so once at start and then on
 * change. A failure is logged in plain words and retried at the next interval. Every request
 * has a timeout. The provider's secrets never reach a log line: providers describe themselves
 * without them, URLs with secrets are never logged, and every message is scrubbed anyway.
 */
import { isIP } from 'node:net';
import type { DdnsConfig } from '../config/schema.ts';
import type { Logger } from '../logger.ts';

/** A dynamic DNS service. DuckDNS is the one built in; others implement the same two members. */
export interface DdnsProvider {
  /** For log lines: the service and the names, never a secret ("DuckDNS a.duckdns.org"). */
  readonly label: string;
  /** Values that must never appear in a log line (tokens, passwords). */
  readonly secrets: readonly string[];
  /** Points the names at `ip`; throws an Error whose message says in plain words what is wrong. */
  update(ip: string, signal: AbortSignal): Promise<void>;
}

export type DdnsCheck = 'updated' | 'unchanged' | 'failed' | 'stopped';

export interface DdnsTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface DdnsUpdaterOptions {
  readonly provider: DdnsProvider;
  /** Answers the caller's public IPv4 address as plain text. */
  readonly ipUrl: string;
  readonly intervalMs: number;
  /** Bound on each request, answer included (default 10 s). */
  readonly timeoutMs?: number;
  readonly log: Logger;
  /** For tests: the timer that schedules the checks. */
  readonly timers?: DdnsTimers;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** At most this much of an answer is read: DuckDNS says `OK` or `KO`, ipify an address. */
const MAX_ANSWER_BYTES = 4096;

/** GET `url` with a timeout; returns status and (the start of) the body as text. */
async function get(url: string, signal: AbortSignal): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { signal, redirect: 'follow', headers: { accept: 'text/plain' } });
  const reader = response.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (reader !== undefined && size < MAX_ANSWER_BYTES) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  await reader?.cancel().catch(() => undefined);
  return { status: response.status, text: Buffer.concat(chunks).toString('utf8', 0, Math.min(size, MAX_ANSWER_BYTES)).trim() };
}

/** The public IPv4 address, as told by `url`. */
export async function publicIpv4(url: string, signal: AbortSignal): Promise<string> {
  const { status, text } = await get(url, signal);
  const host = new URL(url).host;
  if (status !== 200) throw new Error(`${host} answered HTTP ${status}`);
  if (isIP(text) !== 4) throw new Error(`${host} did not answer an IPv4 address (it said ${JSON.stringify(text.slice(0, 60))})`);
  return text;
}

/**
 * DuckDNS (https://www.duckdns.org/spec.jsp): `GET update?domains=a,b&token=T&ip=X` answers
 * `OK`, or `KO` when the token or a domain is wrong.
 */
export class DuckDnsProvider implements DdnsProvider {
  readonly label: string;
  readonly secrets: readonly string[];
  readonly #domains: readonly string[];
  readonly #token: string;
  readonly #updateUrl: string;

  constructor(options: { readonly domains: readonly string[]; readonly token: string; readonly updateUrl: string }) {
    this.#domains = options.domains;
    this.#token = options.token;
    this.#updateUrl = options.updateUrl;
    this.secrets = [options.token];
    this.label = `DuckDNS ${options.domains.map((d) => `${d}.duckdns.org`).join(', ')}`;
  }

  async update(ip: string, signal: AbortSignal): Promise<void> {
    // The values are validated (letters, digits, '-', dotted IPv4): only the list's commas
    // stay unescaped, as DuckDNS documents them.
    const query = `domains=${this.#domains.map(encodeURIComponent).join(',')}&token=${encodeURIComponent(this.#token)}&ip=${encodeURIComponent(ip)}`;
    const { status, text } = await get(`${this.#updateUrl}?${query}`, signal);
    const host = new URL(this.#updateUrl).host;
    if (status !== 200) throw new Error(`${host} answered HTTP ${status}`);
    const answer = text.split('\n')[0]?.trim();
    if (answer === 'OK') return;
    if (answer === 'KO') {
      throw new Error('DuckDNS answered KO: the token or a domain is wrong; check duckdnsToken (the token shown on duckdns.org) and duckdnsDomains (subdomains of that account)');
    }
    throw new Error(`${host} answered neither OK nor KO: ${JSON.stringify(text.slice(0, 60))}`);
  }
}

/** The provider named in the configuration. */
export function createDdnsProvider(config: DdnsConfig): DdnsProvider {
  switch (config.provider) {
    case 'duckdns':
      return new DuckDnsProvider({ domains: config.domains, token: config.token, updateUrl: config.updateUrl });
  }
}

export class DdnsUpdater {
  readonly #options: DdnsUpdaterOptions;
  readonly #timers: DdnsTimers;
  readonly #timeoutMs: number;
  /** The address the provider last accepted. */
  #current: string | undefined;
  #timer: unknown;
  #running: Promise<DdnsCheck> | undefined;
  #abort = new AbortController();
  #stopped = false;

  constructor(options: DdnsUpdaterOptions) {
    this.#options = options;
    this.#timers = options.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** The address the provider last accepted, if any. */
  get address(): string | undefined {
    return this.#current;
  }

  /** Checks now, then every interval (the next check is scheduled when one ends: never two at once). */
  start(): void {
    const { log, provider, intervalMs } = this.#options;
    log.info(`ddns: keeping ${provider.label} at this server's public address (checked every ${Math.round(intervalMs / 1000)} s)`);
    const tick = (): void => {
      void this.check().then(() => {
        if (!this.#stopped) this.#timer = this.#timers.setTimeout(tick, intervalMs);
      });
    };
    tick();
  }

  /** One check: learn the address, update the provider if it changed. Never throws. */
  check(): Promise<DdnsCheck> {
    this.#running ??= this.#check().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  /** Stops the schedule and aborts a request in flight; resolves when nothing runs. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#abort.abort();
    await this.#running;
  }

  async #check(): Promise<DdnsCheck> {
    if (this.#stopped) return 'stopped';
    const { log, provider, ipUrl, intervalMs } = this.#options;
    const retry = `; trying again in ${Math.round(intervalMs / 1000)} s`;
    let ip: string;
    try {
      ip = await publicIpv4(ipUrl, this.#signal());
    } catch (error) {
      if (this.#stopped) return 'stopped';
      log.warn(this.#scrub(`ddns: cannot learn the public IPv4 address from ${ipUrl} (${this.#reason(error)})${retry}`));
      return 'failed';
    }
    if (ip === this.#current) {
      log.debug(`ddns: public address still ${ip}; ${provider.label} is up to date`);
      return 'unchanged';
    }
    try {
      await provider.update(ip, this.#signal());
    } catch (error) {
      if (this.#stopped) return 'stopped';
      log.error(this.#scrub(`ddns: ${provider.label} could not be pointed at ${ip}: ${this.#reason(error)}${retry}`));
      return 'failed';
    }
    log.info(`ddns: ${provider.label} now points at ${ip}${this.#current !== undefined ? ` (was ${this.#current})` : ''}`);
    this.#current = ip;
    return 'updated';
  }

  #signal(): AbortSignal {
    return AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#timeoutMs)]);
  }

  #reason(error: unknown): string {
    if (error instanceof Error && error.name === 'TimeoutError') return `no answer within ${this.#timeoutMs / 1000} s`;
    const e = error as { message?: unknown; cause?: { message?: unknown; code?: unknown } };
    const message = typeof e.message === 'string' ? e.message : String(error);
    // fetch() fails with "fetch failed" and the socket error as its cause.
    const cause = e.cause !== undefined && typeof e.cause.message === 'string' ? `: ${e.cause.message}` : '';
    return `${message}${cause}`;
  }

  #scrub(line: string): string {
    let out = line;
    for (const secret of this.#options.provider.secrets) if (secret !== '') out = out.replaceAll(secret, '***');
    return out;
  }
}

/** The updater `careflow serve` runs when `ddnsProvider` is set. */
export function createDdnsUpdater(config: DdnsConfig, log: Logger, options: { timeoutMs?: number } = {}): DdnsUpdater {
  return new DdnsUpdater({
    provider: createDdnsProvider(config), ipUrl: config.ipUrl, intervalMs: config.intervalSeconds * 1000, log,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
}
