// baresip (Debian `baresip-core` 1.0) driven from node:test.
//
// Each user agent gets its own config folder in a temp dir (`config` + `accounts`), is
// started as `baresip -f <dir>` and controlled through its `ctrl_tcp` module: netstring
// framed JSON, commands `{"command","params","token"}` answered by
// `{"response":true,"ok","data","token"}`, and events `{"event":true,"type","class",
// "accountaor","direction","peeruri","id",...}` (CALL_INCOMING, CALL_RINGING,
// CALL_ESTABLISHED, CALL_CLOSED, REGISTER_OK, REGISTER_FAIL, ...). The `dial`, `accept`
// and `hangup` commands come from the `menu` module, so it is loaded too.
//
// Audio: the `aufile` source plays a WAV (it must be at `ausrc_srate`, 8 kHz mono here),
// `aubridge` is the sink (baresip 1.0 has no null player and its `aufile` has no player),
// and the `sndfile` audio filter dumps what was sent (`*-enc.wav`) and what was received
// and decoded (`*-dec.wav`) into the recording folder (`snd_path`), which the tests
// measure with readWav() and audioStats(). Codec: PCMU/PCMA only (`g711`).
//
// Every baresip started here is killed by PID when the test file ends (node:test
// `after`) and when the process exits; every wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { freeSipPort, freeTcpPort } from './harness.ts';

export const BARESIP_INSTALL = 'apt-get install -y baresip-core sox';
export const BARESIP_MODULES = ['g711', 'aufile', 'aubridge', 'sndfile', 'account', 'menu', 'ctrl_tcp'] as const;
const MODULE_PATH = '/usr/lib/baresip/modules';

const live = new Map<number, () => Promise<void>>();
process.on('exit', () => {
  for (const pid of live.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
try {
  after(async () => { await Promise.all([...live.values()].map((stop) => stop())); });
} catch { /* not inside node:test: the exit hook still applies */ }

let version: string | undefined;
/**
 * Fails (never skips) with the install command when baresip, its modules or sox are
 * missing. Returns baresip's version line.
 */
export function requireBaresip(): string {
  if (version !== undefined) return version;
  const r = spawnSync('baresip', ['-v'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) throw new Error(`baresip not found (${r.error.message}): install it with \`${BARESIP_INSTALL}\``);
  const m = /baresip v\S+/.exec(`${r.stdout}${r.stderr}`);
  if (m === null) throw new Error(`\`baresip -v\` printed no version: ${r.stdout}${r.stderr}; install with \`${BARESIP_INSTALL}\``);
  let modules: string[];
  try { modules = readdirSync(MODULE_PATH); } catch { modules = []; }
  const missing = BARESIP_MODULES.filter((name) => !modules.includes(`${name}.so`));
  if (missing.length > 0) throw new Error(`baresip modules ${missing.join(', ')} missing in ${MODULE_PATH}: install with \`${BARESIP_INSTALL}\``);
  const s = spawnSync('sox', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (s.error !== undefined || s.status !== 0) throw new Error(`sox not found: install it with \`${BARESIP_INSTALL}\``);
  version = m[0];
  return version;
}

/** Writes a 16-bit mono sine WAV at `rate` Hz (sox), for the `aufile` source. */
export function makeTone(path: string, freq: number, seconds = 60, rate = 8000): void {
  const r = spawnSync('sox', ['-n', '-r', String(rate), '-c', '1', '-b', '16', path, 'synth', String(seconds), 'sine', String(freq), 'vol', '0.5'],
    { encoding: 'utf8', timeout: 30_000 });
  if (r.error !== undefined || r.status !== 0) throw new Error(`sox could not write ${path}: ${r.error?.message ?? ''}${r.stderr}; install with \`${BARESIP_INSTALL}\``);
}

// ---------------------------------------------------------------- WAV + audio

export interface Wav { sampleRate: number; channels: number; bitsPerSample: number; samples: Int16Array }

/** Reads a PCM 16-bit WAV (as written by sox and libsndfile); only the first channel. */
export function readWav(path: string): Wav {
  const b = readFileSync(path);
  if (b.length < 12 || b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${path}: not a RIFF/WAVE file (${b.length} bytes)`);
  let off = 12;
  let fmt: { channels: number; rate: number; bits: number; format: number } | undefined;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      fmt = { format: b.readUInt16LE(body), channels: b.readUInt16LE(body + 2), rate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
    } else if (id === 'data') {
      if (fmt === undefined) throw new Error(`${path}: data chunk before fmt chunk`);
      if (fmt.bits !== 16 || (fmt.format !== 1 && fmt.format !== 0xfffe)) throw new Error(`${path}: not 16-bit PCM (format ${fmt.format}, ${fmt.bits} bits)`);
      // a file still being written (or not closed) may carry a 0 / too big size
      if (size === 0 || size === 0xffffffff || body + size > b.length) size = b.length - body;
      const frames = Math.floor(size / (2 * fmt.channels));
      const samples = new Int16Array(frames);
      for (let i = 0; i < frames; i++) samples[i] = b.readInt16LE(body + i * 2 * fmt.channels);
      return { sampleRate: fmt.rate, channels: fmt.channels, bitsPerSample: fmt.bits, samples };
    }
    off = body + size + (size % 2);
  }
  throw new Error(`${path}: no data chunk`);
}

export interface AudioStats {
  seconds: number;
  /** RMS over the whole file, in 16-bit sample units (full scale 32768) */
  rms: number;
  /** RMS in dB relative to full scale */
  dbfs: number;
  /** seconds in 20 ms windows whose RMS is above `threshold` */
  activeSeconds: number;
  /** zero-crossing frequency over the active windows, Hz (0 when none): a pure tone's pitch */
  frequency: number;
}

/** Level, active time and dominant frequency (zero crossings) of 16-bit samples. */
export function audioStats(samples: Int16Array, sampleRate: number, threshold = 300): AudioStats {
  let sum = 0;
  for (const s of samples) sum += s * s;
  const rms = samples.length > 0 ? Math.sqrt(sum / samples.length) : 0;
  const win = Math.max(1, Math.round(sampleRate / 50));
  let active = 0;
  let crossingsInActive = 0;
  for (let start = 0; start + win <= samples.length; start += win) {
    let e = 0;
    let crossings = 0;
    for (let i = start; i < start + win; i++) {
      const v = samples[i] ?? 0;
      e += v * v;
      if (i > 0 && ((samples[i - 1] ?? 0) < 0) !== (v < 0)) crossings++;
    }
    if (Math.sqrt(e / win) > threshold) {
      active++;
      crossingsInActive += crossings;
    }
  }
  const activeSeconds = (active * win) / sampleRate;
  return {
    seconds: samples.length / sampleRate,
    rms,
    dbfs: rms > 0 ? 20 * Math.log10(rms / 32768) : -Infinity,
    activeSeconds,
    frequency: activeSeconds > 0 ? crossingsInActive / 2 / activeSeconds : 0,
  };
}

// ---------------------------------------------------------------- user agent

export interface BaresipAccount {
  /** user part of the AOR (the SIP username) */
  user: string;
  /** AOR domain (the CareFlow domain) */
  domain: string;
  password: string;
  /** digest username when it differs from `user` (e.g. the number: login by number) */
  authUser?: string;
  /** the CareFlow server: every request goes through it as outbound proxy */
  proxy: { host: string; port: number };
  transport: 'udp' | 'tcp';
  /** `auto` answers incoming calls at once; `manual` waits for accept() */
  answermode: 'auto' | 'manual';
  regint?: number;
}

export interface BaresipOptions {
  /** a label for messages and the folder name */
  name: string;
  account: BaresipAccount;
  /** the `aufile` source: a 16-bit mono WAV at 8 kHz */
  toneWav: string;
  /** ready bound (ctrl_tcp connected), default 10 s */
  readyTimeoutMs?: number;
}

export interface BaresipEvent {
  type: string;
  class?: string;
  accountaor?: string;
  direction?: string;
  peeruri?: string;
  id?: string;
  param?: string;
  /** the whole JSON message */
  raw: Record<string, unknown>;
  /** index in events */
  index: number;
}

export interface BaresipResponse { ok: boolean; data: string; raw: Record<string, unknown> }

export interface BaresipUa {
  name: string;
  pid: number;
  /** the config folder (`-f`) */
  dir: string;
  /** where sndfile dumps *-enc.wav / *-dec.wav */
  recordDir: string;
  sipPort: number;
  ctrlPort: number;
  /** the account line written to `accounts` */
  accountLine: string;
  events: BaresipEvent[];
  /** sends a ctrl_tcp command; resolves with its response (bounded) */
  command(command: string, params?: string, timeoutMs?: number): Promise<BaresipResponse>;
  /** the first event at index >= `from` that matches (bounded) */
  waitEvent(what: string, match: (e: BaresipEvent) => boolean, timeoutMs?: number, from?: number): Promise<BaresipEvent>;
  /** baresip's stdout+stderr so far */
  output(): string;
  /** a summary for assertion messages: ports, account, events, the last 4 KB of output */
  describe(): string;
  /** decoded (received) audio dumps in recordDir, oldest first */
  received(): string[];
  /** encoded (sent) audio dumps in recordDir, oldest first */
  sent(): string[];
  exited(): boolean;
  /** SIGTERM, SIGKILL after 3 s */
  stop(): Promise<void>;
}

/**
 * baresip listens on `sip_listen` for UDP and TCP and on the port above it for TLS (libre's
 * default): all three must be free, or it exits with "Address already in use".
 */
async function freeBaresipPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await freeSipPort();
    if (p >= 65535) continue;
    try {
      const t = await new Promise<boolean>((resolve) => {
        const srv = createServer();
        srv.once('error', () => resolve(false));
        srv.listen(p + 1, '127.0.0.1', () => srv.close(() => resolve(true)));
      });
      if (t) return p;
    } catch { /* try another */ }
  }
  throw new Error('no port P with P+1 free for baresip after 20 tries');
}

function accountLine(a: BaresipAccount): string {
  const proxy = `sip:${a.proxy.host}:${a.proxy.port};transport=${a.transport}`;
  const params = [
    ...(a.authUser !== undefined ? [`auth_user=${a.authUser}`] : []),
    `auth_pass=${a.password}`,
    `outbound="${proxy}"`,
    `answermode=${a.answermode}`,
    `regint=${a.regint ?? 600}`,
    'audio_codecs=PCMU,PCMA',
    'mediaenc=',
  ].filter((p) => !p.endsWith('='));
  return `<sip:${a.user}@${a.domain};transport=${a.transport}>;${params.join(';')}`;
}

/**
 * A baresip `config`: SIP on `address` (default 127.0.0.1), the tone as source, aubridge as
 * sink, sndfile dumps in `recordDir`, ctrl_tcp on 127.0.0.1:`ctrlPort`; `rtpPorts` (`A-B`)
 * pins the RTP range.
 */
export function configText(o: { address?: string; sipPort: number; ctrlPort: number; toneWav: string; recordDir: string; rtpPorts?: string }): string {
  const address = o.address ?? '127.0.0.1';
  return [
    'poll_method\t\tepoll',
    `sip_listen\t\t${address}:${o.sipPort}`,
    'call_local_timeout\t120',
    'call_max_calls\t\t4',
    'audio_buffer\t\t20',
    `audio_source\t\taufile,${o.toneWav}`,
    'audio_player\t\taubridge,sink',
    'audio_alert\t\taubridge,alert',
    'ausrc_srate\t\t8000',
    'auplay_srate\t\t8000',
    'ausrc_channels\t\t1',
    'auplay_channels\t\t1',
    'audio_level\t\tno',
    'ausrc_format\t\ts16',
    'auplay_format\t\ts16',
    'auenc_format\t\ts16',
    'audec_format\t\ts16',
    'rtcp_mux\t\tno',
    ...(o.rtpPorts !== undefined ? [`rtp_ports\t\t${o.rtpPorts}`] : []),
    'jitter_buffer_delay\t1-5',
    'rtp_stats\t\tno',
    // baresip 1.0: "lo" fails, an address works
    `net_interface\t\t${address}`,
    `module_path\t\t${MODULE_PATH}`,
    'module\t\t\tg711.so',
    'module\t\t\taufile.so',
    'module\t\t\taubridge.so',
    'module\t\t\tsndfile.so',
    'module_tmp\t\taccount.so',
    'module_app\t\tmenu.so',
    'module_app\t\tctrl_tcp.so',
    `ctrl_tcp_listen\t\t127.0.0.1:${o.ctrlPort}`,
    `snd_path\t\t${o.recordDir}`,
    'menu_bell\t\tno',
    '',
  ].join('\n');
}

/** Encodes one netstring: `<len>:<payload>,`. */
function netstring(payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}:`, 'ascii'), body, Buffer.from(',', 'ascii')]);
}

// the menu module redraws "[0:00:03] audio=64000/64000 (bit/s)" many times a second
const STATUS_LINE = /\[\d+:\d\d:\d\d\] audio=\S* \(bit\/s\)\s*/g;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * baresip's ctrl_tcp protocol: netstrings of JSON, events pushed by baresip, commands answered
 * by token. Bytes come in through feed() and go out through the writer given to attach(), so
 * the same client serves a TCP socket on loopback and a pipe into another network namespace.
 */
export class BaresipControl {
  readonly events: BaresipEvent[] = [];
  readonly #name: string;
  readonly #log: (line: string) => void;
  readonly #waiters = new Set<() => void>();
  readonly #pending = new Map<string, (r: BaresipResponse) => void>();
  #write: ((b: Buffer) => void) | undefined;
  #rx = Buffer.alloc(0);
  #seq = 0;

  constructor(name: string, log: (line: string) => void) {
    this.#name = name;
    this.#log = log;
  }

  attach(write: (b: Buffer) => void): void {
    this.#write = write;
  }

  feed(d: Buffer): void {
    this.#rx = Buffer.concat([this.#rx, d]);
    for (;;) {
      const colon = this.#rx.indexOf(0x3a);
      if (colon < 0) return;
      const lenText = this.#rx.toString('ascii', 0, colon);
      if (!/^\d{1,9}$/.test(lenText)) {
        this.#log(`\n[driver] ctrl_tcp framing error near ${JSON.stringify(this.#rx.toString('utf8', 0, 80))}\n`);
        this.#rx = Buffer.alloc(0);
        return;
      }
      const len = Number(lenText);
      if (this.#rx.length < colon + 1 + len + 1) return;
      const payload = this.#rx.toString('utf8', colon + 1, colon + 1 + len);
      this.#rx = this.#rx.subarray(colon + 1 + len + 1);
      this.#onMessage(payload);
    }
  }

  #onMessage(text: string): void {
    let msg: Record<string, unknown>;
    try { msg = JSON.parse(text) as Record<string, unknown>; } catch {
      this.#log(`\n[driver] ctrl_tcp sent non-JSON: ${text}\n`);
      return;
    }
    const str = (k: string): string | undefined => (typeof msg[k] === 'string' ? msg[k] : undefined);
    if (msg['event'] === true) {
      const e: BaresipEvent = { type: str('type') ?? '?', raw: msg, index: this.events.length };
      for (const k of ['class', 'accountaor', 'direction', 'peeruri', 'id', 'param'] as const) {
        const v = str(k);
        if (v !== undefined) e[k] = v;
      }
      this.events.push(e);
      for (const w of [...this.#waiters]) w();
    } else if (msg['response'] === true) {
      const token = str('token') ?? '';
      const r = this.#pending.get(token);
      if (r !== undefined) {
        this.#pending.delete(token);
        r({ ok: msg['ok'] === true, data: str('data') ?? '', raw: msg });
      }
    }
  }

  /** Sends a command; resolves with its response (bounded). */
  command(command: string, params?: string, timeoutMs = 5000): Promise<BaresipResponse> {
    const write = this.#write;
    if (write === undefined) return Promise.reject(new Error(`${this.#name}: ctrl_tcp not connected`));
    const token = `t${++this.#seq}`;
    return new Promise<BaresipResponse>((res, rej) => {
      const t = setTimeout(() => {
        this.#pending.delete(token);
        rej(new Error(`${this.#name}: no ctrl_tcp response to ${command} ${params ?? ''} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(token, (r) => { clearTimeout(t); res(r); });
      write(netstring(JSON.stringify({ command, ...(params !== undefined ? { params } : {}), token })));
    });
  }

  /** The first event at index >= `from` that matches (bounded). */
  waitEvent(what: string, match: (e: BaresipEvent) => boolean, timeoutMs = 10_000, from = 0): Promise<BaresipEvent> {
    return new Promise<BaresipEvent>((res, rej) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): void => {
        const hit = this.events.slice(from).find(match);
        if (hit !== undefined) {
          clearTimeout(timer);
          this.#waiters.delete(check);
          res(hit);
        }
      };
      timer = setTimeout(() => {
        this.#waiters.delete(check);
        rej(new Error(`${this.#name}: no event "${what}" within ${timeoutMs} ms (events since #${from}: ` +
          `${this.events.slice(from).map((e) => e.type).join(', ') || 'none'})`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}

export async function startBaresip(opts: BaresipOptions): Promise<BaresipUa> {
  requireBaresip();
  const dir = mkdtempSync(join(tmpdir(), `careflow-baresip-${opts.name.replace(/[^A-Za-z0-9]/g, '')}-`));
  const recordDir = join(dir, 'rec');
  mkdirSync(recordDir);
  const sipPort = await freeBaresipPort();
  const ctrlPort = await freeTcpPort();
  const line = accountLine(opts.account);
  writeFileSync(join(dir, 'config'), configText({ sipPort, ctrlPort, toneWav: opts.toneWav, recordDir }));
  writeFileSync(join(dir, 'accounts'), `${line}\n`);
  writeFileSync(join(dir, 'contacts'), '');

  const child = spawn('baresip', ['-f', dir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot spawn baresip -f ${dir}: install it with \`${BARESIP_INSTALL}\``);
  let out = '';
  const append = (d: string): void => { out = (out + d).slice(-500_000); };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  let exitInfo: string | undefined;
  child.on('error', (e) => { append(`\n[driver] spawn error: ${e.message}\n`); });
  const exited = new Promise<void>((res) => child.on('exit', (code, signal) => {
    exitInfo = `exit code ${code} signal ${signal}`;
    live.delete(pid);
    res();
  }));

  const ctl = new BaresipControl(opts.name, append);
  let socket: Socket | undefined;

  let stopping: Promise<void> | undefined;
  const ua: BaresipUa = {
    name: opts.name, pid, dir, recordDir, sipPort, ctrlPort, accountLine: line, events: ctl.events,
    command(command, params, timeoutMs = 5000) {
      if (socket === undefined || socket.destroyed) return Promise.reject(new Error(`${opts.name}: ctrl_tcp not connected`));
      return ctl.command(command, params, timeoutMs);
    },
    waitEvent: (what, match, timeoutMs = 10_000, from = 0) => ctl.waitEvent(what, match, timeoutMs, from),
    output: () => out,
    describe() {
      return [
        `--- baresip "${opts.name}" pid ${pid} (SIP 127.0.0.1:${sipPort}, ctrl_tcp 127.0.0.1:${ctrlPort}, config ${dir}` +
          `${exitInfo !== undefined ? `, ${exitInfo}` : ''})`,
        `account: ${line.replace(/auth_pass=[^;]*/, 'auth_pass=***')}`,
        `events: ${ctl.events.map((e) => `${e.type}${e.param !== undefined && e.param !== '' ? `(${e.param})` : ''}`).join(', ') || 'none'}`,
        `recordings: ${readdirSafe(recordDir).join(', ') || 'none'}`,
        `last 4 KB of output (call status lines removed):\n${out.replace(STATUS_LINE, '').slice(-4096)}`,
      ].join('\n');
    },
    received: () => readdirSafe(recordDir).filter((f) => f.endsWith('-dec.wav')).map((f) => join(recordDir, f)),
    sent: () => readdirSafe(recordDir).filter((f) => f.endsWith('-enc.wav')).map((f) => join(recordDir, f)),
    exited: () => exitInfo !== undefined,
    stop() {
      if (stopping !== undefined) return stopping;
      stopping = (async () => {
        socket?.destroy();
        if (exitInfo === undefined) {
          try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
          const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 3000);
          await exited;
          clearTimeout(t);
        }
      })();
      return stopping;
    },
  };
  live.set(pid, () => ua.stop());

  // Ready when ctrl_tcp accepts a connection (bounded); fail early when baresip exits.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  while (socket === undefined) {
    if (exitInfo !== undefined) break;
    const s = await new Promise<Socket | undefined>((res) => {
      const c = connect({ host: '127.0.0.1', port: ctrlPort });
      const t = setTimeout(() => { c.destroy(); res(undefined); }, 1000);
      c.once('connect', () => { clearTimeout(t); res(c); });
      c.once('error', () => { clearTimeout(t); c.destroy(); res(undefined); });
    });
    if (s !== undefined) {
      socket = s;
      ctl.attach((b) => s.write(b));
      s.on('data', (d: Buffer) => ctl.feed(d));
      s.on('error', (e) => append(`\n[driver] ctrl_tcp error: ${e.message}\n`));
      break;
    }
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  if (socket === undefined) {
    await ua.stop();
    throw new Error(`baresip "${opts.name}" did not open ctrl_tcp on 127.0.0.1:${ctrlPort} ` +
      `(${exitInfo ?? 'still running'}):\n${ua.describe()}`);
  }
  return ua;
}

function readdirSafe(dir: string): string[] {
  try { return readdirSync(dir).sort(); } catch { return []; }
}

/**
 * What `ua` received and decoded since `before` (its dumps then) must be the `freq` Hz tone,
 * audible (RMS > 1000) for `minSeconds` or more and within 10 % of the frequency. Returns a
 * summary; fails with every dump's figures and `context()`.
 */
export function assertHeardTone(ua: BaresipUa, before: readonly string[], freq: number, context: () => string, minSeconds = 2): string {
  const files = ua.received().filter((f) => !before.includes(f));
  if (files.length === 0) throw new Error(`${ua.name} wrote no received-audio dump (sndfile *-dec.wav)\n${context()}`);
  const stats = files.map((f) => {
    const w = readWav(f);
    return { file: f.split('/').at(-1), ...audioStats(w.samples, w.sampleRate) };
  });
  const best = stats.reduce((a, b) => (b.activeSeconds > a.activeSeconds ? b : a));
  const detail = `${ua.name} received (expected ~${freq} Hz): ${JSON.stringify(stats)}`;
  if (!(best.rms > 1000 && best.activeSeconds >= minSeconds)) throw new Error(`silence or too little audio: ${detail}\n${context()}`);
  if (Math.abs(best.frequency - freq) > freq * 0.1) throw new Error(`not the ${freq} Hz tone: ${detail}\n${context()}`);
  return detail;
}
