// CPU per call of the embedded media engine, against a plain dgram relay (the floor), a
// bridge built on werift's RTCPeerConnection (iceLite) and Debian's rtpengine (userspace,
// `--table=-1`, driven through RtpEngineDriver), in the same run.
//
//   node_modules/.bin/node bench/embedded-media.ts [--calls 10,50,100] [--seconds 10]
//     [--modes dgram,relay,bridge,werift-pc,rtpengine-relay,rtpengine-bridge]
//
// This process is the media server (or, for the rtpengine-* modes, drives an rtpengine it
// starts per step, with the flags of test/interop/rtpengine.ts and a wider port window); a
// child process (this file with --generator) plays the devices: per call a "phone" (UDP, PCMU,
// 20 ms packets) on each side for dgram, relay and rtpengine-relay, or a phone and a "browser"
// (ICE, DTLS, SRTP with the engine's own building blocks) for bridge, werift-pc and
// rtpengine-bridge. Both sides send 50 packets/s for `seconds`. The server's CPU is
// process.cpuUsage() over that window, or for rtpengine utime+stime of its process (all
// threads) from /proc/<pid>/stat; loss is what the generator did not get back; jitter is the
// RFC 3550 §A.8 estimator over the packets the generator gets back (see `Jitter`).
// Results: a table on stdout and $OUT/results.json (default /tmp/careflow-bench/media-<date>).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import { createCertificate, DtlsAssociation, type SrtpPair } from '../src/media/embedded/dtls.ts';
import { EmbeddedMediaEngine } from '../src/media/embedded/embedded-engine.ts';
import { parseSdp } from '../src/media/embedded/sdp.ts';
import { RtpEngineDriver } from '../src/media/rtpengine.ts';

type Mode = 'dgram' | 'relay' | 'bridge' | 'werift-pc' | 'rtpengine-relay' | 'rtpengine-bridge';
const BROWSER_MODES: ReadonlySet<Mode> = new Set(['bridge', 'werift-pc', 'rtpengine-bridge']);
interface Setup { id: number; phoneSdp: string; otherSdp: string }
interface Wired { id: number; toPhonePort: number; toOtherSdp: string }
type ToChild = { t: 'setup'; mode: Mode; calls: number } | { t: 'wired'; calls: Wired[] } | { t: 'start' } | { t: 'stop' };
interface JitterSummary { streams: number; addedMs: number; addedMaxMs: number; rxMs: number; txMs: number; latencyMs: number }
type ToParent = { t: 'offers'; calls: Setup[] } | { t: 'ready' } | { t: 'counts'; sent: number; received: number; cpuMs: number; sendMs: number; jitter: JitterSummary };

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

/**
 * A browser as far as the server can tell: ICE, DTLS, SRTP. Toward an ICE-lite server (the
 * embedded engine, werift iceLite) it is the controlling agent and nominates with its checks;
 * toward a full ICE agent (rtpengine, the offerer) it is the controlled one, as a browser
 * answering is, and answers the server's checks. `setup` is what its SDP says: actpass when
 * its offer doubles as the answer (embedded, werift), active as a browser answers rtpengine.
 */
async function browserPeer(s: Socket, ssrc: number, setup: 'actpass' | 'active', onReady: () => void): Promise<{ sdp: string; wire(answer: string, port: number): void; send(p: Buffer): void; srtp(): SrtpPair | undefined }> {
  generatorCert ??= createCertificate(); // one for all the generator's browsers
  const cert = await generatorCert;
  const ufrag = randomBytes(3).toString('hex');
  const pwd = randomBytes(12).toString('hex');
  let pair: SrtpPair | undefined;
  let dtls: DtlsAssociation | undefined;
  let serverPort = 0;
  let answerChecks = false;
  // controlled: DTLS starts once ICE is connected (our check answered, the server nominated),
  // as a browser does
  let checked = false;
  let nominated = false;
  let iceConnected: (() => void) | undefined;
  const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', `m=audio ${s.address().port} UDP/TLS/RTP/SAVPF 0`, 'c=IN IP4 127.0.0.1',
    `a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, `a=fingerprint:sha-256 ${cert.fingerprint.value}`, `a=setup:${setup}`, 'a=mid:0', 'a=rtcp-mux',
    `a=candidate:1 1 udp 2130706431 127.0.0.1 ${s.address().port} typ host`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv',
    `a=ssrc:${ssrc} cname:generator`, ''].join('\r\n'); // werift routes RTP by signalled SSRC
  s.on('message', (m, from) => {
    const b = m[0] ?? 0;
    if (b >= 20 && b <= 63) dtls?.receive(m);
    else if (b < 2 && answerChecks && m.length >= 20) {
      const type = m.readUInt16BE(0);
      if (type === 0x0001) {
        s.send(bindingSuccess(m, from.address, from.port, pwd), from.port, from.address);
        if (stunHas(m, 0x0025)) nominated = true; // USE-CANDIDATE
      } else if (type === 0x0101) checked = true;
      if (checked && nominated) iceConnected?.();
    }
  });
  return {
    sdp,
    wire(answer, port) {
      serverPort = port;
      const a = parseSdp(answer).media[0]!;
      const controlling = /^a=ice-lite/m.test(answer);
      answerChecks = !controlling;
      const check = (): void => s.send(bindingRequest(`${a.iceUfrag}:${ufrag}`, a.icePwd ?? '', controlling), port, '127.0.0.1');
      check();
      const t = setInterval(check, 2000); // consent freshness, as browsers do
      // The records werift writes for one flight, one datagram (as BoringSSL packs a flight).
      // Sent one record per datagram, most handshakes with rtpengine stalled (it kept resending
      // flight 4, werift flight 5) unless rtpengine ran --num-threads=1: its worker threads
      // apparently read one socket's datagrams concurrently and reorder a flight.
      let flight: Buffer[] = [];
      const sendDtls = (b: Buffer): void => {
        flight.push(b);
        if (flight.length === 1) setImmediate(() => { const d = Buffer.concat(flight); flight = []; s.send(d, serverPort, '127.0.0.1'); });
      };
      const startDtls = (): void => {
        dtls ??= new DtlsAssociation(a.setup === 'active' ? 'server' : 'client', cert, a.fingerprints, sendDtls, (r) => {
          if (r instanceof Error) throw r;
          pair = r;
          onReady();
        });
      };
      if (controlling) startDtls(); // ICE-lite server: it answers the nominating check, no more to wait for
      else iceConnected = startDtls;
      s.once('close', () => clearInterval(t));
    },
    send(p) { if (pair !== undefined) s.send(pair.local.protectRtp(p), serverPort, '127.0.0.1'); },
    srtp: () => pair,
  };
}

function stunAttr(type: number, v: Buffer): Buffer {
  const a = Buffer.alloc(4 + v.length + ((4 - (v.length % 4)) % 4));
  a.writeUInt16BE(type, 0);
  a.writeUInt16BE(v.length, 2);
  v.copy(a, 4);
  return a;
}

/** A STUN message with MESSAGE-INTEGRITY (short-term credential `pwd`) and FINGERPRINT. */
function stunMessage(type: number, tid: Buffer, attrs: Buffer[], pwd: string): Buffer {
  let body = Buffer.concat(attrs);
  const head = Buffer.alloc(20);
  head.writeUInt16BE(type, 0);
  head.writeUInt32BE(0x2112a442, 4);
  tid.copy(head, 8);
  head.writeUInt16BE(body.length + 24, 2);
  body = Buffer.concat([body, stunAttr(0x0008, createHmac('sha1', pwd).update(head).update(body).digest())]);
  head.writeUInt16BE(body.length + 8, 2);
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE((crc32(Buffer.concat([head, body])) ^ 0x5354554e) >>> 0);
  return Buffer.concat([head, body, stunAttr(0x8028, fp)]);
}

function stunHas(m: Buffer, type: number): boolean {
  for (let o = 20; o + 4 <= m.length;) {
    if (m.readUInt16BE(o) === type) return true;
    o += 4 + Math.ceil(m.readUInt16BE(o + 2) / 4) * 4;
  }
  return false;
}

/** A connectivity check; the controlling agent nominates (USE-CANDIDATE) with every check. */
function bindingRequest(username: string, pwd: string, controlling: boolean): Buffer {
  const prio = Buffer.alloc(4);
  prio.writeUInt32BE(1853824767);
  const role = stunAttr(controlling ? 0x802a : 0x8029, randomBytes(8)); // ICE-CONTROLLING / ICE-CONTROLLED
  const attrs = [stunAttr(0x0006, Buffer.from(username)), stunAttr(0x0024, prio), role];
  if (controlling) attrs.push(stunAttr(0x0025, Buffer.alloc(0)));
  return stunMessage(0x0001, randomBytes(12), attrs, pwd);
}

/** The success response to a check from the server (RFC 8445 §7.3): XOR-MAPPED-ADDRESS, our password. */
function bindingSuccess(req: Buffer, address: string, port: number, pwd: string): Buffer {
  const xma = Buffer.alloc(8);
  xma[1] = 0x01; // IPv4
  xma.writeUInt16BE(port ^ 0x2112, 2);
  const ip = address.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
  xma.writeUInt32BE((ip ^ 0x2112a442) >>> 0, 4);
  return stunMessage(0x0101, req.subarray(8, 20), [stunAttr(0x0020, xma)], pwd);
}

/**
 * RFC 3550 §A.8 interarrival jitter of one stream, J += (|D| − J) / 16, D the change of
 * "transit" between consecutive packets, in ms. What the transit is makes three measures:
 *   rx     arrival time − RTP timestamp: what the receiving phone would report in RTCP (it
 *          includes the sender's own timer jitter);
 *   tx     send time − RTP timestamp: that sender's own timer jitter (the generator's);
 *   added  arrival time − send time of the same packet (one clock, one machine): what the
 *          path through the server added, the sender's jitter cancelled.
 * `mean` is J averaged over every packet of the window (the final J is a ~16-packet snapshot).
 */
class Jitter {
  #last: number | undefined;
  #j = 0;
  #sum = 0;
  n = 0;
  max = 0;
  add(transitMs: number): void {
    if (this.#last !== undefined) {
      this.#j += (Math.abs(transitMs - this.#last) - this.#j) / 16;
      this.#sum += this.#j;
      this.n++;
      if (this.#j > this.max) this.max = this.#j;
    }
    this.#last = transitMs;
  }
  get mean(): number { return this.n > 0 ? this.#sum / this.n : 0; }
}

function meanOf(xs: number[]): number {
  return xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
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
  // per SSRC: when each sequence number left (performance.now() ms), and that sender's jitter
  const sendTimes = new Map<number, number[]>();
  const txJitter: Jitter[] = [];
  const rxJitter: Jitter[] = [];
  const addedJitter: Jitter[] = [];
  let transitSum = 0;
  let transitN = 0;
  const stamp = (ssrc: number, seq: number, j: Jitter): void => {
    const t = performance.now();
    let times = sendTimes.get(ssrc);
    if (times === undefined) sendTimes.set(ssrc, times = []);
    times[seq] = t;
    j.add(t - seq * 20); // RTP timestamp seq·160 at 8 kHz = seq·20 ms
  };
  process.on('disconnect', () => process.exit(0)); // never outlive the bench
  process.on('message', (m: ToChild) => void (async () => {
    if (m.t === 'setup') {
      const calls: Setup[] = [];
      const browser = BROWSER_MODES.has(m.mode);
      readyLeft = browser ? m.calls : 0;
      for (let id = 0; id < m.calls; id++) {
        const phone = await bound();
        const other = await bound();
        phones.set(id, phone);
        const counter = (): ((mm: Buffer) => void) => {
          const rx = new Jitter();
          const added = new Jitter();
          rxJitter.push(rx);
          addedJitter.push(added);
          return (mm) => {
            if (!counting || mm.length < 12 || (mm[0]! & 0xc0) !== 0x80 || ((mm[1]! & 0x7f) >= 64 && (mm[1]! & 0x7f) <= 95)) return;
            const now = performance.now();
            received++;
            rx.add(now - mm.readUInt32BE(4) / 8);
            const sentAt = sendTimes.get(mm.readUInt32BE(8))?.[mm.readUInt16BE(2)];
            if (sentAt !== undefined) {
              added.add(now - sentAt);
              transitSum += now - sentAt;
              transitN++;
            }
          };
        };
        phone.on('message', counter());
        const count = counter();
        let otherSdp = PCMU(other.address().port);
        if (browser) {
          const peer = await browserPeer(other, 0x1000 + id + 0x8000, m.mode === 'rtpengine-bridge' ? 'active' : 'actpass', () => { if (--readyLeft === 0) send({ t: 'ready' }); });
          browsers.set(id, peer);
          otherSdp = peer.sdp;
          other.on('message', (mm) => { if ((mm[0] ?? 0) >= 128 && peer.srtp()?.remote.unprotectRtp(mm) !== undefined) count(mm); });
        } else other.on('message', count);
        calls.push({ id, phoneSdp: PCMU(phone.address().port), otherSdp });
        phones.set(1_000_000 + id, other);
      }
      send({ t: 'offers', calls });
    } else if (m.t === 'wired') {
      for (const [i, c] of m.calls.entries()) {
        const phone = phones.get(c.id)!;
        const other = phones.get(1_000_000 + c.id)!;
        const peer = browsers.get(c.id);
        // the engine's m= port; werift writes port 9 there and the real one in its candidate
        const otherPort = Number(/^a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/m.exec(c.toOtherSdp)?.[1] ?? /^m=audio (\d+)/m.exec(c.toOtherSdp)?.[1]);
        // calls start 5 ms apart, not 200 DTLS handshakes in the same millisecond
        if (peer !== undefined) setTimeout(() => peer.wire(c.toOtherSdp, otherPort), 5 * i);
        const ssrc = 0x1000 + c.id;
        const tx1 = new Jitter();
        const tx2 = new Jitter();
        txJitter.push(tx1, tx2);
        senders.push((seq) => { stamp(ssrc, seq, tx1); phone.send(rtp(seq, ssrc), c.toPhonePort, '127.0.0.1'); });
        senders.push(peer !== undefined
          ? (seq) => { stamp(ssrc + 0x8000, seq, tx2); peer.send(rtp(seq, ssrc + 0x8000)); }
          : (seq) => { stamp(ssrc + 0x8000, seq, tx2); other.send(rtp(seq, ssrc + 0x8000), otherPort, '127.0.0.1'); });
      }
      if (readyLeft === 0) send({ t: 'ready' });
    } else if (m.t === 'start') {
      let seq = 0;
      counting = true;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      timer = setInterval(() => { seq++; for (const s of senders) { s(seq); sent++; } }, 20);
      process.once('message', () => {
        clearInterval(timer);
        const sendMs = performance.now() - t0;
        setTimeout(() => { // the last packets in flight
          counting = false;
          const c = process.cpuUsage(cpu0);
          const got = (js: Jitter[]): Jitter[] => js.filter((j) => j.n > 0);
          const jitter: JitterSummary = {
            streams: got(addedJitter).length,
            addedMs: meanOf(got(addedJitter).map((j) => j.mean)), addedMaxMs: Math.max(0, ...got(addedJitter).map((j) => j.max)),
            rxMs: meanOf(got(rxJitter).map((j) => j.mean)), txMs: meanOf(got(txJitter).map((j) => j.mean)),
            latencyMs: transitN > 0 ? transitSum / transitN : 0,
          };
          send({ t: 'counts', sent, received, cpuMs: (c.user + c.system) / 1000, sendMs, jitter });
          senders = [];
          for (const s of phones.values()) s.close();
          setTimeout(() => process.exit(0), 100);
        }, 200);
      });
    }
  })());
}

// ---------------------------------------------------------------- server side (this process)

/** `pid`: the media runs in that process (rtpengine), not in this one. */
interface Server { wire(c: Setup): Promise<Wired>; close(): Promise<void>; pid?: number }

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

// rtpengine as test/interop/rtpengine.ts starts it (userspace forwarding, loopback), with a
// 4000-port window instead of 200 (a relayed call takes 4 ports: RTP and RTCP per side), away
// from the tests' (30000-38199), the embedded engine's here (42000-47999) and the ephemeral
// ports the generator binds (32768-60999).
const RTPENGINE_PORTS = { min: 20000, max: 23999 };
const rtpengines = new Set<number>();
process.on('exit', () => { for (const pid of rtpengines) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

async function rtpengineServer(bridge: boolean, log: string): Promise<Server & { pid: number }> {
  const probe = await bound();
  const ngPort = probe.address().port;
  probe.close();
  const dir = mkdtempSync(join(tmpdir(), 'careflow-bench-rtpengine-'));
  const child = spawn('/usr/bin/rtpengine', [
    '--config-file=none', '--foreground', '--log-stderr', '--log-level=6', '--no-log-timestamps', '--table=-1',
    '--interface=127.0.0.1', `--listen-ng=127.0.0.1:${ngPort}`, `--port-min=${RTPENGINE_PORTS.min}`, `--port-max=${RTPENGINE_PORTS.max}`,
    `--pidfile=${join(dir, 'rtpengine.pid')}`, '--timeout=60', '--delete-delay=0',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const append = (d: string): void => { output = (output + d).slice(-100_000); };
  child.stdout!.setEncoding('utf8').on('data', append);
  child.stderr!.setEncoding('utf8').on('data', append);
  const pid = child.pid;
  if (pid === undefined) throw new Error('rtpengine did not start');
  rtpengines.add(pid);
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((res) => child.on('exit', (code) => { exitCode = code; rtpengines.delete(pid); rmSync(dir, { recursive: true, force: true }); res(); }));
  const stop = async (): Promise<void> => {
    if (exitCode !== undefined) return;
    try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
    const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await exited;
    clearTimeout(t);
  };
  const deadline = Date.now() + 10_000;
  while (!/Startup complete/i.test(output)) {
    if (exitCode !== undefined || Date.now() > deadline) {
      await stop();
      throw new Error(`rtpengine did not start (exit ${exitCode}):\n${output.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const engine = new RtpEngineDriver({ instances: [{ host: '127.0.0.1', port: ngPort }], timeoutMs: 5000 });
  const callIds: string[] = [];
  return {
    pid,
    async wire(c) {
      const callId = `bench-${c.id}-${randomBytes(4).toString('hex')}`;
      callIds.push(callId);
      const toOther = await engine.offer({ callId, fromTag: 'phone', branch: 'b', sdp: c.phoneSdp, from: 'rtp', to: bridge ? 'webrtc' : 'rtp' });
      const toPhone = await engine.answer({ callId, fromTag: 'phone', toTag: 'other', branch: 'b', sdp: c.otherSdp, from: bridge ? 'webrtc' : 'rtp', to: 'rtp' });
      return { id: c.id, toPhonePort: Number(/^m=audio (\d+)/m.exec(toPhone)?.[1]), toOtherSdp: toOther };
    },
    async close() {
      try {
        if (exitCode === undefined) for (const id of callIds) await engine.delete(id).catch(() => {});
        await engine.close();
      } finally {
        await stop();
        writeFileSync(log, output); // the last 100 kB
      }
    },
  };
}

/** utime + stime of a process (all its threads) and of its busiest thread, in ms. */
function procCpu(pid: number): { ms: number; threads: Map<string, number> } {
  const hz = 100; // USER_HZ (`getconf CLK_TCK`), 100 on Linux
  const ticks = (stat: string): number => {
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return Number(f[11]) + Number(f[12]); // fields 14 utime, 15 stime
  };
  const threads = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try { threads.set(tid, (ticks(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')) * 1000) / hz); } catch { /* ended */ }
  }
  return { ms: (ticks(readFileSync(`/proc/${pid}/stat`, 'utf8')) * 1000) / hz, threads };
}

/** CPU time the whole machine spent busy (all cores, /proc/stat), in ms. */
function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f; // idle and iowait are not busy
  return ((user + nice + system + irq + softirq + steal) * 1000) / 100;
}

function procRssMB(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return kb / 1000;
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

async function run(mode: Mode, calls: number, seconds: number, out: string): Promise<Record<string, number | string>> {
  const child: ChildProcess = fork(import.meta.filename, ['--generator'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = (t: ToParent['t'], ms = 60_000): Promise<ToParent> => new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${mode}/${calls}: no "${t}" from the generator within ${ms} ms`)), ms);
    const exit = (code: number | null): void => { clearTimeout(timer); rej(new Error(`${mode}/${calls}: the generator exited (${code}) before "${t}"`)); };
    const on = (m: ToParent): void => { if (m.t === t) { clearTimeout(timer); child.off('message', on); child.off('exit', exit); res(m); } };
    child.on('message', on);
    child.once('exit', exit);
  });
  let server: Server | undefined;
  try {
    server = mode === 'dgram' ? await dgramServer() : mode === 'werift-pc' ? await weriftServer()
      : mode === 'rtpengine-relay' || mode === 'rtpengine-bridge' ? await rtpengineServer(mode === 'rtpengine-bridge', `${out}/${mode}-${calls}.log`) : engineServer(mode === 'bridge');
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
    const pid = server.pid;
    const at = new Date().toISOString();
    const m0 = machineBusyMs();
    const g0 = procCpu(child.pid!).ms;
    const cpu0 = process.cpuUsage();
    const p0 = pid !== undefined ? procCpu(pid) : undefined;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(cpu0);
    const p1 = pid !== undefined ? procCpu(pid) : undefined;
    const g1 = procCpu(child.pid!).ms;
    const m1 = machineBusyMs();
    const wall = performance.now() - t0;
    // what the rest of the machine (other sessions) used meanwhile, in % of one core
    const otherCpuPct = ((m1 - m0) - (g1 - g0) - (cpu.user + cpu.system) / 1000 - (p0 !== undefined && p1 !== undefined ? p1.ms - p0.ms : 0)) / wall * 100;
    const rssMB = pid !== undefined ? procRssMB(pid) : process.memoryUsage().rss / 1e6;
    child.send({ t: 'stop' } satisfies ToChild);
    const counts = await countsP as Extract<ToParent, { t: 'counts' }>;
    // the media's CPU: this process's, or rtpengine's (every thread; may exceed one core)
    const cpuMs = p0 !== undefined && p1 !== undefined ? p1.ms - p0.ms : (cpu.user + cpu.system) / 1000;
    const cpuPct = (cpuMs / wall) * 100;
    const extra: Record<string, number> = {};
    if (p0 !== undefined && p1 !== undefined) {
      const perThread = [...p1.threads].map(([tid, ms]) => ms - (p0.threads.get(tid) ?? 0));
      extra['threads'] = p1.threads.size;
      extra['busiestThreadCpuPct'] = round((Math.max(0, ...perThread) / wall) * 100);
      extra['busyThreads'] = perThread.filter((ms) => ms / wall >= 0.01).length; // ≥ 1 % of a core
      extra['benchCpuPct'] = round(((cpu.user + cpu.system) / 1000 / wall) * 100); // this process, only signalling
    }
    return {
      mode, calls, pps: Math.round((calls * 2 * 50)), txPps: Math.round(counts.sent / (counts.sendMs / 1000)), rxPps: Math.round(counts.received / (counts.sendMs / 1000)),
      cpuPct: round(cpuPct), cpuPctPerCall: round(cpuPct / calls, 3),
      usPerPacket: round((cpuMs * 1000 / (wall / 1000)) / (calls * 100), 1),
      lossPct: round((1 - counts.received / counts.sent) * 100, 3),
      jitterAddedMs: round(counts.jitter.addedMs, 3), jitterAddedMaxMs: round(counts.jitter.addedMaxMs, 2),
      jitterRxMs: round(counts.jitter.rxMs, 3), jitterTxMs: round(counts.jitter.txMs, 3), latencyMs: round(counts.jitter.latencyMs, 2),
      jitterStreams: counts.jitter.streams,
      rssMB: round(rssMB, 1),
      generatorCpuPct: round((counts.cpuMs / (seconds * 1000 + 1200)) * 100),
      otherCpuPct: round(otherCpuPct), at,
      ...extra,
    };
  } finally {
    await server?.close();
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}

function round(x: number, d = 1): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

if (process.argv.includes('--generator')) await generator();
else {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '10,50,100' }, seconds: { type: 'string', default: '10' }, modes: { type: 'string', default: 'dgram,relay,bridge,werift-pc,rtpengine-relay,rtpengine-bridge' } } });
  const out = process.env['OUT'] ?? `/tmp/careflow-bench/media-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  mkdirSync(out, { recursive: true });
  const results: Array<Record<string, number | string>> = [];
  for (const mode of values.modes.split(',') as Mode[]) {
    for (const calls of values.calls.split(',').map(Number)) {
      const r = await run(mode, calls, Number(values.seconds), out);
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
  writeFileSync(`${out}/results.json`, JSON.stringify(results, null, 2));
  const cols: Array<[string, string, number]> = [['mode', 'mode', -16], ['calls', 'calls', 5], ['pps', 'pps', 6], ['txPps', 'tx pps', 6], ['rxPps', 'rx pps', 6], ['cpuPct', 'cpu%', 6],
    ['cpuPctPerCall', 'cpu%/call', 9], ['usPerPacket', 'µs/pkt', 6], ['lossPct', 'loss%', 6], ['jitterAddedMs', 'jit+ ms', 7], ['jitterAddedMaxMs', 'max', 5],
    ['jitterRxMs', 'rx jit', 6], ['jitterTxMs', 'tx jit', 6], ['latencyMs', 'lat ms', 6], ['rssMB', 'rssMB', 6], ['generatorCpuPct', 'gen cpu%', 8], ['otherCpuPct', 'other%', 6],
    ['busiestThreadCpuPct', 'top thr%', 8]];
  const row = (f: (c: [string, string, number]) => string): string => cols.map((c) => (c[2] < 0 ? f(c).padEnd(-c[2]) : f(c).padStart(c[2]))).join(' ');
  console.log(`\n${row((c) => c[1])}\n${results.map((r) => row((c) => String(r[c[0]] ?? '–'))).join('\n')}\n(results in ${out})`);
}
