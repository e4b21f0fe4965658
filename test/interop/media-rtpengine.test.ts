// Browser <-> SIP phone calls bridged by RTPEngine: the web phone in Chromium (ICE +
// DTLS-SRTP, tone microphone) and baresip over UDP (plain RTP, PCMU, a tone of its own),
// with the server's media engine set to Debian's rtpengine (userspace). Audio must flow both
// ways: Chromium's getStats shows inbound packets with energy, and what baresip received and
// decoded is Chromium's 440 Hz tone. Both directions of dialling; the call log says
// "bridge"; no engine session is left when the calls are over.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NgClient } from '../../src/media/ng-client.ts';
import { type BaresipUa, assertHeardTone, makeTone, requireBaresip, startBaresip } from './baresip.ts';
import { requireChromium, waitForStats } from './chromium.ts';
import { startServer } from './harness.ts';
import { startRtpEngine } from './rtpengine.ts';
import { dial, expectNotice, expectState, expectVisible, openPhone, signIn } from './webphone.ts';

requireChromium();
requireBaresip();

const rtpe = await startRtpEngine();
const server = await startServer({ env: { CAREFLOW_RTPENGINE: `127.0.0.1:${rtpe.ngPort}` } });
const web = await server.addUser('Web Worker');
const desk = await server.addUser('Desk Phone');
const tones = mkdtempSync(join(tmpdir(), 'careflow-bridge-'));
makeTone(join(tones, 'desk.wav'), 700);
const phone: BaresipUa = await startBaresip({
  name: 'desk-udp', toneWav: join(tones, 'desk.wav'),
  account: { user: desk.sipUsername, domain: server.domain, password: desk.password, proxy: { host: '127.0.0.1', port: server.sipPort }, transport: 'udp', answermode: 'auto' },
});
const browser = await openPhone('web', `http://127.0.0.1:${server.httpPort}/`);
await signIn(browser, web.number, web.password);
const ng = new NgClient({ instances: [{ host: '127.0.0.1', port: rtpe.ngPort }] });

function context(): string {
  return `${phone.describe()}\n--- rtpengine\n${rtpe.logs().slice(-3000)}\n--- server\n${server.logs().slice(-3000)}\n--- browser\n${browser.console.text()}`;
}

/** What baresip received since `before`: Chromium's 440 Hz tone, audible for 2 s or more. */
function assertPhoneHeardBrowser(before: string[]): void {
  assertHeardTone(phone, before, 440, context);
}

async function lastCall(): Promise<{ disposition: string; mediaMode: string | null; callerUserId: number }> {
  const body = await server.apiJson<{ calls: Array<{ disposition: string; mediaMode: string | null; callerUserId: number }> }>(`/api/calls?userId=${web.id}&limit=1`);
  return body.calls[0]!;
}

async function engineSessions(): Promise<number> {
  const list = await ng.request('list', { limit: 100 });
  return Array.isArray(list['calls']) ? list['calls'].length : -1;
}

test('the web phone calls a baresip phone: bridged by RTPEngine, audio both ways, keypad digits reach the phone', async () => {
  const before = phone.received();
  const from = phone.events.length;
  await dial(browser, desk.number);
  await phone.waitEvent('CALL_ESTABLISHED', (e) => e.type === 'CALL_ESTABLISHED', 15_000, from).catch((e: Error) => assert.fail(`${e.message}\n${context()}`));
  await expectState(browser, '#call-state', 'confirmed', 15_000);
  const s = await waitForStats(browser.page, (x) => x.inboundPackets > 100 && x.totalAudioEnergy > 0, 15_000, 'browser hears the phone');
  assert.equal(s.selectedPair?.remoteAddress, '127.0.0.1', 'ICE with RTPEngine');
  assert.ok(s.selectedPair!.remotePort >= rtpe.minPort && s.selectedPair!.remotePort <= rtpe.maxPort, `media goes through RTPEngine: ${JSON.stringify(s.selectedPair)}`);
  await new Promise((r) => setTimeout(r, 3000)); // talk
  // The keypad: RFC 4733 telephone-events from Chromium, through RTPEngine, decoded by baresip.
  const dtmfFrom = phone.events.length;
  await browser.page.locator('#keypad').click();
  await browser.page.locator('#dtmf [data-digit="5"]').click();
  const dtmf = await phone.waitEvent('CALL_DTMF_START', (e) => e.type === 'CALL_DTMF_START', 10_000, dtmfFrom)
    .catch((e: Error) => assert.fail(`${e.message}\n${context()}`));
  assert.equal(dtmf.param, '5', JSON.stringify(dtmf.raw));
  await browser.page.locator('#hangup').click();
  await phone.waitEvent('CALL_CLOSED', (e) => e.type === 'CALL_CLOSED', 10_000, from);
  await new Promise((r) => setTimeout(r, 300)); // sndfile closes its dump
  assertPhoneHeardBrowser(before);
  const row = await lastCall();
  assert.deepEqual([row.disposition, row.mediaMode, row.callerUserId], ['answered', 'bridge', Number(web.id)]);
  assert.equal(await engineSessions(), 0, `the engine session is released\n${rtpe.logs().slice(-2000)}`);
});

test('the baresip phone calls the web phone: bridged, audio both ways; the phone hangs up', async () => {
  const before = phone.received();
  const from = phone.events.length;
  const r = await phone.command('dial', `sip:${web.number}@127.0.0.1:${server.sipPort}`);
  assert.ok(r.ok, JSON.stringify(r.raw));
  await expectVisible(browser, '#incoming', 15_000);
  await browser.page.locator('#answer').click();
  await expectState(browser, '#call-state', 'confirmed', 15_000);
  await waitForStats(browser.page, (x) => x.inboundPackets > 100 && x.totalAudioEnergy > 0, 15_000, 'browser hears the phone');
  await phone.waitEvent('CALL_ESTABLISHED', (e) => e.type === 'CALL_ESTABLISHED', 10_000, from);
  await new Promise((r2) => setTimeout(r2, 3000));
  await phone.command('hangup');
  await expectNotice(browser, 'ended');
  await new Promise((r2) => setTimeout(r2, 300));
  assertPhoneHeardBrowser(before);
  const row = await lastCall();
  assert.deepEqual([row.disposition, row.mediaMode, row.callerUserId], ['answered', 'bridge', Number(desk.id)]);
  assert.equal(await engineSessions(), 0, 'the engine session is released');
  const status = await server.apiJson<{ sip: { mediaSessions: number } }>('/api/status');
  assert.equal(status.sip.mediaSessions, 0);
});

test('browser to browser stays peer to peer with RTPEngine configured: the engine is not asked', async () => {
  const other = await server.addUser('Web Colleague');
  const second = await openPhone('web2', `http://127.0.0.1:${server.httpPort}/`, 660);
  await signIn(second, other.number, other.password);
  await dial(browser, other.number);
  await expectVisible(second, '#incoming', 15_000);
  await second.page.locator('#answer').click();
  await expectState(browser, '#call-state', 'confirmed', 15_000);
  const s = await waitForStats(browser.page, (x) => x.inboundPackets > 50 && x.totalAudioEnergy > 0, 15_000, 'browser hears browser');
  assert.ok(s.selectedPair !== null && (s.selectedPair.remotePort < rtpe.minPort || s.selectedPair.remotePort > rtpe.maxPort), JSON.stringify(s.selectedPair));
  assert.equal(await engineSessions(), 0, 'RTPEngine holds no session for a browser-to-browser call');
  await browser.page.locator('#hangup').click();
  await expectNotice(second, 'ended');
  const row = await lastCall();
  assert.deepEqual([row.disposition, row.mediaMode], ['answered', 'p2p']);
  ng.close();
});
