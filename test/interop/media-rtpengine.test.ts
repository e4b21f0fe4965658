// Browser <-> SIP phone calls bridged by RTPEngine: the web phone in Chromium (ICE +
// DTLS-SRTP, tone microphone) and baresip over UDP (plain RTP, PCMU, a tone of its own),
// with the server's media engine set to Debian's rtpengine (userspace). Audio must flow both
// ways: Chromium's getStats shows inbound packets with energy, and what baresip received and
// decoded is Chromium's 440 Hz tone. Both directions of dialling; the call log says
// "bridge"; no engine session is left when the calls are over.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NgClient } from '../../src/media/ng-client.ts';
import { requireBaresip } from './baresip.ts';
import { startBridgeCalls } from './bridge-calls.ts';
import { requireChromium, waitForStats } from './chromium.ts';
import { startServer } from './harness.ts';
import { startRtpEngine } from './rtpengine.ts';
import { dial, expectNotice, expectState, expectVisible, openPhone, signIn } from './webphone.ts';

requireChromium();
requireBaresip();

const rtpe = await startRtpEngine();
const server = await startServer({ env: { CAREFLOW_RTPENGINE: `127.0.0.1:${rtpe.ngPort}` } });
const calls = await startBridgeCalls(server, (phone, browser) =>
  `${phone.describe()}\n--- rtpengine\n${rtpe.logs().slice(-3000)}\n--- server\n${server.logs().slice(-3000)}\n--- browser\n${browser.console.text()}`);
const { phone, browser } = calls;
const ng = new NgClient({ instances: [{ host: '127.0.0.1', port: rtpe.ngPort }] });
const ports = { min: rtpe.minPort, max: rtpe.maxPort };

async function engineSessions(): Promise<number> {
  const list = await ng.request('list', { limit: 100 });
  return Array.isArray(list['calls']) ? list['calls'].length : -1;
}

/** No RTPEngine session and no media session of the server is left. */
async function assertReleased(): Promise<void> {
  assert.equal(await engineSessions(), 0, `the engine session is released\n${rtpe.logs().slice(-2000)}`);
  const status = await server.apiJson<{ sip: { mediaSessions: number } }>('/api/status');
  assert.equal(status.sip.mediaSessions, 0);
}

test('the web phone calls a baresip phone: bridged by RTPEngine, audio both ways, keypad digits reach the phone', async () => {
  await calls.browserCallsPhone({
    ports,
    // The keypad: RFC 4733 telephone-events from Chromium, through RTPEngine, decoded by baresip.
    inCall: async () => {
      const dtmfFrom = phone.events.length;
      await browser.page.locator('#keypad').click();
      await browser.page.locator('#dtmf [data-digit="5"]').click();
      const dtmf = await phone.waitEvent('CALL_DTMF_START', (e) => e.type === 'CALL_DTMF_START', 10_000, dtmfFrom)
        .catch((e: Error) => assert.fail(`${e.message}\n${phone.describe()}`));
      assert.equal(dtmf.param, '5', JSON.stringify(dtmf.raw));
    },
    released: assertReleased,
  });
});

test('the baresip phone calls the web phone: bridged, audio both ways; the phone hangs up', async () => {
  await calls.phoneCallsBrowser({ ports, released: assertReleased });
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
  const row = await calls.lastCall();
  assert.deepEqual([row.disposition, row.mediaMode], ['answered', 'p2p']);
  ng.close();
});
