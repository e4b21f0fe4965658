// CPU per call of the embedded media engine, against a plain dgram relay (the floor) and a
// bridge built on werift's RTCPeerConnection (iceLite), in the same run.
//
//   node_modules/.bin/node bench/embedded-media.ts [--calls 10,50,100] [--seconds 10] [--modes dgram,relay,bridge,werift-pc]
//
// This process is the media server; a child process (this file with --generator) plays the
// devices: per call a "phone" (UDP, PCMU, 20 ms packets) on each side for dgram and relay,
// or a phone and a "browser" (ICE check, DTLS, SRTP with the engine's own building blocks) for
// bridge and werift-pc. Both sides send 50 packets/s for `seconds`; the server's CPU is
// process.cpuUsage() over that window, loss is what the generator did not get back.
// Results: a table on stdout and $OUT/results.json (default /tmp/careflow-bench/media-<date>).
import { fork, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import { createCertificate, DtlsAssociation, type SrtpPair } from '../src/media/embedded/dtls.ts';
import { EmbeddedMediaEngine } from '../src/media/embedded/embedded-engine.ts';
import { parseSdp } from '../src/media/embedded/sdp.ts';

type Mode = 'dgram' | 'relay' | 'bridge' | 'werift-pc';
interface Setup { id: number; phoneSdp: string; otherSdp: string }
interface Wired { id: number; toPhonePort: number; toOtherSdp: string }
type ToChild = { t: 'setup'; mode: Mode; calls: number } | { t: 'wired'; calls: Wired[] } | { t: 'start' } | { t: 'stop' };
type ToParent = { t: 'offers'; calls: Setup[] } | { t: 'ready' } | { t: 'counts'; sent: number; received: number; cpuMs: number };

const PCMU = (port: number): string => ['v=0', 'o=g 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=ptime:20', 'a=sendrecv', ''].join('\r\n');

function rtp(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(12 + 160, 0xd5); // PCMU silence
  b[0] = 0x80;
  b[1] = 0; // PT 0
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

async function bound(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

// ---------------------------------------------------------------- generator (child)

let generatorCert: ReturnType<typeof createCertificate> | undefined;

/** A browser as far as the server can tell: one ICE check, DTLS, SRTP. */
async function browserPeer(s: Socket, ssrc: number, onReady: () => void): Promise<{ sdp: string; wire(answer: string, port: number): void; send(p: Buffer): void; srtp(): SrtpPair | undefined }> {
  generatorCert ??= createCertificate(); // one for all the generator's browsers
  const cert = await generatorCert;
  const ufrag = randomBytes(3).toString('hex');
  let pair: SrtpPair | undefined;
  let dtls: DtlsAssociation | undefined;
  let serverPort = 0;
  const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', `m=audio ${s.address().port} UDP/TLS/RTP/SAVPF 0`, 'c=IN IP4 127.0.0.1',
    `a=ice-ufrag:${ufrag}`, `a=ice-pwd:${randomBytes(12).toString('hex')}`, `a=fingerprint:sha-256 ${cert.fingerprint.value}`, 'a=setup:actpass', 'a=mid:0', 'a=rtcp-mux',
    `a=candidate:1 1 udp 2130706431 127.0.0.1 ${s.address().port} typ host`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv',
    `a=ssrc:${ssrc} cname:generator`, ''].join('\r\n'); // werift routes RTP by signalled SSRC
  s.on('message', (m) => {
    const b = m[0] ?? 0;
    if (b >= 20 && b <= 63) dtls?.receive(m);
  });
  return {
    sdp,
    wire(answer, port) {
      serverPort = port;
      const a = parseSdp(answer).media[0]!;
      const check = (): void => s.send(bindingRequest(`${a.iceUfrag}:${ufrag}`, a.icePwd ?? ''), port, '127.0.0.1');
      check();
      const t = setInterval(check, 2000); // consent freshness, as browsers do
      dtls = new DtlsAssociation(a.setup === 'active' ? 'server' : 'client', cert, a.fingerprints, (b) => s.send(b, serverPort, '127.0.0.1'), (r) => {
        if (r instanceof Error) throw r;
        pair = r;
        onReady();
      });
      s.once('close', () => clearInterval(t));
    },
    send(p) { if (pair !== undefined) s.send(pair.local.protectRtp(p), serverPort, '127.0.0.1'); },
    srtp: () => pair,
  };
}

function bindingRequest(username: string, pwd: string): Buffer {
  const attr = (type: number, v: Buffer): Buffer => {
    const a = Buffer.alloc(4 + v.length + ((4 - (v.length % 4)) % 4));
    a.writeUInt16BE(type, 0);
    a.writeUInt16BE(v.length, 2);
    v.copy(a, 4);
    return a;
  };
  const prio = Buffer.alloc(4);
  prio.writeUInt32BE(1853824767);
  const controlling = randomBytes(8);
  let body = Buffer.concat([attr(0x0006, Buffer.from(username)), attr(0x0024, prio), attr(0x802a, controlling), attr(0x0025, Buffer.alloc(0))]);
  const head = Buffer.alloc(20);
  head.writeUInt16BE(0x0001, 0);
  head.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(head, 8);
  head.writeUInt16BE(body.length + 24, 2);
  body = Buffer.concat([body, attr(0x0008, createHmac('sha1', pwd).update(head).update(body).digest())]);
  head.writeUInt16BE(body.length + 8, 2);
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE((crc32(Buffer.concat([head, body])) ^ 0x5354554e) >>> 0);
  return Buffer.concat([head, body, attr(0x8028, fp)]);
}

async function generator(): Promise<void> {
  const send = (m: ToParent): void => { process.send?.(m); };
  let senders: Array<(seq: number) => void> = [];
  let sent = 0;
  let received = 0;
  let counting = false;
  let timer: NodeJS.Timeout | undefined;
  const browsers = new Map<number, Awaited<ReturnType<typeof browserPeer>>>();
  const phones = new Map<number, Socket>();
  let readyLeft = 0;
  process.on('message', (m: ToChild) => void (async () => {
    if (m.t === 'setup') {
      const calls: Setup[] = [];
      const browser = m.mode === 'bridge' || m.mode === 'werift-pc';
      readyLeft = browser ? m.calls : 0;
      for (let id = 0; id < m.calls; id++) {
        const phone = await bound();
        const other = await bound();
        phones.set(id, phone);
        const count = (mm: Buffer): void => { if (counting && mm.length >= 12 && (mm[0]! & 0xc0) === 0x80 && ((mm[1]! & 0x7f) < 64 || (mm[1]! & 0x7f) > 95)) received++; };
        phone.on('message', count);
        let otherSdp = PCMU(other.address().port);
        if (browser) {
          const peer = await browserPeer(other, 0x1000 + id + 0x8000, () => { if (--readyLeft === 0) send({ t: 'ready' }); });
          browsers.set(id, peer);
          otherSdp = peer.sdp;
          other.on('message', (mm) => { if ((mm[0] ?? 0) >= 128 && peer.srtp()?.remote.unprotectRtp(mm) !== undefined) count(mm); });
        } else other.on('message', count);
        calls.push({ id, phoneSdp: PCMU(phone.address().port), otherSdp });
        phones.set(1_000_000 + id, other);
      }
      send({ t: 'offers', calls });
    } else if (m.t === 'wired') {
      for (const c of m.calls) {
        const phone = phones.get(c.id)!;
        const other = phones.get(1_000_000 + c.id)!;
        const peer = browsers.get(c.id);
        // the engine's m= port; werift writes port 9 there and the real one in its candidate
        const otherPort = Number(/^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/m.exec(c.toOtherSdp)?.[1] ?? /^m=audio (\d+)/m.exec(c.toOtherSdp)?.[1]);
        peer?.wire(c.toOtherSdp, otherPort);
        const ssrc = 0x1000 + c.id;
        senders.push((seq) => { phone.send(rtp(seq, ssrc), c.toPhonePort, '127.0.0.1'); });
        senders.push(peer !== undefined ? (seq) => peer.send(rtp(seq, ssrc + 0x8000)) : (seq) => { other.send(rtp(seq, ssrc + 0x8000), otherPort, '127.0.0.1'); });
      }
      if (readyLeft === 0) send({ t: 'ready' });
    } else if (m.t === 'start') {
      let seq = 0;
      counting = true;
      const cpu0 = process.cpuUsage();
      timer = setInterval(() => { seq++; for (const s of senders) { s(seq); sent++; } }, 20);
      process.once('message', () => {
        clearInterval(timer);
        setTimeout(() => { // the last packets in flight
          counting = false;
          const c = process.cpuUsage(cpu0);
          send({ t: 'counts', sent, received, cpuMs: (c.user + c.system) / 1000 });
          senders = [];
          for (const s of phones.values()) s.close();
          setTimeout(() => process.exit(0), 100);
        }, 200);
      });
    }
  })());
}

// ---------------------------------------------------------------- server side (this process)

interface Server { wire(c: Setup): Promise<Wired>; close(): Promise<void> }

async function dgramServer(): Promise<Server> {
  const socks: Socket[] = [];
  return {
    async wire(c) {
      const a = await bound();
      const b = await bound();
      socks.push(a, b);
      const phonePort = Number(/^m=audio (\d+)/m.exec(c.phoneSdp)?.[1]);
      const otherPort = Number(/^m=audio (\d+)/m.exec(c.otherSdp)?.[1]);
      a.on('message', (m) => b.send(m, otherPort, '127.0.0.1'));
      b.on('message', (m) => a.send(m, phonePort, '127.0.0.1'));
      return { id: c.id, toPhonePort: a.address().port, toOtherSdp: PCMU(b.address().port) };
    },
    async close() { for (const s of socks) s.close(); },
  };
}

function engineServer(bridge: boolean): Server {
  const engine = new EmbeddedMediaEngine({ rtpPorts: { min: 42000, max: 47999 }, advertiseAddress: '127.0.0.1', bindAddress: '127.0.0.1' });
  return {
    async wire(c) {
      const callId = `bench-${c.id}`;
      const toOther = await engine.offer({ callId, fromTag: 'phone', branch: 'b', sdp: c.phoneSdp, from: 'rtp', to: bridge ? 'webrtc' : 'rtp' });
      const toPhone = await engine.answer({ callId, fromTag: 'phone', toTag: 'other', branch: 'b', sdp: c.otherSdp, from: bridge ? 'webrtc' : 'rtp', to: 'rtp' });
      // toOther is the offer the browser would answer; here the generator's offer is used as
      // its answer (same ICE/DTLS parameters; setup actpass reads as "active").
      return { id: c.id, toPhonePort: Number(/^m=audio (\d+)/m.exec(toPhone)?.[1]), toOtherSdp: toOther };
    },
    close: () => engine.close(),
  };
}

async function weriftServer(): Promise<Server> {
  const w = await import('werift');
  const pcs: Array<{ close(): Promise<void> }> = [];
  const socks: Socket[] = [];
  return {
    async wire(c) {
      const phone = await bound();
      socks.push(phone);
      const phonePort = Number(/^m=audio (\d+)/m.exec(c.phoneSdp)?.[1]);
      const pc = new w.RTCPeerConnection({
        iceLite: true, iceUseIpv6: false, iceAdditionalHostAddresses: ['127.0.0.1'], iceInterfaceAddresses: { udp4: '127.0.0.1' },
        codecs: { audio: [new w.RTCRtpCodecParameters({ mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, payloadType: 0 })] }, headerExtensions: { audio: [] },
      });
      pcs.push(pc);
      pc.ontrack = ({ track }) => { track.onReceiveRtp.subscribe((p) => phone.send(p.serialize(), phonePort, '127.0.0.1')); };
      await pc.setRemoteDescription({ type: 'offer', sdp: c.otherSdp });
      pc.getTransceivers()[0]!.setDirection('sendrecv');
      await pc.setLocalDescription(await pc.createAnswer());
      const t0 = Date.now();
      while (pc.iceGatheringState !== 'complete' && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      const sender = pc.getTransceivers()[0]!.sender;
      phone.on('message', (m) => { void sender.sendRtp(m).catch(() => {}); });
      return { id: c.id, toPhonePort: phone.address().port, toOtherSdp: pc.localDescription!.sdp };
    },
    async close() { await Promise.all(pcs.map((p) => p.close())); for (const s of socks) s.close(); },
  };
}

async function run(mode: Mode, calls: number, seconds: number): Promise<Record<string, number | string>> {
  const child: ChildProcess = fork(import.meta.filename, ['--generator'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = (t: ToParent['t'], ms = 60_000): Promise<ToParent> => new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${mode}/${calls}: no "${t}" from the generator within ${ms} ms`)), ms);
    const on = (m: ToParent): void => { if (m.t === t) { clearTimeout(timer); child.off('message', on); res(m); } };
    child.on('message', on);
  });
  const server = mode === 'dgram' ? await dgramServer() : mode === 'werift-pc' ? await weriftServer() : engineServer(mode === 'bridge');
  try {
    const offers = next('offers');
    child.send({ t: 'setup', mode, calls } satisfies ToChild);
    const o = await offers as Extract<ToParent, { t: 'offers' }>;
    const wired: Wired[] = [];
    for (const c of o.calls) wired.push(await server.wire(c));
    const ready = next('ready', 120_000);
    child.send({ t: 'wired', calls: wired } satisfies ToChild);
    await ready;
    await new Promise((r) => setTimeout(r, 500));
    const countsP = next('counts', seconds * 1000 + 30_000);
    child.send({ t: 'start' } satisfies ToChild);
    await new Promise((r) => setTimeout(r, 1000)); // warm up
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - t0;
    child.send({ t: 'stop' } satisfies ToChild);
    const counts = await countsP as Extract<ToParent, { t: 'counts' }>;
    const cpuPct = ((cpu.user + cpu.system) / 1000 / wall) * 100;
    return {
      mode, calls, pps: Math.round((calls * 2 * 50)), cpuPct: round(cpuPct), cpuPctPerCall: round(cpuPct / calls, 3),
      usPerPacket: round(((cpu.user + cpu.system) / (wall / 1000)) / (calls * 100), 1),
      lossPct: round((1 - counts.received / counts.sent) * 100, 3), rssMB: round(process.memoryUsage().rss / 1e6, 1),
      generatorCpuPct: round((counts.cpuMs / (seconds * 1000 + 1200)) * 100),
    };
  } finally {
    await server.close();
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}

function round(x: number, d = 1): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

if (process.argv.includes('--generator')) await generator();
else {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '10,50,100' }, seconds: { type: 'string', default: '10' }, modes: { type: 'string', default: 'dgram,relay,bridge,werift-pc' } } });
  const out = process.env['OUT'] ?? `/tmp/careflow-bench/media-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  mkdirSync(out, { recursive: true });
  const results: Array<Record<string, number | string>> = [];
  for (const mode of values.modes.split(',') as Mode[]) {
    for (const calls of values.calls.split(',').map(Number)) {
      const r = await run(mode, calls, Number(values.seconds));
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
  writeFileSync(`${out}/results.json`, JSON.stringify(results, null, 2));
  console.log(`\nmode       calls  pps     cpu%   cpu%/call  µs/pkt  loss%   rssMB  gen cpu%\n${results.map((r) =>
    `${String(r['mode']).padEnd(10)} ${String(r['calls']).padStart(5)} ${String(r['pps']).padStart(6)} ${String(r['cpuPct']).padStart(6)} ${String(r['cpuPctPerCall']).padStart(10)} ${String(r['usPerPacket']).padStart(7)} ${String(r['lossPct']).padStart(6)} ${String(r['rssMB']).padStart(7)} ${String(r['generatorCpuPct']).padStart(9)}`).join('\n')}\n(results in ${out})`);
}
