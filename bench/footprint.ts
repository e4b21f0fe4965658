/**
 * Footprint of the whole embedded stack (issue 5): the server as production runs it, idle, with
 * 1,000 registered devices, and with 50 bridged calls carrying audio through the embedded engine.
 *
 *   npm run build     # the server under test is dist/ (the JavaScript build), as in production
 *   node_modules/.bin/node bench/footprint.ts [--mode small|fast] [--devices 1000] [--calls 50]
 *       [--settle 30] [--idle 60] [--media 60] [--max-load 1.5] [--load-wait 600] [--out DIR]
 *
 * 1. Waits (at most --load-wait s) for the 1-min load average to fall below --max-load, imports
 *    --devices users into a fresh data dir (`node dist/cli/main.js user import FILE.csv --json`),
 *    starts `node dist/cli/main.js serve` with CAREFLOW_MEMORY_MODE=--mode, the default (embedded)
 *    media engine, SIP and HTTP on free 127.0.0.1 ports, RTP ports 26000-27999, log level info.
 * 2. idle: RSS (/proc/PID/status VmRSS) after --settle s; CPU (utime+stime, /proc/PID/stat) over --idle s.
 * 3. devices: each is its own UDP socket on 127.0.0.1 (distinct ports, Contact = that address):
 *    REGISTER, 401, REGISTER with MD5 digest, Expires 3600 (granted 3600, longer than the run:
 *    no refresh is due); then --settle s, RSS, and CPU over --idle s.
 * 4. calls, BRIDGED: device N+calls calls device N (N < calls). The caller's INVITE (UDP, 407 +
 *    digest) offers a browser's SDP (UDP/TLS/RTP/SAVPF, ICE, fingerprint, actpass); its "browser"
 *    socket sends ICE checks with USE-CANDIDATE (every 2 s, consent), does DTLS (werift, through
 *    src/media/embedded/dtls.ts) and SRTP; the callee answers plain RTP. Both send G.711 (172-byte
 *    packets, 50/s); after 2 s of warm-up --media s are measured: server CPU, RSS every s (peak;
 *    steady = mean of the last half), VmHWM, loss per direction (sent vs received, SRTP
 *    authenticated). Then BYE; the call log must say "bridge" for every call.
 * Prints a table, writes results.json + server.log to --out; the server is always stopped by its
 * PID (SIGTERM, SIGKILL after 15 s), also on failure or Ctrl-C, and the data dir removed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import { createCertificate, DtlsAssociation, type SrtpPair } from '../src/media/embedded/dtls.ts';
import { parseSdp } from '../src/media/embedded/sdp.ts';

const ROOT = resolve(import.meta.dirname, '..');
const str = (d: string): { type: 'string'; default: string } => ({ type: 'string', default: d });
const { values: opt } = parseArgs({ options: { mode: str('small'), devices: str('1000'), calls: str('50'), settle: str('30'), idle: str('60'), media: str('60'),
  'max-load': str('1.5'), 'load-wait': str('600'), out: str('') } });
const [DEVICES, CALLS, SETTLE, IDLE, MEDIA] = [opt.devices, opt.calls, opt.settle, opt.idle, opt.media].map(Number) as [number, number, number, number, number];
if (opt.mode !== 'small' && opt.mode !== 'fast') throw new Error('--mode: small or fast');
if (!(CALLS * 2 <= DEVICES)) throw new Error('--calls: at most half of --devices (callers and callees are devices)');
const OUT = resolve(opt.out || `/tmp/careflow-bench/footprint-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${opt.mode}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const rnd = (n: number): string => randomBytes(n).toString('hex');
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const log = (s: string): void => console.error(`[footprint ${new Date().toISOString().slice(11, 19)}] ${s}`);
const r1 = (x: number): number => Math.round(x * 10) / 10;

// ---------------------------------------------------------------- process, /proc, cleanup
let [server, dataDir]: [ChildProcess | undefined, string] = [undefined, ''];
const [sockets, timers] = [[] as Socket[], new Set<NodeJS.Timeout>()];
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const cpuMs = (pid: number): number => ((f) => ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK)( // utime + stime (fields 14, 15)
  readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '));
const memMiB = (pid: number, field: 'VmRSS' | 'VmHWM'): number =>
  r1(Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024);
/** Busy and steal jiffies of all CPUs: how busy the rest of the machine was. */
const machine = (): { busy: number; steal: number } => ((f) => ({ busy: f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!, steal: f[7]! }))(
  readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number));
async function cleanup(): Promise<void> {
  for (const t of timers) clearInterval(t);
  for (const s of sockets.splice(0)) try { s.close(); } catch { /* closed */ }
  const child = server;
  server = undefined;
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    log(`stopping server pid ${child.pid}`);
    const exited = new Promise<boolean>((r) => child.once('exit', () => r(true)));
    process.kill(child.pid, 'SIGTERM');
    if (!(await Promise.race([exited, new Promise<boolean>((r) => setTimeout(() => r(false), 15_000).unref())]))) process.kill(child.pid, 'SIGKILL');
  }
  if (dataDir !== '') rmSync(dataDir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));

const bound = (): Promise<Socket> => new Promise((r) => { const s = createSocket('udp4'); sockets.push(s); s.bind(0, '127.0.0.1', () => r(s)); });

// ---------------------------------------------------------------- a SIP device (one UDP socket)
interface Msg { status: number; method: string; raw: Array<[string, string]>; body: string; get(n: string): string | undefined; all(n: string): string[] }
function parse(b: Buffer): Msg | undefined {
  const text = b.toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [first = '', ...lines] = text.slice(0, end).split('\r\n');
  const raw = lines.map((l): [string, string] => [l.slice(0, l.indexOf(':')).trim(), l.slice(l.indexOf(':') + 1).trim()]);
  const all = (n: string): string[] => raw.filter(([k]) => k.toLowerCase() === n).flatMap(([, v]) => v.split(/,(?=\s*<)/).map((x) => x.trim()));
  return { status: Number(/^SIP\/2\.0 (\d{3})/.exec(first)?.[1] ?? 0), method: /^(\w+) /.exec(first)?.[1] ?? '', raw, body: text.slice(end + 4), get: (n) => all(n)[0], all };
}
const param = (ch: string, name: string): string | undefined => {
  const m = new RegExp(`(?:^|[\\s,])${name}\\s*=\\s*(?:"([^"]*)"|([^\\s,]+))`, 'i').exec(ch.replace(/^Digest\s+/i, ' '));
  return m ? (m[1] ?? m[2]) : undefined;
};
function digest(ch: string | undefined, method: string, uri: string, d: Device): string {
  if (ch === undefined || (param(ch, 'algorithm') ?? 'MD5').toUpperCase() !== 'MD5') throw new Error(`no MD5 challenge: ${ch}`);
  const [realm, nonce, opaque, cnonce] = [param(ch, 'realm') ?? '', param(ch, 'nonce') ?? '', param(ch, 'opaque'), rnd(8)];
  const response = md5(`${md5(`${d.user}:${realm}:${d.password}`)}:${nonce}:00000001:${cnonce}:auth:${md5(`${method}:${uri}`)}`);
  return `Digest username="${d.user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, cnonce="${cnonce}", nc=00000001${opaque !== undefined ? `, opaque="${opaque}"` : ''}`;
}

let [SIP_PORT, httpPort] = [0, 0];
/** A loopback port free for TCP and UDP (SIP listens on both). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((ok, fail) => { const s = createServer().once('error', fail).listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => ok(p)); }); });
    if (await new Promise<boolean>((ok) => { const u = createSocket('udp4').once('error', () => ok(false)); u.bind(port, '127.0.0.1', () => u.close(() => ok(true))); })) return port;
  }
}
class Device {
  readonly pending = new Map<string, (m: Msg) => void>();
  onInvite: ((m: Msg) => void) | undefined;
  onAck: (() => void) | undefined;
  readonly sock: Socket;
  readonly user: string;
  readonly password: string;
  constructor(sock: Socket, user: string, password: string) {
    [this.sock, this.user, this.password] = [sock, user, password];
    sock.on('message', (b, from) => {
      const m = parse(b);
      if (m === undefined) return;
      if (m.status > 0) this.pending.get(/branch=([^;,\s]+)/.exec(m.get('via') ?? '')?.[1] ?? '')?.(m);
      else if (m.method === 'INVITE') this.onInvite?.(m);
      else if (m.method === 'ACK') this.onAck?.();
      else this.reply(m, '200 OK', [], '', from.port); // OPTIONS, BYE, NOTIFY...
    });
  }
  get port(): number { return this.sock.address().port; }
  get contact(): string { return `<sip:${this.user}@127.0.0.1:${this.port}>`; }
  send(text: string, port = SIP_PORT): void { this.sock.send(text, port, '127.0.0.1'); }
  /** Sends a request (retransmitted every 500 ms until a response) and resolves with its final response. */
  request(method: string, uri: string, h: { callId: string; cseq: number; tag: string; to: string; extra?: string[]; body?: string }): Promise<Msg> {
    const branch = `z9hG4bK${rnd(8)}`;
    const text = [`${method} ${uri} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${this.port};branch=${branch};rport`, 'Max-Forwards: 70',
      `From: <sip:${this.user}@127.0.0.1>;tag=${h.tag}`, `To: ${h.to}`, `Call-ID: ${h.callId}`, `CSeq: ${h.cseq} ${method}`, `Contact: ${this.contact}`,
      ...(h.extra ?? []), 'User-Agent: careflow footprint bench', `Content-Length: ${Buffer.byteLength(h.body ?? '')}`, '', h.body ?? ''].join('\r\n');
    return new Promise((ok, fail) => {
      const t = setInterval(() => this.send(text), 500);
      const late = setTimeout(() => { clearInterval(t); this.pending.delete(branch); fail(new Error(`${method}: no final response in 10 s`)); }, 10_000);
      this.pending.set(branch, (m) => {
        clearInterval(t);
        if (m.status < 200) return;
        clearTimeout(late);
        this.pending.delete(branch);
        ok(m);
      });
      this.send(text);
    });
  }
  reply(req: Msg, status: string, extra: string[], body: string, port: number): string {
    const text = [`SIP/2.0 ${status}`, ...req.raw.filter(([k]) => /^(via|record-route|from|call-id|cseq)$/i.test(k)).map(([k, v]) => `${k}: ${v}`),
      `To: ${req.get('to')}${/;tag=/.test(req.get('to') ?? '') ? '' : `;tag=${rnd(4)}`}`, ...extra, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n');
    this.send(text, port);
    return text;
  }
}

async function register(d: Device): Promise<number> {
  const h = { callId: rnd(8), tag: rnd(4), to: `<sip:${d.user}@127.0.0.1>` };
  const a = await d.request('REGISTER', 'sip:127.0.0.1', { ...h, cseq: 1, extra: ['Expires: 3600'] });
  if (a.status !== 401) throw new Error(`REGISTER -> ${a.status}`);
  const b = await d.request('REGISTER', 'sip:127.0.0.1', { ...h, cseq: 2, extra: ['Expires: 3600', `Authorization: ${digest(a.get('www-authenticate'), 'REGISTER', 'sip:127.0.0.1', d)}`] });
  if (b.status !== 200) throw new Error(`authenticated REGISTER -> ${b.status}`);
  return Number(/expires=(\d+)/.exec(b.get('contact') ?? '')?.[1] ?? b.get('expires') ?? NaN);
}

// ---------------------------------------------------------------- media: RTP, STUN, the browser
/** G.711 PCMU, 20 ms: a 12-byte header (PT 0), 160 bytes of silence. */
function rtp(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(172, 0xd5);
  b.writeUInt32BE((0x8000 << 16 | (seq & 0xffff)) >>> 0, 0);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}
const attr = (type: number, v: Buffer): Buffer => Buffer.concat([Buffer.from([type >> 8, type & 255, v.length >> 8, v.length & 255]), v, Buffer.alloc((4 - (v.length % 4)) % 4)]);
/** A connectivity check of the controlling agent, nominating (RFC 8445 §7.2.2), signed with the engine's ice-pwd. */
function iceCheck(username: string, pwd: string): Buffer {
  // USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE
  let body = Buffer.concat([attr(0x0006, Buffer.from(username)), attr(0x0024, Buffer.from([0x6e, 0x7f, 0x1e, 0xff])), attr(0x802a, randomBytes(8)), attr(0x0025, Buffer.alloc(0))]);
  const head = Buffer.concat([Buffer.from('000100002112a442', 'hex'), randomBytes(12)]); // Binding request, magic cookie, transaction
  head.writeUInt16BE(body.length + 24, 2);
  body = Buffer.concat([body, attr(0x0008, createHmac('sha1', pwd).update(head).update(body).digest())]);
  head.writeUInt16BE(body.length + 8, 2);
  const fp = Buffer.alloc(4);
  fp.writeUInt32BE((crc32(Buffer.concat([head, body])) ^ 0x5354554e) >>> 0);
  return Buffer.concat([head, body, attr(0x8028, fp)]);
}

interface Call { phone: Socket; toEngineFromPhone: number; browser: Socket; toEngineFromBrowser: number; srtp: SrtpPair; bye(): Promise<number> }
let counting = { from: Infinity, to: Infinity };
const rx = { toPhone: 0, toBrowser: 0 };
const inWindow = (b: Buffer): boolean => b.length >= 12 && b[0]! >= 128 && ((b[1]! & 0x7f) < 64 || (b[1]! & 0x7f) > 95) && b.readUInt16BE(2) >= counting.from && b.readUInt16BE(2) <= counting.to;

/** One bridged call: device `caller` (a browser's SDP) calls device `callee` (plain RTP). */
async function bridgedCall(caller: Device, callee: Device, i: number, cert: Awaited<ReturnType<typeof createCertificate>>): Promise<Call> {
  const [phone, browser] = [await bound(), await bound()];
  const offerToPhone = new Promise<Msg>((ok) => {
    callee.onInvite = (m) => {
      const sdp = ['v=0', 'o=phone 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio ${phone.address().port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=ptime:20', 'a=sendrecv', ''].join('\r\n');
      const ok200 = callee.reply(m, '200 OK', [`Contact: ${callee.contact}`, 'Content-Type: application/sdp'], sdp, SIP_PORT);
      const again = setInterval(() => callee.send(ok200), 500); // until the ACK (loopback: rarely needed), at most 4 s
      timers.add(again);
      setTimeout(callee.onAck = () => clearInterval(again), 4000);
      callee.onInvite = () => callee.send(ok200);
      ok(m);
    };
  });
  const [ufrag, pwd] = [rnd(3), rnd(12)];
  const offer = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', `m=audio ${browser.address().port} UDP/TLS/RTP/SAVPF 0`, 'c=IN IP4 127.0.0.1',
    `a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, `a=fingerprint:sha-256 ${cert.fingerprint.value}`, 'a=setup:actpass', 'a=mid:0', 'a=rtcp-mux',
    `a=candidate:1 1 udp 2130706431 127.0.0.1 ${browser.address().port} typ host`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
  const uri = `sip:${callee.user}@127.0.0.1`;
  const h = { callId: rnd(10), tag: rnd(4), to: `<${uri}>` };
  const invite = (cseq: number, auth: string[]): Promise<Msg> => caller.request('INVITE', uri, { ...h, cseq, extra: [...auth, 'Content-Type: application/sdp'], body: offer });
  const c1 = await invite(1, []);
  if (c1.status !== 407) throw new Error(`INVITE -> ${c1.status}`);
  caller.send([`ACK ${uri} SIP/2.0`, `Via: ${c1.get('via')}`, 'Max-Forwards: 70', `From: ${c1.get('from')}`, `To: ${c1.get('to')}`, `Call-ID: ${h.callId}`, 'CSeq: 1 ACK', 'Content-Length: 0', '', ''].join('\r\n'));
  const c2 = await invite(2, [`Proxy-Authorization: ${digest(c1.get('proxy-authenticate'), 'INVITE', uri, caller)}`]);
  if (c2.status !== 200) throw new Error(`authenticated INVITE -> ${c2.status}`);
  const routes = c2.all('record-route').reverse();
  const target = /<([^>]+)>/.exec(c2.get('contact') ?? '')?.[1] ?? uri;
  caller.send([`ACK ${target} SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${caller.port};branch=z9hG4bK${rnd(8)};rport`, 'Max-Forwards: 70', ...routes.map((r) => `Route: ${r}`),
    `From: ${c2.get('from')}`, `To: ${c2.get('to')}`, `Call-ID: ${h.callId}`, 'CSeq: 2 ACK', 'Content-Length: 0', '', ''].join('\r\n')); // the server record-routes every dialog
  const toPhone = parseSdp((await offerToPhone).body).media[0]!;
  const answer = parseSdp(c2.body).media[0]!;
  const port = Number(/^a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host/m.exec(c2.body)?.[1] ?? answer.port);
  const check = (): void => { browser.send(iceCheck(`${answer.iceUfrag}:${ufrag}`, answer.icePwd ?? ''), port, '127.0.0.1'); };
  check();
  timers.add(setInterval(check, 2000)); // consent freshness, as browsers do
  const srtp = await new Promise<SrtpPair>((ok, fail) => {
    let flight: Buffer[] = []; // one datagram per flight, as browsers send
    const dtls = new DtlsAssociation(answer.setup === 'active' ? 'server' : 'client', cert, answer.fingerprints, (b) => {
      if (flight.push(b) === 1) setImmediate(() => { browser.send(Buffer.concat(flight), port, '127.0.0.1'); flight = []; });
    }, (r) => (r instanceof Error ? fail(r) : ok(r)));
    browser.on('message', (b) => { if (b[0]! >= 20 && b[0]! <= 63) dtls.receive(b); });
    setTimeout(() => fail(new Error(`call ${i}: no DTLS-SRTP in 20 s`)), 20_000).unref();
  });
  browser.on('message', (b) => { if (inWindow(b) && srtp.remote.unprotectRtp(b) !== undefined) rx.toBrowser++; });
  phone.on('message', (b) => { if (inWindow(b)) rx.toPhone++; });
  const bye = async (): Promise<number> => (await caller.request('BYE', target, { ...h, to: c2.get('to') ?? '', cseq: 3, extra: routes.map((r) => `Route: ${r}`) })).status;
  return { phone, toEngineFromPhone: toPhone.port, browser, toEngineFromBrowser: port, srtp, bye };
}

// ---------------------------------------------------------------- the run
async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const loadWaitStart = Date.now();
  while (loadavg()[0]! >= Number(opt['max-load']) && Date.now() - loadWaitStart < Number(opt['load-wait']) * 1000) {
    log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}: waiting for < ${opt['max-load']}`);
    await sleep(15_000);
  }
  const loadAtStart = loadavg().map((l) => Math.round(l * 100) / 100);
  const node = process.execPath; // Node 24 (node_modules/.bin/node), as the service runs
  dataDir = mkdtempSync(join(tmpdir(), 'careflow-footprint-'));
  const env = { ...process.env, CAREFLOW_DATA_DIR: dataDir, CAREFLOW_DOMAIN: '127.0.0.1', CAREFLOW_LOG_LEVEL: 'info' };
  writeFileSync(join(dataDir, 'users.csv'), `name\n${Array.from({ length: DEVICES }, (_, i) => `Device ${i + 1}`).join('\n')}\n`);
  const imp = spawnSync(node, ['dist/cli/main.js', 'user', 'import', join(dataDir, 'users.csv'), '--json'], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 1 << 26, timeout: 300_000 });
  if (imp.status !== 0) throw new Error(`user import failed (exit ${imp.status}): ${imp.stderr}`);
  const users = JSON.parse(imp.stdout) as Array<{ sipUsername: string; password: string }>;
  [SIP_PORT, httpPort] = [await freePort(), await freePort()];
  const serverLog = join(OUT, 'server.log');
  server = spawn(node, ['dist/cli/main.js', 'serve'], {
    cwd: ROOT, stdio: ['ignore', openSync(serverLog, 'w'), openSync(serverLog, 'a')],
    env: { ...env, CAREFLOW_SIP_LISTEN: `127.0.0.1:${SIP_PORT}`, CAREFLOW_HTTP_LISTEN: `127.0.0.1:${httpPort}`, CAREFLOW_MEMORY_MODE: opt.mode, CAREFLOW_RTP_PORTS: '26000-27999' },
  });
  const pid = server.pid!;
  for (let t = 0; !/careflow: listening|CareFlow Voice is running/.test(readFileSync(serverLog, 'utf8')); t += 200) {
    if (server.exitCode !== null || t > 30_000) throw new Error(`server did not start:\n${readFileSync(serverLog, 'utf8')}`);
    await sleep(200);
  }
  const token = (JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { adminToken: string }).adminToken;
  const api = async <T>(path: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${httpPort}/api/${path}`, { headers: { authorization: `Bearer ${token}` } })).json()) as T;
  const status = async (): Promise<Record<string, number>> => (await api<{ sip: Record<string, number> }>('status')).sip;
  log(`server pid ${pid} (${opt.mode}): sip udp 127.0.0.1:${SIP_PORT}, http ${httpPort}; load ${loadAtStart.join(' ')}`);
  /** CPU of the server over `s` seconds, % of one core, with the rest of the machine's busy and steal %. */
  const measure = async (s: number): Promise<{ cpuPct: number; machineOtherPct: number; stealPct: number; rssMax: number; rssSteady: number }> => {
    const [c0, m0, t0, me0] = [cpuMs(pid), machine(), performance.now(), process.cpuUsage()];
    const rss: number[] = [];
    for (let k = 0; k < s; k++) { await sleep(1000); rss.push(memMiB(pid, 'VmRSS')); }
    const [ms, m1, wall, me] = [cpuMs(pid) - c0, machine(), performance.now() - t0, process.cpuUsage(me0)];
    const pct = (x: number): number => r1((x / wall) * 100);
    return { cpuPct: pct(ms), machineOtherPct: pct(((m1.busy - m0.busy) * 1000) / CLK_TCK - ms - (me.user + me.system) / 1000), stealPct: pct(((m1.steal - m0.steal) * 1000) / CLK_TCK),
      rssMax: Math.max(...rss), rssSteady: r1(rss.slice(Math.floor(rss.length / 2)).reduce((a, b) => a + b, 0) / Math.ceil(rss.length / 2)) };
  };

  await sleep(SETTLE * 1000);
  const idle = { rssMiB: memMiB(pid, 'VmRSS'), ...(await measure(IDLE)) };
  log(`idle: RSS ${idle.rssMiB} MiB, CPU ${idle.cpuPct} % over ${IDLE} s`);

  const devices = await Promise.all(users.map(async (u) => new Device(await bound(), u.sipUsername, u.password)));
  const [t0, granted] = [performance.now(), [] as number[]];
  let next = 0;
  await Promise.all(Array.from({ length: 100 }, async () => { while (next < devices.length) granted.push(await register(devices[next++]!)); }));
  const regSeconds = r1((performance.now() - t0) / 1000);
  await sleep(SETTLE * 1000);
  const reg = { registerSeconds: regSeconds, grantedExpiresMin: Math.min(...granted), rssMiB: memMiB(pid, 'VmRSS'), ...(await measure(IDLE)), status: await status() };
  log(`${DEVICES} devices registered in ${regSeconds} s: RSS ${reg.rssMiB} MiB, CPU ${reg.cpuPct} %, status registrations ${reg.status['registrations']}`);

  const [cert, tc] = [await createCertificate(), performance.now()];
  const calls = await Promise.all(Array.from({ length: CALLS }, (_, i) => bridgedCall(devices[CALLS + i]!, devices[i]!, i, cert)));
  const setupSeconds = r1((performance.now() - tc) / 1000);
  let [seq, sent] = [0, 0];
  const sender = setInterval(() => {
    seq++;
    for (const [n, c] of calls.entries()) {
      c.phone.send(rtp(seq, 0x1000 + n), c.toEngineFromPhone, '127.0.0.1');
      c.browser.send(c.srtp.local.protectRtp(rtp(seq, 0x9000 + n)), c.toEngineFromBrowser, '127.0.0.1');
      if (seq >= counting.from && seq <= counting.to) sent += 2;
    }
  }, 20);
  timers.add(sender);
  await sleep(2000);
  counting = { from: seq + 1, to: 65535 };
  const media = await measure(MEDIA);
  counting = { ...counting, to: seq };
  await sleep(500);
  const st = await status();
  clearInterval(sender);
  const byes = (await Promise.all(calls.map((c) => c.bye()))).filter((x) => x === 200).length;
  await sleep(1000);
  const [afterBye, mediaModes] = [await status(), {} as Record<string, number>]; // the call log: the server's own word on the media mode
  for (const c of (await api<{ calls: Array<{ mediaMode?: string }> }>(`calls?limit=${CALLS}`)).calls) mediaModes[c.mediaMode ?? 'none'] = (mediaModes[c.mediaMode ?? 'none'] ?? 0) + 1;
  const lossPct = { toPhone: r1((1 - rx.toPhone / (sent / 2)) * 1000) / 10, toBrowser: r1((1 - rx.toBrowser / (sent / 2)) * 1000) / 10 };
  const calling = { setupSeconds, packetsSent: sent, received: rx, lossPct, ...media, vmHwmMiB: memMiB(pid, 'VmHWM'), status: st, byeOk: byes, mediaModes, afterBye };
  log(`${CALLS} bridged calls: RSS peak ${media.rssMax} / steady ${media.rssSteady} MiB, CPU ${media.cpuPct} %, loss ${lossPct.toPhone} / ${lossPct.toBrowser} %, status ${JSON.stringify(st)}`);

  const results = { date: new Date().toISOString(), mode: opt.mode, commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || (process.env['CAREFLOW_COMMIT'] ?? 'unknown'), node: process.version, loadAtStart,
    devices: DEVICES, calls: CALLS, settleSeconds: SETTLE, idleSeconds: IDLE, mediaSeconds: MEDIA, serverPid: pid, idle, registered: reg, calling };
  writeFileSync(join(OUT, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const row = (c: readonly (string | number)[]): string => `| ${c.join(' | ')} |`;
  console.log(`\nFootprint, mode ${opt.mode}, commit ${results.commit}, load at start ${loadAtStart.join(' ')}`);
  console.log(row(['stage', 'RSS MiB', 'server CPU % (one core)', 'rest of machine % / steal %', 'notes']));
  console.log(row(Array(5).fill('---')));
  console.log(row(['idle', idle.rssMiB, idle.cpuPct, `${idle.machineOtherPct} / ${idle.stealPct}`, `after ${SETTLE} s; CPU over ${IDLE} s`]));
  console.log(row([`${DEVICES} devices`, reg.rssMiB, reg.cpuPct, `${reg.machineOtherPct} / ${reg.stealPct}`, `registered in ${regSeconds} s, granted ${reg.grantedExpiresMin} s; status ${reg.status['registrations']}`]));
  console.log(row([`+ ${CALLS} bridged calls`, `peak ${media.rssMax}, steady ${media.rssSteady} (VmHWM ${calling.vmHwmMiB})`, media.cpuPct, `${media.machineOtherPct} / ${media.stealPct}`,
    `${MEDIA} s; loss to phone ${lossPct.toPhone} %, to browser ${lossPct.toBrowser} %; status calls ${st['activeCalls']}, media ${st['mediaSessions']}; BYE 200: ${byes}, then media ${afterBye['mediaSessions']}, call log ${JSON.stringify(mediaModes)}`]));
  console.log(`results: ${join(OUT, 'results.json')}`);
}

try {
  await main();
} catch (e) {
  process.exitCode = 1;
  console.error(`footprint: ${(e as Error).stack ?? String(e)}`);
} finally {
  await cleanup();
}
