// `careflow serve` with the DuckDNS updater configured, against a local HTTP stand-in on
// 127.0.0.1 that records requests: the server updates once at start with the right URL,
// logs it without the token, and stops the updater on shutdown. A bad token stops the start
// with a message that names the setting and not the value.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, startServer } from './harness.ts';

const TOKEN = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const requests: URL[] = [];
const standIn = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  requests.push(url);
  res.writeHead(200, { 'content-type': 'text/plain' }).end(url.pathname === '/ip' ? '203.0.113.7' : 'OK');
});
let base = '';

async function waitFor(done: () => boolean, ms: number, why: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('careflow serve with dynamic DNS', () => {
  before(async () => {
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(standIn.address() as { port: number }).port}`;
  });
  after(async () => {
    standIn.closeAllConnections();
    await new Promise<void>((resolve) => standIn.close(() => resolve()));
  });

  it('updates DuckDNS once at start, logs it without the token, stops the updater on shutdown', async () => {
    const server = await startServer({
      env: {
        CAREFLOW_DDNS_PROVIDER: 'duckdns', CAREFLOW_DUCKDNS_DOMAINS: 'careflow-home.duckdns.org,careflow-office',
        CAREFLOW_DUCKDNS_TOKEN: TOKEN, CAREFLOW_DUCKDNS_URL: `${base}/update`, CAREFLOW_DDNS_IP_URL: `${base}/ip`,
        CAREFLOW_LOG_LEVEL: 'debug',
      },
    });
    await waitFor(() => server.logs().includes('now points at'), 15_000, () => `no update logged:\n${server.logs()}`);
    const updates = requests.filter((u) => u.pathname === '/update');
    assert.equal(updates.length, 1);
    assert.equal(updates[0]?.search, `?domains=careflow-home,careflow-office&token=${TOKEN}&ip=203.0.113.7`);
    assert.match(server.logs(), /info +ddns: DuckDNS careflow-home\.duckdns\.org, careflow-office\.duckdns\.org now points at 203\.0\.113\.7/);
    assert.equal(await server.stop(), 0);
    assert.ok(!server.logs().includes(TOKEN), 'the token is in the server log');
    assert.equal(requests.filter((u) => u.pathname === '/update').length, 1);
  });

  it('a malformed token stops the start, naming the setting but not the value', () => {
    const secret = 'my-secret-token-value';
    const r = spawnSync(process.execPath, [join(ROOT, 'src', 'cli', 'main.ts'), 'serve'], {
      encoding: 'utf8', timeout: 20_000,
      env: {
        PATH: process.env['PATH'] ?? '', CAREFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'careflow-ddns-')), CAREFLOW_HTTP_LISTEN: '127.0.0.1:0',
        CAREFLOW_SIP_LISTEN: '127.0.0.1:0', CAREFLOW_DDNS_PROVIDER: 'duckdns', CAREFLOW_DUCKDNS_DOMAINS: 'careflow-home', CAREFLOW_DUCKDNS_TOKEN: secret,
      },
    });
    assert.equal(r.status, 2, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /CAREFLOW_DUCKDNS_TOKEN: expected the token shown on duckdns\.org/);
    assert.ok(!`${r.stdout}${r.stderr}`.includes(secret), 'the bad token is echoed');
  });
});
