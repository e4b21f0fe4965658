// Starts Debian's rtpengine (userspace forwarding, no kernel module) on loopback for tests:
// a free ng control port, a private RTP port window, logs kept for failure reports, stopped
// by PID when the test file ends.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { freeUdpPort } from './harness.ts';
import { stopper } from './processes.ts';

export const RTPENGINE_PATH = '/usr/bin/rtpengine';
export const RTPENGINE_INSTALL = 'apt-get install -y rtpengine-daemon';

export interface RtpEngineHandle {
  readonly pid: number;
  readonly ngPort: number;
  readonly minPort: number;
  readonly maxPort: number;
  logs(): string;
  stop(): Promise<number | null>;
}

const live = new Set<RtpEngineHandle>();
process.on('exit', () => {
  for (const h of live) try { process.kill(h.pid, 'SIGKILL'); } catch { /* gone */ }
});
try {
  after(async () => { await Promise.all([...live].map((h) => h.stop())); });
} catch { /* outside node:test */ }

export function requireRtpEngine(): void {
  try { accessSync(RTPENGINE_PATH, constants.X_OK); } catch {
    throw new Error(`rtpengine is missing (${RTPENGINE_PATH}): ${RTPENGINE_INSTALL}`);
  }
}

export async function startRtpEngine(opts: { readyTimeoutMs?: number; logLevel?: number } = {}): Promise<RtpEngineHandle> {
  requireRtpEngine();
  const ngPort = await freeUdpPort();
  const minPort = 30_000 + 2 * Math.floor(Math.random() * 4000); // an even 200-port window in 30000-38199
  const maxPort = minPort + 199;
  const dir = mkdtempSync(join(tmpdir(), 'careflow-rtpengine-'));
  const child = spawn(RTPENGINE_PATH, [
    '--config-file=none', '--foreground', '--log-stderr', `--log-level=${opts.logLevel ?? 6}`, '--no-log-timestamps', '--table=-1',
    '--interface=127.0.0.1', `--listen-ng=127.0.0.1:${ngPort}`, `--port-min=${minPort}`, `--port-max=${maxPort}`,
    `--pidfile=${join(dir, 'rtpengine.pid')}`, '--timeout=60', '--delete-delay=0',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const append = (d: string): void => { output = (output + d).slice(-200_000); };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => {
    exitCode = code;
    rmSync(dir, { recursive: true, force: true });
    res(code);
  }));
  const pid = child.pid;
  if (pid === undefined) throw new Error('rtpengine did not start');
  const handle: RtpEngineHandle = { pid, ngPort, minPort, maxPort, logs: () => output, stop: stopper(pid, exited, () => exitCode) };
  live.add(handle);
  void exited.then(() => live.delete(handle));
  // Ready when it says it is (bounded); a crash at start fails with its log.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  while (!/Startup complete/i.test(output)) {
    if (exitCode !== undefined) throw new Error(`rtpengine exited (${exitCode}) at start:\n${output}`);
    if (Date.now() > deadline) {
      await handle.stop();
      throw new Error(`rtpengine not ready within ${opts.readyTimeoutMs ?? 10_000} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return handle;
}
