// The CareFlow web phone in a real browser (Debian Chromium, playwright-core), against the
// real server: sign-in, live presence, browser-to-browser calls with peer-to-peer media
// (getStats: inbound audio with energy, a host/srflx candidate pair between the two
// browsers), decline, offline callee, hang-up from either side, and the call log of each.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { audioStats, requireChromium, waitForStats } from './chromium.ts';
import { ROOT, startServer, type CareflowUser, type ServerHandle } from './harness.ts';
import {
  callFromDirectory, closePhone, dial, expectHidden, expectNotice, expectPresence, expectState, expectVisible, openPhone, type Phone, signIn, storage,
} from './webphone.ts';

requireChromium(); // fails (never skips) with the install command

const server: ServerHandle = await startServer();
const base = `http://127.0.0.1:${server.httpPort}/`;
const alice = await server.addUser('Alice Web');
const bob = await server.addUser('Bob Web');
const carol = await server.addUser('Carol Offline');

/** Screenshots for the README: written to docs/screenshots when CAREFLOW_SCREENSHOTS=docs. */
async function screenshot(p: Phone, name: string): Promise<void> {
  if (process.env['CAREFLOW_SCREENSHOTS'] !== 'docs') return;
  const dir = join(ROOT, 'docs', 'screenshots');
  mkdirSync(dir, { recursive: true });
  await p.page.screenshot({ path: join(dir, `${name}.png`), animations: 'disabled' });
}

interface CallRow { disposition: string; finalStatus: number; endedBy: string | null; callerUserId: number; calleeUserId: number; answeredAt: number | null; mediaMode: string | null }

async function lastCall(u: CareflowUser, count: number): Promise<CallRow> {
  const end = Date.now() + 5000;
  for (;;) {
    const body = await server.apiJson<{ calls: CallRow[] }>(`/api/calls?userId=${u.id}`);
    if (body.calls.length >= count) return body.calls[0]!;
    if (Date.now() > end) assert.fail(`expected ${count} call records for ${u.number}, found ${body.calls.length}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let a: Phone;
let b: Phone;
let calls = 0;

test('two people sign in (number, then SIP username) and see each other come online', async () => {
  a = await openPhone('alice', base);
  await screenshot(a, 'sign-in');
  // A wrong password: a message, no session.
  await a.page.locator('#login').fill(alice.number);
  await a.page.locator('#password').fill('not the password');
  await a.page.locator('#signin-submit').click();
  await expectVisible(a, '#signin-error');
  await signIn(a, alice.number, alice.password);
  assert.ok(!(await storage(a)).includes(alice.password), 'the browser must not keep the plain password');
  await expectPresence(a, bob.number, false);
  b = await openPhone('bob', base, 660);
  await signIn(b, bob.sipUsername, bob.password);
  await expectPresence(a, bob.number, true); // live, without reloading A's page
  await expectPresence(b, alice.number, true);
  assert.equal(await a.page.locator(`#directory li[data-number="${bob.number}"]`).getAttribute('data-web'), '1');
  const view = await server.apiJson<{ online: boolean; deviceKinds: { web: number; sip: number } }>(`/api/users/${bob.id}`);
  assert.deepEqual([view.online, view.deviceKinds], [true, { web: 1, sip: 0 }]);
  await a.page.locator('#search').fill('Bob');
  await expectHidden(a, `#directory li[data-number="${carol.number}"]`);
  await expectVisible(a, `#directory li[data-number="${bob.number}"]`);
  await screenshot(a, 'directory');
  await a.page.locator('#search').fill('');
  // A phone's screen: one column, nothing wider than the viewport.
  await a.page.setViewportSize({ width: 360, height: 740 });
  const overflow = await a.page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth);
  assert.ok(overflow <= 360, `page is ${overflow} px wide at a 360 px viewport`);
  await expectVisible(a, `#directory li[data-number="${bob.number}"] button.call`);
  await screenshot(a, 'mobile');
  await a.page.setViewportSize({ width: 1280, height: 720 });
});

test('A calls B, B answers: audio flows both ways peer to peer (host/srflx pair, not through the server); A hangs up', async () => {
  await callFromDirectory(a, bob.number);
  await expectVisible(b, '#incoming', 15_000);
  assert.match((await b.page.locator('#incoming-name').textContent()) ?? '', /Alice Web/);
  await screenshot(b, 'incoming-call');
  await b.page.locator('#answer').click();
  await expectState(a, '#call-state', 'confirmed', 15_000);
  await expectState(b, '#call-state', 'confirmed', 15_000);
  const ok = (s: { inboundPackets: number; totalAudioEnergy: number }): boolean => s.inboundPackets > 100 && s.totalAudioEnergy > 0;
  const sa = await waitForStats(a.page, ok, 15_000, 'alice inbound audio');
  const sb = await waitForStats(b.page, ok, 15_000, 'bob inbound audio');
  await screenshot(a, 'in-call');
  for (const s of [sa, sb]) {
    assert.ok(s.selectedPair !== null, JSON.stringify(s));
    assert.ok(['host', 'srflx', 'prflx'].includes(s.selectedPair.localType), `local candidate ${s.selectedPair.localType}`);
    assert.ok(['host', 'srflx', 'prflx'].includes(s.selectedPair.remoteType), `remote candidate ${s.selectedPair.remoteType}`);
  }
  // Peer to peer: each browser's remote candidate is the other browser's local one, and no
  // server port carries media.
  assert.equal(sa.selectedPair!.remotePort, sb.selectedPair!.localPort, JSON.stringify({ sa, sb }));
  assert.equal(sb.selectedPair!.remotePort, sa.selectedPair!.localPort, JSON.stringify({ sa, sb }));
  for (const port of [server.sipPort, server.httpPort, server.tlsPort]) assert.notEqual(sa.selectedPair!.remotePort, port);
  await a.page.locator('#hangup').click();
  await expectNotice(a, 'ended');
  await expectNotice(b, 'ended');
  await expectHidden(b, '#incall');
  const row = await lastCall(alice, ++calls);
  assert.deepEqual([row.disposition, row.finalStatus, row.endedBy, row.callerUserId, row.calleeUserId], ['answered', 200, 'caller', Number(alice.id), Number(bob.id)]);
  // Browser to browser: the media engine (embedded by default) was not asked.
  assert.equal(row.mediaMode, 'p2p');
  assert.equal((await server.apiJson<{ sip: { mediaSessions: number } }>('/api/status')).sip.mediaSessions, 0);
});

test('B calls A by number on the dial pad, A answers, A (the callee) hangs up', async () => {
  await dial(b, alice.number);
  await expectVisible(a, '#incoming', 15_000);
  await a.page.locator('#answer').click();
  await expectState(b, '#call-state', 'confirmed', 15_000);
  await waitForStats(b.page, (s) => s.inboundPackets > 50 && s.totalAudioEnergy > 0, 15_000, 'bob inbound audio');
  await a.page.locator('#hangup').click();
  await expectNotice(b, 'ended');
  const row = await lastCall(alice, ++calls);
  assert.deepEqual([row.disposition, row.endedBy, row.callerUserId], ['answered', 'callee', Number(bob.id)]);
});

test('in a call: mute silences A for B, hold stops B\'s audio to A, resume brings it back', async () => {
  await callFromDirectory(a, bob.number);
  await expectVisible(b, '#incoming', 15_000);
  await b.page.locator('#answer').click();
  await expectState(a, '#call-state', 'confirmed', 15_000);
  await waitForStats(b.page, (s) => s.inboundPackets > 50 && s.totalAudioEnergy > 0, 15_000, 'bob hears alice');
  const energyGain = async (p: Phone, ms: number): Promise<number> => {
    const e0 = (await audioStats(p.page)).totalAudioEnergy;
    await new Promise((r) => setTimeout(r, ms));
    return (await audioStats(p.page)).totalAudioEnergy - e0;
  };
  const packetGain = async (p: Phone, ms: number): Promise<number> => {
    const n0 = (await audioStats(p.page)).inboundPackets;
    await new Promise((r) => setTimeout(r, ms));
    return (await audioStats(p.page)).inboundPackets - n0;
  };
  const speaking = await energyGain(b, 1000);
  assert.ok(speaking > 0, 'B hears A before mute');
  // The call timer counts from the answer (mm:ss).
  assert.match((await a.page.locator('#call-timer').textContent()) ?? '', /^0?0:0[1-9]$/);
  await a.page.locator('#mute').click();
  await expectState(a, '#mute', 'true', 5000, 'aria-pressed');
  await new Promise((r) => setTimeout(r, 300)); // what was in flight plays out
  const muted = await energyGain(b, 1000);
  assert.ok(muted < speaking / 20, `muted: B's audio energy grew ${muted} in 1 s (was ${speaking})`);
  await a.page.locator('#mute').click();
  await expectState(a, '#mute', 'false', 5000, 'aria-pressed');
  // Hold (re-INVITE a=sendonly through the proxy): B stops sending to A.
  await a.page.locator('#hold').click();
  await expectState(a, '#call-state', 'held', 10_000);
  await new Promise((r) => setTimeout(r, 300));
  const held = await packetGain(a, 1000);
  assert.ok(held < 10, `on hold A still received ${held} packets in 1 s`);
  await a.page.locator('#hold').click();
  await expectState(a, '#call-state', 'confirmed', 10_000);
  await waitForStats(a.page, (s) => s.inboundPackets > 0, 5000);
  const resumed = await packetGain(a, 1000);
  assert.ok(resumed > 30, `after resume A received only ${resumed} packets in 1 s`);
  await a.page.locator('#hangup').click();
  await expectNotice(b, 'ended');
  await lastCall(alice, ++calls);
});

test('B declines: A sees "declined"; the call log says declined (603)', async () => {
  await callFromDirectory(a, bob.number);
  await expectVisible(b, '#incoming', 15_000);
  await b.page.locator('#decline').click();
  await expectNotice(a, 'declined');
  await expectHidden(b, '#incoming');
  const row = await lastCall(alice, ++calls);
  assert.deepEqual([row.disposition, row.finalStatus, row.answeredAt], ['declined', 603, null]);
});

test('calling someone who is offline: A sees "unavailable"; the call log says unavailable (480)', async () => {
  await dial(a, carol.number);
  const text = await expectNotice(a, 'unavailable');
  assert.match(text, /not available|unavailable|offline/i);
  const row = await lastCall(alice, ++calls);
  assert.deepEqual([row.disposition, row.finalStatus], ['unavailable', 480]);
});

test('call history shows the calls from the call log, newest first', async () => {
  await a.page.locator('#history li').first().waitFor({ timeout: 10_000 });
  const end = Date.now() + 10_000;
  let got: string[] = [];
  while (Date.now() < end) {
    got = await a.page.locator('#history li').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-direction')}:${e.getAttribute('data-disposition')}`));
    if (got.length >= 5) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(got.slice(0, 5), ['out:unavailable', 'out:declined', 'out:answered', 'in:answered', 'out:answered']);
});

test('busy: while B is in a call, C calling B sees "busy"; the call log says busy (486)', async () => {
  const c = await openPhone('carol', base, 880);
  await signIn(c, carol.number, carol.password);
  await callFromDirectory(a, bob.number);
  await expectVisible(b, '#incoming', 15_000);
  await b.page.locator('#answer').click();
  await expectState(a, '#call-state', 'confirmed', 15_000);
  await dial(c, bob.number);
  await expectNotice(c, 'busy');
  const row = await lastCall(carol, 2); // carol's unanswered call from A earlier, and this one
  assert.deepEqual([row.disposition, row.finalStatus, row.callerUserId], ['busy', 486, Number(carol.id)]);
  await a.page.locator('#hangup').click();
  await expectNotice(b, 'ended');
  calls += 1; // alice -> bob, answered
  await closePhone(c);
});

test('signing out takes the user offline for colleagues', async () => {
  await b.page.locator('#signout').click();
  await expectVisible(b, '#view-signin');
  await expectPresence(a, bob.number, false);
  const stats = await audioStats(a.page);
  assert.equal(stats.hasPc, false, 'no call is left open');
});

test('a blocked microphone gets its own message', async () => {
  // The browser refuses the microphone as when the user clicked "Block" (a page-level stub of
  // the permission answer: Chromium's fake-UI flag would otherwise accept every prompt).
  await a.page.evaluate(() => {
    const md = (globalThis as unknown as { navigator: { mediaDevices: { getUserMedia: unknown } } }).navigator.mediaDevices;
    md.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
  });
  await dial(a, bob.number);
  const text = await expectNotice(a, 'mic-blocked');
  assert.match(text, /microphone/i);
  await a.page.reload();
  await expectState(a, '#status', 'registered', 15_000);
});

test('connection lost: the phone says so, then registers again by itself when the server is back', async () => {
  await server.stop();
  await expectState(a, '#status', 'disconnected', 15_000);
  await expectNotice(a, 'connection-lost');
  const again = await startServer({ dataDir: server.dataDir, sipPort: server.sipPort, httpPort: server.httpPort, tlsPort: server.tlsPort });
  // JsSIP retries with back-off (2 s doubling, at most 30 s): bounded at 45 s.
  await expectState(a, '#status', 'registered', 45_000);
  const view = await again.apiJson<{ online: boolean }>(`/api/users/${alice.id}`);
  assert.equal(view.online, true);
  await again.stop();
});
