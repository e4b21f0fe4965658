// Starts a real CareFlow server (`node src/cli/main.ts serve`) for interop tests.
//
// Each server gets a fresh data dir and free loopback ports, all through environment
// variables (CAREFLOW_DATA_DIR, CAREFLOW_DOMAIN, CAREFLOW_SIP_LISTEN,
// CAREFLOW_SIP_TLS_LISTEN, CAREFLOW_HTTP_LISTEN, plus opts.env). It is ready when its stdout
// prints a line containing "careflow: listening". Every server started here is stopped by
// PID when the test file ends (node:test `after`) and killed when the process exits.
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after } from 'node:test';
import { stopper } from './processes.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const READY = 'careflow: listening';

export interface StartOptions {
  /** reuse a data dir (restart); a new temp dir otherwise */
  dataDir?: string;
  /** SIP UDP+TCP port; a free one otherwise */
  sipPort?: number;
  tlsPort?: number;
  httpPort?: number;
  /** CAREFLOW_DOMAIN, default 127.0.0.1 */
  domain?: string;
  env?: Record<string, string>;
  /** readiness bound, default 15 s */
  readyTimeoutMs?: number;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

export interface CareflowUser {
  id: string;
  number: string;
  sipUsername: string;
  password: string;
  domain: string;
}

export interface ServerHandle {
  pid: number;
  sipPort: number;
  tlsPort: number;
  httpPort: number;
  dataDir: string;
  domain: string;
  adminToken: string;
  env: Record<string, string>;
  /** SIGTERM, SIGKILL after 5 s; resolves with the exit code (null when killed by a signal) */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
  logs(): string;
  cli(args: string[], timeoutMs?: number): Promise<CliResult>;
  addUser(name: string): Promise<CareflowUser>;
  /** fetch against http://127.0.0.1:<httpPort> with the admin bearer token */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** api() + JSON body; throws with the status and body on a non-2xx answer */
  apiJson<T = unknown>(path: string, init?: RequestInit): Promise<T>;
}

const live = new Map<number, ServerHandle>();
process.on('exit', () => {
  for (const pid of live.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
// Registered when this module is imported, i.e. at the top level of a test file: an after()
// registered inside a before() hook would run as soon as that hook ends and stop the server.
try {
  after(async () => { await Promise.all([...live.values()].map((h) => h.stop())); });
} catch { /* not inside node:test: the exit hook still applies */ }

// ---------------------------------------------------------------- ports

function bindUdp(port: number): Promise<{ port: number; close: () => Promise<void> } | null> {
  return new Promise((res) => {
    const s = createSocket('udp4');
    s.once('error', () => { s.close(); res(null); });
    s.bind(port, '127.0.0.1', () => {
      res({ port: s.address().port, close: () => new Promise((r) => s.close(() => r())) });
    });
  });
}

function bindTcp(port: number): Promise<{ port: number; close: () => Promise<void> } | null> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(null));
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a !== null ? a.port : 0;
      res({ port: p, close: () => new Promise((r) => s.close(() => r())) });
    });
  });
}

/** A loopback port free for both UDP and TCP (SIP listens on both). */
export async function freeSipPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const u = await bindUdp(0);
    if (u === null) continue;
    const t = await bindTcp(u.port);
    await u.close();
    if (t !== null) { await t.close(); return u.port; }
  }
  throw new Error('no loopback port free for both UDP and TCP after 50 tries');
}

export async function freeTcpPort(): Promise<number> {
  const t = await bindTcp(0);
  if (t === null) throw new Error('cannot bind a TCP port on 127.0.0.1');
  await t.close();
  return t.port;
}

export async function freeUdpPort(): Promise<number> {
  const u = await bindUdp(0);
  if (u === null) throw new Error('cannot bind a UDP port on 127.0.0.1');
  await u.close();
  return u.port;
}

/** Ports for one SIPp instance: SIP (-p), control (-cp), media (-mp: audio at p, video at p+2). */
export async function freeSippPorts(sip?: number): Promise<{ sip: number; control: number; media: number }> {
  const sipPort = sip ?? await freeUdpPort();
  const control = await freeUdpPort();
  for (let i = 0; i < 50; i++) {
    const a = await bindUdp(0);
    if (a === null) continue;
    if (a.port + 2 > 65535 || [sipPort, control].includes(a.port) || [sipPort, control].includes(a.port + 2)) { await a.close(); continue; }
    const b = await bindUdp(a.port + 2);
    await a.close();
    if (b !== null) { await b.close(); return { sip: sipPort, control, media: a.port }; }
  }
  throw new Error('no free UDP port pair (p, p+2) for SIPp media');
}

// ---------------------------------------------------------------- server

export async function startServer(opts: StartOptions = {}): Promise<ServerHandle> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'careflow-data-'));
  const sipPort = opts.sipPort ?? await freeSipPort();
  const tlsPort = opts.tlsPort ?? await freeTcpPort();
  const httpPort = opts.httpPort ?? await freeTcpPort();
  const domain = opts.domain ?? '127.0.0.1';
  const env: Record<string, string> = {
    CAREFLOW_DATA_DIR: dataDir,
    CAREFLOW_DOMAIN: domain,
    CAREFLOW_SIP_LISTEN: `127.0.0.1:${sipPort}`,
    CAREFLOW_SIP_TLS_LISTEN: `127.0.0.1:${tlsPort}`,
    CAREFLOW_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
    ...opts.env,
  };
  const childEnv = { ...process.env, ...env };

  const child = spawn(process.execPath, [CLI, 'serve'], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot spawn ${process.execPath} ${CLI} serve`);
  let output = '';
  const append = (d: string): void => { output = (output + d).slice(-1_000_000); };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => { exitCode = code; live.delete(pid); res(code); }));

  const handle: ServerHandle = {
    pid, sipPort, tlsPort, httpPort, dataDir, domain, adminToken: '', env,
    stop: stopper(pid, exited, () => exitCode),
    async kill9() {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    },
    logs: () => output,
    cli: (args, timeoutMs = 30_000) => runCli(args, childEnv, timeoutMs),
    async addUser(name) {
      const r = await runCli(['user', 'add', '--name', name, '--json'], childEnv, 30_000);
      if (r.code !== 0) throw new Error(`careflow user add --name ${name} --json: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      let u: Partial<CareflowUser>;
      try { u = JSON.parse(r.stdout) as Partial<CareflowUser>; } catch {
        throw new Error(`careflow user add --json printed no JSON:\n${r.stdout}\n${r.stderr}`);
      }
      for (const k of ['id', 'number', 'sipUsername', 'password', 'domain'] as const) {
        if (u[k] === undefined || u[k] === null) throw new Error(`careflow user add --json: field "${k}" missing in ${r.stdout}`);
      }
      return { id: String(u.id), number: String(u.number), sipUsername: String(u.sipUsername), password: String(u.password), domain: String(u.domain) };
    },
    api(path, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${handle.adminToken}`);
      return fetch(`http://127.0.0.1:${httpPort}${path}`, { ...init, headers, signal: init.signal ?? AbortSignal.timeout(10_000) });
    },
    async apiJson<T>(path: string, init?: RequestInit): Promise<T> {
      const res = await handle.api(path, init);
      const body = await res.text();
      if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${path}: HTTP ${res.status} ${body}`);
      return JSON.parse(body) as T;
    },
  };
  live.set(pid, handle);

  // Ready when the server says so; fail early when it exits; bounded.
  const timeoutMs = opts.readyTimeoutMs ?? 15_000;
  const ready = await new Promise<'ready' | 'exit' | 'timeout'>((res) => {
    const check = (): void => { if (output.includes(READY)) done('ready'); };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    const done = (v: 'ready' | 'exit' | 'timeout'): void => {
      clearTimeout(timer);
      child.stdout.off('data', check);
      res(v);
    };
    child.stdout.on('data', check);
    void exited.then(() => done('exit'));
    check();
  });
  if (ready !== 'ready') {
    await handle.stop();
    throw new Error(`careflow serve ${ready === 'exit' ? `exited (code ${exitCode})` : `printed no "${READY}" within ${timeoutMs} ms`} ` +
      `(env ${JSON.stringify(env)}):\n${output.slice(-8000)}`);
  }
  try {
    const secrets = JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')) as { adminToken?: unknown };
    if (typeof secrets.adminToken !== 'string') throw new Error('field adminToken missing');
    handle.adminToken = secrets.adminToken;
  } catch (e) {
    await handle.stop();
    throw new Error(`cannot read the admin token from ${join(dataDir, 'secrets.json')}: ${(e as Error).message}\n${output.slice(-4000)}`);
  }
  return handle;
}

function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<CliResult> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const t = setTimeout(() => {
      stderr += `\n[harness] careflow ${args.join(' ')} killed after ${timeoutMs} ms`;
      if (child.pid !== undefined) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }
    }, timeoutMs);
    child.on('error', (e) => { stderr += String(e); });
    child.on('close', (code) => { clearTimeout(t); res({ code, stdout, stderr }); });
  });
}

/** Polls `probe` every `intervalMs` until it returns a value other than undefined (bounded). */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
