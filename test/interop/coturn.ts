// coturn (Debian `coturn` 4.6.1, /usr/bin/turnserver) for TURN interop tests.
//
// Each server runs in the foreground on 127.0.0.1 only, from the command line only (-n: no
// config file), with the TURN REST API shared secret (--use-auth-secret
// --static-auth-secret), no TLS/DTLS listeners, no CLI, loopback peers allowed and relay
// ports in a random 200-port window of 40000-59999. Its log goes to stdout (verbose, so the
// "UDP listener opened on: 127.0.0.1:<port>" line tells when it is ready). Every server
// started here is stopped by PID when the test file ends (node:test `after`) and killed when
// the process exits; every wait is bounded.
//
// Noise to ignore in its log: "socket: Protocol not supported" (no SCTP in this kernel) and
// "I cannot support STUN CHANGE_REQUEST functionality because only one IP address is provided".
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { stopper } from './processes.ts';
import { freeSipPort } from './harness.ts';

export const TURNSERVER_PATH = '/usr/bin/turnserver';
export const COTURN_INSTALL = 'apt-get install -y coturn';

const live = new Map<number, () => Promise<number | null>>();
const liveDirs = new Map<number, string>();
process.on('exit', () => {
  for (const pid of live.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  for (const dir of liveDirs.values()) { try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ } }
});
try {
  after(async () => { await Promise.all([...live.values()].map((stop) => stop())); });
} catch { /* not inside node:test: the exit hook still applies */ }

/** Fails (never skips) with the install command when coturn's turnserver is missing. */
export function requireCoturn(): void {
  try { accessSync(TURNSERVER_PATH, constants.X_OK); } catch {
    throw new Error(`coturn is missing (${TURNSERVER_PATH}): ${COTURN_INSTALL}`);
  }
}

export interface CoturnOptions {
  /** TURN REST API shared secret (--static-auth-secret) */
  secret: string;
  realm: string;
  /** UDP+TCP listening port; a free one otherwise */
  listenPort?: number;
  /** relay port window start; a random 200-port window in 40000-59999 otherwise */
  minPort?: number;
  extraArgs?: string[];
  /** readiness bound, default 10 s */
  readyTimeoutMs?: number;
}

export interface CoturnHandle {
  pid: number;
  port: number;
  /** turn:127.0.0.1:<port>?transport=udp */
  url: string;
  /** turn:127.0.0.1:<port>?transport=tcp */
  tcpUrl: string;
  minPort: number;
  maxPort: number;
  logs(): string;
  /** SIGTERM, SIGKILL after 5 s; resolves with the exit code (null when killed by a signal) */
  stop(): Promise<number | null>;
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => { s.destroy(); res(false); }, 500);
    s.once('connect', () => { clearTimeout(t); s.destroy(); res(true); });
    s.once('error', () => { clearTimeout(t); s.destroy(); res(false); });
  });
}

export async function startCoturn(opts: CoturnOptions): Promise<CoturnHandle> {
  requireCoturn();
  const port = opts.listenPort ?? await freeSipPort();
  const minPort = opts.minPort ?? 40000 + 200 * Math.floor(Math.random() * 100);
  const maxPort = minPort + 199;
  const dir = mkdtempSync(join(tmpdir(), 'careflow-coturn-'));
  const args = [
    '-n', // no configuration file: the command line only
    '-v', // verbose: logs "UDP listener opened on: ..." (the readiness line)
    '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${opts.secret}`, `--realm=${opts.realm}`,
    '--no-tls', '--no-dtls', '--no-cli', '--allow-loopback-peers', '--no-multicast-peers',
    `--min-port=${minPort}`, `--max-port=${maxPort}`,
    '--log-file=stdout', '--simple-log',
    `--pidfile=${join(dir, 'turnserver.pid')}`, `--userdb=${join(dir, 'turndb')}`,
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn(TURNSERVER_PATH, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`cannot spawn ${TURNSERVER_PATH}: ${COTURN_INSTALL}`);
  }
  let output = '';
  const append = (d: string): void => { output = (output + d).slice(-1_000_000); };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  child.on('error', (e) => append(`\n[harness] spawn error: ${e.message}\n`));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => {
    exitCode = code;
    live.delete(pid);
    liveDirs.delete(pid);
    rmSync(dir, { recursive: true, force: true });
    res(code);
  }));

  const stop = stopper(pid, exited, () => exitCode);
  live.set(pid, stop);
  liveDirs.set(pid, dir);

  // Ready when it logs the UDP listener, or (fallback) its TCP listener accepts; bounded.
  const timeoutMs = opts.readyTimeoutMs ?? 10_000;
  const udpLine = new RegExp(`UDP listener opened on\\s*:\\s*127\\.0\\.0\\.1:${port}\\b`);
  const deadline = Date.now() + timeoutMs;
  let ready: 'log' | 'tcp' | 'exit' | 'timeout' = 'timeout';
  let tcpSince: number | undefined;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) { ready = 'exit'; break; }
    if (udpLine.test(output)) { ready = 'log'; break; }
    // the TCP listener opens a moment before the UDP one: give the UDP line 500 ms more
    if (tcpSince === undefined && await tcpAccepts(port)) tcpSince = Date.now();
    if (tcpSince !== undefined && Date.now() - tcpSince > 500) { ready = 'tcp'; break; }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (ready === 'exit' || ready === 'timeout') {
    await stop();
    throw new Error(`turnserver ${ready === 'exit' ? `exited (code ${exitCode})` : `was not listening on 127.0.0.1:${port} within ${timeoutMs} ms`}` +
      ` (${TURNSERVER_PATH} ${args.join(' ')}):\n${output.slice(-8000)}`);
  }
  return {
    pid, port, minPort, maxPort,
    url: `turn:127.0.0.1:${port}?transport=udp`,
    tcpUrl: `turn:127.0.0.1:${port}?transport=tcp`,
    logs: () => output,
    stop,
  };
}

/**
 * TURN REST API credentials (coturn --use-auth-secret): username `<expiry>:<user>` with
 * expiry in Unix seconds, credential base64(HMAC-SHA1(secret, username)). A reference to
 * compare the server's against.
 */
export function turnRestCredentials(secret: string, user: string, ttlSeconds: number, nowMs = Date.now()): { username: string; credential: string } {
  const expiry = Math.floor(nowMs / 1000) + ttlSeconds;
  const username = `${expiry}:${user}`;
  const credential = createHmac('sha1', secret).update(username).digest('base64');
  return { username, credential };
}
