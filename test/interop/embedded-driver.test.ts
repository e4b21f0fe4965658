// The embedded media engine (src/media/embedded/) at driver level, against real peers on
// loopback: RTP relayed both ways between two UDP endpoints (one writing an unreachable
// address and port in its SDP, reached anyway by latching onto where its packets come from);
// SDP for a browser (ICE-lite, DTLS-SRTP) and for a phone (plain RTP) from Chromium's own
// offer; Chromium bridged to a UDP "phone" with audio both ways, once as the offerer (the
// engine is the DTLS client) and once as the answerer (the engine is the DTLS server); delete
// closing every port, across 200 calls.
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { endpointOf } from '../../src/media/engine.ts';
import { EmbeddedMediaEngine } from '../../src/media/embedded/embedded-engine.ts';
import { EmbeddedMediaError } from '../../src/media/embedded/errors.ts';
import { type BrowserHandle, launchBrowser, requireChromium, toneWav } from './chromium.ts';

requireChromium();

// A private 200-port window, away from other tests' (rtpengine uses 30000-38199).
// Below the kernel's ephemeral range (32768-60999): no outgoing connection of another process can
// hold one of these ports when the test checks that they can all be bound again.
const MIN = 24_000 + 2 * Math.floor(Math.random() * 1500);
const RANGE = { min: MIN, max: MIN + 199 };
const engine = new EmbeddedMediaEngine({ rtpPorts: RANGE, advertiseAddress: '127.0.0.1', bindAddress: '127.0.0.1' });
let n = 0;
const callId = (): string => `embedded-driver-${process.pid}-${++n}`;

function phoneSdp(address: string, port: number, codecs = '0 8 101', direction = 'sendrecv'): string {
  return ['v=0', `o=phone 1 1 IN IP4 ${address}`, 's=-', `c=IN IP4 ${address}`, 't=0 0', `m=audio ${port} RTP/AVP ${codecs}`,
    'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-15', 'a=ptime:20', `a=${direction}`, ''].join('\r\n');
}

function mediaPort(sdp: string): number {
  return Number(/^m=audio (\d+) /m.exec(sdp)?.[1]);
}

// G.711 μ-law (ITU-T G.711), for a phone that really sends and hears a tone.
function ulawEncode(sample: number): number {
  const sign = sample < 0 ? 0x80 : 0;
  let s = Math.min(32635, Math.abs(sample)) + 0x84;
  let exp = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp--;
  const mantissa = (s >> (exp + 3)) & 0x0f;
  return ~(sign | (exp << 4) | mantissa) & 0xff;
}

function ulawDecode(u: number): number {
  const v = ~u & 0xff;
  const t = (((v & 0x0f) << 3) + 0x84) << ((v & 0x70) >> 4);
  return v & 0x80 ? 0x84 - t : t - 0x84;
}

function rtpPacket(seq: number, ssrc: number, freq = 700): Buffer {
  const b = Buffer.alloc(12 + 160);
  b[0] = 0x80;
  b[1] = 0; // PCMU
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  for (let i = 0; i < 160; i++) b[12 + i] = ulawEncode(Math.round(12000 * Math.sin((2 * Math.PI * freq * (seq * 160 + i)) / 8000)));
  return b;
}

/** RMS of the μ-law payloads of PCMU packets. */
function pcmuRms(packets: readonly Buffer[]): number {
  let sum = 0;
  let count = 0;
  for (const p of packets) {
    if ((p[1]! & 0x7f) !== 0) continue;
    for (let i = 12; i < p.length; i++) { const v = ulawDecode(p[i]!); sum += v * v; count++; }
  }
  return count > 0 ? Math.sqrt(sum / count) : 0;
}

interface UdpEndpoint { sock: Socket; port: number; got: Buffer[]; from: Set<string> }

async function udpEndpoint(): Promise<UdpEndpoint> {
  const sock = createSocket('udp4');
  const got: Buffer[] = [];
  const from = new Set<string>();
  sock.on('message', (m, r) => { got.push(m); from.add(`${r.address}:${r.port}`); });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { sock, port: sock.address().port, got, from };
}

async function until(what: string, pred: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Whether every port of `ports` can be bound again (UDP, on the engine's address). */
async function bindable(ports: readonly number[]): Promise<boolean> {
  for (const port of ports) {
    const ok = await new Promise<boolean>((res) => {
      const s = createSocket('udp4');
      s.once('error', () => { s.close(); res(false); });
      s.bind(port, '127.0.0.1', () => s.close(() => res(true)));
    });
    if (!ok) return false;
  }
  return true;
}

/** Open UDP/TCP sockets of this process (file descriptors that are sockets). */
function socketCount(): number {
  return readdirSync('/proc/self/fd').filter((fd) => { try { return readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:'); } catch { return false; } }).length;
}

test('relay: RTP both ways, latching onto a phone whose SDP names an unreachable address; stats; delete frees the ports', async () => {
  const a = await udpEndpoint();
  const b = await udpEndpoint();
  const id = callId();
  let ports: number[] = [];
  try {
    // A is "behind NAT" and says nothing useful: its SDP names 10.255.0.1 and a port it does
    // not use; only latching onto its packets' source reaches it.
    const toB = await engine.offer({ callId: id, fromTag: 'ta', branch: 'z9hG4bK-1', sdp: phoneSdp('10.255.0.1', 9), from: 'rtp', to: 'rtp' });
    assert.match(toB, /^c=IN IP4 127\.0\.0\.1/m, toB);
    assert.equal(endpointOf(toB), 'rtp');
    const portForB = mediaPort(toB);
    assert.ok(portForB >= RANGE.min && portForB <= RANGE.max && portForB % 2 === 0, toB);
    const toA = await engine.answer({ callId: id, fromTag: 'ta', toTag: 'tb', branch: 'z9hG4bK-1', sdp: phoneSdp('127.0.0.1', b.port), from: 'rtp', to: 'rtp' });
    const portForA = mediaPort(toA);
    ports = [portForA, portForA + 1, portForB, portForB + 1];
    assert.match(toA, /^m=audio \d+ RTP\/AVP 0 8 101\r$/m, 'the answer keeps the codecs both sides have');
    // B speaks first: nothing reaches A before A has sent (its SDP address is useless).
    for (let i = 0; i < 5; i++) b.sock.send(rtpPacket(i, 0xbbbb), portForB, '127.0.0.1');
    for (let i = 0; i < 50; i++) {
      a.sock.send(rtpPacket(i, 0xaaaa), portForA, '127.0.0.1');
      b.sock.send(rtpPacket(i + 5, 0xbbbb), portForB, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 2));
    }
    await until('B to receive A\'s packets', () => b.got.filter((p) => p.readUInt32BE(8) === 0xaaaa).length >= 45);
    await until('A to receive B\'s packets (latched, not the SDP address)', () => a.got.filter((p) => p.readUInt32BE(8) === 0xbbbb).length >= 45);
    const fromA = b.got.find((p) => p.readUInt32BE(8) === 0xaaaa)!;
    assert.deepEqual([fromA.readUInt16BE(2), fromA.readUInt32BE(4)], [0, 0], 'sequence number and timestamp pass unchanged');
    assert.deepEqual([...b.from], [`127.0.0.1:${portForB}`], 'symmetric RTP: B hears us from the port it sends to');
    const stats = await engine.stats(id);
    assert.ok(stats !== undefined);
    const byTag = new Map(stats.legs.map((l) => [l.tag, l.received]));
    assert.ok((byTag.get('ta')?.packets ?? 0) >= 45 && (byTag.get('tb')?.packets ?? 0) >= 50, JSON.stringify(stats));
    assert.equal(byTag.get('ta')?.lost, 0, JSON.stringify(stats));
    assert.ok((stats.idleMs ?? 1e9) < 5000);
  } finally {
    await engine.delete(id);
    a.sock.close();
    b.sock.close();
  }
  assert.equal(await engine.stats(id), undefined, 'deleted');
  assert.ok(await bindable(ports), `ports ${ports.join(' ')} are free again`);
  await engine.delete(id); // twice is fine
  await assert.rejects(engine.answer({ callId: id, fromTag: 'ta', toTag: 'tb', sdp: phoneSdp('127.0.0.1', 4000), from: 'rtp', to: 'rtp' }),
    (e: unknown) => e instanceof EmbeddedMediaError && e.code === 'MEDIA_UNKNOWN_CALL');
});

// ---------------------------------------------------------------- Chromium

// Functions passed to page.evaluate run in the page; the repo's tsconfig has no DOM lib.
const PAGE_SETUP = `(() => {
  const pc = new RTCPeerConnection();
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = 440;
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  const track = dst.stream.getAudioTracks()[0];
  pc.addTrack(track, dst.stream);
  pc.ontrack = (e) => { const a = new Audio(); a.srcObject = new MediaStream([e.track]); a.play().catch(() => {}); window.audioEl = a; };
  window.pc = pc;
  window.gathered = () => new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 3000); });
})()`;

interface PageStats { inbound: number; energy: number; outbound: number; dtls: string; remotePort: number }

async function pageStats(page: Page): Promise<PageStats> {
  return await page.evaluate(`(async () => {
    const out = { inbound: 0, energy: 0, outbound: 0, dtls: '', remotePort: 0 };
    const report = await window.pc.getStats();
    let pair;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') { out.inbound += s.packetsReceived || 0; out.energy = Math.max(out.energy, s.totalAudioEnergy || 0); }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') out.outbound += s.packetsSent || 0;
      if (s.type === 'transport') { out.dtls = s.dtlsState; pair = s.selectedCandidatePairId; }
    });
    const p = pair && report.get(pair);
    const r = p && report.get(p.remoteCandidateId);
    if (r) out.remotePort = r.port;
    return out;
  })()`) as PageStats;
}

let browser: BrowserHandle | undefined;
async function page(): Promise<Page> {
  browser ??= await launchBrowser({ toneFile: toneWav(mkdtempSync(join(tmpdir(), 'careflow-tone-')), { seconds: 2 }) });
  const p = await browser.newPage();
  await p.evaluate(PAGE_SETUP);
  return p;
}

/** The phone sends a 700 Hz PCMU tone every 20 ms until stopped. */
function talk(phone: UdpEndpoint, port: number): () => void {
  let seq = 0;
  const t = setInterval(() => { phone.sock.send(rtpPacket(seq++, 0x7070), port, '127.0.0.1'); }, 20);
  return () => clearInterval(t);
}

async function audioBothWays(p: Page, phone: UdpEndpoint, enginePort: number, id: string, tags: [string, string]): Promise<void> {
  await until('Chromium to hear the phone (inbound packets with energy)', async () => { const s = await pageStats(p); return s.inbound > 50 && s.energy > 0; }, 15_000);
  await until('the phone to receive Chromium\'s PCMU', () => phone.got.filter((g) => (g[1]! & 0x7f) === 0).length > 50, 10_000);
  const s = await pageStats(p);
  assert.equal(s.dtls, 'connected');
  assert.equal(s.remotePort, enginePort, 'ICE selected the engine\'s candidate');
  const rms = pcmuRms(phone.got.slice(-50));
  assert.ok(rms > 1000, `the phone hears Chromium's tone (rms ${rms.toFixed(0)})`);
  const stats = await engine.stats(id);
  const byTag = new Map(stats?.legs.map((l) => [l.tag, l.received.packets]));
  assert.ok((byTag.get(tags[0]) ?? 0) > 50 && (byTag.get(tags[1]) ?? 0) > 50, JSON.stringify(stats));
}

test('bridge SDP: a phone offer becomes ICE-lite + DTLS-SRTP for the browser; Chromium\'s offer becomes plain RTP for the phone', async () => {
  const p = await page();
  const chromeOffer = await p.evaluate('(async () => { await window.pc.setLocalDescription(await window.pc.createOffer()); await window.gathered(); return window.pc.localDescription.sdp; })()') as string;
  await p.close();
  assert.equal(endpointOf(chromeOffer), 'webrtc');
  const id1 = callId();
  const toBrowser = await engine.offer({ callId: id1, fromTag: 'f1', sdp: phoneSdp('127.0.0.1', 4000, '18 0 8 101'), from: 'rtp', to: 'webrtc' });
  assert.equal(endpointOf(toBrowser), 'webrtc', toBrowser);
  for (const line of [/^a=ice-lite/m, /^m=audio \d+ UDP\/TLS\/RTP\/SAVPF 0 8 101\r$/m, /^a=ice-ufrag:/m, /^a=fingerprint:sha-256 /m, /^a=setup:actpass/m, /^a=rtcp-mux/m, /^a=mid:/m, /^a=candidate:.* 127\.0\.0\.1 \d+ typ host/m]) {
    assert.match(toBrowser, line, toBrowser);
  }
  const id2 = callId();
  const toPhone = await engine.offer({ callId: id2, fromTag: 'f2', sdp: chromeOffer, from: 'webrtc', to: 'rtp' });
  assert.equal(endpointOf(toPhone), 'rtp', toPhone);
  assert.match(toPhone, /^m=audio \d+ RTP\/AVP 111 0 8 110 126\r$/m, 'Opus, G.711 and DTMF pass; RED, G722 and CN do not');
  assert.doesNotMatch(toPhone, /^a=(ice-ufrag|fingerprint|candidate|setup|rtcp-mux|extmap|ssrc):/m, toPhone);
  await assert.rejects(engine.offer({ callId: callId(), fromTag: 'f3', sdp: phoneSdp('127.0.0.1', 4002, '18'), from: 'rtp', to: 'webrtc' }),
    (e: unknown) => e instanceof EmbeddedMediaError && e.code === 'MEDIA_NO_CODEC', 'G.729 cannot reach a browser');
  await engine.delete(id1);
  await engine.delete(id2);
  assert.equal(engine.portsInUse, 0);
});

test('bridge: Chromium calls a phone (engine answers DTLS active), audio both ways, then hold and resume', async () => {
  const p = await page();
  const phone = await udpEndpoint();
  const id = callId();
  let stop = (): void => {};
  try {
    const offer = await p.evaluate('(async () => { await window.pc.setLocalDescription(await window.pc.createOffer()); await window.gathered(); return window.pc.localDescription.sdp; })()') as string;
    const toPhone = await engine.offer({ callId: id, fromTag: 'web', branch: 'b0', sdp: offer, from: 'webrtc', to: 'rtp' });
    const phonePort = mediaPort(toPhone);
    const toBrowser = await engine.answer({ callId: id, fromTag: 'web', toTag: 'desk', branch: 'b0', sdp: phoneSdp('127.0.0.1', phone.port, '0 101'), from: 'rtp', to: 'webrtc' });
    assert.match(toBrowser, /^a=setup:active/m, toBrowser);
    assert.match(toBrowser, /^m=audio \d+ UDP\/TLS\/RTP\/SAVPF 0 126\r$/m, 'PCMU and DTMF, in the browser\'s numbers');
    await p.evaluate(`window.pc.setRemoteDescription({ type: 'answer', sdp: ${JSON.stringify(toBrowser)} })`);
    stop = talk(phone, phonePort);
    await audioBothWays(p, phone, mediaPort(toBrowser), id, ['web', 'desk']);
    // Hold and resume: in-dialog re-offers from the browser reuse both legs, their ports, the
    // ICE credentials and the DTLS association.
    const ufrag = /^a=ice-ufrag:(\S+)/m.exec(toBrowser)?.[1];
    for (const [browserDir, phoneDir] of [['sendonly', 'recvonly'], ['sendrecv', 'sendrecv']] as const) {
      const reOffer = await p.evaluate(`(async () => { window.pc.getTransceivers()[0].direction = '${browserDir}'; await window.pc.setLocalDescription(await window.pc.createOffer()); return window.pc.localDescription.sdp; })()`) as string;
      const toPhone2 = await engine.offer({ callId: id, fromTag: 'web', toTag: 'desk', sdp: reOffer, from: 'webrtc', to: 'rtp' });
      assert.equal(mediaPort(toPhone2), phonePort, 'the phone keeps its port');
      assert.match(toPhone2, new RegExp(`^a=${browserDir}\r$`, 'm'));
      const toBrowser2 = await engine.answer({ callId: id, fromTag: 'web', toTag: 'desk', sdp: phoneSdp('127.0.0.1', phone.port, '0 101', phoneDir), from: 'rtp', to: 'webrtc' });
      assert.equal(/^a=ice-ufrag:(\S+)/m.exec(toBrowser2)?.[1], ufrag, 'no ICE restart');
      assert.match(toBrowser2, /^a=setup:active/m, 'the DTLS role stays');
      assert.match(toBrowser2, new RegExp(`^a=${phoneDir}\r$`, 'm'));
      await p.evaluate(`window.pc.setRemoteDescription({ type: 'answer', sdp: ${JSON.stringify(toBrowser2)} })`);
    }
    const heard = phone.got.length;
    const inbound = (await pageStats(p)).inbound;
    await until('audio both ways after resume', async () => phone.got.length > heard + 25 && (await pageStats(p)).inbound > inbound + 25, 10_000);
    assert.equal((await pageStats(p)).dtls, 'connected');
  } finally {
    stop();
    await engine.delete(id);
    phone.sock.close();
    await p.close();
  }
});

test('bridge: a phone calls Chromium (engine offers actpass, is the DTLS server), audio both ways, then hold and resume', async () => {
  const p = await page();
  const phone = await udpEndpoint();
  const id = callId();
  let stop = (): void => {};
  try {
    const toBrowser = await engine.offer({ callId: id, fromTag: 'desk', branch: 'b0', sdp: phoneSdp('127.0.0.1', phone.port), from: 'rtp', to: 'webrtc' });
    const answer = await p.evaluate(`(async () => {
      await window.pc.setRemoteDescription({ type: 'offer', sdp: ${JSON.stringify(toBrowser)} });
      await window.pc.setLocalDescription(await window.pc.createAnswer());
      await window.gathered();
      return window.pc.localDescription.sdp;
    })()`) as string;
    const toPhone = await engine.answer({ callId: id, fromTag: 'desk', toTag: 'web', branch: 'b0', sdp: answer, from: 'webrtc', to: 'rtp' });
    assert.equal(endpointOf(toPhone), 'rtp');
    assert.match(toPhone, /^m=audio \d+ RTP\/AVP 0( 8)? 101\r$/m, toPhone);
    stop = talk(phone, mediaPort(toPhone));
    await audioBothWays(p, phone, mediaPort(toBrowser), id, ['desk', 'web']);
    // The phone holds and resumes: re-offers toward the browser keep the port, ICE and DTLS.
    for (const dir of ['sendonly', 'sendrecv']) {
      const toBrowser2 = await engine.offer({ callId: id, fromTag: 'desk', toTag: 'web', sdp: phoneSdp('127.0.0.1', phone.port, '0 8 101', dir), from: 'rtp', to: 'webrtc' });
      assert.equal(mediaPort(toBrowser2), mediaPort(toBrowser));
      assert.equal(/^a=ice-ufrag:(\S+)/m.exec(toBrowser2)?.[1], /^a=ice-ufrag:(\S+)/m.exec(toBrowser)?.[1]);
      const answer2 = await p.evaluate(`(async () => {
        await window.pc.setRemoteDescription({ type: 'offer', sdp: ${JSON.stringify(toBrowser2)} });
        await window.pc.setLocalDescription(await window.pc.createAnswer());
        return window.pc.localDescription.sdp;
      })()`) as string;
      const toPhone2 = await engine.answer({ callId: id, fromTag: 'desk', toTag: 'web', sdp: answer2, from: 'webrtc', to: 'rtp' });
      assert.equal(mediaPort(toPhone2), mediaPort(toPhone));
      assert.match(toPhone2, new RegExp(`^a=${dir === 'sendonly' ? 'recvonly' : 'sendrecv'}\r$`, 'm'), toPhone2);
    }
    const heard = phone.got.length;
    const inbound = (await pageStats(p)).inbound;
    await until('audio both ways after the phone resumed', async () => phone.got.length > heard + 25 && (await pageStats(p)).inbound > inbound + 25, 10_000);
    assert.equal((await pageStats(p)).dtls, 'connected');
  } finally {
    stop();
    await engine.delete(id);
    phone.sock.close();
    await p.close();
    await browser?.close();
    browser = undefined;
  }
});

test('lifecycle: 200 relayed and bridged calls leave no port and no socket behind', async () => {
  const baseline = socketCount();
  const used = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const id = callId();
    const bridge = i % 2 === 1;
    const toCallee = await engine.offer({ callId: id, fromTag: 'a', branch: 'b0', sdp: phoneSdp('127.0.0.1', 4000), from: 'rtp', to: bridge ? 'webrtc' : 'rtp' });
    used.add(mediaPort(toCallee));
    if (!bridge) await engine.answer({ callId: id, fromTag: 'a', toTag: 'b', branch: 'b0', sdp: phoneSdp('127.0.0.1', 4002), from: 'rtp', to: 'rtp' });
    assert.ok(engine.portsInUse >= 2);
    await engine.delete(id);
  }
  assert.equal(engine.sessions, 0);
  assert.equal(engine.portsInUse, 0);
  assert.equal(socketCount(), baseline, 'every socket of every call was closed');
  assert.ok(used.size >= 40, `ports rotate through the range (${used.size} distinct)`);
  const ports = [...used].flatMap((p) => [p, p + 1]);
  assert.ok(await bindable(ports), 'and every port can be bound again');
  await engine.close();
  await assert.rejects(engine.offer({ callId: callId(), fromTag: 'a', sdp: phoneSdp('127.0.0.1', 4000), from: 'rtp', to: 'rtp' }),
    (e: unknown) => e instanceof EmbeddedMediaError && e.code === 'MEDIA_CLOSED');
});
