// The web phone over HTTPS and secure WebSocket (wss://, RFC 7118) with the server's own
// TLS certificate (a throw-away self-signed one; Chromium told to accept it), on a server
// that prefers SHA-256 digest: WebSocket clients are offered MD5 alone (JsSIP knows only MD5
// and, given several challenges, keeps the last), UDP phones both in the configured order.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { requireChromium, waitForStats } from './chromium.ts';
import { freeTcpPort, startServer } from './harness.ts';
import { RawSipClient } from './sip-raw.ts';
import { callFromDirectory, expectNotice, expectState, expectVisible, openPhone, signIn } from './webphone.ts';

requireChromium();

const dir = mkdtempSync(join(tmpdir(), 'careflow-wss-'));
const key = join(dir, 'key.pem');
const cert = join(dir, 'cert.pem');
const ossl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { encoding: 'utf8', timeout: 30_000 });
if (ossl.status !== 0) throw new Error(`openssl req -x509 failed (${ossl.status}): ${ossl.stderr}`);

const httpsPort = await freeTcpPort();
const server = await startServer({
  tlsPort: await freeTcpPort(),
  env: { CAREFLOW_TLS_CERT: cert, CAREFLOW_TLS_KEY: key, CAREFLOW_HTTPS_LISTEN: `127.0.0.1:${httpsPort}`, CAREFLOW_AUTH_ALGORITHMS: 'SHA-256,MD5' },
});

test('challenges: SHA-256 then MD5 for a UDP phone, MD5 alone for a WebSocket client', async () => {
  const u = await server.addUser('Order Check');
  const spec = { method: 'REGISTER', uri: `sip:${server.domain}`, toUri: `sip:${u.sipUsername}@${server.domain}`, domain: server.domain };
  for (const [transport, port, first] of [['udp', server.sipPort, 'SHA-256'], ['ws', server.httpPort, 'MD5'], ['wss', httpsPort, 'MD5']] as const) {
    const c = await RawSipClient.open(transport, port);
    try {
      const [challenge] = await c.request(spec);
      assert.equal(challenge?.status, 401);
      const offered = challenge.headers('www-authenticate').map((h) => /algorithm=([\w-]+)/.exec(h)?.[1]);
      assert.deepEqual(offered, first === 'MD5' ? ['MD5'] : ['SHA-256', 'MD5'], `${transport}: ${challenge.text}`);
      const [, ok] = await c.request(spec, { username: u.sipUsername, password: u.password });
      assert.equal(ok?.status, 200, `${transport}: ${ok?.text}`);
    } finally {
      c.close();
    }
  }
});

test('over HTTPS the web phone registers over wss:// and two browsers call each other', async () => {
  const alice = await server.addUser('Alice Secure');
  const bob = await server.addUser('Bob Secure');
  const base = `https://127.0.0.1:${httpsPort}/`;
  const a = await openPhone('alice', base, 440, ['--ignore-certificate-errors']);
  const b = await openPhone('bob', base, 660, ['--ignore-certificate-errors']);
  try {
    await signIn(a, alice.number, alice.password);
    await signIn(b, bob.sipUsername, bob.password);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nnotice: ${await a.page.locator('#notice').textContent()}\n--- server log\n${server.logs().slice(-3000)}`);
  }
  const devices = await server.apiJson<{ devices: Array<{ transport: string }> }>(`/api/users/${alice.id}/devices`);
  assert.deepEqual(devices.devices.map((d) => d.transport), ['wss']);
  await callFromDirectory(a, bob.number);
  await expectVisible(b, '#incoming', 15_000);
  await b.page.locator('#answer').click();
  await expectState(a, '#call-state', 'confirmed', 15_000);
  await waitForStats(a.page, (s) => s.inboundPackets > 50 && s.totalAudioEnergy > 0, 15_000, 'alice inbound audio');
  await a.page.locator('#hangup').click();
  await expectNotice(b, 'ended');
});
