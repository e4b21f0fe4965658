// The installed service under a real systemd: a clean Debian 12 root file system (as in
// install.test.ts) with systemd added, CareFlow installed by scripts/install.sh, then booted
// with systemd-nspawn so that PID 1 is systemd. What only a real init shows:
//   - the unit the installer enabled starts at boot and stays active; the process runs as
//     careflow, with CAP_NET_BIND_SERVICE alone, no new privileges, a read-only system;
//   - it answers OPTIONS and REGISTER on 5060/udp and serves the web phone, inside the
//     container's private network namespace (only `lo`);
//   - Restart=on-failure: killed with SIGKILL, systemd starts it again and the data is there;
//   - scripts/install.sh run on the booted system upgrades and restarts the service through
//     systemctl; `systemctl stop` ends it cleanly; uninstall stops and disables it.
//
// Network: apt and npm reach their registries only in the install step, run by chroot on the
// host's network as in install.test.ts. The booted container has no way out; the upgrade in
// it installs from npm's cache (npm_config_offline) filled by the first install.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  chrootMounts, cleanUp, MINUTE, must, NPM_CACHE, NPM_INSIDE, prepareRoot, processesIn, registryAccess, REPO, requireTools, saveAptCache,
  seedAptCache, sh, unpackSources,
} from './debian-root.ts';
import { BootedRoot, NSPAWN } from './nspawn.ts';

const PROBE = join(REPO, 'test', 'interop', 'install-probe.ts');

interface Probe { options: { status: number }; web: { status: number; html: boolean }; register?: number[] }

describe('scripts/install.sh under a real systemd (Debian 12 booted with systemd-nspawn)', { timeout: 30 * MINUTE }, () => {
  let work = '';
  let root = '';
  const mounts: string[] = [];
  let registry: string[] = [];
  let box: BootedRoot | undefined;
  let alice: { sipUsername: string; password: string; number: string } | undefined;
  let firstPid = 0;

  const p = (path: string): string => join(root, path);
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try { return await fn(); } finally { console.log(`# install-systemd: ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`); }
  };
  const chroot = async (args: readonly string[], timeoutMs = 15 * MINUTE): Promise<string> => {
    const r = await sh('chroot', [root, 'env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root',
      'LANG=C.UTF-8', 'DEBIAN_FRONTEND=noninteractive', ...registry, `npm_config_cache=${NPM_INSIDE}`, ...args], { timeoutMs });
    assert.equal(r.code, 0, `${args.join(' ')} failed (${r.code}):\n${r.out.slice(-6000)}`);
    return r.stdout;
  };
  const inside = async (args: readonly string[], timeoutMs = 2 * MINUTE): Promise<string> => {
    assert.ok(box !== undefined, 'not booted');
    const r = await box.exec(args, { timeoutMs, env: [...registry, `npm_config_cache=${NPM_INSIDE}`, 'npm_config_offline=true'] });
    assert.equal(r.code, 0, `${args.join(' ')} failed inside (${r.code}):\n${r.out.slice(-6000)}`);
    return r.out;
  };
  const probe = async (user = alice): Promise<Probe> => {
    assert.ok(box !== undefined && user !== undefined);
    const r = await box.inNetns(process.execPath, [PROBE, '5060', '8080', '127.0.0.1', user.sipUsername, user.password], 30_000);
    assert.equal(r.code, 0, `the probe failed:\n${r.out}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Probe;
  };
  const service = async (): Promise<{ state: string; pid: number; restarts: number; result: string }> => {
    assert.ok(box !== undefined);
    const s = await box.show('careflow.service', ['ActiveState', 'MainPID', 'NRestarts', 'Result']);
    return { state: s.get('ActiveState') ?? '', pid: Number(s.get('MainPID')), restarts: Number(s.get('NRestarts')), result: s.get('Result') ?? '' };
  };
  /** Polls until the service is active with a main PID other than `not` and answers OPTIONS. */
  const activeAgain = async (not: number, what: string): Promise<number> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = await service();
      if (s.state === 'active' && s.pid > 0 && s.pid !== not) {
        const r = await box?.inNetns(process.execPath, [PROBE, '5060', '8080', '127.0.0.1'], 30_000);
        if (r?.code === 0 && (JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Probe).options.status === 200) return s.pid;
      }
      if (Date.now() > deadline) assert.fail(`${what}: not active again within 60 s (${JSON.stringify(s)}):\n${await journal()}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };
  const journal = async (): Promise<string> => (await box?.exec(['journalctl', '-u', 'careflow', '--no-pager', '-n', '60']))?.out ?? '';

  before(async () => {
    requireTools([[NSPAWN, 'systemd-container'], ['debootstrap', 'debootstrap'], ['zstd', 'zstd'], ['nsenter', 'util-linux'], ['git', 'git'], ['npm', 'npm']]);
    work = mkdtempSync('/var/tmp/careflow-systemd-test-');
    root = join(work, 'root');
    mkdirSync(root);
    await prepareRoot(root, timed);
    mounts.push(...await chrootMounts(root));
    seedAptCache(root);
    registry = await registryAccess(root, REPO);
    await timed('apt-get install systemd systemd-sysv dbus', async () => {
      await chroot(['apt-get', 'update', '-q']);
      await chroot(['apt-get', 'install', '-y', '-q', '--no-install-recommends', 'systemd', 'systemd-sysv', 'dbus']);
    });
    const src = await unpackSources(work, root, 'careflow-src-1');
    const out = await timed('install.sh (chroot)', () => chroot(['bash', `${src}/scripts/install.sh`]));
    assert.match(out, /systemd is not running here/);
    saveAptCache(root);
    appendFileSync(p('etc/careflow/careflow.env'), '\nCAREFLOW_DOMAIN=127.0.0.1\n');
    alice = JSON.parse(await chroot(['careflow', 'user', 'add', '--name', 'Alice Systemd', '--json'])) as typeof alice;
    assert.deepEqual(processesIn(root), [], 'the install left processes in the chroot');
    for (const target of mounts.splice(0).reverse()) await must('umount', [target]); // systemd-nspawn mounts its own
    box = await timed('boot with systemd-nspawn', () => BootedRoot.boot(root, { machine: `careflow-test-${process.pid}`, binds: [[NPM_CACHE, NPM_INSIDE]] }));
  }, { timeout: 25 * MINUTE });

  after(async () => {
    if (box !== undefined) await box.poweroff().catch((e: unknown) => console.log(`# install-systemd: ${String(e)}`));
    for (const pid of root === '' ? [] : processesIn(root)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    const left = await cleanUp(work, mounts);
    assert.deepEqual(left, [], `mounts left behind under ${work}`);
  });

  it('systemd starts the enabled unit at boot: active, as careflow, CAP_NET_BIND_SERVICE only, no new privileges, read-only system', async () => {
    assert.ok(box !== undefined);
    assert.equal((await inside(['systemctl', 'is-enabled', 'careflow'])).trim(), 'enabled');
    // Active as soon as systemd forked it; read its process once it answers (after exec).
    firstPid = box.hostPid(await activeAgain(0, 'at boot'));
    const status = readFileSync(`/proc/${firstPid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    assert.equal(uid, Number((await inside(['id', '-u', 'careflow'])).trim()), 'runs as the careflow user');
    assert.equal(/^CapEff:\s+(\S+)/m.exec(status)?.[1], '0000000000000400', 'effective capabilities: CAP_NET_BIND_SERVICE alone');
    assert.equal(/^CapBnd:\s+(\S+)/m.exec(status)?.[1], '0000000000000400', 'bounding set: CAP_NET_BIND_SERVICE alone');
    assert.equal(/^NoNewPrivs:\s+(\d)/m.exec(status)?.[1], '1');
    const rootMount = readFileSync(`/proc/${firstPid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
    assert.match(rootMount?.split(' ')[5] ?? '', /(^|,)ro(,|$)/, `ProtectSystem=strict: / is read-only (${rootMount})`);
    let log = await journal();
    for (let i = 0; i < 50 && !log.includes('careflow: listening'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      log = await journal();
    }
    assert.match(log, /careflow: listening/, 'its log is in the journal');
  });

  it('answers OPTIONS and REGISTER on 5060/udp and serves the web phone on 8080 (inside the container)', async () => {
    const r = await probe();
    assert.equal(r.options.status, 200, JSON.stringify(r));
    assert.deepEqual(r.register, [401, 200], 'the user added before boot registers');
    assert.equal(r.web.status, 200);
    assert.ok(r.web.html);
  });

  it('Restart=on-failure: after SIGKILL systemd starts it again, and the user is still there', async () => {
    assert.ok(box !== undefined);
    const inner = (await service()).pid;
    assert.equal(box.hostPid(inner), firstPid);
    assert.match(readFileSync(`/proc/${firstPid}/cmdline`, 'utf8'), /dist\/cli\/main\.js\0serve/, 'the PID is the server\'s');
    process.kill(firstPid, 'SIGKILL');
    await activeAgain(inner, 'after SIGKILL');
    assert.equal((await service()).restarts, 1, 'one automatic restart');
    assert.deepEqual((await probe()).register, [401, 200]);
    assert.match(await journal(), /Main process exited, code=killed, status=9\/KILL/);
  });

  it('install.sh on the booted system upgrades and restarts the service through systemctl; the data is kept', { timeout: 15 * MINUTE }, async () => {
    const before = await service();
    const src = await unpackSources(work, root, 'careflow-src-2', { 'UPGRADE-TEST.txt': 'a newer release\n' });
    const out = await timed('upgrade under systemd (offline npm ci, build)', () => inside(['bash', `${src}/scripts/install.sh`], 12 * MINUTE));
    assert.match(out, /\+ systemctl daemon-reload/);
    assert.match(out, /\+ systemctl restart careflow\.service/);
    assert.doesNotMatch(out, /systemd is not running here/);
    assert.ok(existsSync(p('opt/careflow/current/UPGRADE-TEST.txt')), 'current is the new version');
    await activeAgain(before.pid, 'after the upgrade');
    assert.deepEqual((await probe()).register, [401, 200], 'the same password registers after the upgrade');
  });

  it('`systemctl stop` ends it with SIGTERM and a clean exit; uninstall disables it and keeps the data', { timeout: 5 * MINUTE }, async () => {
    await inside(['systemctl', 'stop', 'careflow']);
    const s = await service();
    assert.deepEqual([s.state, s.result], ['inactive', 'success'], await journal());
    const exit = await box?.show('careflow.service', ['ExecMainStatus']);
    assert.equal(exit?.get('ExecMainStatus'), '0', 'exit status 0 after SIGTERM');
    await inside(['systemctl', 'start', 'careflow']);
    await activeAgain(0, 'started again');
    const out = await inside(['bash', '/opt/careflow/current/scripts/install.sh', 'uninstall']);
    assert.match(out, /\+ systemctl disable --now careflow\.service/);
    assert.match(out, /kept the data/);
    const after = await service();
    assert.equal(after.state, 'inactive');
    assert.equal(after.pid, 0);
    assert.ok(!existsSync(p('etc/systemd/system/careflow.service')));
    assert.ok(existsSync(p('var/lib/careflow/careflow.sqlite')), 'the database is kept');
  });
});
