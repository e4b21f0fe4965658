// Two baresip phones, one of them behind a real NAT: audio flows both ways through the media
// engine's relay, with the embedded engine (the default) and with RTPEngine; without an engine
// the phone behind NAT gets one-way audio.
//
// The network is made here from three private network namespaces (test/interop/netns.ts) and
// exists only inside them:
//
//   wan  192.0.2.1   CareFlow (SIP/HTTP), rtpengine (ng on 127.0.0.1), the relay's RTP ports
//        192.0.2.10  baresip A, on the public side (its SDP and Contact say where it is)
//          | veth  192.0.2.0/24 (TEST-NET-1)
//   router 192.0.2.254 on wan0, 10.77.0.1 on lan0: forwards, nftables masquerade toward wan0
//          |        onto source ports 50000-59999 of its own choosing,
//          |        drops new connections from outside (a home router)
//          | veth  10.77.0.0/24
//   home 10.77.0.2   baresip B, default route via the router
//
// wan has no route to 10.77.0.0/24: B's SDP and Contact name 10.77.0.2, unreachable from
// there, while its packets (SIP and RTP) arrive from 192.0.2.254 on ports the NAT chose. The
// server sees the registration's Contact differ from its source (and, for B's INVITE, the SDP
// address differ from the SIP source) and chooses `relay`; the engine sends toward B's real
// source and latches onto the port B's packets come from. Each phone plays its own tone
// (A 440 Hz, B 660 Hz) and records what it received and decoded (sndfile): each must hear the
// other's tone (RMS > 1000, >= 2 s audible, frequency within 10 %), for B calling A and for A
// calling B, and the call log must say `relay`. With CAREFLOW_MEDIA_ENGINE=off the SDP goes
// through unchanged: A's audio goes to 10.77.0.2 and is lost, so B (the phone behind NAT)
// hears silence, while B's own audio still leaves through the NAT: the classic one-way audio.
//
// Everything started here runs inside a namespace with `nsenter`, is stopped by PID and is
// bounded; the namespaces go when the file ends, also on failure. The CLI (users, call log,
// devices) runs inside wan too, against the server's data dir and HTTP listener.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { audioStats, BaresipControl, type BaresipEvent, type BaresipResponse, configText, makeTone, readWav, requireBaresip } from './baresip.ts';
import { ROOT } from './harness.ts';
import { Netns } from './netns.ts';
import { stopper } from './processes.ts';
import { RTPENGINE_PATH, requireRtpEngine } from './rtpengine.ts';

// ------------------------------------------------------------------ tools (fail, never skip)

for (const [tool, pkg] of [['nft', 'nftables'], ['ip', 'iproute2'], ['nsenter', 'util-linux'], ['unshare', 'util-linux']] as const) {
  const found = spawnSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { encoding: 'utf8' }).status === 0;
  if (!found) throw new Error(`${tool} is missing: apt-get install -y ${pkg} (or run scripts/install-test-deps.sh)`);
}
const BARESIP_VERSION = requireBaresip(); // apt-get install -y baresip-core sox
requireRtpEngine(); // apt-get install -y rtpengine-daemon

// ------------------------------------------------------------------ the network

const SERVER = '192.0.2.1';
const PHONE_A = '192.0.2.10';
const ROUTER_WAN = '192.0.2.254';
const ROUTER_LAN = '10.77.0.1';
const PHONE_B = '10.77.0.2';
const SIP_PORT = 5060;
const HTTP_PORT = 8080;
const NG_PORT = 2223;
const PHONE_SIP_PORT = 5080; // not the server's: A shares the wan namespace (and its addresses) with it
const PHONE_CTRL_PORT = 4444;
const EMBEDDED_RTP_PORTS = '20000-20199';
const RTPENGINE_PORTS = [30000, 30199] as const;
const PHONE_RTP_PORTS = '40000-40199';
// The router maps every outgoing flow to a source port of its own (like a carrier-grade or
// symmetric NAT): B's packets never come from the port its SDP names, so the engine can only
// reach B by latching onto where they really come from.
const NAT_PORTS = '50000-59999';

const TONE_A = 440;
const TONE_B = 660;
const TALK_MS = 3500;
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Temp folders (data dirs, phone configs and recordings): removed at the end unless a test
// failed, for a look.
const TEMP: string[] = [];
let failed = false;
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  TEMP.push(dir);
  return dir;
}

// Every process started here, by PID: killed when the process exits whatever happens.
const LIVE = new Map<number, () => Promise<unknown>>();
process.on('exit', () => {
  for (const pid of LIVE.keys()) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
});

/** Starts a long-running program inside `ns` (nsenter execs it: the PID is the program's). */
function spawnIn(ns: Netns, program: string, args: readonly string[], env: Record<string, string> = {}, cwd = ROOT): ChildProcess {
  assert.notEqual(readlinkSync(`/proc/${ns.pid}/ns/net`), readlinkSync('/proc/self/ns/net'), 'refusing to start a process outside a private namespace');
  return spawn('nsenter', ['-t', String(ns.pid), '-n', '--', program, ...args], {
    cwd, env: { ...process.env, PATH: PATH_ENV, ...env }, stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** A short command inside `ns`, bounded, without blocking the event loop (the phones keep talking). */
function runIn(ns: Netns, program: string, args: readonly string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawnIn(ns, program, args, env);
    child.stdin?.end();
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => {
      stderr += `\n[test] ${program} ${args.join(' ')} killed after ${timeoutMs} ms`;
      try { process.kill(child.pid ?? -1, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.on('error', (e) => { stderr += String(e); });
    child.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

interface Network { wan: Netns; router: Netns; home: Netns }

/** wan <-veth-> router (masquerade) <-veth-> home; see the top of the file. */
async function buildNetwork(): Promise<Network> {
  const [wan, router, home] = await Promise.all([Netns.create(), Netns.create(), Netns.create()]);
  wan.must('ip', ['link', 'add', 'isp0', 'type', 'veth', 'peer', 'name', 'wan0', 'netns', String(router.pid)]);
  wan.must('ip', ['addr', 'add', `${SERVER}/24`, 'dev', 'isp0']);
  wan.must('ip', ['addr', 'add', `${PHONE_A}/24`, 'dev', 'isp0']);
  wan.must('ip', ['link', 'set', 'isp0', 'up']);
  router.must('ip', ['addr', 'add', `${ROUTER_WAN}/24`, 'dev', 'wan0']);
  router.must('ip', ['link', 'set', 'wan0', 'up']);
  router.must('ip', ['link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(home.pid)]);
  router.must('ip', ['addr', 'add', `${ROUTER_LAN}/24`, 'dev', 'lan0']);
  router.must('ip', ['link', 'set', 'lan0', 'up']);
  home.must('ip', ['addr', 'add', `${PHONE_B}/24`, 'dev', 'eth0']);
  home.must('ip', ['link', 'set', 'eth0', 'up']);
  home.must('ip', ['route', 'add', 'default', 'via', ROUTER_LAN]);
  // /proc/sys/net is the namespace's own for a process inside it
  router.must('sh', ['-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']);
  router.must('nft', ['-f', '-'], {
    input: [
      'table ip careflow_test_nat {',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    oifname "wan0" meta l4proto { tcp, udp } masquerade to :${NAT_PORTS}`,
      '    oifname "wan0" masquerade',
      '  }',
      '  chain forward { type filter hook forward priority filter; policy accept; iifname "wan0" ct state new drop; }',
      '}',
      '',
    ].join('\n'),
  });
  // The private address really is out of reach from the public side.
  const route = wan.run('ip', ['route', 'get', PHONE_B]);
  assert.notEqual(route.status, 0, `wan must have no route to ${PHONE_B}: ${route.stdout}${route.stderr}`);
  return { wan, router, home };
}

// ------------------------------------------------------------------ CareFlow in wan

interface Careflow {
  readonly pid: number;
  readonly env: Record<string, string>;
  logs(): string;
  stop(): Promise<number | null>;
  cli(args: readonly string[]): Promise<string>;
}

async function startCareflow(wan: Netns, engineEnv: Record<string, string>): Promise<Careflow> {
  const dataDir = tempDir('careflow-nat-data-');
  const env: Record<string, string> = {
    CAREFLOW_DATA_DIR: dataDir,
    CAREFLOW_DOMAIN: SERVER,
    CAREFLOW_SIP_LISTEN: `${SERVER}:${SIP_PORT}`,
    CAREFLOW_SIP_TLS_LISTEN: `${SERVER}:5061`,
    CAREFLOW_HTTP_LISTEN: `${SERVER}:${HTTP_PORT}`,
    CAREFLOW_RTP_PORTS: EMBEDDED_RTP_PORTS,
    ...engineEnv,
  };
  const child = spawnIn(wan, process.execPath, [CLI, 'serve'], env);
  child.stdin?.end();
  const pid = child.pid;
  if (pid === undefined) throw new Error('cannot start careflow serve in the wan namespace');
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { output = (output + d).slice(-500_000); });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { output = (output + d).slice(-500_000); });
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => { exitCode = code; LIVE.delete(pid); res(code); }));
  const stopServer = stopper(pid, exited, () => exitCode);
  const handle: Careflow = {
    pid, env, logs: () => output,
    stop: stopServer,
    async cli(args) {
      const r = await runIn(wan, process.execPath, [CLI, ...args], env);
      if (r.code !== 0) throw new Error(`careflow ${args.join(' ')} (in wan): exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      return r.stdout;
    },
  };
  LIVE.set(pid, handle.stop);
  const deadline = Date.now() + 15_000;
  while (!output.includes('careflow: listening')) {
    if (exitCode !== undefined || Date.now() > deadline) {
      await handle.stop();
      throw new Error(`careflow serve in wan ${exitCode !== undefined ? `exited (${exitCode})` : 'printed no "careflow: listening" within 15 s'} (env ${JSON.stringify(env)}):\n${output.slice(-6000)}`);
    }
    await sleep(50);
  }
  return handle;
}

interface User { id: string; number: string; sipUsername: string; password: string }

async function addUser(server: Careflow, name: string): Promise<User> {
  const out = await server.cli(['user', 'add', '--name', name, '--json']);
  const u = JSON.parse(out) as Record<string, unknown>;
  return { id: String(u['id']), number: String(u['number']), sipUsername: String(u['sipUsername']), password: String(u['password']) };
}

// ------------------------------------------------------------------ rtpengine in wan

interface RtpEngine {
  readonly pid: number;
  logs(): string;
  /** How much it has logged so far, for logsSince(). */
  logged(): number;
  logsSince(mark: number): string;
  stop(): Promise<number | null>;
}

async function startRtpEngineIn(wan: Netns): Promise<RtpEngine> {
  const dir = mkdtempSync(join(tmpdir(), 'careflow-nat-rtpengine-'));
  const child = spawnIn(wan, RTPENGINE_PATH, [
    '--config-file=none', '--foreground', '--log-stderr', '--log-level=6', '--no-log-timestamps', '--table=-1',
    `--interface=${SERVER}`, `--listen-ng=127.0.0.1:${NG_PORT}`, `--port-min=${RTPENGINE_PORTS[0]}`, `--port-max=${RTPENGINE_PORTS[1]}`,
    `--pidfile=${join(dir, 'rtpengine.pid')}`, '--timeout=60', '--delete-delay=0',
  ], {}, dir);
  child.stdin?.end();
  const pid = child.pid;
  if (pid === undefined) throw new Error('cannot start rtpengine in the wan namespace');
  let output = '';
  let total = 0;
  const append = (d: string): void => { total += d.length; output = (output + d).slice(-300_000); };
  child.stdout?.setEncoding('utf8').on('data', append);
  child.stderr?.setEncoding('utf8').on('data', append);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => {
    exitCode = code;
    LIVE.delete(pid);
    rmSync(dir, { recursive: true, force: true });
    res(code);
  }));
  const handle: RtpEngine = {
    pid, logs: () => output, logged: () => total, logsSince: (mark) => output.slice(Math.max(0, output.length - (total - mark))),
    stop: stopper(pid, exited, () => exitCode),
  };
  LIVE.set(pid, handle.stop);
  const deadline = Date.now() + 10_000;
  while (!/Startup complete/i.test(output)) {
    if (exitCode !== undefined || Date.now() > deadline) {
      await handle.stop();
      throw new Error(`rtpengine in wan ${exitCode !== undefined ? `exited (${exitCode})` : 'not ready within 10 s'}:\n${output.slice(-4000)}`);
    }
    await sleep(50);
  }
  return handle;
}

// ------------------------------------------------------------------ baresip in a namespace

// baresip's ctrl_tcp listens on the namespace's loopback; this bridge, started inside it,
// carries the netstrings over its stdin/stdout (bounded: gives up after 10 s).
const CTRL_BRIDGE = `
const net = require('node:net');
const port = Number(process.argv[1]);
const deadline = Date.now() + 10000;
const attempt = () => {
  const s = net.connect(port, '127.0.0.1');
  s.once('connect', () => {
    process.stderr.write('bridge: connected\\n');
    process.stdin.pipe(s);
    s.pipe(process.stdout);
    s.on('close', () => process.exit(0));
  });
  s.once('error', () => {
    s.destroy();
    if (Date.now() > deadline) { process.stderr.write('bridge: ctrl_tcp did not answer\\n'); process.exit(1); }
    setTimeout(attempt, 100);
  });
};
process.stdin.on('end', () => process.exit(0));
attempt();`;

interface Phone {
  readonly name: string;
  readonly address: string;
  readonly dir: string;
  readonly events: BaresipEvent[];
  command(command: string, params?: string, timeoutMs?: number): Promise<BaresipResponse>;
  waitEvent(type: string, timeoutMs: number, from: number): Promise<BaresipEvent>;
  /** decoded (received) audio dumps, oldest first */
  received(): string[];
  describe(): string;
  stop(): Promise<void>;
}

const STATUS_LINE = /\[\d+:\d\d:\d\d\] audio=\S* \(bit\/s\)\s*/g;


async function startPhone(ns: Netns, name: string, address: string, user: User, toneWav: string): Promise<Phone> {
  const dir = tempDir(`careflow-nat-${name}-`);
  const recordDir = join(dir, 'rec');
  mkdirSync(recordDir);
  const account = `<sip:${user.sipUsername}@${SERVER};transport=udp>;auth_pass=${user.password};` +
    `outbound="sip:${SERVER}:${SIP_PORT};transport=udp";answermode=auto;regint=600;audio_codecs=PCMU,PCMA`;
  writeFileSync(join(dir, 'config'), configText({ address, sipPort: PHONE_SIP_PORT, ctrlPort: PHONE_CTRL_PORT, toneWav, recordDir, rtpPorts: PHONE_RTP_PORTS }));
  writeFileSync(join(dir, 'accounts'), `${account}\n`);
  writeFileSync(join(dir, 'contacts'), '');

  let out = '';
  const append = (d: string): void => { out = (out + d).slice(-300_000); };
  const ua = spawnIn(ns, 'baresip', ['-f', dir], {}, dir);
  ua.stdin?.end();
  const pid = ua.pid;
  if (pid === undefined) throw new Error(`cannot start baresip ${name}: apt-get install -y baresip-core sox`);
  ua.stdout?.setEncoding('utf8').on('data', append);
  ua.stderr?.setEncoding('utf8').on('data', append);
  let exitInfo: string | undefined;
  const exited = new Promise<void>((res) => ua.on('exit', (code, signal) => { exitInfo = `exit ${code} signal ${signal}`; LIVE.delete(pid); res(); }));

  const ctl = new BaresipControl(name, append);

  // The ctrl_tcp bridge, once baresip listens (it retries for 10 s by itself).
  const bridge = spawnIn(ns, process.execPath, ['-e', CTRL_BRIDGE, String(PHONE_CTRL_PORT)]);
  const bridgePid = bridge.pid ?? -1;
  let bridgeErr = '';
  const bridgeExited = new Promise<void>((res) => bridge.on('exit', () => { LIVE.delete(bridgePid); res(); }));
  bridge.stderr?.setEncoding('utf8').on('data', (d: string) => { bridgeErr += d; });
  ctl.attach((b) => bridge.stdin?.write(b));
  bridge.stdout?.on('data', (d: Buffer) => ctl.feed(d));

  let stopping: Promise<void> | undefined;
  const phone: Phone = {
    name, address, dir, events: ctl.events,
    command: (command, params, timeoutMs = 5000) => ctl.command(command, params, timeoutMs),
    waitEvent: (type, timeoutMs, from) => ctl.waitEvent(type, (e) => e.type === type, timeoutMs, from),
    received: () => readdirSafe(recordDir).filter((f) => f.endsWith('-dec.wav')).map((f) => join(recordDir, f)),
    describe: () => [
      `--- baresip ${name} pid ${pid} at ${address}:${PHONE_SIP_PORT} (${dir}${exitInfo !== undefined ? `, ${exitInfo}` : ''})`,
      `events: ${ctl.events.map((e) => e.type).join(', ') || 'none'}; recordings: ${readdirSafe(recordDir).join(', ') || 'none'}`,
      `ctrl bridge: ${bridgeErr.trim() || 'no output'}`,
      `last 3 KB of output:\n${out.replace(STATUS_LINE, '').slice(-3072)}`,
    ].join('\n'),
    stop() {
      stopping ??= (async () => {
        bridge.stdin?.end();
        for (const [p, done, running] of [[pid, exited, () => exitInfo === undefined], [bridgePid, bridgeExited, () => bridge.exitCode === null && bridge.signalCode === null]] as const) {
          if (!running()) continue;
          try { process.kill(p, 'SIGTERM'); } catch { /* gone */ }
          const t = setTimeout(() => { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }, 3000);
          await done;
          clearTimeout(t);
        }
      })();
      return stopping;
    },
  };
  LIVE.set(pid, phone.stop);
  LIVE.set(bridgePid, phone.stop);
  const deadline = Date.now() + 12_000;
  while (!bridgeErr.includes('bridge: connected')) {
    if (exitInfo !== undefined || bridge.exitCode !== null || Date.now() > deadline) {
      await phone.stop();
      throw new Error(`baresip ${name} did not open ctrl_tcp in its namespace:\n${phone.describe()}`);
    }
    await sleep(50);
  }
  return phone;
}

function readdirSafe(dir: string): string[] {
  try { return readdirSync(dir).sort(); } catch { return []; }
}

// ------------------------------------------------------------------ audio

interface Heard { rms: number; activeSeconds: number; frequency: number; detail: string }

/** The loudest-longest received dump of `phone` since `before`, measured. */
function heard(phone: Phone, before: readonly string[]): Heard {
  const files = phone.received().filter((f) => !before.includes(f));
  let best: Heard = { rms: 0, activeSeconds: 0, frequency: 0, detail: `${phone.name}: no received-audio dump (sndfile *-dec.wav)` };
  const lines: string[] = [];
  for (const f of files) {
    const w = readWav(f);
    const s = audioStats(w.samples, w.sampleRate);
    lines.push(`${basename(f)}: ${s.seconds.toFixed(2)} s, RMS ${s.rms.toFixed(0)} (${s.dbfs.toFixed(1)} dBFS), active ${s.activeSeconds.toFixed(2)} s, ~${s.frequency.toFixed(0)} Hz`);
    if (s.activeSeconds >= best.activeSeconds) best = { rms: s.rms, activeSeconds: s.activeSeconds, frequency: s.frequency, detail: '' };
  }
  if (files.length > 0) best.detail = `${phone.name} received: ${lines.join('; ')}`;
  return best;
}

function assertHeard(h: Heard, freq: number, context: () => string): void {
  assert.ok(h.rms > 1000, `silent or nearly (RMS ${h.rms.toFixed(0)} <= 1000): ${h.detail}\n${context()}`);
  assert.ok(h.activeSeconds >= 2, `less than 2 s of audible audio: ${h.detail}\n${context()}`);
  assert.ok(Math.abs(h.frequency - freq) <= freq * 0.1, `not the other side's ${freq} Hz tone: ${h.detail}\n${context()}`);
}

// ------------------------------------------------------------------ one setup per driver

interface StoredCall { callId: string; callerUserId: number | null; calleeUserId: number | null; disposition: string; finalStatus: number; mediaMode: string | null }

interface Rig {
  server: Careflow;
  engine: RtpEngine | undefined;
  userA: User;
  userB: User;
  phoneA: Phone;
  phoneB: Phone;
  context(): string;
}

let net: Network;
let tones: string;

before(async () => {
  tones = tempDir('careflow-nat-tones-');
  makeTone(join(tones, 'a.wav'), TONE_A, 30);
  makeTone(join(tones, 'b.wav'), TONE_B, 30);
  net = await buildNetwork();
});

after(async () => {
  await Promise.all([...LIVE.values()].map((stop) => stop()));
  await Promise.all([net?.wan.close(), net?.router.close(), net?.home.close()]);
  if (!failed) for (const dir of TEMP) rmSync(dir, { recursive: true, force: true });
});

async function startRig(engineEnv: Record<string, string>, withRtpEngine: boolean): Promise<Rig> {
  const parts: { engine: RtpEngine | undefined; server: Careflow | undefined; phones: Phone[] } = { engine: undefined, server: undefined, phones: [] };
  try {
    const engine = withRtpEngine ? await startRtpEngineIn(net.wan) : undefined;
    parts.engine = engine;
    const server = await startCareflow(net.wan, engineEnv);
    parts.server = server;
    const [userA, userB] = [await addUser(server, 'Office Desk A'), await addUser(server, 'Home Mobile B')];
    const phoneA = await startPhone(net.wan, 'A-wan', PHONE_A, userA, join(tones, 'a.wav'));
    parts.phones.push(phoneA);
    const phoneB = await startPhone(net.home, 'B-home', PHONE_B, userB, join(tones, 'b.wav'));
    parts.phones.push(phoneB);
    const rig: Rig = {
      server, engine, userA, userB, phoneA, phoneB,
      context: () => [
        `setup: ${BARESIP_VERSION}; server ${SERVER}:${SIP_PORT} env ${JSON.stringify(engineEnv)}; A ${PHONE_A} (wan), B ${PHONE_B} (home, NAT to ${ROUTER_WAN})`,
        phoneA.describe(), phoneB.describe(),
        ...(engine !== undefined ? [`--- rtpengine (last 3 KB)\n${engine.logs().slice(-3072)}`] : []),
        `--- server (last 4 KB)\n${server.logs().slice(-4096)}`,
      ].join('\n'),
    };
    // Registered: the server lists a device for each (baresip registers before ctrl_tcp has a client).
    for (const u of [userA, userB]) {
      const deadline = Date.now() + 10_000;
      let last = '';
      for (;;) {
        last = await server.cli(['user', 'show', u.id, '--json']);
        if (((JSON.parse(last) as { devices: unknown[] | null }).devices ?? []).length > 0) break;
        if (Date.now() > deadline) assert.fail(`${u.sipUsername} did not register within 10 s: ${last}\n${rig.context()}`);
        await sleep(200);
      }
    }
    return rig;
  } catch (e) {
    await Promise.all(parts.phones.map((p) => p.stop()));
    await parts.server?.stop();
    await parts.engine?.stop();
    throw e;
  }
}

async function stopRig(rig: Rig | undefined): Promise<void> {
  if (rig === undefined) return;
  await Promise.all([rig.phoneA.stop(), rig.phoneB.stop()]);
  await rig.server.stop();
  await rig.engine?.stop();
}

/** B's registration: Contact names its private address, the source is the router's public one. */
function inNatPorts(port: number): boolean {
  const [low, high] = NAT_PORTS.split('-').map(Number) as [number, number];
  return port >= low && port <= high;
}

async function assertBehindNat(rig: Rig): Promise<string> {
  const show = JSON.parse(await rig.server.cli(['user', 'show', rig.userB.id, '--json'])) as { devices: Array<{ contact: string; source: string; transport: string }> | null };
  const d = show.devices?.[0];
  assert.ok(d !== undefined, `B has no device online: ${JSON.stringify(show)}\n${rig.context()}`);
  assert.match(d.contact, new RegExp(`@${PHONE_B.replace(/\./g, '\\.')}:${PHONE_SIP_PORT}\\b`), `B's Contact names its private address: ${JSON.stringify(d)}`);
  const [host, port] = [d.source.slice(0, d.source.lastIndexOf(':')), Number(d.source.slice(d.source.lastIndexOf(':') + 1))];
  assert.ok(host === ROUTER_WAN && inNatPorts(port), `B's registration must come from the router's public address, on a port the NAT chose: ${JSON.stringify(d)}`);
  return `B registered with Contact ${d.contact} from ${d.source} (${d.transport})`;
}

async function callRecord(rig: Rig, caller: User, callee: User, known: ReadonlySet<string>): Promise<StoredCall> {
  const deadline = Date.now() + 5000;
  let calls: StoredCall[] = [];
  for (;;) {
    calls = JSON.parse(await rig.server.cli(['calls', '--json', '--limit', '20'])) as StoredCall[];
    const rec = calls.find((c) => !known.has(c.callId) && String(c.callerUserId) === caller.id && String(c.calleeUserId) === callee.id);
    if (rec !== undefined) return rec;
    if (Date.now() > deadline) assert.fail(`no call record ${caller.sipUsername} -> ${callee.sipUsername}: ${JSON.stringify(calls)}\n${rig.context()}`);
    await sleep(250);
  }
}

async function knownCalls(rig: Rig): Promise<Set<string>> {
  return new Set((JSON.parse(await rig.server.cli(['calls', '--json', '--limit', '100'])) as StoredCall[]).map((c) => c.callId));
}

/** caller dials callee's number; callee auto-answers; talk; caller hangs up. What each side heard. */
async function call(rig: Rig, caller: Phone, callee: Phone, calleeUser: User): Promise<{ caller: Heard; callee: Heard }> {
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try { return await fn(); } catch (e) { assert.fail(`${what}: ${(e as Error).message}\n${rig.context()}`); }
  };
  const [fromCaller, fromCallee] = [caller.events.length, callee.events.length];
  const [recCaller, recCallee] = [caller.received(), callee.received()];
  const r = await step(`${caller.name} dial`, () => caller.command('dial', `sip:${calleeUser.number}@${SERVER}:${SIP_PORT}`));
  assert.ok(r.ok, `${caller.name}: dial refused: ${JSON.stringify(r.raw)}\n${rig.context()}`);
  await step(`${callee.name} call established`, () => callee.waitEvent('CALL_ESTABLISHED', 10_000, fromCallee));
  await step(`${caller.name} call established`, () => caller.waitEvent('CALL_ESTABLISHED', 10_000, fromCaller));
  await sleep(TALK_MS);
  for (const p of [caller, callee]) {
    assert.equal(p.events.slice(p === caller ? fromCaller : fromCallee).some((e) => e.type === 'CALL_CLOSED'), false, `${p.name}: the call closed during the talk time\n${rig.context()}`);
  }
  await step(`${caller.name} hangup`, () => caller.command('hangup'));
  await step(`${caller.name} call closed`, () => caller.waitEvent('CALL_CLOSED', 10_000, fromCaller));
  await step(`${callee.name} call closed (BYE through the proxy)`, () => callee.waitEvent('CALL_CLOSED', 10_000, fromCallee));
  await sleep(300); // sndfile closes its dumps when the audio stream is freed
  return { caller: heard(caller, recCaller), callee: heard(callee, recCallee) };
}

// ------------------------------------------------------------------ the tests

/** A test that marks the run failed (temp folders kept) when it throws. */
function check(name: string, fn: (t: TestContext) => Promise<void>): void {
  test(name, async (t) => {
    try { await fn(t); } catch (e) { failed = true; throw e; }
  });
}

const DRIVERS = [
  { name: 'the embedded engine (default)', env: { CAREFLOW_MEDIA_ENGINE: 'embedded' }, rtpengine: false },
  { name: 'RTPEngine', env: { CAREFLOW_RTPENGINE: `127.0.0.1:${NG_PORT}` }, rtpengine: true },
] as const;

for (const driver of DRIVERS) {
  describe(`phone B behind NAT, relayed by ${driver.name}`, () => {
    let rig: Rig | undefined;
    before(async () => {
      try { rig = await startRig(driver.env, driver.rtpengine); } catch (e) { failed = true; throw e; }
    });
    after(async () => { await stopRig(rig); });

    check('B registers through the NAT: its Contact names 10.77.0.2, its packets come from the router', async (t) => {
      t.diagnostic(await assertBehindNat(rig!));
    });

    for (const direction of ['B calls A', 'A calls B'] as const) {
      check(`${direction}: relayed, audio flows both ways, the call log says relay`, async (t) => {
        const r = rig!;
        const known = await knownCalls(r);
        const mark = r.engine?.logged() ?? 0;
        const [caller, callee, callerUser, calleeUser] = direction === 'B calls A'
          ? [r.phoneB, r.phoneA, r.userB, r.userA] : [r.phoneA, r.phoneB, r.userA, r.userB];
        const h = await call(r, caller, callee, calleeUser);
        const [a, b] = caller === r.phoneA ? [h.caller, h.callee] : [h.callee, h.caller];
        t.diagnostic(a.detail);
        t.diagnostic(b.detail);
        assertHeard(a, TONE_B, r.context); // A hears B: B's packets, from behind the NAT, reached the relay
        assertHeard(b, TONE_A, r.context); // B hears A: the relay sends to B's public source, not to 10.77.0.2
        const rec = await callRecord(r, callerUser, calleeUser, known);
        assert.deepEqual([rec.disposition, rec.finalStatus, rec.mediaMode], ['answered', 200, 'relay'], `${JSON.stringify(rec)}\n${r.context()}`);
        t.diagnostic(`call record: ${JSON.stringify(rec)}`);
        if (r.engine !== undefined) {
          // RTPEngine's final stats for the call: B's side was the router's public address and a
          // port the NAT chose (latched: neither the SDP's address nor its port), with packets.
          const ip = ROUTER_WAN.replace(/\./g, '\\.');
          const line = new RegExp(`Port\\s+${SERVER.replace(/\./g, '\\.')}:\\d+ <>\\s+${ip}:(\\d+), SSRC \\S+, (\\d+) p`).exec(r.engine.logsSince(mark));
          assert.ok(line !== null && inNatPorts(Number(line[1])) && Number(line[2]) > 50,
            `rtpengine did not relay B at ${ROUTER_WAN} on a port the NAT chose in this call\n${r.context()}`);
          t.diagnostic(`rtpengine: ${line[0]}`);
        }
      });
    }
  });
}

describe('without a media engine (CAREFLOW_MEDIA_ENGINE=off): one-way audio', () => {
  let rig: Rig | undefined;
  before(async () => {
    try { rig = await startRig({ CAREFLOW_MEDIA_ENGINE: 'off' }, false); } catch (e) { failed = true; throw e; }
  });
  after(async () => { await stopRig(rig); });

  check('A calls B: the SDP goes through unchanged, A\'s audio goes to 10.77.0.2 and B behind NAT hears nothing', async (t) => {
    const r = rig!;
    t.diagnostic(await assertBehindNat(r));
    const known = await knownCalls(r);
    const h = await call(r, r.phoneA, r.phoneB, r.userB);
    t.diagnostic(h.caller.detail);
    t.diagnostic(h.callee.detail);
    // A sends where B's SDP says, 10.77.0.2, which wan has no route to: B hears nothing...
    assert.ok(h.callee.rms < 300 && h.callee.activeSeconds < 0.5,
      `B (behind NAT) must hear nothing without the relay: ${h.callee.detail}\n${r.context()}`);
    // ...while B's own audio leaves through the NAT to A's public address: one-way audio.
    assertHeard(h.caller, TONE_B, r.context);
    const rec = await callRecord(r, r.userA, r.userB, known);
    assert.deepEqual([rec.disposition, rec.mediaMode], ['answered', 'direct'], `${JSON.stringify(rec)}\n${r.context()}`);
  });
});
