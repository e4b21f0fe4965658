// The installed service, started the way its systemd unit says, for the installer tests that
// run it without systemd (install.test.ts in a chroot, install-arm64.test.ts under qemu-user):
// the unit's ExecStart as its User and Group, with its EnvironmentFile and WorkingDirectory,
// inside a private network namespace; and the probe a phone and a browser would make there.
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './debian-root.ts';
import type { Netns } from './netns.ts';
import { stopper } from './processes.ts';

export const PROBE = join(REPO, 'test', 'interop', 'install-probe.ts');
export const READY = 'careflow: listening';

/** Every KEY=value line of a unit file (repeated keys kept in order). */
export function unitSettings(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (kv?.[1] === undefined || kv[2] === undefined) continue;
    m.set(kv[1], [...(m.get(kv[1]) ?? []), kv[2]]);
  }
  return m;
}

/** KEY=value lines, as systemd's EnvironmentFile= reads this file (no quoting in it). */
export function envFileVars(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l));
}

export interface RunningService { pid: number; stop: () => Promise<number | null>; logs: () => string }

/**
 * Starts the installed unit of `root` inside `ns` and waits (bounded) for it to say it
 * listens. The PID is the server's own: nsenter, chroot, env and setpriv exec one another.
 */
export async function startUnit(root: string, ns: Netns, opts: { readyMs?: number } = {}): Promise<RunningService> {
  const unit = unitSettings(readFileSync(join(root, 'etc/systemd/system/careflow.service'), 'utf8'));
  const one = (key: string): string => {
    const v = unit.get(key);
    assert.ok(v?.length === 1 && v[0] !== undefined, `the unit has no single ${key}=`);
    return v[0];
  };
  const envVars = envFileVars(readFileSync(join(root, one('EnvironmentFile').replace(/^-/, '')), 'utf8'));
  const child: ChildProcess = ns.spawn('chroot', [
    root, 'env', '-i', '-C', one('WorkingDirectory'), 'PATH=/usr/bin:/bin', ...envVars,
    'setpriv', `--reuid=${one('User')}`, `--regid=${one('Group')}`, '--init-groups', '--', ...one('ExecStart').split(/\s+/),
  ]);
  const pid = child.pid ?? -1;
  let logs = '';
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => { exitCode = code; res(code); }));
  const stop = stopper(pid, exited, () => exitCode);
  const readyMs = opts.readyMs ?? 30_000;
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`the service did not print "${READY}" within ${readyMs} ms:\n${logs}`)), readyMs);
      child.stdout?.on('data', (d: Buffer) => {
        logs += d.toString();
        if (logs.includes(READY)) { clearTimeout(timer); res(); }
      });
      child.stderr?.on('data', (d: Buffer) => void (logs += d.toString()));
      child.once('exit', (code) => { clearTimeout(timer); rej(new Error(`the service exited (${code}) before it was ready:\n${logs}`)); });
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { pid, stop, logs: () => logs };
}

/** The uid a process runs as. */
export function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

export interface Probe { options: { status: number; allow: string }; web: { status: number; type: string; html: boolean }; register?: number[] }

/** OPTIONS (and REGISTER with credentials) on 5060/udp and the web phone on 8080, inside `ns`. */
export function probe(ns: Netns, user?: { sipUsername: string; password: string }, timeoutMs = 30_000): Probe {
  const args = [PROBE, '5060', '8080', '127.0.0.1', ...(user === undefined ? [] : [user.sipUsername, user.password])];
  const r = ns.run(process.execPath, args, { timeoutMs });
  assert.equal(r.status, 0, `the probe failed:\n${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Probe;
}
