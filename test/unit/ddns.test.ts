// The DuckDNS updater against a local HTTP stand-in on 127.0.0.1 that records every request
// (the real service cannot be reached from here): the update URL and its parameters, only on
// change, KO and HTTP errors, bounded timeouts, the schedule, and the token in no log line.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { CareflowError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import { DdnsUpdater, DuckDnsProvider, createDdnsUpdater, type DdnsTimers } from '../../src/deploy/ddns.ts';
import { createLogger } from '../../src/logger.ts';

const TOKEN = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';

/** The stand-in: /ip answers `ip`, /update answers `answer`; `hang` paths never answer. */
class StandIn {
  ip = '203.0.113.7';
  answer = 'OK';
  status = 200;
  readonly hang = new Set<string>();
  readonly requests: URL[] = [];
  readonly #server: Server;
  readonly #held: ServerResponse[] = [];
  port = 0;

  constructor() {
    this.#server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      this.requests.push(url);
      if (this.hang.has(url.pathname)) {
        this.#held.push(res);
        return;
      }
      res.writeHead(this.status, { 'content-type': 'text/plain' }).end(url.pathname === '/ip' ? this.ip : this.answer);
    });
  }
  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as { port: number }).port;
  }
  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }
  updates(): URL[] {
    return this.requests.filter((u) => u.pathname === '/update');
  }
  reset(): void {
    this.ip = '203.0.113.7';
    this.answer = 'OK';
    this.status = 200;
    this.hang.clear();
    this.requests.length = 0;
    for (const res of this.#held.splice(0)) res.destroy();
  }
  async close(): Promise<void> {
    for (const res of this.#held.splice(0)) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

const standIn = new StandIn();
const lines: string[] = [];
const log = createLogger('debug', (line) => lines.push(line));

function updater(options: { timeoutMs?: number; timers?: DdnsTimers; domains?: string[] } = {}): DdnsUpdater {
  return new DdnsUpdater({
    provider: new DuckDnsProvider({ domains: options.domains ?? ['careflow-home', 'careflow-office'], token: TOKEN, updateUrl: standIn.url('/update') }),
    ipUrl: standIn.url('/ip'),
    intervalMs: 300_000,
    log,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.timers !== undefined ? { timers: options.timers } : {}),
  });
}

describe('DuckDNS updater', () => {
  before(() => standIn.listen());
  beforeEach(() => standIn.reset());
  after(async () => {
    await standIn.close();
    // Every line any test logged: the token is in none of them, whatever happened.
    assert.ok(lines.length > 10, `expected the tests to log, got ${lines.length} lines`);
    for (const line of lines) assert.ok(!line.includes(TOKEN), `token logged: ${line}`);
  });

  it('learns the address and calls GET {duckdnsUrl}?domains=a,b&token=T&ip=X once at start', async () => {
    const u = updater();
    assert.equal(await u.check(), 'updated');
    assert.deepEqual(standIn.requests.map((r) => r.pathname), ['/ip', '/update']);
    const [update] = standIn.updates();
    assert.equal(update?.search, `?domains=careflow-home,careflow-office&token=${TOKEN}&ip=203.0.113.7`);
    assert.equal(u.address, '203.0.113.7');
    assert.match(lines.at(-1) ?? '', /info +ddns: DuckDNS careflow-home\.duckdns\.org, careflow-office\.duckdns\.org now points at 203\.0\.113\.7$/);
  });

  it('does not update again while the address is unchanged, and updates when it changes', async () => {
    const u = updater();
    assert.equal(await u.check(), 'updated');
    assert.equal(await u.check(), 'unchanged');
    assert.equal(await u.check(), 'unchanged');
    assert.equal(standIn.updates().length, 1);
    assert.equal(standIn.requests.filter((r) => r.pathname === '/ip').length, 3);
    standIn.ip = '198.51.100.23';
    assert.equal(await u.check(), 'updated');
    assert.deepEqual(standIn.updates().map((r) => r.searchParams.get('ip')), ['203.0.113.7', '198.51.100.23']);
    assert.match(lines.at(-1) ?? '', /now points at 198\.51\.100\.23 \(was 203\.0\.113\.7\)/);
  });

  it('KO: says the token or a domain is wrong, and retries at the next check even with the same address', async () => {
    standIn.answer = 'KO';
    const u = updater();
    assert.equal(await u.check(), 'failed');
    const error = lines.at(-1) ?? '';
    assert.match(error, /error +ddns: DuckDNS careflow-home\.duckdns\.org, careflow-office\.duckdns\.org could not be pointed at 203\.0\.113\.7: DuckDNS answered KO: the token or a domain is wrong; check duckdnsToken .* and duckdnsDomains .*; trying again in 300 s/);
    assert.equal(u.address, undefined);
    standIn.answer = 'OK';
    assert.equal(await u.check(), 'updated');
    assert.equal(standIn.updates().length, 2);
  });

  it('HTTP errors and odd answers are failures with the reason', async () => {
    standIn.status = 503;
    assert.equal(await updater().check(), 'failed');
    assert.match(lines.at(-1) ?? '', /warn +ddns: cannot learn the public IPv4 address from http:\/\/127\.0\.0\.1:\d+\/ip \(127\.0\.0\.1:\d+ answered HTTP 503\)/);
    standIn.status = 200;
    standIn.ip = '<html>nope</html>';
    assert.equal(await updater().check(), 'failed');
    assert.match(lines.at(-1) ?? '', /did not answer an IPv4 address/);
    standIn.ip = '203.0.113.7';
    standIn.answer = 'maintenance';
    assert.equal(await updater().check(), 'failed');
    assert.match(lines.at(-1) ?? '', /answered neither OK nor KO: "maintenance"/);
  });

  it('a server that does not answer costs one timeout, never more', async () => {
    standIn.hang.add('/update');
    const u = updater({ timeoutMs: 300 });
    const t0 = Date.now();
    assert.equal(await u.check(), 'failed');
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 2000, `took ${took} ms`);
    assert.match(lines.at(-1) ?? '', /could not be pointed at 203\.0\.113\.7: no answer within 0\.3 s; trying again/);
    standIn.hang.add('/ip');
    const t1 = Date.now();
    assert.equal(await u.check(), 'failed');
    assert.ok(Date.now() - t1 < 2000);
    assert.match(lines.at(-1) ?? '', /cannot learn the public IPv4 address .* \(no answer within 0\.3 s\)/);
  });

  it('an unreachable server is a logged failure, with the token scrubbed even from error text', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const freePort = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const closed = new DdnsUpdater({
      provider: new DuckDnsProvider({ domains: ['careflow-home'], token: TOKEN, updateUrl: `http://127.0.0.1:${freePort}/update` }),
      ipUrl: standIn.url('/ip'), intervalMs: 60_000, log, timeoutMs: 2000,
    });
    assert.equal(await closed.check(), 'failed');
    assert.match(lines.at(-1) ?? '', /could not be pointed at 203\.0\.113\.7: fetch failed: .*ECONNREFUSED/);
    const leaky = new DdnsUpdater({
      provider: { label: 'Leaky', secrets: [TOKEN], update: () => Promise.reject(new Error(`refused https://x/update?token=${TOKEN}`)) },
      ipUrl: standIn.url('/ip'), intervalMs: 60_000, log,
    });
    assert.equal(await leaky.check(), 'failed');
    assert.match(lines.at(-1) ?? '', /refused https:\/\/x\/update\?token=\*\*\*/);
  });

  it('start() checks at once and then every interval; stop() cancels the schedule and a request in flight', async () => {
    const scheduled: { fn: () => void; ms: number }[] = [];
    let cleared = 0;
    const timers: DdnsTimers = { setTimeout: (fn, ms) => scheduled.push({ fn, ms }), clearTimeout: () => void cleared++ };
    const u = updater({ timers });
    u.start();
    assert.match(lines.at(-1) ?? '', /ddns: keeping DuckDNS .* \(checked every 300 s\)/);
    await waitFor(() => scheduled.length === 1);
    assert.equal(scheduled[0]?.ms, 300_000);
    assert.equal(standIn.updates().length, 1);
    standIn.ip = '198.51.100.99';
    scheduled[0]?.fn();
    await waitFor(() => scheduled.length === 2);
    assert.equal(standIn.updates().length, 2);
    standIn.ip = '198.51.100.100';
    standIn.hang.add('/update');
    scheduled[1]?.fn();
    await waitFor(() => standIn.updates().length === 3);
    const t0 = Date.now();
    await u.stop();
    assert.ok(Date.now() - t0 < 1000, 'stop() aborts the hanging request');
    assert.equal(cleared, 1);
    assert.equal(scheduled.length, 2, 'nothing scheduled after stop');
    assert.equal(await u.check(), 'stopped');
  });

  it('createDdnsUpdater builds the configured provider', async () => {
    const u = createDdnsUpdater(
      { provider: 'duckdns', domains: ['careflow-home'], token: TOKEN, updateUrl: standIn.url('/update'), ipUrl: standIn.url('/ip'), intervalSeconds: 300 },
      log,
    );
    assert.equal(await u.check(), 'updated');
    assert.equal(standIn.updates()[0]?.searchParams.get('domains'), 'careflow-home');
  });
});

async function waitFor(done: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) assert.fail('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('dynamic DNS settings', () => {
  const load = (env: Record<string, string>) => loadConfig({ argv: ['--data-dir', join(tmpdir(), 'careflow-ddns-none')], env });
  const duck = { CAREFLOW_DDNS_PROVIDER: 'duckdns', CAREFLOW_DUCKDNS_DOMAINS: 'Careflow-Home.duckdns.org, careflow-office', CAREFLOW_DUCKDNS_TOKEN: TOKEN.toUpperCase() };

  it('off by default; duckdns with domains, token, defaults for the URLs and the interval', () => {
    assert.equal(load({}).ddns, undefined);
    assert.equal(load({ CAREFLOW_DDNS_PROVIDER: 'none' }).ddns, undefined);
    assert.deepEqual(load(duck).ddns, {
      provider: 'duckdns', domains: ['careflow-home', 'careflow-office'], token: TOKEN, updateUrl: 'https://www.duckdns.org/update',
      ipUrl: 'https://api.ipify.org/', intervalSeconds: 300,
    });
    const custom = load({ ...duck, CAREFLOW_DUCKDNS_URL: 'http://127.0.0.1:8053/update', CAREFLOW_DDNS_IP_URL: 'http://127.0.0.1:8053/ip', CAREFLOW_DDNS_INTERVAL_SECONDS: '600' }).ddns;
    assert.deepEqual([custom?.updateUrl, custom?.ipUrl, custom?.intervalSeconds], ['http://127.0.0.1:8053/update', 'http://127.0.0.1:8053/ip', 600]);
  });

  it('names the missing or wrong setting and how to fix it; never shows the token', () => {
    const message = (env: Record<string, string>): string => {
      try {
        load(env);
      } catch (error) {
        assert.ok(error instanceof CareflowError && error.code === 'CONFIG_INVALID', String(error));
        return error.message;
      }
      return assert.fail('expected a config error');
    };
    assert.match(message({ CAREFLOW_DDNS_PROVIDER: 'duckdns' }), /CAREFLOW_DUCKDNS_DOMAINS: DuckDNS needs your subdomains: set CAREFLOW_DUCKDNS_DOMAINS/);
    assert.match(message({ CAREFLOW_DDNS_PROVIDER: 'duckdns', CAREFLOW_DUCKDNS_DOMAINS: 'a' }), /CAREFLOW_DUCKDNS_TOKEN: DuckDNS needs your account token: set CAREFLOW_DUCKDNS_TOKEN/);
    assert.match(message({ CAREFLOW_DUCKDNS_TOKEN: TOKEN }), /CAREFLOW_DDNS_PROVIDER: DuckDNS domains or token are set but the updater is off: set CAREFLOW_DDNS_PROVIDER=duckdns/);
    assert.match(message({ ...duck, CAREFLOW_DDNS_PROVIDER: 'noip' }), /CAREFLOW_DDNS_PROVIDER: expected duckdns or none, got "noip"/);
    assert.match(message({ ...duck, CAREFLOW_DUCKDNS_DOMAINS: 'bad_name' }), /CAREFLOW_DUCKDNS_DOMAINS: expected DuckDNS subdomains like careflow-home/);
    assert.match(message({ ...duck, CAREFLOW_DDNS_INTERVAL_SECONDS: '5' }), /CAREFLOW_DDNS_INTERVAL_SECONDS: must be between 60 and 86400 seconds/);
    assert.match(message({ ...duck, CAREFLOW_DUCKDNS_URL: 'ftp://x/update' }), /CAREFLOW_DUCKDNS_URL: expected an http: or https: URL/);
    const bad = 'hunter2-not-a-uuid';
    const text = message({ ...duck, CAREFLOW_DUCKDNS_TOKEN: bad });
    assert.match(text, /CAREFLOW_DUCKDNS_TOKEN: expected the token shown on duckdns\.org, a UUID .*not shown: it is a secret/);
    assert.ok(!text.includes(bad));
  });
});
