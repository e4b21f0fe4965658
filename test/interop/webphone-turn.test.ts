// Browser-to-browser calls forced through TURN: Debian's coturn with a shared secret
// (use-auth-secret), the server configured with the same secret and
// CAREFLOW_ICE_TRANSPORT_POLICY=relay. The call connects only if the REST credentials the
// server hands the web phones are right.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { requireChromium, waitForStats } from './chromium.ts';
import { requireCoturn, startCoturn } from './coturn.ts';
import { startServer } from './harness.ts';
import { callFromDirectory, expectNotice, expectState, expectVisible, openPhone, signIn } from './webphone.ts';

requireChromium();
requireCoturn();

const secret = randomBytes(24).toString('hex');
const turn = await startCoturn({ secret, realm: 'careflow.test' });
const server = await startServer({
  env: { CAREFLOW_TURN_URLS: turn.url, CAREFLOW_TURN_SECRET: secret, CAREFLOW_ICE_TRANSPORT_POLICY: 'relay', CAREFLOW_TURN_TTL: '600' },
});
const base = `http://127.0.0.1:${server.httpPort}/`;

test('with iceTransportPolicy relay the call connects through coturn with the server-issued credentials', async () => {
  const alice = await server.addUser('Alice Relay');
  const bob = await server.addUser('Bob Relay');
  const a = await openPhone('alice', base);
  const b = await openPhone('bob', base, 660);
  await signIn(a, alice.number, alice.password);
  await signIn(b, bob.number, bob.password);
  // The session hands out coturn REST credentials for this user.
  const stored = await a.page.evaluate(() => localStorage.getItem('careflow.session') ?? '{}');
  const servers = (JSON.parse(stored) as { iceServers?: Array<{ urls: string[]; username?: string }> }).iceServers ?? [];
  assert.ok(servers.some((s) => s.urls.includes(turn.url) && new RegExp(`^\\d+:${alice.id}$`).test(s.username ?? '')), stored);
  await callFromDirectory(a, bob.number);
  await expectVisible(b, '#incoming', 15_000);
  await b.page.locator('#answer').click();
  await expectState(a, '#call-state', 'confirmed', 20_000);
  const ok = (s: { inboundPackets: number; totalAudioEnergy: number }): boolean => s.inboundPackets > 100 && s.totalAudioEnergy > 0;
  const sa = await waitForStats(a.page, ok, 20_000, 'alice inbound audio via TURN');
  const sb = await waitForStats(b.page, ok, 20_000, 'bob inbound audio via TURN');
  for (const s of [sa, sb]) {
    assert.equal(s.selectedPair?.localType, 'relay', JSON.stringify(s));
    // The relayed address is one of coturn's relay ports.
    assert.ok(s.selectedPair.localPort >= turn.minPort && s.selectedPair.localPort <= turn.maxPort, JSON.stringify({ s, turn: [turn.minPort, turn.maxPort] }));
  }
  await b.page.locator('#hangup').click();
  await expectNotice(a, 'ended');
  assert.match(turn.logs(), /session .*(allocation|usage)|ALLOCATE/i, 'coturn logged the allocation');
});
