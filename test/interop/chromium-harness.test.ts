// Proves the Chromium harness (chromium.ts) without CareFlow: a page served from
// http://127.0.0.1 (a secure context) captures the fake microphone (a steady tone file,
// echo cancellation / noise suppression / auto gain off) and sends it from one
// RTCPeerConnection to another in the same page over loopback. audioStats() on the
// receiving side must show packets, audio energy and a host/host candidate pair.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachConsole, launchBrowser, requireChromium, toneWav, waitForStats, type BrowserHandle, type ConsoleLog } from './chromium.ts';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>loopback</title></head><body>
<audio id="out" autoplay></audio>
<script>
let pcA = null, pcB = null;
window.careflow = { pc: () => pcB };
window.startLoopback = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: false });
  pcA = new RTCPeerConnection();
  pcB = new RTCPeerConnection();
  pcA.onicecandidate = (e) => { if (e.candidate) pcB.addIceCandidate(e.candidate).catch((err) => console.error('B addIceCandidate', err)); };
  pcB.onicecandidate = (e) => { if (e.candidate) pcA.addIceCandidate(e.candidate).catch((err) => console.error('A addIceCandidate', err)); };
  pcB.ontrack = (e) => { const el = document.getElementById('out'); el.srcObject = e.streams[0] || new MediaStream([e.track]); el.play().catch((err) => console.warn('play', err)); };
  for (const t of stream.getAudioTracks()) pcA.addTrack(t, stream);
  const offer = await pcA.createOffer();
  await pcA.setLocalDescription(offer);
  await pcB.setRemoteDescription(offer);
  const answer = await pcB.createAnswer();
  await pcB.setLocalDescription(answer);
  await pcA.setRemoteDescription(answer);
  return stream.getAudioTracks().map((t) => t.label);
};
</script></body></html>`;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, rej) => { t = setTimeout(() => rej(new Error(`${what} took over ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(t));
}

const toneDir = mkdtempSync(join(tmpdir(), 'careflow-tone-'));
let http: Server | undefined;
let browser: BrowserHandle | undefined;
let log: ConsoleLog | undefined;

after(async () => {
  await browser?.close();
  await new Promise<void>((r) => { if (http === undefined) r(); else http.close(() => r()); http?.closeAllConnections(); });
  rmSync(toneDir, { recursive: true, force: true });
});

test('chromium harness: loopback audio between two RTCPeerConnections', { timeout: 90_000 }, async () => {
  requireChromium(); // fails (never skips) with the install command
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(PAGE);
  });
  http = server;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const url = `http://127.0.0.1:${addr.port}/`;

  const tone = toneWav(toneDir, { freqHz: 440, seconds: 30, rate: 48000 });
  browser = await launchBrowser({ toneFile: tone });
  assert.ok(browser.pid !== undefined, 'the chromium process is found by its user data dir');
  const page = await browser.newPage();
  log = attachConsole(page, 'loopback');
  try {
    await page.goto(url, { timeout: 10_000 });
    const labels = await withTimeout(page.evaluate('window.startLoopback()'), 10_000, 'startLoopback()');
    assert.ok(Array.isArray(labels) && labels.length === 1, `one fake microphone track: ${JSON.stringify(labels)}`);

    const s = await waitForStats(page, (st) => st.inboundPackets > 50 && st.totalAudioEnergy > 0 && st.selectedPair !== null,
      15_000, 'inbound audio with energy on pcB');
    assert.ok(s.hasPc);
    assert.ok(s.inboundPackets > 0, `inbound packets: ${JSON.stringify(s)}`);
    assert.ok(s.inboundBytes > 0, `inbound bytes: ${JSON.stringify(s)}`);
    assert.ok(s.totalAudioEnergy > 0, `audio energy: ${JSON.stringify(s)}`);
    assert.equal(s.selectedPair?.localType, 'host', JSON.stringify(s.selectedPair));
    assert.equal(s.selectedPair?.remoteType, 'host', JSON.stringify(s.selectedPair));
    // pcB only receives; its outbound count is 0 (recvonly from the answerer's point of view is fine)
    assert.ok(s.outboundPackets >= 0);

    // a steady tone keeps the level up (Chromium's built-in fake mic beeps, often at zero)
    const later = await waitForStats(page, (st) => st.audioLevel > 0.05 && st.totalAudioEnergy > s.totalAudioEnergy, 5000, 'steady audio level');
    assert.ok(later.inboundPackets > s.inboundPackets);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- page console ---\n${log.text()}`, { cause: e });
  }
  await browser.close();
  const pid = browser.pid;
  assert.throws(() => process.kill(pid, 0), 'the chromium process is gone after close()');
});
