// The RTPEngine driver (src/media/rtpengine.ts, ng-client.ts) against Debian's rtpengine
// daemon (userspace): ping, SDP rewriting for a browser and for a phone (with Chromium's own
// offer), RTP relayed both ways between two UDP endpoints — one of them writing an
// unreachable address in its SDP, reached anyway by latching onto where its packets come
// from — per-leg statistics, delete, failover to a second instance, close() rejecting what
// is pending.
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { test } from 'node:test';
import { endpointOf } from '../../src/media/engine.ts';
import { NgClient, NgError } from '../../src/media/ng-client.ts';
import { RtpEngineDriver } from '../../src/media/rtpengine.ts';
import { launchBrowser, requireChromium, toneWav } from './chromium.ts';
import { freeUdpPort } from './harness.ts';
import { startRtpEngine } from './rtpengine.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const rtpe = await startRtpEngine({ logLevel: 7 }); // debug: the RTCP it parsed is in its log
const engine = new RtpEngineDriver({ instances: [{ host: '127.0.0.1', port: rtpe.ngPort }], timeoutMs: 2000 });
let n = 0;
const callId = (): string => `driver-test-${process.pid}-${++n}`;

function phoneSdp(address: string, port: number): string {
  return ['v=0', `o=phone 1 1 IN IP4 ${address}`, 's=-', `c=IN IP4 ${address}`, 't=0 0', `m=audio ${port} RTP/AVP 0 8 101`,
    'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');
}

function rtpmapNames(sdp: string): string[] {
  return [...sdp.matchAll(/^a=rtpmap:\d+ ([^/\s]+)\//gm)].map((m) => m[1] ?? '');
}

function mediaPort(sdp: string): number {
  return Number(/^m=audio (\d+) /m.exec(sdp)?.[1]);
}

function rtpPacket(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(12 + 160, 0xff); // PCMU silence-ish payload
  b[0] = 0x80;
  b[1] = 0; // PT 0 PCMU
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(seq * 160, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

/** An RTCP sender report (RFC 3550 §6.4.1) without report blocks. */
function senderReport(ssrc: number, ntpSec: number, sent: number): Buffer {
  const b = Buffer.alloc(28);
  b[0] = 0x80;
  b[1] = 200;
  b.writeUInt16BE(6, 2);
  b.writeUInt32BE(ssrc, 4);
  b.writeUInt32BE(ntpSec >>> 0, 8);
  b.writeUInt32BE(0x12345678, 12); // NTP fraction
  b.writeUInt32BE(sent * 160, 16);
  b.writeUInt32BE(sent, 20);
  b.writeUInt32BE(sent * 160, 24);
  return b;
}

/** An RTCP receiver report (RFC 3550 §6.4.2) about `about`, quoting the SR sent at `ntpSec`. */
function receiverReport(from: number, about: number, ntpSec: number, r: { fractionLost: number; jitter: number }): Buffer {
  const b = Buffer.alloc(32);
  b[0] = 0x81;
  b[1] = 201;
  b.writeUInt16BE(7, 2);
  b.writeUInt32BE(from, 4);
  b.writeUInt32BE(about, 8);
  b[12] = r.fractionLost;
  b.writeUIntBE(5, 13, 3); // cumulative lost
  b.writeUInt32BE(50, 16); // highest sequence received
  b.writeUInt32BE(r.jitter, 20);
  b.writeUInt32BE((((ntpSec & 0xffff) << 16) | (0x12345678 >>> 16)) >>> 0, 24); // LSR: middle 32 bits
  b.writeUInt32BE(1311, 28); // DLSR 20 ms in 1/65536 s
  return b;
}

async function udpEndpoint(): Promise<{ sock: Socket; port: number; got: Buffer[] }> {
  const sock = createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { sock, port: sock.address().port, got };
}

async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}\n${rtpe.logs().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('ping answers pong', async () => {
  assert.deepEqual(await engine.ping(), [true]);
});

test('relay: RTP flows both ways through rtpengine, latching onto a phone whose SDP names an unreachable address', async () => {
  const a = await udpEndpoint();
  const b = await udpEndpoint();
  const id = callId();
  try {
    // A is "behind NAT": its SDP says 10.255.0.1 (unreachable), its packets come from 127.0.0.1.
    const toB = await engine.offer({ callId: id, fromTag: 'ta', sdp: phoneSdp('10.255.0.1', a.port), from: 'rtp', to: 'rtp', sourceAddress: '127.0.0.1' });
    assert.match(toB, /^c=IN IP4 127\.0\.0\.1/m, toB);
    const portForB = mediaPort(toB);
    assert.ok(portForB >= rtpe.minPort && portForB <= rtpe.maxPort, toB);
    const toA = await engine.answer({ callId: id, fromTag: 'ta', toTag: 'tb', sdp: phoneSdp('127.0.0.1', b.port), from: 'rtp', to: 'rtp' });
    const portForA = mediaPort(toA);
    for (let i = 0; i < 50; i++) {
      a.sock.send(rtpPacket(i, 0xaaaa), portForA, '127.0.0.1');
      b.sock.send(rtpPacket(i, 0xbbbb), portForB, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 2));
    }
    await until('B to receive A\'s packets', () => b.got.some((p) => p.readUInt32BE(8) === 0xaaaa));
    await until('A to receive B\'s packets (latched: not the SDP address)', () => a.got.some((p) => p.readUInt32BE(8) === 0xbbbb));
    // RTCP as a phone sends it (RFC 3550 §6.4): A's sender report, then B's receiver report
    // about A's stream (10 % lost, jitter 160 units = 20 ms at 8 kHz) quoting that SR.
    const ntpSec = Math.floor(Date.now() / 1000) + 2_208_988_800;
    a.sock.send(senderReport(0xaaaa, ntpSec, 50), portForA + 1, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 20));
    b.sock.send(receiverReport(0xbbbb, 0xaaaa, ntpSec, { fractionLost: 26, jitter: 160 }), portForB + 1, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    const stats = await engine.stats(id);
    assert.ok(stats, 'query knows the call');
    const byTag = new Map(stats.legs.map((l) => [l.tag, l.received]));
    assert.ok((byTag.get('ta')?.packets ?? 0) >= 40 && (byTag.get('tb')?.packets ?? 0) >= 40, JSON.stringify(stats));
    assert.ok((byTag.get('ta')?.packets ?? 0) <= 50, 'RTCP packets are not counted as audio');
    // RTPEngine 10.5 parses the reports (its log says so) but leaves the query's SSRC section
    // empty: loss and jitter are then unknown, never a made-up zero. A version that fills it
    // must give what B reported.
    assert.match(rtpe.logs(), /RR from bbbb about aaaa: FL 26/);
    const ta = byTag.get('ta');
    if (ta?.lossPercent === undefined) assert.equal(ta?.jitterMs, undefined);
    else assert.deepEqual([ta.lossPercent, ta.jitterMs], [10, 20]);
  } finally {
    await engine.delete(id);
    a.sock.close();
    b.sock.close();
  }
  assert.equal(await engine.stats(id), undefined, 'deleted');
  await engine.delete(id); // deleting twice is fine
});

test('bridge SDP: a phone offer becomes ICE + DTLS-SRTP for the browser; Chromium\'s offer becomes plain RTP for the phone', async () => {
  requireChromium();
  const browser = await launchBrowser({ toneFile: toneWav(mkdtempSync(join(tmpdir(), 'careflow-tone-')), { seconds: 2 }) });
  let chromeOffer: string;
  try {
    const page = await browser.newPage();
    chromeOffer = await page.evaluate(`(async () => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('audio', { direction: 'sendrecv' });
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 3000); });
      return pc.localDescription.sdp;
    })()`) as string;
  } finally {
    await browser.close();
  }
  assert.equal(endpointOf(chromeOffer), 'webrtc');
  const id1 = callId();
  const toBrowser = await engine.offer({ callId: id1, fromTag: 'f1', sdp: phoneSdp('127.0.0.1', await freeUdpPort()), from: 'rtp', to: 'webrtc' });
  assert.equal(endpointOf(toBrowser), 'webrtc', toBrowser);
  for (const line of [/^m=audio \d+ UDP\/TLS\/RTP\/SAVPF /m, /^a=ice-ufrag:/m, /^a=fingerprint:sha-256 /m, /^a=setup:actpass/m, /^a=rtcp-mux/m, /^a=mid:/m, /^a=candidate:.* 127\.0\.0\.1 /m]) {
    assert.match(toBrowser, line, toBrowser);
  }
  const id2 = callId();
  const toPhone = await engine.offer({ callId: id2, fromTag: 'f2', sdp: chromeOffer, from: 'webrtc', to: 'rtp' });
  assert.equal(endpointOf(toPhone), 'rtp', toPhone);
  assert.match(toPhone, /^m=audio \d+ RTP\/AVP /m, toPhone);
  assert.doesNotMatch(toPhone, /^a=(ice-ufrag|fingerprint|candidate|setup):/m, toPhone);
  assert.match(toPhone, /^a=rtpmap:\d+ PCMU\/8000/m, 'the browser\'s G.711 is passed through');
  // Codecs narrowed to what both worlds decode without transcoding (Opus, G.711, DTMF events).
  assert.match(chromeOffer, /^a=rtpmap:\d+ (red|G722|CN)\//m, 'Chromium offers codecs a bridge must not pass');
  assert.deepEqual(rtpmapNames(toPhone).filter((c) => !/^(opus|PCMU|PCMA|telephone-event)$/.test(c)), [], toPhone);
  assert.ok(rtpmapNames(toPhone).includes('opus'), 'Opus stays for a phone that speaks it');
  const id3 = callId();
  const exotic = phoneSdp('127.0.0.1', await freeUdpPort()).replace(' RTP/AVP 0 8 101', ' RTP/AVP 18 3 0 8 101')
    .replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:18 G729/8000\r\na=rtpmap:3 GSM/8000\r\na=rtpmap:0 PCMU/8000');
  const exoticToBrowser = await engine.offer({ callId: id3, fromTag: 'f3', sdp: exotic, from: 'rtp', to: 'webrtc' });
  assert.deepEqual(rtpmapNames(exoticToBrowser), ['PCMU', 'PCMA', 'telephone-event'], exoticToBrowser);
  const id4 = callId();
  const relayed = await engine.offer({ callId: id4, fromTag: 'f4', sdp: exotic, from: 'rtp', to: 'rtp' });
  assert.deepEqual(rtpmapNames(relayed), ['G729', 'GSM', 'PCMU', 'PCMA', 'telephone-event'], 'between two phones every codec passes');
  for (const id of [id1, id2, id3, id4]) await engine.delete(id);
});

test('failover: a new call goes to the next instance when the first does not answer; close() rejects what is pending', async () => {
  const dead = await freeUdpPort(); // nothing listens there
  const ng = new NgClient({ instances: [{ host: '127.0.0.1', port: dead }, { host: '127.0.0.1', port: rtpe.ngPort }], timeoutMs: 300, retransmitMs: 100 });
  try {
    const id = callId();
    const answer = await ng.request('offer', { 'call-id': id, 'from-tag': 'x', sdp: phoneSdp('127.0.0.1', 40000) }, id);
    assert.equal(answer['result'], 'ok');
    // The call stays on the instance that took it; later calls skip the dead one at once.
    const t0 = Date.now();
    await ng.request('delete', { 'call-id': id }, id);
    const again = callId();
    await ng.request('offer', { 'call-id': again, 'from-tag': 'y', sdp: phoneSdp('127.0.0.1', 40002) }, again);
    assert.ok(Date.now() - t0 < 250, 'the dead instance is marked down for new calls');
    await ng.request('delete', { 'call-id': again }, again);
    const lone = new NgClient({ instances: [{ host: '127.0.0.1', port: dead }], timeoutMs: 5000 });
    const pending = lone.request('ping');
    lone.close();
    await assert.rejects(pending, (e: unknown) => e instanceof NgError && e.code === 'NG_CLOSED');
    await assert.rejects(lone.request('ping'), (e: unknown) => e instanceof NgError && e.code === 'NG_CLOSED');
  } finally {
    ng.close();
  }
});

test('an ng error is reported with RTPEngine\'s reason', async () => {
  await assert.rejects(engine.answer({ callId: 'no-such-call', fromTag: 'a', toTag: 'b', sdp: phoneSdp('127.0.0.1', 40004), from: 'rtp', to: 'rtp' }),
    (e: unknown) => e instanceof NgError && e.code === 'NG_ERROR' && /unknown call|not found/i.test(e.message));
  await engine.close();
});
