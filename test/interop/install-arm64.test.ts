// The one-command installer on Debian 12 **arm64** (Oracle's Ampere VMs, a Raspberry Pi 4/5
// with a 64-bit OS), on this x86_64 machine: a debootstrapped arm64 root file system whose
// programs run under qemu-user (qemu-user-static registered with binfmt_misc, flag F so the
// emulator works inside the chroot). The same scripts/install.sh as on x86_64, unchanged:
// Debian's arm64 nodejs/npm, `npm ci` fetching Node.js 24 for arm64 from the npm registry,
// esbuild's arm64 binary building the web phone, tsc; then the unit's ExecStart, as careflow,
// inside a private network namespace, answers OPTIONS and REGISTER and serves the web phone.
//
// What this does not show: an arm64 kernel or systemd on arm64 (qemu-user emulates the CPU
// for user programs only; systemd is covered on x86_64 by install-systemd.test.ts).
//
// Time: about 10 min from nothing on the 2-core machine (debootstrap ~1 min 45 s, the
// installer ~8 min: dpkg and npm under emulation), less with the caches in
// /var/cache/careflow-test (bookworm-arm64-rootfs.tar.zst, the .deb files, npm's cache).
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  chrootMounts, cleanUp, enableArm64Emulation, MINUTE, NPM_INSIDE, prepareRoot, processesIn, registryAccess, REPO, requireTools, saveAptCache,
  seedAptCache, sh, unpackSources,
} from './debian-root.ts';
import { probe, type RunningService, startUnit, uidOf } from './installed-service.ts';
import { Netns } from './netns.ts';

/** The ELF machine of an executable: 0xb7 is AArch64, 0x3e x86-64. */
function elfMachine(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(20);
    readSync(fd, head, 0, 20, 0);
    assert.equal(head.subarray(0, 4).toString('latin1'), '\x7fELF', `${file} is not an ELF executable`);
    return head.readUInt16LE(18);
  } finally {
    closeSync(fd);
  }
}

describe('scripts/install.sh on Debian 12 arm64 (debootstrap, qemu-user)', { timeout: 45 * MINUTE }, () => {
  let work = '';
  let root = '';
  const mounts: string[] = [];
  let env: string[] = [];
  let ns: Netns | undefined;
  let server: RunningService | undefined;

  const p = (path: string): string => join(root, path);
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try { return await fn(); } finally { console.log(`# install-arm64: ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`); }
  };
  const chroot = async (args: readonly string[], timeoutMs = 5 * MINUTE): Promise<string> => {
    const r = await sh('chroot', [root, 'env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root',
      'LANG=C.UTF-8', 'TERM=dumb', ...env, ...args], { timeoutMs });
    assert.equal(r.code, 0, `${args.join(' ')} failed (${r.code}):\n${r.out.slice(-8000)}`);
    return r.stdout;
  };

  before(async () => {
    requireTools([
      ['debootstrap', 'debootstrap'], ['zstd', 'zstd'], ['qemu-aarch64-static', 'qemu-user-static'], ['update-binfmts', 'binfmt-support'],
      ['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['ip', 'iproute2'], ['git', 'git'], ['npm', 'npm'],
    ]);
    await enableArm64Emulation();
    work = mkdtempSync('/var/tmp/careflow-arm64-test-');
    root = join(work, 'root');
    mkdirSync(root);
    await prepareRoot(root, timed, 'arm64');
    mounts.push(...await chrootMounts(root));
    seedAptCache(root);
    // dpkg's fsync per file costs minutes under emulation; this root is thrown away anyway.
    writeFileSync(p('etc/dpkg/dpkg.cfg.d/careflow-test-unsafe-io'), 'force-unsafe-io\n');
    env = [...await registryAccess(root, REPO), `npm_config_cache=${NPM_INSIDE}`];
    ns = await Netns.create();
  }, { timeout: 35 * MINUTE });

  after(async () => {
    await server?.stop();
    await ns?.close();
    for (const pid of root === '' ? [] : processesIn(root)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    const left = await cleanUp(work, mounts);
    assert.deepEqual(left, [], `mounts left behind under ${work}`);
  });

  it('installs with Node.js 24 for arm64 from npm and builds the web phone, all under emulation', { timeout: 35 * MINUTE }, async () => {
    assert.equal((await chroot(['uname', '-m'])).trim(), 'aarch64', 'the chroot runs arm64 programs');
    const src = await unpackSources(work, root, 'careflow-src');
    const out = await timed('install.sh (arm64, emulated)', () => chroot(['bash', `${src}/scripts/install.sh`], 30 * MINUTE));
    saveAptCache(root);
    assert.match(out, /installing the prerequisites from the distribution: .*nodejs npm/);
    assert.match(out, /installed CareFlow Voice /);
    assert.match((await chroot(['/opt/careflow/current/node_modules/.bin/node', '-p', 'process.arch + " " + process.version'])).trim(), /^arm64 v24\.\d+\.\d+$/);
    const node = realpathSync(p('opt/careflow/current/node_modules/.bin/node'));
    assert.ok(node.startsWith(root + '/'), node);
    assert.equal(elfMachine(node), 0xb7, `${node} is an AArch64 executable`);
    assert.ok(existsSync(p('opt/careflow/current/web/dist/index.html')), 'the web phone is built');
    assert.ok(existsSync(p('opt/careflow/current/dist/cli/main.js')), 'the server is built');
  });

  it("the unit's ExecStart on arm64, as careflow in a private network namespace: OPTIONS, REGISTER, the web phone", { timeout: 10 * MINUTE }, async () => {
    assert.ok(ns !== undefined);
    appendFileSync(p('etc/careflow/careflow.env'), '\nCAREFLOW_DOMAIN=127.0.0.1\n');
    const alice = JSON.parse(await chroot(['careflow', 'user', 'add', '--name', 'Alice Arm', '--json'])) as { sipUsername: string; password: string };
    server = await timed('start to "listening" (emulated)', () => startUnit(root, ns as Netns, { readyMs: 3 * MINUTE }));
    const careflowUid = Number(readFileSync(p('etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('careflow:'))?.split(':')[2]);
    assert.equal(uidOf(server.pid), careflowUid, 'runs as careflow');
    assert.match(readFileSync(`/proc/${server.pid}/cmdline`, 'utf8'), /dist\/cli\/main\.js\0serve/);
    const r = probe(ns, alice, 2 * MINUTE);
    assert.equal(r.options.status, 200, JSON.stringify(r));
    assert.deepEqual(r.register, [401, 200]);
    assert.equal(r.web.status, 200);
    assert.ok(r.web.html);
    assert.equal(await server.stop(), 0, `SIGTERM stops it cleanly:\n${server.logs()}`);
    server = undefined;
  });
});
