// A Debian root file system booted under its own systemd with systemd-nspawn, for tests that
// need a real init (test/interop/install-systemd.test.ts): PID 1 inside is systemd, with
// journald, D-Bus and unit dependencies, as on a server. The container has a private network
// namespace holding only `lo`, so whatever it runs is reachable only from inside: a test
// reaches it by entering that namespace (`inNetns`), and commands run inside with `exec`
// (nsenter into every namespace of the container's PID 1).
//
// The host needs no systemd of its own: the machine is not registered (--register=no) and
// keeps the caller's cgroup (--keep-unit). Stopped by the PID of systemd-nspawn (SIGTERM:
// an orderly poweroff inside), then by killing the container's PID 1 if that hangs.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { MINUTE, sh, type Result } from './debian-root.ts';

export const NSPAWN = 'systemd-nspawn';
export const NSPAWN_INSTALL = 'apt-get install -y --no-install-recommends systemd-container';
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The PID of the first child of `parent` whose command is `comm`. */
function childNamed(parent: number, comm: string): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) === parent && /^Name:\s+(\S+)/m.exec(status)?.[1] === comm) return Number(name);
    } catch { /* gone */ }
  }
  return undefined;
}

export class BootedRoot {
  /** systemd-nspawn's PID, and the container's PID 1 (systemd) as the host sees it. */
  readonly pid: number;
  readonly init: number;
  readonly #console: () => string;
  readonly #exited: Promise<number | null>;

  private constructor(pid: number, init: number, console: () => string, exited: Promise<number | null>) {
    this.pid = pid;
    this.init = init;
    this.#console = console;
    this.#exited = exited;
  }

  /**
   * Boots `root` and waits (bounded) until systemd says the system is up. `binds` are host
   * directories bound into the container (host path, path inside).
   */
  static async boot(root: string, opts: { machine: string; binds?: ReadonlyArray<readonly [string, string]>; timeoutMs?: number }): Promise<BootedRoot> {
    const args = ['--boot', '--private-network', '--register=no', '--keep-unit', '--console=pipe', `--machine=${opts.machine}`, '-D', root,
      ...(opts.binds ?? []).map(([host, inside]) => `--bind=${host}:${inside}`)];
    const child = spawn(NSPAWN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' } });
    let out = '';
    const append = (d: Buffer): void => { out = (out + d.toString()).slice(-100_000); };
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => { exitCode = code; res(code); }));
    if (child.pid === undefined) throw new Error(`${NSPAWN} did not start: ${NSPAWN_INSTALL}`);
    const deadline = Date.now() + (opts.timeoutMs ?? 2 * MINUTE);
    let init: number | undefined;
    let state = '';
    for (;;) {
      if (exitCode !== undefined) throw new Error(`${NSPAWN} exited (${exitCode}) while booting:\n${out}`);
      init ??= childNamed(child.pid, 'systemd');
      if (init !== undefined) {
        const r = await sh('nsenter', ['-t', String(init), '-a', 'systemctl', 'is-system-running'], { timeoutMs: 10_000 });
        state = r.stdout.trim();
        if (state === 'running' || state === 'degraded') break;
      }
      if (Date.now() > deadline) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
        if (init !== undefined) try { process.kill(init, 'SIGKILL'); } catch { /* gone */ }
        throw new Error(`the container did not finish booting (state "${state}"):\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return new BootedRoot(child.pid, init, () => out, exited);
  }

  /** Runs a command inside the container (its namespaces and root), with a clean environment. */
  exec(args: readonly string[], opts: { env?: readonly string[]; timeoutMs?: number } = {}): Promise<Result> {
    return sh('nsenter', ['-t', String(this.init), '-a', '-r', '-w', 'env', '-i', PATH, 'HOME=/root', 'LANG=C.UTF-8', 'TERM=dumb',
      ...(opts.env ?? []), ...args], { timeoutMs: opts.timeoutMs ?? 2 * MINUTE });
  }

  /** Runs a host program in the container's network namespace only (it sees the container's lo). */
  inNetns(program: string, args: readonly string[], timeoutMs = MINUTE): Promise<Result> {
    return sh('nsenter', ['-t', String(this.init), '-n', program, ...args], { timeoutMs });
  }

  /**
   * The host's PID of a process the container knows as `inner` (systemd's MainPID is in the
   * container's PID namespace): the process in that namespace whose NSpid ends with `inner`.
   */
  hostPid(inner: number): number {
    const ns = readlinkSync(`/proc/${this.init}/ns/pid`);
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        if (readlinkSync(`/proc/${name}/ns/pid`) !== ns) continue;
        const ids = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
        if (ids !== undefined && Number(ids[ids.length - 1]) === inner) return Number(name);
      } catch { /* gone */ }
    }
    throw new Error(`no process ${inner} in the container`);
  }

  /** `systemctl show` properties of a unit, as a map. */
  async show(unit: string, props: readonly string[]): Promise<Map<string, string>> {
    const r = await this.exec(['systemctl', 'show', unit, ...props.map((p) => `--property=${p}`)], { timeoutMs: 10_000 });
    return new Map(r.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }

  console(): string {
    return this.#console();
  }

  /** An orderly poweroff (SIGTERM to systemd-nspawn); PID 1 is killed if it takes too long. */
  async poweroff(timeoutMs = MINUTE): Promise<number | null> {
    try { process.kill(this.pid, 'SIGTERM'); } catch { /* gone */ }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((res) => { timer = setTimeout(() => res('late'), timeoutMs); });
    const first = await Promise.race([this.#exited, late]);
    clearTimeout(timer);
    if (first !== 'late') return first;
    for (const pid of [this.init, this.pid]) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    await this.#exited;
    throw new Error(`the container did not power off within ${timeoutMs} ms:\n${this.#console().slice(-4000)}`);
  }
}
