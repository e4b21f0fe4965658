// Browser <-> SIP phone calls bridged by the embedded media engine (src/media/embedded/, chosen
// with CAREFLOW_MEDIA_ENGINE=embedded): the web phone in Chromium (ICE + DTLS-SRTP, tone
// microphone) and baresip over UDP (plain RTP, PCMU, a tone of its own), the same scenario as
// media-rtpengine.test.ts with the server's own process doing the media. Audio must flow both
// ways: Chromium's getStats shows inbound packets with energy from a port of the configured
// RTP range, and what baresip received and decoded is Chromium's 440 Hz tone. Both
// directions of dialling; the call log says "bridge"; when the calls are over no UDP port of
// the range is open any more.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type BaresipUa, assertHeardTone, makeTone, requireBaresip, startBaresip } from './baresip.ts';
import { requireChromium, waitForStats } from './chromium.ts';
import { startServer, waitFor } from './harness.ts';
import { dial, expectNotice, expectState, expectVisible, openPhone, signIn } from './webphone.ts';

requireChromium();
requireBaresip();

// A private 200-port window for the server's media (rtpengine tests use 30000-38199).
// Below the kernel's ephemeral range (32768-60999), apart from embedded-driver.test.ts's window.
const MIN = 28_000 + 2 * Math.floor(Math.random() * 1500);
const RTP_PORTS = { min: MIN, max: MIN + 199 };
const server = await startServer({ env: { CAREFLOW_MEDIA_ENGINE: 'embedded', CAREFLOW_RTP_PORTS: `${RTP_PORTS.min}-${RTP_PORTS.max}` } });
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

function context(): string {
  return `${phone.describe()}\n--- server\n${server.logs().slice(-3000)}\n--- browser\n${browser.console.text()}`;
}

/** UDP sockets bound to a port of the media range (from /proc/net/udp and udp6: this host). */
function mediaSockets(): number {
  let n = 0;
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      const port = local !== undefined ? Number.parseInt(local.split(':').at(-1) ?? '', 16) : Number.NaN;
      if (port >= RTP_PORTS.min && port <= RTP_PORTS.max) n++;
    }
  }
  return n;
}

/** What baresip received since `before`: Chromium's 440 Hz tone, audible for 2 s or more. */
function assertPhoneHeardBrowser(before: string[]): void {
  assertHeardTone(phone, before, 440, context);
}

async function lastCall(): Promise<{ disposition: string; mediaMode: string | null; callerUserId: number }> {
  const body = await server.apiJson<{ calls: Array<{ disposition: string; mediaMode: string | null; callerUserId: number }> }>(`/api/calls?userId=${web.id}&limit=1`);
  return body.calls[0]!;
}

/** Every media port of the call is closed again (bounded: the BYE's delete is asynchronous). */
async function assertMediaReleased(): Promise<void> {
  await waitFor('the media ports to be closed', async () => (mediaSockets() === 0 ? true : undefined), 5000)
    .catch((e: Error) => assert.fail(`${e.message}: ${mediaSockets()} sockets in ${RTP_PORTS.min}-${RTP_PORTS.max}\n${server.logs().slice(-2000)}`));
  const status = await server.apiJson<{ sip: { mediaSessions: number } }>('/api/status');
  assert.equal(status.sip.mediaSessions, 0);
}

test('the web phone calls a baresip phone: bridged by the embedded engine, audio both ways', async () => {
  assert.equal(mediaSockets(), 0, 'no media port is open before the first call');
  const before = phone.received();
  const from = phone.events.length;
  await dial(browser, desk.number);
  await phone.waitEvent('CALL_ESTABLISHED', (e) => e.type === 'CALL_ESTABLISHED', 15_000, from).catch((e: Error) => assert.fail(`${e.message}\n${context()}`));
  await expectState(browser, '#call-state', 'confirmed', 15_000);
  const s = await waitForStats(browser.page, (x) => x.inboundPackets > 100 && x.totalAudioEnergy > 0, 15_000, 'browser hears the phone')
    .catch((e: Error) => assert.fail(`${e.message}\n${context()}`));
  assert.equal(s.selectedPair?.remoteAddress, '127.0.0.1', 'ICE with the server');
  assert.ok(s.selectedPair!.remotePort >= RTP_PORTS.min && s.selectedPair!.remotePort <= RTP_PORTS.max, `media goes through the server's RTP range: ${JSON.stringify(s.selectedPair)}`);
  assert.ok(mediaSockets() >= 3, 'a browser leg (one port) and a phone leg (RTP + RTCP) are open');
  await new Promise((r) => setTimeout(r, 3000)); // talk
  await browser.page.locator('#hangup').click();
  await phone.waitEvent('CALL_CLOSED', (e) => e.type === 'CALL_CLOSED', 10_000, from);
  await new Promise((r) => setTimeout(r, 300)); // sndfile closes its dump
  assertPhoneHeardBrowser(before);
  const row = await lastCall();
  assert.deepEqual([row.disposition, row.mediaMode, row.callerUserId], ['answered', 'bridge', Number(web.id)]);
  await assertMediaReleased();
});

test('the baresip phone calls the web phone: bridged, audio both ways; the phone hangs up', async () => {
  const before = phone.received();
  const from = phone.events.length;
  const r = await phone.command('dial', `sip:${web.number}@127.0.0.1:${server.sipPort}`);
  assert.ok(r.ok, JSON.stringify(r.raw));
  await expectVisible(browser, '#incoming', 15_000);
  await browser.page.locator('#answer').click();
  await expectState(browser, '#call-state', 'confirmed', 15_000);
  const s = await waitForStats(browser.page, (x) => x.inboundPackets > 100 && x.totalAudioEnergy > 0, 15_000, 'browser hears the phone')
    .catch((e: Error) => assert.fail(`${e.message}\n${context()}`));
  assert.ok(s.selectedPair!.remotePort >= RTP_PORTS.min && s.selectedPair!.remotePort <= RTP_PORTS.max, JSON.stringify(s.selectedPair));
  await phone.waitEvent('CALL_ESTABLISHED', (e) => e.type === 'CALL_ESTABLISHED', 10_000, from);
  await new Promise((r2) => setTimeout(r2, 3000));
  await phone.command('hangup');
  await expectNotice(browser, 'ended');
  await new Promise((r2) => setTimeout(r2, 300));
  assertPhoneHeardBrowser(before);
  const row = await lastCall();
  assert.deepEqual([row.disposition, row.mediaMode, row.callerUserId], ['answered', 'bridge', Number(desk.id)]);
  await assertMediaReleased();
});

test('the server stops cleanly with the embedded engine (SIGTERM, exit code 0 within the grace period)', async () => {
  await phone.command('hangup').catch(() => undefined);
  assert.equal(await server.stop(), 0, server.logs().slice(-2000));
  assert.equal(mediaSockets(), 0);
});
