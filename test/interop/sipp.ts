// SIPp (Debian `sip-tester`) driven from node:test.
//
// Every run is in the foreground with `-m <calls>`, bounded by SIPp's own `-timeout` and by
// a kill (by PID) a little later; its traces go to a fresh temp folder: `-trace_stat`
// (final counters), `-trace_err` (unexpected messages), `-trace_msg` (every message sent
// and received, which the tests read to assert on exact headers) and `-trace_logs`.
// SIPp 3.6 fails a call on any message the scenario does not expect, so a scenario that
// lists the exact responses is itself the assertion; `code === 0` means every call passed.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, basename } from 'node:path';
import assert from 'node:assert/strict';
import { freeSippPorts, freeUdpPort } from './harness.ts';

export const SCENARIOS = resolve(import.meta.dirname, 'scenarios');

export interface SippStats {
  successful: number;
  failed: number;
  /** all counters of the last `-trace_stat` row, by column name (e.g. "FailedUnexpectedMessage(C)") */
  columns: Record<string, string>;
}

export interface SippMessage {
  direction: 'sent' | 'received';
  /** the raw SIP message (CRLF or LF line ends as logged) */
  text: string;
  /** first line: request line or status line */
  firstLine: string;
  /** header names in order, as written on the wire */
  headerNames: string[];
  /** first value of a header, by lower-case name; see header() for all values */
  header(name: string): string | undefined;
  headers(name: string): string[];
}

export interface SippResult {
  /** exit 0, every one of the -m calls successful, none failed, not stopped or killed */
  passed: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  stats?: SippStats;
  /** contents of the -trace_err file ('' when there was nothing unexpected) */
  errors: string;
  /** contents of the -trace_logs file (<log> actions) */
  logs: string;
  messages: SippMessage[];
  dir: string;
  /** a readable summary for assertion messages */
  describe(): string;
}

export interface SippOptions {
  /** scenario file name in test/interop/scenarios, or an absolute path */
  scenario: string;
  /** "host:port" of the remote party; omitted for a UAS that only waits */
  target?: string;
  /** extra SIPp arguments, e.g. ['-s', 'careflow_2', '-key', 'domain', '127.0.0.1'] */
  args?: string[];
  /** hard bound for the whole run (default 30 s); SIPp's -timeout is set a bit below */
  timeoutMs?: number;
  /** number of calls (-m), default 1 */
  calls?: number;
  /** injection CSV contents (first line SEQUENTIAL/RANDOM/USER) or lines after it */
  injection?: string[];
  /** an existing injection file (alternative to `injection`) */
  injectionFile?: string;
  /** local SIP port (-p); a free one is chosen when omitted */
  localPort?: number;
  /** keep the trace folder (default: removed when the run passed) */
  keep?: boolean;
}

let sippChecked = false;
export function requireSipp(): void {
  if (sippChecked) return;
  const r = spawnSync('sipp', ['-v'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) {
    throw new Error('sipp not found: apt-get install -y sip-tester');
  }
  sippChecked = true;
}

/** One injection CSV line per user: field0 = user, field1 = the whole [authentication] keyword
 *  (SIPp 3.6 mis-parses [fieldN] nested inside [authentication ...]). */
export function authInjection(users: ReadonlyArray<{ sipUsername: string; password: string }>): string[] {
  return users.map((u) => {
    if (/[;\]\s]/.test(u.password) || /[;\]\s]/.test(u.sipUsername)) {
      throw new Error(`credentials with ';', ']' or blanks cannot go into a SIPp injection file: ${u.sipUsername}`);
    }
    return `${u.sipUsername};[authentication username=${u.sipUsername} password=${u.password}]`;
  });
}

/** A SIPp run in progress; `result` settles when SIPp exits (or is killed). */
export interface SippHandle {
  pid: number;
  port: number;
  dir: string;
  result: Promise<SippResult>;
  /** SIGTERM, SIGKILL after 3 s; resolves with the result */
  stop(): Promise<SippResult>;
}

const running = new Set<number>();
process.on('exit', () => {
  for (const pid of running) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

/** Starts SIPp (foreground mode, no stdin) and returns at once. */
export async function startSipp(opts: SippOptions): Promise<SippHandle> {
  requireSipp();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const dir = mkdtempSync(join(tmpdir(), 'careflow-sipp-'));
  const scenario = opts.scenario.startsWith('/') ? opts.scenario : join(SCENARIOS, opts.scenario);
  if (!existsSync(scenario)) throw new Error(`SIPp scenario not found: ${scenario}`);
  const name = basename(scenario, '.xml');
  const ports = await freeSippPorts(opts.localPort);
  const args: string[] = [];
  if (opts.target !== undefined) args.push(opts.target);
  args.push(
    '-sf', scenario,
    '-i', '127.0.0.1',
    '-p', String(ports.sip),
    '-cp', String(ports.control),
    '-mp', String(ports.media),
    '-m', String(opts.calls ?? 1),
    '-nostdin',
    // SIPp gives up (and fails) a little before we would kill it
    '-timeout', `${Math.max(1, Math.floor(timeoutMs / 1000) - 2)}s`, '-timeout_error',
    '-trace_stat', '-stf', join(dir, 'stat.csv'), '-fd', '1',
    '-trace_err', '-error_file', join(dir, 'errors.log'),
    '-trace_msg', '-message_file', join(dir, 'messages.log'),
    '-trace_logs', '-log_file', join(dir, 'logs.log'),
  );
  if (opts.injection !== undefined) {
    const file = join(dir, 'injection.csv');
    const lines = /^(SEQUENTIAL|RANDOM|USER)/.test(opts.injection[0] ?? '') ? opts.injection : ['SEQUENTIAL', ...opts.injection];
    writeFileSync(file, lines.join('\n') + '\n');
    args.push('-inf', file);
  } else if (opts.injectionFile !== undefined) {
    args.push('-inf', opts.injectionFile);
  }
  args.push(...(opts.args ?? []));
  writeFileSync(join(dir, 'command'), ['sipp', ...args].join(' ') + '\n');

  const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error('sipp not found: apt-get install -y sip-tester');
  running.add(pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout = (stdout + d).slice(-200_000); });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-200_000); });
  let timedOut = false;
  let stopped = false;
  const calls = opts.calls ?? 1;
  const killer = setTimeout(() => { timedOut = true; kill(pid, 'SIGTERM'); setTimeout(() => kill(pid, 'SIGKILL'), 3000).unref(); }, timeoutMs);
  const result = new Promise<SippResult>((resolvePromise) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      running.delete(pid);
      const r = collect(dir, name, code, signal, timedOut, stopped, calls, stdout, stderr);
      if (r.passed && opts.keep !== true) rmSync(dir, { recursive: true, force: true });
      resolvePromise(r);
    });
  });
  return {
    pid,
    port: ports.sip,
    dir,
    result,
    async stop() {
      stopped = true;
      kill(pid, 'SIGTERM');
      const t = setTimeout(() => kill(pid, 'SIGKILL'), 3000);
      const r = await result;
      clearTimeout(t);
      return r;
    },
  };
}

/** Runs one SIPp scenario to its end (`-m` calls) and returns what happened. */
export async function runSipp(opts: SippOptions): Promise<SippResult> {
  const h = await startSipp(opts);
  return h.result;
}

/** A background UAS (a callee device): started now, result when its call is over. */
export function startSippUas(opts: Omit<SippOptions, 'target'>): Promise<SippHandle> {
  return startSipp(opts);
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try { process.kill(pid, signal); } catch { /* already gone */ }
}

function read(path: string): string {
  try { return readFileSync(path, 'utf8'); } catch { return ''; }
}

function collect(dir: string, name: string, code: number | null, signal: NodeJS.Signals | null,
  timedOut: boolean, stopped: boolean, calls: number, stdout: string, stderr: string): SippResult {
  const stats = parseStats(read(join(dir, 'stat.csv')));
  const errors = read(join(dir, 'errors.log'));
  const logs = read(join(dir, 'logs.log'));
  const messages = parseMessages(read(join(dir, 'messages.log')));
  const command = read(join(dir, 'command')).trim();
  // A SIPp stopped from outside may still exit 0: only finished calls count.
  const passed = code === 0 && !timedOut && !stopped && stats !== undefined && stats.successful >= calls && stats.failed === 0;
  const r: SippResult = {
    passed, code, signal, timedOut, stdout, stderr, errors, logs, messages, dir,
    describe() {
      const flow = messages.map((m) => `${m.direction === 'sent' ? '-->' : '<--'} ${m.firstLine}`).join('\n  ');
      return [
        `SIPp ${name}: ${passed ? 'passed' : 'FAILED'}, exit ${code}${signal !== null ? ` (signal ${signal})` : ''}` +
          `${timedOut ? ' (killed: time limit)' : ''}${stopped ? ' (stopped by the test)' : ''}`,
        stats !== undefined ? `calls: ${stats.successful} successful, ${stats.failed} failed` : 'no statistics',
        `command: ${command}`,
        `traces: ${dir}`,
        `message flow:\n  ${flow || '(none)'}`,
        errors.trim() !== '' ? `unexpected (-trace_err):\n${errors.trim().slice(-4000)}` : '',
        stderr.trim() !== '' ? `stderr:\n${stderr.trim().slice(-2000)}` : '',
      ].filter((s) => s !== '').join('\n');
    },
  };
  if (stats !== undefined) r.stats = stats;
  return r;
}

/** Last row of a -trace_stat CSV (semicolon separated, header row first). */
export function parseStats(csv: string): SippStats | undefined {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const head = lines[0]?.split(';');
  const last = lines.length > 1 ? lines[lines.length - 1]?.split(';') : undefined;
  if (head === undefined || last === undefined) return undefined;
  const columns: Record<string, string> = {};
  head.forEach((h, i) => { if (h !== '') columns[h] = last[i] ?? ''; });
  return {
    successful: Number(columns['SuccessfulCall(C)'] ?? 0),
    failed: Number(columns['FailedCall(C)'] ?? 0),
    columns,
  };
}

// -trace_msg blocks look like:
// ----------------------------------------------- 2026-11-22 04:20:10.441444
// UDP message sent (197 bytes):            | UDP message received [235] bytes :
// <blank line> <message> ...
const BLOCK = /^-{20,} [^\n]*\n(UDP|TCP|TLS|SCTP) message (sent|received)[^\n]*\n\n?/gm;

export function parseMessages(log: string): SippMessage[] {
  const out: SippMessage[] = [];
  const starts: Array<{ index: number; end: number; direction: 'sent' | 'received' }> = [];
  for (const m of log.matchAll(BLOCK)) {
    starts.push({ index: m.index, end: m.index + m[0].length, direction: m[2] === 'sent' ? 'sent' : 'received' });
  }
  starts.forEach((s, i) => {
    const text = log.slice(s.end, starts[i + 1]?.index ?? log.length).replace(/\s+$/, '') + '\r\n';
    out.push(makeMessage(s.direction, text));
  });
  return out;
}

function makeMessage(direction: 'sent' | 'received', text: string): SippMessage {
  const lines = text.split(/\r?\n/);
  const firstLine = lines[0] ?? '';
  const headerNames: string[] = [];
  const values = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    if (line === '') break;
    const c = line.indexOf(':');
    if (c <= 0 || /^\s/.test(line)) continue;
    const name = line.slice(0, c).trim();
    headerNames.push(name);
    const key = name.toLowerCase();
    const list = values.get(key) ?? [];
    list.push(line.slice(c + 1).trim());
    values.set(key, list);
  }
  return {
    direction, text, firstLine, headerNames,
    header: (n) => values.get(n.toLowerCase())?.[0],
    headers: (n) => values.get(n.toLowerCase()) ?? [],
  };
}

/** Received responses (in order), optionally only those with the given status code. */
export function responses(r: SippResult, status?: number): SippMessage[] {
  return r.messages.filter((m) => m.direction === 'received' && m.firstLine.startsWith('SIP/2.0 ') &&
    (status === undefined || m.firstLine.startsWith(`SIP/2.0 ${status} `)));
}

/** Received requests with the given method. */
export function requests(r: SippResult, method: string): SippMessage[] {
  return r.messages.filter((m) => m.direction === 'received' && m.firstLine.startsWith(`${method} `));
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A callee device: registers `login` from a free UDP port (register_device.xml, Contact = that
 * port), then runs `scenario` as a UAS on the same port.
 */
export async function startDevice(opts: {
  server: { sipPort: number; domain: string; logs(): string };
  login: { sipUsername: string; password: string };
  scenario: string;
  args?: string[];
  timeoutMs?: number;
}): Promise<SippHandle> {
  const port = await freeUdpPort();
  const reg = await runSipp({
    scenario: 'register_device.xml', target: `127.0.0.1:${opts.server.sipPort}`, localPort: port,
    injection: authInjection([opts.login]), args: ['-key', 'domain', opts.server.domain], timeoutMs: 15_000,
  });
  assert.ok(reg.passed, `device registration (login ${opts.login.sipUsername}) failed:\n${reg.describe()}\n${opts.server.logs().slice(-3000)}`);
  const uas = await startSippUas({ scenario: opts.scenario, localPort: port, args: opts.args ?? [], timeoutMs: opts.timeoutMs ?? 30_000 });
  await pause(300); // let SIPp bind before the INVITE comes
  return uas;
}

/**
 * Awaits every callee device (bounded: 15 s after the caller finished); on failure stops them
 * and asserts with a report of every party and the end of the server log.
 */
export async function settleCall(uac: SippResult, devices: SippHandle[], serverLogs: () => string): Promise<SippResult[]> {
  const outcome = await Promise.race([Promise.all(devices.map((d) => d.result)), pause(15_000).then(() => undefined)]);
  const results = outcome ?? await Promise.all(devices.map((d) => d.stop()));
  const report = [uac.describe(), ...results.map((r, i) => `--- device ${i + 1}\n${r.describe()}`), `--- server log\n${serverLogs().slice(-6000)}`].join('\n');
  assert.ok(uac.passed, `caller failed:\n${report}`);
  results.forEach((r, i) => assert.ok(r.passed, `device ${i + 1} failed:\n${report}`));
  return results;
}
