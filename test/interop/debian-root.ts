// Helpers for tests that run a clean Debian root file system in a chroot
// (test/interop/install.test.ts): programs run to completion in their own process group with
// a time bound, the Debian mirror and registry settings of this machine, and the mounts and
// processes left under a directory (checked before anything there is deleted).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const MINUTE = 60_000;

// ---------------------------------------------------------------- commands

/** `out` is stdout and stderr merged, in order; `stdout` alone. */
export interface Result { code: number | null; out: string; stdout: string }

/**
 * Runs a program to completion in a process group of its own, bounded by `timeoutMs`
 * (then the whole group is killed by its PID). stdout and stderr are merged into `out`.
 */
export function sh(program: string, args: readonly string[], opts: { timeoutMs?: number; cwd?: string; input?: string } = {}): Promise<Result> {
  return new Promise((done) => {
    const child = spawn(program, args, { cwd: opts.cwd, detached: true, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => { out += d.toString(); stdout += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => void (out += d.toString()));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timeoutMs = opts.timeoutMs ?? MINUTE;
    const timer = setTimeout(() => {
      out += `\n[killed after ${timeoutMs} ms]`;
      // The group's id is the child's PID (detached); never kill(0), which is our own group.
      if (child.pid !== undefined && child.pid > 0) {
        try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }, timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); done({ code: null, out: `${out}${e.message}`, stdout }); });
    child.once('close', (code) => { clearTimeout(timer); done({ code, out, stdout }); });
  });
}

export async function must(program: string, args: readonly string[], opts: { timeoutMs?: number; cwd?: string; input?: string } = {}): Promise<string> {
  const r = await sh(program, args, opts);
  assert.equal(r.code, 0, `${program} ${args.join(' ')} failed (${r.code}):\n${r.out.slice(-6000)}`);
  return r.stdout;
}

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

// ---------------------------------------------------------------- host facts

/** The Debian mirror apt uses here for `suite` (one-line or deb822 sources); deb.debian.org otherwise. */
export function debianMirror(suite: string): string {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d').sort()) files.push(join('/etc/apt/sources.list.d', f));
  } catch { /* none */ }
  for (const file of files) {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string): string[] => (new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(stanza)?.[1] ?? '').split(/\s+/).filter(Boolean);
        if (field('Types').includes('deb') && field('Suites').includes(suite)) {
          const uri = field('URIs')[0];
          if (uri !== undefined) return uri;
        }
      }
    } else {
      for (const line of text.split('\n')) {
        const m = new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+)\\s+${suite}\\s`).exec(line.trim() + ' ');
        if (m?.[1] !== undefined) return m[1];
      }
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * How npm and apt reach their registries on this machine, as environment variables and
 * files for the chroot: npm's registry, proxies and CA file (`npm config`), the process's
 * proxy variables, apt's Acquire::*::Proxy.
 */
export async function registryAccess(root: string, cwd: string): Promise<string[]> {
  const env: string[] = [];
  const config = JSON.parse(await must('npm', ['config', 'list', '--json'], { cwd })) as Record<string, unknown>;
  for (const key of ['registry', 'proxy', 'https-proxy', 'noproxy', 'strict-ssl']) {
    const v = config[key];
    if ((typeof v === 'string' && v !== '') || typeof v === 'boolean') env.push(`npm_config_${key.replace(/-/g, '_')}=${String(v)}`);
  }
  const cafile = config.cafile;
  if (typeof cafile === 'string' && cafile !== '' && existsSync(cafile)) {
    mkdirSync(join(root, 'usr/local/share/careflow-test'), { recursive: true });
    copyFileSync(cafile, join(root, 'usr/local/share/careflow-test/npm-ca.pem'));
    env.push('npm_config_cafile=/usr/local/share/careflow-test/npm-ca.pem');
  }
  for (const key of ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) {
    const v = process.env[key];
    if (v !== undefined && v !== '') env.push(`${key}=${v}`);
  }
  const apt = spawnSync('apt-config', ['dump'], { encoding: 'utf8' });
  const proxies = (apt.stdout ?? '').split('\n').filter((l) => /^Acquire::(https?|ftp)::Proxy/i.test(l));
  if (proxies.length > 0) writeFileSync(join(root, 'etc/apt/apt.conf.d/99careflow-test-proxy'), proxies.join('\n') + '\n');
  writeFileSync(join(root, 'etc/resolv.conf'), readFileSync('/etc/resolv.conf'));
  return env;
}

// ---------------------------------------------------------------- mounts and processes

/** Mount points at or under `dir`, from this process's mount table. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(dir + '/'));
}

/** PIDs of processes whose root directory is `root` (left over from a chroot). */
export function processesIn(root: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/root`) === root) pids.push(Number(name));
    } catch { /* gone, or not ours to read */ }
  }
  return pids;
}
