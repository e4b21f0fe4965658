// Browser <-> SIP phone calls bridged by the embedded media engine (src/media/embedded/, chosen
// with CAREFLOW_MEDIA_ENGINE=embedded): the web phone in Chromium (ICE + DTLS-SRTP, tone
// microphone) and baresip over UDP (plain RTP, PCMU, a tone of its own), the same scenario as
// media-rtpengine.test.ts with the server's own process doing the media. Audio must flow both
// ways: Chromium's getStats shows inbound packets with energy from a port of the configured
// RTP range, and what baresip received and decoded is Chromium's 440 Hz tone. Both
// directions of dialling; the call log says "bridge"; when the calls are over no UDP port of
// the range is open any more.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { requireBaresip } from './baresip.ts';
import { startBridgeCalls } from './bridge-calls.ts';
import { requireChromium } from './chromium.ts';
import { startServer, waitFor } from './harness.ts';

requireChromium();
requireBaresip();

// A private 200-port window for the server's media (rtpengine tests use 30000-38199).
// Below the kernel's ephemeral range (32768-60999), apart from embedded-driver.test.ts's window.
const MIN = 28_000 + 2 * Math.floor(Math.random() * 1500);
const RTP_PORTS = { min: MIN, max: MIN + 199 };
const server = await startServer({ env: { CAREFLOW_MEDIA_ENGINE: 'embedded', CAREFLOW_RTP_PORTS: `${RTP_PORTS.min}-${RTP_PORTS.max}` } });
const calls = await startBridgeCalls(server, (phone, browser) =>
  `${phone.describe()}\n--- server\n${server.logs().slice(-3000)}\n--- browser\n${browser.console.text()}`);

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

/** Every media port of the call is closed again (bounded: the BYE's delete is asynchronous). */
async function assertMediaReleased(): Promise<void> {
  await waitFor('the media ports to be closed', async () => (mediaSockets() === 0 ? true : undefined), 5000)
    .catch((e: Error) => assert.fail(`${e.message}: ${mediaSockets()} sockets in ${RTP_PORTS.min}-${RTP_PORTS.max}\n${server.logs().slice(-2000)}`));
  const status = await server.apiJson<{ sip: { mediaSessions: number } }>('/api/status');
  assert.equal(status.sip.mediaSessions, 0);
}

test('the web phone calls a baresip phone: bridged by the embedded engine, audio both ways', async () => {
  assert.equal(mediaSockets(), 0, 'no media port is open before the first call');
  await calls.browserCallsPhone({
    ports: RTP_PORTS,
    inCall: () => assert.ok(mediaSockets() >= 3, 'a browser leg (one port) and a phone leg (RTP + RTCP) are open'),
    released: assertMediaReleased,
  });
});

test('the baresip phone calls the web phone: bridged, audio both ways; the phone hangs up', async () => {
  await calls.phoneCallsBrowser({ ports: RTP_PORTS, released: assertMediaReleased });
});

test('the server stops cleanly with the embedded engine (SIGTERM, exit code 0 within the grace period)', async () => {
  await calls.phone.command('hangup').catch(() => undefined);
  assert.equal(await server.stop(), 0, server.logs().slice(-2000));
  assert.equal(mediaSockets(), 0);
});
