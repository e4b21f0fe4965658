/**
 * Idle web phones: how many SIP-over-WebSocket registrations (RFC 7118) one server process
 * holds, and what they cost in memory and idle CPU.
 *
 *   node_modules/.bin/node bench/ws-idle.ts [--phones 1000,5000,10000] [--mode small|fast]
 *       [--concurrency 200] [--settle 5] [--idle 10] [--out DIR]
 *
 * 1. Imports max(--phones) users (wsp0000001.., password "pw"+user) into a temp data dir,
 *    starts `node src/cli/main.ts serve` as its own process on free loopback ports, waits until
 *    its CPU is quiet, and takes its idle RSS (/proc/PID/status VmRSS), /api/status memory and
 *    idle CPU before any phone connects.
 * 2. For each ladder step, opens WebSockets (sub-protocol `sip`, `ws` package) until that many
 *    phones are registered, each REGISTERing its own user as JsSIP does (Via SIP/2.0/WS
 *    x.invalid, Contact ...;transport=ws;+sip.ice;reg-id=1;+sip.instance, Supported: path,
 *    gruu, outbound, Expires 600, 401 + MD5/qop=auth digest), at most --concurrency in flight,
 *    every wait bounded; a failed phone is counted and closed. Reports REGISTER rounds/s and
 *    server CPU while connecting; then, after --settle s with no traffic and an idle window of
 *    --idle s (server CPU from /proc/PID/stat utime+stime: WebSocket pings and timers), the
 *    server's RSS, heapUsed, (RSS - idle RSS) per phone, and checks that /api/status
 *    sip.websockets and sip.registrations equal the phones connected.
 * 3. Prints a table, writes results.json (+ server.log) to --out (default
 *    /tmp/careflow-bench/ws-idle-<date>), and always closes the sockets and stops the server
 *    by PID (also on failure or Ctrl-C). Client and server are separate processes, each
 *    needs one descriptor per phone: the script checks the descriptor limit first.
 * Notes: the server pings every WebSocket every 30 s (src/http/sip-websocket.ts), so an idle
 * window shorter than 30 s holds one ping sweep or none ("pings" column; --idle 30 spans one
 * interval). The server's default cap is 10,000 WebSockets (more get HTTP 503). CPU figures
 * are the server's own; this script's CPU and the rest of the machine's ("other", incl. steal)
 * while connecting are reported to show what set the pace (100 % = one core).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

const ROOT = resolve(import.meta.dirname, '..');
const { values: opt } = parseArgs({
  options: {
    phones: { type: 'string', default: '1000,5000,10000' }, mode: { type: 'string', default: 'small' },
    concurrency: { type: 'string', default: '200' }, settle: { type: 'string', default: '5' },
    idle: { type: 'string', default: '10' }, out: { type: 'string' },
  },
});
const ladder = opt.phones.split(',').map(Number).sort((a, b) => a - b);
if (ladder.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--phones: expected counts like 1000,5000, got ${opt.phones}`);
if (opt.mode !== 'small' && opt.mode !== 'fast') throw new Error(`--mode: expected small or fast, got ${opt.mode}`);
const maxPhones = ladder[ladder.length - 1] ?? 0;
const [concurrency, settleS, idleS] = [Number(opt.concurrency), Number(opt.settle), Number(opt.idle)];
const OUT = resolve(opt.out ?? `/tmp/careflow-bench/ws-idle-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}-${opt.mode}`);
const WAIT_MS = 10_000; // every single wait (open, each response) is bounded by this

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A sleep that does not keep the process alive (for races in cleanup). */
const unrefSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
const rnd = (n: number): string => randomBytes(n).toString('hex');
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const mib = (kib: number): number => Math.round(kib / 102.4) / 10;
const log = (s: string): void => console.error(`[ws-idle ${new Date().toISOString().slice(11, 19)}] ${s}`);

// ---------------------------------------------------------------- descriptor limit
const nofile = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
const fdLimit = nofile?.[1] === 'unlimited' ? Infinity : Number(nofile?.[1] ?? 1024);
if (fdLimit < maxPhones + 200) {
  console.error(`ws-idle: the file descriptor limit is ${fdLimit}, too low for ${maxPhones} phones (client and server each need one per phone, plus ~200).\n` +
    `Raise it in this shell first, e.g. \`ulimit -n ${Math.max(maxPhones + 1000, 20000)}\`, or ask for fewer phones with --phones.`);
  process.exit(2);
}

// ---------------------------------------------------------------- server process
let server: ChildProcess | undefined;
let dataDir = '';
const phones = new Set<WebSocket>();

async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((ok, fail) => {
      const s = createServer().once('error', fail).listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => ok(p));
      });
    });
    const udpFree = await new Promise<boolean>((ok) => {
      const u = createSocket('udp4').once('error', () => ok(false));
      u.bind(port, '127.0.0.1', () => u.close(() => ok(true)));
    });
    if (udpFree) return port; // SIP listens on UDP and TCP on the same port
  }
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return Number(f[11]) + Number(f[12]); // fields 14 utime + 15 stime
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** All CPUs' busy and steal time (jiffies) from /proc/stat: the machine is shared, so show how busy it was. */
function machineTicks(): { busy: number; steal: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  return { busy: f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0), steal: f[7] ?? 0 };
}
const rssKiB = (pid: number): number => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

interface Status { memoryMiB: { rss: number; heapUsed: number; heapTotal: number; external: number }; sip: Record<string, number> }
async function status(httpPort: number, token: string): Promise<Status> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(WAIT_MS) });
  if (!res.ok) throw new Error(`/api/status: HTTP ${res.status}`);
  return (await res.json()) as Status;
}

async function cleanup(): Promise<void> {
  for (const ws of phones) ws.terminate();
  phones.clear();
  const child = server;
  server = undefined;
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    log(`stopping server pid ${child.pid}`);
    child.kill('SIGTERM');
    if (await Promise.race([exited.then(() => true), unrefSleep(15_000).then(() => false)]) === false) {
      log(`server pid ${child.pid} still running 15 s after SIGTERM: SIGKILL`);
      child.kill('SIGKILL');
      await Promise.race([exited, unrefSleep(5_000)]);
    }
  }
  if (dataDir !== '') rmSync(dataDir, { recursive: true, force: true });
}
process.once('SIGINT', () => { log('interrupted: closing phones, stopping the server'); void cleanup().finally(() => process.exit(130)); });
process.once('SIGTERM', () => { void cleanup().finally(() => process.exit(143)); });

// ---------------------------------------------------------------- one web phone
/** The value of `name=` in a Digest challenge. */
const param = (ch: string, name: string): string | undefined => {
  const m = new RegExp(`(?:^|[\\s,])${name}\\s*=\\s*(?:"([^"]*)"|([^\\s,]+))`, 'i').exec(ch.replace(/^Digest\s+/i, ' '));
  return m ? (m[1] ?? m[2]) : undefined;
};

interface Response { status: number; headers: Array<[string, string]> }
function parseResponse(text: string): Response | undefined {
  const lines = text.split('\r\n');
  const m = /^SIP\/2\.0 (\d{3})/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers: Array<[string, string]> = [];
  for (const l of lines.slice(1)) {
    if (l === '') break;
    const i = l.indexOf(':');
    headers.push([l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()]);
  }
  return { status: Number(m[1]), headers };
}

/** Opens a WebSocket and registers `user` like JsSIP; resolves with the open socket, or throws a short reason. */
async function registerPhone(url: string, user: string, password: string): Promise<WebSocket> {
  const ws = new WebSocket(url, 'sip', { perMessageDeflate: false });
  phones.add(ws);
  ws.on('error', () => { /* reported through 'close' or the bounded waits */ });
  let waiter: ((r: Response) => void) | undefined;
  ws.on('message', (data) => { const r = parseResponse(String(data)); if (r !== undefined) waiter?.(r); });
  const within = <T>(what: string, p: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, fail) => { timer = setTimeout(() => fail(new Error(`${what} timeout`)), WAIT_MS); });
    const closed = new Promise<never>((_, fail) => ws.once('close', () => fail(new Error(`closed during ${what}`))));
    return Promise.race([p, late, closed]).finally(() => clearTimeout(timer));
  };
  try {
    await within('open', new Promise<void>((ok, fail) => { ws.once('open', () => ok()); ws.once('error', (e) => fail(new Error(`open: ${e.message}`))); }));
    const viaHost = `${rnd(6)}.invalid`;
    const [callId, tag, instance] = [rnd(12), rnd(5), randomUUID()];
    const contact = `<sip:${rnd(4)}@${rnd(6)}.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance="<urn:uuid:${instance}>";expires=600`;
    const request = (cseq: number, auth?: string): string => [
      'REGISTER sip:127.0.0.1 SIP/2.0', `Via: SIP/2.0/WS ${viaHost};branch=z9hG4bK${rnd(8)}`, 'Max-Forwards: 69',
      `To: <sip:${user}@127.0.0.1>`, `From: <sip:${user}@127.0.0.1>;tag=${tag}`, `Call-ID: ${callId}`, `CSeq: ${cseq} REGISTER`,
      `Contact: ${contact}`, 'Expires: 600', 'Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY',
      'Supported: path,gruu,outbound', 'User-Agent: JsSIP 3.13.8 (careflow ws-idle bench)', ...(auth ? [`Authorization: ${auth}`] : []),
      'Content-Length: 0', '', '',
    ].join('\r\n');
    const send = (text: string, what: string): Promise<Response> => within(what, new Promise<Response>((ok) => {
      waiter = (r) => { if (r.status >= 200) { waiter = undefined; ok(r); } };
      ws.send(text);
    }));
    const r1 = await send(request(1), 'REGISTER');
    if (r1.status !== 401) throw new Error(`REGISTER -> ${r1.status}`);
    const challenges = r1.headers.filter(([n]) => n === 'www-authenticate').map(([, v]) => v);
    const ch = challenges.find((c) => (param(c, 'algorithm') ?? 'MD5').toUpperCase() === 'MD5');
    if (ch === undefined) throw new Error('no MD5 challenge');
    const [realm, nonce, opaque] = [param(ch, 'realm') ?? '', param(ch, 'nonce') ?? '', param(ch, 'opaque')];
    const [uri, cnonce, nc] = ['sip:127.0.0.1', rnd(8), '00000001'];
    const response = md5(`${md5(`${user}:${realm}:${password}`)}:${nonce}:${nc}:${cnonce}:auth:${md5(`REGISTER:${uri}`)}`);
    const auth = `Digest algorithm=MD5, username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}"` +
      `${opaque !== undefined ? `, opaque="${opaque}"` : ''}, qop=auth, cnonce="${cnonce}", nc=${nc}`;
    const r2 = await send(request(2, auth), 'authenticated REGISTER');
    if (r2.status !== 200) throw new Error(`authenticated REGISTER -> ${r2.status}`);
    return ws;
  } catch (e) {
    phones.delete(ws);
    ws.terminate();
    throw e;
  }
}

// ---------------------------------------------------------------- the run
interface Step {
  // connecting (CPU %: 100 = one core)
  phones: number; attempted: number; failed: number; failures: Record<string, number>; connectSeconds: number; registrationsPerSecond: number;
  serverCpuMsPerRegistration: number; serverCpuPercentConnecting: number; clientCpuPercentConnecting: number;
  otherCpuPercentConnecting: number; stealPercentConnecting: number;
  // after settle + idle window
  rssMiB: number; statusRssMiB: number; heapUsedMiB: number; rssPerPhoneKiB: number; idleCpuMs: number; idleCpuPercent: number;
  pingsReceived: number; droppedByServer: number; sipWebsockets: number; sipRegistrations: number; countsMatch: boolean;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const node = process.execPath;
  dataDir = mkdtempSync(join(tmpdir(), 'careflow-ws-idle-'));
  const users = Array.from({ length: maxPhones }, (_, i) => `wsp${String(i + 1).padStart(7, '0')}`);
  const env = { ...process.env, CAREFLOW_DATA_DIR: dataDir, CAREFLOW_DOMAIN: '127.0.0.1', CAREFLOW_LOG_LEVEL: 'warn' };
  writeFileSync(join(dataDir, 'users.csv'), `name,number,password\n${users.map((u) => `${u},${u},pw${u}`).join('\n')}\n`);
  log(`importing ${maxPhones} users into ${dataDir}`);
  const imp = spawnSync(node, ['src/cli/main.ts', 'user', 'import', join(dataDir, 'users.csv'), '--json'], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 1 << 28, timeout: 300_000 });
  if (imp.status !== 0) throw new Error(`user import failed (exit ${imp.status}): ${imp.stderr}`);

  // The code under test is the working tree at server start: record the commit and any local src/ changes.
  const git = (...a: string[]): string => spawnSync('git', a, { cwd: ROOT, encoding: 'utf8' }).stdout.trim();
  const commit = git('rev-parse', '--short', 'HEAD');
  const srcDiff = { sha1: createHash('sha1').update(git('diff', 'HEAD', '--', 'src')).digest('hex').slice(0, 12), files: git('diff', '--name-only', 'HEAD', '--', 'src').split('\n').filter(Boolean) };
  const [sipPort, httpPort] = [await freePort(), await freePort()];
  const serverLog = join(OUT, 'server.log');
  server = spawn(node, ['src/cli/main.ts', 'serve'], {
    cwd: ROOT, stdio: ['ignore', openSync(serverLog, 'w'), openSync(serverLog, 'a')],
    env: { ...env, CAREFLOW_SIP_LISTEN: `127.0.0.1:${sipPort}`, CAREFLOW_HTTP_LISTEN: `127.0.0.1:${httpPort}`, CAREFLOW_MEMORY_MODE: opt.mode, CAREFLOW_REG_MAX_EXPIRES: '86400' },
  });
  const pid = server.pid ?? NaN;
  // "careflow: listening" is an info line; at CAREFLOW_LOG_LEVEL=warn the banner says the same
  for (let t = 0; !/careflow: listening|CareFlow Voice is running/.test(readFileSync(serverLog, 'utf8')); t += 200) {
    if (server.exitCode !== null || t > 30_000) throw new Error(`server did not start (see ${serverLog}):\n${readFileSync(serverLog, 'utf8')}`);
    await sleep(200);
  }
  const token = (JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { adminToken: string }).adminToken;
  log(`server pid ${pid}: sip 127.0.0.1:${sipPort}, http 127.0.0.1:${httpPort}, mode ${opt.mode}, commit ${commit}${srcDiff.files.length > 0 ? ` + local src changes (${srcDiff.files.length} files, ${srcDiff.sha1})` : ''}`);
  // Start-up work (JIT, GC) ends within seconds; an empty server then still uses ~10 ms/s
  // (its 10 ms timer wheel). Wait until it is that quiet (<= 100 ms of CPU in 5 s, at most 60 s).
  const quiet0 = performance.now();
  for (let c = cpuTicks(pid), busy = true; busy && performance.now() - quiet0 < 60_000; ) {
    await sleep(5000);
    const now = cpuTicks(pid);
    busy = ((now - c) * 1000) / CLK_TCK > 100;
    c = now;
  }
  const quietAfterSeconds = Math.round((performance.now() - quiet0) / 1000);
  const idleRssKiB = rssKiB(pid);
  const idleStatus = await status(httpPort, token);
  const cpuIdle0 = cpuTicks(pid);
  await sleep(idleS * 1000);
  const baseIdleCpuMs = ((cpuTicks(pid) - cpuIdle0) * 1000) / CLK_TCK; // timers of an empty server, for comparison
  log(`idle (quiet after ${quietAfterSeconds} s): RSS ${mib(idleRssKiB)} MiB, heapUsed ${idleStatus.memoryMiB.heapUsed} MiB, CPU ${baseIdleCpuMs} ms in ${idleS} s`);

  const url = `ws://127.0.0.1:${httpPort}/sip`;
  const steps: Step[] = [];
  let nextUser = 0;
  let pings = 0;
  let dropped = 0;
  for (const target of ladder) {
    const failures: Record<string, number> = {};
    let attempted = 0;
    let failed = 0;
    const [t0, cpu0, client0, m0] = [performance.now(), cpuTicks(pid), process.cpuUsage(), machineTicks()];
    const before = phones.size;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (nextUser < users.length && before + attempted - failed < target) {
        const user = users[nextUser++] ?? '';
        attempted++;
        try {
          const ws = await registerPhone(url, user, `pw${user}`);
          ws.on('ping', () => pings++);
          ws.on('close', () => { if (phones.delete(ws)) dropped++; });
        } catch (e) {
          failed++;
          const reason = (e as Error).message.replace(/\d{4,}/g, 'N');
          failures[reason] = (failures[reason] ?? 0) + 1;
        }
      }
    }));
    const connectSeconds = (performance.now() - t0) / 1000;
    const registered = attempted - failed;
    const cpuConnectMs = ((cpuTicks(pid) - cpu0) * 1000) / CLK_TCK;
    const clientCpu = process.cpuUsage(client0);
    const clientCpuPercent = Math.round((clientCpu.user + clientCpu.system) / 1000 / connectSeconds / 10); // this script, 100 = one core
    const m1 = machineTicks();
    const otherCpuPercent = Math.max(0, Math.round(((m1.busy - m0.busy) * 1000) / CLK_TCK / connectSeconds / 10 - cpuConnectMs / connectSeconds / 10 - clientCpuPercent));
    const stealPercent = Math.round(((m1.steal - m0.steal) * 1000) / CLK_TCK / connectSeconds / 10);
    log(`${phones.size} phones: ${registered} registered in ${connectSeconds.toFixed(1)} s, ${failed} failed; settling ${settleS} s, then ${idleS} s idle window`);
    await sleep(settleS * 1000);
    const [cpu1, p1, d1] = [cpuTicks(pid), pings, dropped];
    await sleep(idleS * 1000);
    const idleCpuMs = ((cpuTicks(pid) - cpu1) * 1000) / CLK_TCK;
    const rss = rssKiB(pid);
    const st = await status(httpPort, token);
    const step: Step = {
      phones: phones.size, attempted, failed, failures, connectSeconds: Math.round(connectSeconds * 100) / 100,
      registrationsPerSecond: Math.round(registered / connectSeconds), serverCpuMsPerRegistration: Math.round((cpuConnectMs / Math.max(1, registered)) * 1000) / 1000,
      serverCpuPercentConnecting: Math.round(cpuConnectMs / connectSeconds / 10), clientCpuPercentConnecting: clientCpuPercent,
      otherCpuPercentConnecting: otherCpuPercent, stealPercentConnecting: stealPercent,
      rssMiB: mib(rss), statusRssMiB: st.memoryMiB.rss, heapUsedMiB: st.memoryMiB.heapUsed,
      rssPerPhoneKiB: Math.round(((rss - idleRssKiB) / Math.max(1, phones.size)) * 100) / 100,
      idleCpuMs, idleCpuPercent: Math.round((idleCpuMs / (idleS * 10)) * 100) / 100, pingsReceived: pings - p1, droppedByServer: dropped - d1,
      sipWebsockets: st.sip['websockets'] ?? -1, sipRegistrations: st.sip['registrations'] ?? -1,
      countsMatch: st.sip['websockets'] === phones.size && st.sip['registrations'] === phones.size,
    };
    steps.push(step);
    log(`${phones.size} phones: RSS ${step.rssMiB} MiB, heapUsed ${step.heapUsedMiB} MiB, idle CPU ${idleCpuMs} ms in ${idleS} s, ` +
      `status websockets=${step.sipWebsockets} registrations=${step.sipRegistrations}${step.countsMatch ? '' : ' (MISMATCH)'}`);
  }

  const results = {
    date: new Date().toISOString(), mode: opt.mode, ladder, concurrency, settleSeconds: settleS, idleSeconds: idleS, serverPid: pid,
    commit, srcDiff,
    node: process.version, fdLimit, clkTck: CLK_TCK, idle: { quietAfterSeconds, rssMiB: mib(idleRssKiB), status: idleStatus.memoryMiB, cpuMs: baseIdleCpuMs }, steps,
  };
  writeFileSync(join(OUT, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const row = (c: readonly (string | number)[]): string => `| ${c.join(' | ')} |`;
  console.log(`\nIdle web phones, mode ${opt.mode}, server pid ${pid}; no phones: RSS ${mib(idleRssKiB)} MiB, heapUsed ${idleStatus.memoryMiB.heapUsed} MiB, CPU ${baseIdleCpuMs} ms in ${idleS} s`);
  console.log(row(['phones', 'failed', 'reg/s', 'srv CPU ms/reg', 'CPU % srv/client/other', 'RSS MiB', 'heapUsed MiB', 'RSS KiB/phone', `idle CPU ms/${idleS}s (%)`, 'pings', 'ws/regs in status']));
  console.log(row(Array(11).fill('---')));
  for (const s of steps) {
    console.log(row([s.phones, s.failed, s.registrationsPerSecond, s.serverCpuMsPerRegistration, `${s.serverCpuPercentConnecting}/${s.clientCpuPercentConnecting}/${s.otherCpuPercentConnecting}`, s.rssMiB, s.heapUsedMiB, s.rssPerPhoneKiB,
      `${s.idleCpuMs} (${s.idleCpuPercent} %)`, s.pingsReceived, `${s.sipWebsockets}/${s.sipRegistrations}${s.countsMatch ? ' ok' : ' MISMATCH'}`]));
  }
  for (const s of steps) if (s.failed > 0) console.log(`failures at ${s.phones}: ${JSON.stringify(s.failures)}`);
  console.log(`\nresults: ${join(OUT, 'results.json')}`);
}

try {
  await main();
} catch (e) {
  process.exitCode = 1;
  console.error(`ws-idle: ${(e as Error).stack ?? String(e)}`);
} finally {
  await cleanup();
}
