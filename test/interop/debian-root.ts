// Helpers for tests that run a clean Debian root file system in a chroot or a container
// (test/interop/install.test.ts, install-systemd.test.ts): programs run to completion in their
// own process group with a time bound, the Debian mirror and registry settings of this
// machine, the root file system made once and cached, a release tarball of the working tree,
// and the mounts and processes left under a directory (checked before anything there is
// deleted).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const MINUTE = 60_000;
export const REPO = resolve(import.meta.dirname, '..', '..');
/** Kept between runs: the root file system, the .deb files apt fetched, npm's cache. */
export const CACHE = '/var/cache/careflow-test';
const APT_CACHE = join(CACHE, 'apt-archives');
export const NPM_CACHE = join(CACHE, 'npm');
/** Where NPM_CACHE appears inside the root file system. */
export const NPM_INSIDE = '/var/cache/careflow-npm';
const SUITE = 'bookworm';

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

// ---------------------------------------------------------------- the root file system

/** Fails with the install command when a tool is missing, or when not root. */
export function requireTools(tools: ReadonlyArray<readonly [command: string, debianPackage: string]>): void {
  const missing = tools.filter(([cmd]) => !hasCommand(cmd));
  if (missing.length > 0) {
    assert.fail(`missing ${missing.map(([c]) => c).join(', ')}: apt-get install -y --no-install-recommends ${[...new Set(missing.map(([, pkg]) => pkg))].join(' ')}`);
  }
  assert.equal(process.getuid?.(), 0, 'this test needs root (debootstrap, chroot, mount)');
}

/**
 * What a chroot needs, mounted under `root`: proc, the host's /dev bound read-only (nothing
 * inside can delete it), npm's cache at NPM_INSIDE. Returns the mount points, innermost last.
 */
export async function chrootMounts(root: string): Promise<string[]> {
  const done: string[] = [];
  const mount = async (args: string[], target: string): Promise<void> => {
    mkdirSync(target, { recursive: true });
    await must('mount', [...args, target]);
    done.push(target);
  };
  await mount(['-t', 'proc', 'proc'], join(root, 'proc'));
  await mount(['--bind', '/dev'], join(root, 'dev'));
  await must('mount', ['-o', 'remount,bind,ro', join(root, 'dev')]);
  await mount(['--bind', NPM_CACHE], join(root, NPM_INSIDE));
  return done;
}

/**
 * Undoes `mounts` (last first; lazily when busy) and deletes `work` only when nothing is
 * mounted under it any more (the host's /dev was bound there). Returns what is still mounted.
 */
export async function cleanUp(work: string, mounts: readonly string[]): Promise<string[]> {
  for (const target of [...mounts].reverse()) {
    if ((await sh('umount', [target])).code !== 0) await sh('umount', ['-l', target]);
  }
  const left = work === '' ? [] : mountsUnder(work);
  if (left.length === 0 && work !== '') rmSync(work, { recursive: true, force: true });
  return left;
}

/**
 * arm64 programs on x86_64: qemu-aarch64 registered with binfmt_misc, with flag F (the
 * emulator is opened at registration, so it also works inside a chroot or a container).
 */
export async function enableArm64Emulation(): Promise<void> {
  const binfmt = '/proc/sys/fs/binfmt_misc';
  const qemu = `${binfmt}/qemu-aarch64`;
  if (!existsSync(`${binfmt}/status`)) await must('mount', ['-t', 'binfmt_misc', 'binfmt_misc', binfmt]);
  if (!existsSync(qemu)) await must('update-binfmts', ['--enable', 'qemu-aarch64']);
  const entry = readFileSync(qemu, 'utf8');
  assert.match(entry, /^enabled$/m, `qemu-aarch64 is registered but disabled:\n${entry}`);
  assert.match(entry, /^flags: .*F/m, `qemu-aarch64 lacks binfmt flag F, so it cannot run inside a chroot:\n${entry}`);
}

/**
 * A clean Debian 12 minbase in `root` (an empty directory): unpacked from the cache, or made
 * by debootstrap and then cached (complete only once renamed into place). A foreign `arch`
 * (arm64 on x86_64) needs qemu-user-static registered with binfmt_misc (install-arm64.test.ts).
 */
export async function prepareRoot(root: string, timed: <T>(what: string, fn: () => Promise<T>) => Promise<T>, arch?: 'arm64'): Promise<void> {
  const ROOTFS_TAR = join(CACHE, arch === undefined ? 'bookworm-rootfs.tar.zst' : `bookworm-${arch}-rootfs.tar.zst`);
  mkdirSync(APT_CACHE, { recursive: true });
  mkdirSync(NPM_CACHE, { recursive: true });
  const cached = existsSync(ROOTFS_TAR) && (await sh('zstd', ['-q', '-t', ROOTFS_TAR], { timeoutMs: 2 * MINUTE })).code === 0;
  if (cached) {
    await timed('unpack the cached Debian 12 root file system', () =>
      must('tar', ['--zstd', '--numeric-owner', '-xpf', ROOTFS_TAR, '-C', root], { timeoutMs: 5 * MINUTE }));
  } else {
    const mirror = debianMirror(SUITE);
    const archArgs = arch === undefined ? [] : [`--arch=${arch}`];
    await timed(`debootstrap ${archArgs.join(' ')} --variant=minbase ${SUITE} (${mirror})`, () =>
      must('debootstrap', [...archArgs, '--variant=minbase', SUITE, root, mirror], { timeoutMs: 30 * MINUTE }));
    assert.deepEqual(mountsUnder(root), [], 'debootstrap left mounts behind');
    const tmp = `${ROOTFS_TAR}.${process.pid}.tmp`;
    await timed('cache the root file system', () =>
      must('tar', ['--zstd', '--numeric-owner', '-cpf', tmp, '-C', root, '.'], { timeoutMs: 10 * MINUTE }));
    renameSync(tmp, ROOTFS_TAR);
  }
  assert.ok(existsSync(join(root, 'etc/debian_version')), 'not a Debian root file system');
}

/**
 * The .deb files apt fetched in earlier runs, copied in (not bound: two runs at once would
 * fight over apt's lock in a shared folder); `saveAptCache` copies the new ones back.
 */
export function seedAptCache(root: string): void {
  mkdirSync(join(root, 'var/cache/apt/archives/partial'), { recursive: true });
  for (const f of readdirSync(APT_CACHE).filter((n) => n.endsWith('.deb'))) copyFileSync(join(APT_CACHE, f), join(root, `var/cache/apt/archives/${f}`));
}

export function saveAptCache(root: string): void {
  for (const f of readdirSync(join(root, 'var/cache/apt/archives')).filter((n) => n.endsWith('.deb') && !existsSync(join(APT_CACHE, n)))) {
    const tmp = join(APT_CACHE, `.${f}.${process.pid}.tmp`);
    copyFileSync(join(root, `var/cache/apt/archives/${f}`), tmp);
    renameSync(tmp, join(APT_CACHE, f));
  }
}

/**
 * A tarball of the working tree (tracked and untracked, not ignored: what `git archive` of a
 * release gives), made in `work` and unpacked at /root/NAME inside `root`; returns that path.
 */
export async function unpackSources(work: string, root: string, name: string, extra: Record<string, string> = {}): Promise<string> {
  const listed = (await must('git', ['ls-files', '-z', '-co', '--exclude-standard'], { cwd: REPO })).split('\0')
    .filter((f) => f !== '' && existsSync(join(REPO, f)) && lstatSync(join(REPO, f)).isFile());
  const tarball = join(work, `${name}.tar`);
  await must('tar', ['--null', '-T', '-', '-cf', tarball], { cwd: REPO, input: listed.join('\0') + '\0' });
  const dir = join(root, `root/${name}`);
  mkdirSync(dir, { recursive: true });
  await must('tar', ['-xf', tarball, '-C', dir, '--no-same-owner']);
  for (const [file, text] of Object.entries(extra)) writeFileSync(join(dir, file), text);
  return `/root/${name}`;
}
