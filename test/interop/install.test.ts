// The one-command installer (scripts/install.sh) on a clean Debian 12: a minbase root file
// system made by debootstrap, the installer run in it by chroot from a tarball of the working
// tree (what `git archive` of a release gives), then every promise of the script checked:
// the careflow user, the directories and their modes, the settings file, the systemd unit;
// the unit's ExecStart, run as its User with its EnvironmentFile inside a private network
// namespace (no systemd in a chroot), answers a SIP OPTIONS and REGISTER on 5060/UDP and
// serves the web phone on 8080; the `careflow` command adds a user as root; an upgrade makes
// a new version directory and keeps the data and the settings; rollback; uninstall keeps the
// data; uninstall --purge removes it.
//
// Network: the install steps need the package registries (Debian's archive for apt, the npm
// registry for npm ci), so they run in the chroot on the host's network, with the host's npm
// settings (registry, proxy, CA file) and apt proxy passed in; the server runs only inside a
// network namespace made here (`unshare -n`, lo up), and so does every request sent to it.
//
// Speed: the root file system is made once and kept in /var/cache/careflow-test/ (with the
// .deb files apt fetched and npm's cache); delete that folder to start from nothing. On the
// 2-core machine: about 1 min 45 s the first time (debootstrap 30-60 s), about 1 min 30 s
// after that (most of it apt-get installing nodejs and npm, 387 packages, in the chroot).
//
// Cleanup: mounts (proc, a read-only bind of /dev, npm's cache) are undone in `after`, and
// the work folder is deleted only once nothing is mounted under it; the server and any
// process left inside the chroot are stopped by PID.
import assert from 'node:assert/strict';
import {
  appendFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  chrootMounts, cleanUp, hasCommand, MINUTE, NPM_INSIDE, prepareRoot, processesIn, registryAccess, REPO, requireTools, saveAptCache,
  seedAptCache, sh, type Result, unpackSources as unpackInto,
} from './debian-root.ts';
import { envFileVars, type Probe, probe as probeIn, type RunningService, startUnit, uidOf, unitSettings } from './installed-service.ts';
import { Netns } from './netns.ts';

const CHROOT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// ---------------------------------------------------------------- the test

describe('scripts/install.sh on a clean Debian 12 (debootstrap minbase, chroot)', { timeout: 40 * MINUTE }, () => {
  let work = '';
  let root = '';
  const mounts: string[] = [];
  let chrootEnv: string[] = [];
  let ns: Netns | undefined;
  const servers = new Set<() => Promise<number | null>>();
  const timings: string[] = [];
  let version = '';
  let firstVersion = '';
  let alice: { sipUsername: string; password: string; number: string } | undefined;
  let envBeforeUpgrade = '';

  const p = (path: string): string => join(root, path);
  const inRoot = (args: readonly string[], timeoutMs = 2 * MINUTE): Promise<Result> =>
    sh('chroot', [root, 'env', '-i', CHROOT_PATH, 'HOME=/root', 'LANG=C.UTF-8', 'TERM=dumb', ...chrootEnv, ...args], { timeoutMs });
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      const line = `${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      timings.push(line);
      console.log(`# install test: ${line}`);
    }
  };
  const passwd = (): Map<string, string[]> => new Map(readFileSync(p('etc/passwd'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const f = l.split(':');
    return [f[0] ?? '', f];
  }));
  const careflowIds = (): { uid: number; gid: number } => {
    const f = passwd().get('careflow');
    assert.ok(f !== undefined, 'no careflow user in /etc/passwd');
    return { uid: Number(f[2]), gid: Number(f[3]) };
  };
  const installer = async (srcDir: string, args: string[] = [], timeoutMs = 15 * MINUTE): Promise<string> => {
    const r = await inRoot(['bash', `${srcDir}/scripts/install.sh`, ...args], timeoutMs);
    assert.deepEqual(processesIn(root), [], 'the installer left processes running in the chroot');
    assert.equal(r.code, 0, `install.sh ${args.join(' ')} failed (${r.code}):\n${r.out.slice(-8000)}`);
    return r.out;
  };
  const current = (): string => readlinkSync(p('opt/careflow/current'));

  const unpackSources = (name: string, extra: Record<string, string> = {}): Promise<string> => unpackInto(work, root, name, extra);

  /** The unit's ExecStart as its User, with its EnvironmentFile, inside the namespace. */
  async function startService(): Promise<RunningService> {
    assert.ok(ns !== undefined);
    const server = await startUnit(root, ns);
    servers.add(server.stop);
    assert.equal(uidOf(server.pid), careflowIds().uid, 'the service does not run as the careflow user');
    assert.match(readlinkSync(`/proc/${server.pid}/exe`), /\/node$/);
    return { ...server, stop: async () => { const c = await server.stop(); servers.delete(server.stop); return c; } };
  }

  const probe = (user?: { sipUsername: string; password: string }): Probe => {
    assert.ok(ns !== undefined);
    return probeIn(ns, user);
  };

  before(async () => {
    requireTools([
      ['debootstrap', 'debootstrap'], ['zstd', 'zstd'], ['tar', 'tar'], ['chroot', 'coreutils'], ['unshare', 'util-linux'],
      ['nsenter', 'util-linux'], ['mount', 'mount'], ['ip', 'iproute2'], ['git', 'git'], ['npm', 'npm'],
    ]);

    work = mkdtempSync('/var/tmp/careflow-install-test-');
    root = join(work, 'root');
    mkdirSync(root);
    await prepareRoot(root, timed);

    mounts.push(...await chrootMounts(root));
    seedAptCache(root);
    chrootEnv = [...await registryAccess(root, REPO), `npm_config_cache=${NPM_INSIDE}`];
    ns = await Netns.create();
  }, { timeout: 30 * MINUTE });

  after(async () => {
    for (const stop of [...servers]) await stop();
    await ns?.close();
    if (root !== '') {
      for (const pid of processesIn(root)) {
        console.log(`# install test: killing PID ${pid}, left in the chroot`);
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    const left = await cleanUp(work, root === '' ? [] : mounts);
    // Never delete a tree with something mounted in it (the host's /dev is bound there).
    if (left.length > 0) console.log(`# install test: still mounted, ${work} kept: ${left.join(', ')}`);
    if (timings.length > 0) console.log(`# install test timings:\n#   ${timings.join('\n#   ')}`);
    assert.deepEqual(left, [], 'mounts left behind');
  });

  it('installs from a release tarball: Debian prerequisites, Node.js 24 from npm, the app in /opt/careflow/<version>', { timeout: 20 * MINUTE }, async () => {
    const src = await unpackSources('careflow-src-1');
    const out = await timed('first install (apt-get nodejs npm, npm ci, build, prune)', () => installer(src));
    saveAptCache(root);
    assert.match(out, /installing the prerequisites from the distribution: .*nodejs npm/);
    assert.match(out, /\+ npm ci /);
    assert.match(out, /\+ npm prune --omit=dev/);
    assert.match(out, /systemd is not running here/, 'in a chroot the installer says it does not start the service');
    assert.match(out, /installed CareFlow Voice /);
    const pkgVersion = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
    version = current();
    firstVersion = version;
    assert.match(version, new RegExp(`^${pkgVersion.replace(/\./g, '\\.')}-[0-9a-f]{12}$`));
    assert.ok(statSync(p(`opt/careflow/${version}/.careflow-installed`)).isFile());
    assert.ok(existsSync(p(`opt/careflow/${version}/web/dist/index.html`)), 'the web phone is built');
    assert.ok(!existsSync(p(`opt/careflow/${version}/node_modules/esbuild`)), 'dev dependencies are pruned');
    assert.ok(!existsSync(p(`opt/careflow/${version}/node_modules/typescript`)), 'dev dependencies are pruned');
    const node = await inRoot(['/opt/careflow/current/node_modules/.bin/node', '-p', 'process.version + " " + process.arch']);
    assert.equal(node.code, 0, node.out);
    assert.match(node.out.trim(), /^v24\.\d+\.\d+ (x64|arm64)$/);
    const main = statSync(p(`opt/careflow/${version}/dist/cli/main.js`));
    assert.equal(main.uid, 0, 'the app belongs to root');
    assert.equal(main.mode & 0o022, 0, 'the app is not writable by the service');
  });

  it('makes the careflow user, /var/lib/careflow 0700, /etc/careflow/careflow.env 0640 root:careflow, the wrapper and the unit', () => {
    const user = passwd().get('careflow');
    assert.ok(user !== undefined);
    const { uid, gid } = careflowIds();
    assert.ok(uid > 0 && uid < 1000, `a system user (uid ${uid})`);
    assert.equal(user[5], '/var/lib/careflow');
    assert.equal(user[6], '/usr/sbin/nologin');
    assert.ok(readFileSync(p('etc/group'), 'utf8').split('\n').some((l) => l.startsWith(`careflow:x:${gid}:`)));

    const data = statSync(p('var/lib/careflow'));
    assert.equal(data.mode & 0o7777, 0o700);
    assert.equal(data.uid, uid);
    assert.equal(data.gid, gid);
    const conf = statSync(p('etc/careflow'));
    assert.equal(conf.mode & 0o7777, 0o750);
    assert.deepEqual([conf.uid, conf.gid], [0, gid]);
    const env = statSync(p('etc/careflow/careflow.env'));
    assert.equal(env.mode & 0o7777, 0o640);
    assert.deepEqual([env.uid, env.gid], [0, gid]);
    const envText = readFileSync(p('etc/careflow/careflow.env'), 'utf8');
    assert.match(envText, /^CAREFLOW_DATA_DIR=\/var\/lib\/careflow$/m);
    assert.match(envText, /^# CAREFLOW_DOMAIN=/m, 'commented defaults');
    assert.deepEqual(envFileVars(envText), ['CAREFLOW_DATA_DIR=/var/lib/careflow'], 'only the data dir is set');

    const wrapper = statSync(p('usr/local/bin/careflow'));
    assert.equal(wrapper.mode & 0o7777, 0o755);
    assert.equal(wrapper.uid, 0);
    assert.equal(readFileSync(p('etc/systemd/system/careflow.service'), 'utf8'), readFileSync(join(REPO, 'deploy/careflow.service'), 'utf8'));
    assert.ok(lstatSync(p('opt/careflow/current')).isSymbolicLink());
  });

  it('the systemd unit: the required settings, and systemd-analyze verify', async (t) => {
    const text = readFileSync(p('etc/systemd/system/careflow.service'), 'utf8');
    const unit = unitSettings(text);
    const expect: Record<string, string> = {
      Type: 'simple', User: 'careflow', Group: 'careflow', EnvironmentFile: '/etc/careflow/careflow.env',
      ExecStart: '/opt/careflow/current/node_modules/.bin/node /opt/careflow/current/dist/cli/main.js serve',
      Restart: 'on-failure', AmbientCapabilities: 'CAP_NET_BIND_SERVICE', CapabilityBoundingSet: 'CAP_NET_BIND_SERVICE',
      NoNewPrivileges: 'yes', ProtectSystem: 'strict', ReadWritePaths: '/var/lib/careflow', ProtectHome: 'yes', PrivateTmp: 'yes',
      ProtectKernelTunables: 'yes', ProtectKernelModules: 'yes', ProtectKernelLogs: 'yes', ProtectControlGroups: 'yes',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX AF_NETLINK', LimitNOFILE: '65536', WantedBy: 'multi-user.target',
    };
    for (const [key, value] of Object.entries(expect)) assert.deepEqual(unit.get(key), [value], `${key}=`);
    assert.ok(!unit.has('MemoryDenyWriteExecute'), 'V8 needs W+X memory');

    if (!hasCommand('systemd-analyze')) {
      t.diagnostic('systemd-analyze not on this host (apt-get install systemd): checked the unit text only');
      return;
    }
    // Verified on the host with the paths pointed into the chroot (the installed node must exist
    // and be executable); the chroot has no systemd of its own to verify against.
    const dir = mkdtempSync(join(work, 'unit-'));
    const copy = join(dir, 'careflow.service');
    writeFileSync(copy, text.replaceAll('/opt/careflow/current', p('opt/careflow/current')));
    const verify = await sh('systemd-analyze', ['verify', '--man=no', copy]);
    assert.equal(verify.code, 0, verify.out);
    assert.equal(verify.out.trim(), '', `systemd-analyze verify warns:\n${verify.out}`);
    const security = await sh('systemd-analyze', ['security', '--offline=true', copy]);
    const level = /Overall exposure level for careflow\.service: ([\d.]+)/.exec(security.out)?.[1];
    if (level !== undefined) {
      t.diagnostic(`systemd-analyze security: exposure ${level}`);
      assert.ok(Number(level) <= 2.5, `exposure ${level} (0 = locked down, 10 = none):\n${security.out}`);
    }
  });

  it('`careflow user add` as root runs as the careflow user with the settings file', async () => {
    // The settings an admin sets first: the SIP domain (the namespace has only 127.0.0.1).
    appendFileSync(p('etc/careflow/careflow.env'), '\n# set by the install test\nCAREFLOW_DOMAIN=127.0.0.1\n');
    const r = await inRoot(['careflow', 'user', 'add', '--name', 'Alice Install', '--json']);
    assert.equal(r.code, 0, r.out);
    const user = JSON.parse(r.stdout) as { sipUsername: string; password: string; number: string; domain: string };
    assert.equal(user.domain, '127.0.0.1', 'the wrapper loads /etc/careflow/careflow.env');
    alice = user;
    const { uid } = careflowIds();
    for (const f of readdirSync(p('var/lib/careflow'))) {
      assert.equal(statSync(p(`var/lib/careflow/${f}`)).uid, uid, `${f} belongs to careflow`);
    }
    assert.ok(readdirSync(p('var/lib/careflow')).includes('careflow.sqlite'));
  });

  it("the unit's ExecStart, as careflow in a private network namespace: OPTIONS 200 on 5060/udp, REGISTER, the web phone on 8080", { timeout: 2 * MINUTE }, async () => {
    assert.ok(alice !== undefined);
    const server = await startService();
    const r = probe(alice);
    assert.equal(r.options.status, 200, JSON.stringify(r));
    assert.match(r.options.allow, /REGISTER/);
    assert.deepEqual(r.register, [401, 200], 'the user added with the wrapper registers');
    assert.equal(r.web.status, 200);
    assert.match(r.web.type, /^text\/html/);
    assert.ok(r.web.html);
    assert.equal(await server.stop(), 0, `SIGTERM stops it cleanly:\n${server.logs()}`);
  });

  it('upgrades in place: a new version directory, the old one kept for rollback, data and settings kept', { timeout: 20 * MINUTE }, async () => {
    assert.ok(alice !== undefined);
    envBeforeUpgrade = readFileSync(p('etc/careflow/careflow.env'), 'utf8');
    const src = await unpackSources('careflow-src-2', { 'UPGRADE-TEST.txt': 'a newer release\n' });
    const out = await timed('upgrade (a new version: npm ci, build, prune)', () => installer(src));
    assert.match(out, /careflow\.env exists: kept as it is/);
    assert.match(out, /user careflow exists/);
    version = current();
    assert.notEqual(version, firstVersion, 'a new version directory');
    assert.equal(readlinkSync(p('opt/careflow/previous')), firstVersion);
    assert.ok(existsSync(p(`opt/careflow/${firstVersion}/.careflow-installed`)), 'the previous version is kept');
    assert.ok(existsSync(p(`opt/careflow/${version}/UPGRADE-TEST.txt`)));
    assert.equal(readFileSync(p('etc/careflow/careflow.env'), 'utf8'), envBeforeUpgrade, 'the settings file is not overwritten');
    assert.equal(statSync(p('etc/careflow/careflow.env')).mode & 0o7777, 0o640);
    assert.ok(existsSync(p('etc/careflow/careflow.env.example')), "this version's template beside it");

    const list = await inRoot(['careflow', 'user', 'list', '--json']);
    assert.equal(list.code, 0, list.out);
    assert.ok((JSON.parse(list.stdout) as Array<{ number: string }>).some((u) => u.number === alice?.number), 'the user survives the upgrade');
    const server = await startService();
    const r = probe(alice);
    assert.equal(r.options.status, 200);
    assert.deepEqual(r.register, [401, 200], 'the same password registers after the upgrade');
    assert.equal(r.web.status, 200);
    assert.equal(await server.stop(), 0, server.logs());

    // Idempotent: the same release again builds nothing and changes nothing.
    const again = await timed('the same release again (no-op)', () => installer(src));
    assert.match(again, /is already built/);
    assert.match(again, /current is already /);
    assert.equal(current(), version);
    assert.equal(readlinkSync(p('opt/careflow/previous')), firstVersion);
  });

  it('rollback switches current and previous', { timeout: 5 * MINUTE }, async () => {
    const upgraded = version;
    await installer('/opt/careflow/current', ['rollback']);
    assert.equal(current(), firstVersion);
    assert.equal(readlinkSync(p('opt/careflow/previous')), upgraded);
    const list = await inRoot(['careflow', 'user', 'list', '--json']);
    assert.equal(list.code, 0, list.out);
    await installer('/opt/careflow/current', ['rollback']);
    assert.equal(current(), upgraded);
  });

  it('uninstall removes the app, the unit and the command, keeps the data, the settings and the user', { timeout: 5 * MINUTE }, async () => {
    const out = await installer('/opt/careflow/current', ['uninstall']);
    assert.match(out, /kept the data/);
    for (const gone of ['opt/careflow', 'etc/systemd/system/careflow.service', 'usr/local/bin/careflow']) {
      assert.ok(!existsSync(p(gone)), `${gone} removed`);
    }
    assert.ok(existsSync(p('var/lib/careflow/careflow.sqlite')), 'the database is kept');
    assert.equal(readFileSync(p('etc/careflow/careflow.env'), 'utf8'), envBeforeUpgrade, 'the settings are kept');
    assert.ok(passwd().has('careflow'));
  });

  it('uninstall --purge removes the data, the settings and the user', { timeout: 5 * MINUTE }, async () => {
    const out = await installer('/root/careflow-src-1', ['uninstall', '--purge']);
    assert.match(out, /removed CareFlow Voice with its data/);
    for (const gone of ['var/lib/careflow', 'etc/careflow', 'opt/careflow']) assert.ok(!existsSync(p(gone)), `${gone} removed`);
    assert.ok(!passwd().has('careflow'), 'the careflow user is removed');
    assert.ok(!readFileSync(p('etc/group'), 'utf8').split('\n').some((l) => l.startsWith('careflow:')), 'the careflow group is removed');
  });
});
