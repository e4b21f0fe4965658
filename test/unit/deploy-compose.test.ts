// The container files (deploy/), checked without a Docker engine (none runs on these machines,
// and `docker compose config` needs the compose plugin): both compose files parsed as YAML and
// checked for structure (services, host networking, env_file, volumes, healthcheck, restart,
// profiles, platforms), against the configuration schema (every CAREFLOW_ variable exists,
// ports and ranges agree with the defaults), and against each other (x86_64 and arm64 differ
// only in platform); the Dockerfiles linted (multi-arch official base images, non-root user,
// HEALTHCHECK, EXPOSE, what is copied and what .dockerignore leaves out); the run-time imports
// of src/ against package.json's dependencies (the image prunes the dev dependencies); and the
// two scripts the images run (health check, rtpengine entrypoint) executed for real.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDocument } from 'yaml';
import { CONFIG_FILE_ENV, loadConfig } from '../../src/config/load.ts';
import { CONFIG_FIELDS, DEFAULTS } from '../../src/config/schema.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

const KNOWN_ENV = new Set<string>([...CONFIG_FIELDS.map((f) => f.env), CONFIG_FILE_ENV]);
const CORE = ['careflow', 'rtpengine', 'coturn'];
const SCALE = ['postgres', 'redis', 'kamailio'];
/** Docker's official images and coturn's, all published for linux/amd64 and linux/arm64. */
const MULTI_ARCH_IMAGE = /^(node:24-bookworm-slim|debian:bookworm-slim|postgres:\d+-bookworm|redis:\d+-bookworm|coturn\/coturn:\d+(\.\d+)*)$/;
/** Service keys these files may use (a typo such as `restrat` is silently ignored by nothing). */
const SERVICE_KEYS = new Set([
  'build', 'image', 'platform', 'network_mode', 'restart', 'init', 'env_file', 'environment', 'volumes', 'cap_drop',
  'cap_add', 'security_opt', 'stop_grace_period', 'healthcheck', 'depends_on', 'logging', 'command', 'entrypoint',
  'tmpfs', 'profiles', 'ports', 'user',
]);

type Obj = Record<string, unknown>;
function obj(value: unknown, where: string): Obj {
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${where}: expected a mapping`);
  return value as Obj;
}
function list(value: unknown, where: string): unknown[] {
  assert.ok(Array.isArray(value), `${where}: expected a list`);
  return value;
}
function str(value: unknown, where: string): string {
  assert.equal(typeof value, 'string', `${where}: expected a string`);
  return value as string;
}
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(strings);
  return [];
}
function range(text: string): { min: number; max: number } {
  const m = /^(\d+)-(\d+)$/.exec(text);
  assert.ok(m, `expected LOW-HIGH, got ${text}`);
  return { min: Number(m[1]), max: Number(m[2]) };
}
const port = (hostPort: string): number => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));

// ---- the environment file -------------------------------------------------------------------

interface EnvLine {
  key: string;
  value: string;
  commented: boolean;
}
function parseEnvExample(): EnvLine[] {
  const out: EnvLine[] = [];
  for (const [i, line] of read('deploy/careflow.env.example').split('\n').entries()) {
    const m = /^(# )?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) {
      out.push({ key: m[2] ?? '', value: m[3] ?? '', commented: m[1] !== undefined });
      continue;
    }
    assert.ok(line === '' || line.startsWith('#'), `careflow.env.example line ${i + 1} is neither KEY=value nor a comment: ${line}`);
  }
  return out;
}
const ENV = parseEnvExample();
const ENV_SET = new Map(ENV.filter((l) => !l.commented).map((l) => [l.key, l.value]));
const envSet = (key: string): string => {
  const v = ENV_SET.get(key);
  assert.ok(v !== undefined, `careflow.env.example must set ${key}`);
  return v;
};

// ---- compose --------------------------------------------------------------------------------

function loadCompose(file: string): Obj {
  const doc = parseDocument(readFileSync(join(DEPLOY, file), 'utf8'), { uniqueKeys: true, prettyErrors: true });
  assert.deepEqual(doc.errors.map(String), [], `${file}: YAML errors`);
  assert.deepEqual(doc.warnings.map(String), [], `${file}: YAML warnings`);
  return obj(doc.toJS({ maxAliasCount: 100 }), file);
}
const COMPOSE = { amd64: loadCompose('docker-compose.sip.yml'), arm64: loadCompose('docker-compose.sip.arm64.yml') };

describe('compose files (docker-compose.sip.yml for x86_64, docker-compose.sip.arm64.yml)', () => {
  for (const [arch, compose] of Object.entries(COMPOSE)) {
    describe(arch, () => {
      const services = obj(compose['services'], 'services');
      const svc = (name: string): Obj => obj(services[name], `services.${name}`);

      it('has only known top-level keys and the expected services', () => {
        for (const key of Object.keys(compose)) assert.ok(['services', 'volumes'].includes(key) || key.startsWith('x-'), `unexpected top-level key ${key}`);
        assert.deepEqual(Object.keys(services).sort(), [...CORE, ...SCALE].sort());
        for (const [name, s] of Object.entries(services)) {
          for (const key of Object.keys(obj(s, name))) assert.ok(SERVICE_KEYS.has(key), `services.${name}.${key}: not a key these files use (typo?)`);
        }
      });

      it(`pins every service to linux/${arch}, with an image that is pinned too`, () => {
        for (const [name, s] of Object.entries(services)) {
          const service = obj(s, name);
          assert.equal(service['platform'], `linux/${arch}`, `${name}.platform`);
          const image = str(service['image'], `${name}.image`);
          assert.match(image, /^[a-z0-9./-]+:[A-Za-z0-9._-]+$/, `${name}.image needs a tag`);
          assert.ok(!image.endsWith(':latest'), `${name}.image: pin a version, not latest`);
          if (service['build'] === undefined) assert.match(image, MULTI_ARCH_IMAGE, `${name}.image must be published for amd64 and arm64`);
        }
      });

      it('runs the SIP and media services on the host network, always restarted, from careflow.env', () => {
        for (const name of CORE) {
          const s = svc(name);
          assert.equal(s['profiles'], undefined, `${name} must start without a profile`);
          assert.equal(s['network_mode'], 'host', `${name}: SIP and RTP need the host network (NAT, port ranges)`);
          assert.equal(s['ports'], undefined, `${name}: nothing is published on the host network`);
          assert.ok(['unless-stopped', 'always'].includes(String(s['restart'])), `${name}.restart`);
          assert.ok(strings(s['env_file']).includes('careflow.env'), `${name}.env_file`);
          assert.deepEqual(s['cap_drop'], ['ALL'], `${name}.cap_drop`);
          assert.deepEqual(s['cap_add'], undefined, `${name}.cap_add`);
        }
      });

      it('keeps PostgreSQL, Redis and Kamailio in the scale profile (not used by CareFlow yet), on loopback', () => {
        for (const name of SCALE) {
          const s = svc(name);
          assert.deepEqual(s['profiles'], ['scale'], `${name}.profiles`);
          assert.ok(['unless-stopped', 'always'].includes(String(s['restart'])), `${name}.restart`);
          for (const p of strings(s['ports'])) assert.match(p, /^127\.0\.0\.1:/, `${name}: publish on the host's loopback only, got ${p}`);
        }
      });

      it('builds careflow from deploy/Dockerfile, keeps its data in a volume and checks its health', () => {
        const s = svc('careflow');
        const build = obj(s['build'], 'careflow.build');
        assert.equal(resolve(DEPLOY, str(build['context'], 'context')), ROOT);
        assert.equal(build['dockerfile'], 'deploy/Dockerfile');
        const dataDir = envSet('CAREFLOW_DATA_DIR');
        assert.ok(strings(s['volumes']).includes(`careflow-data:${dataDir}`), `careflow.volumes must mount careflow-data at ${dataDir}`);
        const health = obj(s['healthcheck'], 'careflow.healthcheck');
        assert.deepEqual(health['test'], ['CMD', 'node', 'deploy/healthcheck.mjs']);
        for (const key of ['interval', 'timeout', 'start_period', 'retries']) assert.ok(health[key] !== undefined, `healthcheck.${key}`);
        assert.ok(obj(s['depends_on'], 'careflow.depends_on')['rtpengine'] !== undefined);
      });

      it('declares every named volume and has every bind-mounted file', () => {
        const declared = Object.keys(obj(compose['volumes'], 'volumes'));
        for (const [name, s] of Object.entries(services)) {
          for (const v of strings(obj(s, name)['volumes'])) {
            const source = v.split(':')[0] ?? '';
            if (source.startsWith('.') || source.startsWith('/')) assert.ok(existsSync(resolve(DEPLOY, source)), `${name}: ${source} does not exist`);
            else assert.ok(declared.includes(source), `${name}: volume ${source} is not declared`);
          }
        }
      });

      it('builds images from directories with a Dockerfile on multi-arch base images', () => {
        for (const [name, s] of Object.entries(services)) {
          const build = obj(s, name)['build'];
          if (build === undefined) continue;
          const b = obj(build, `${name}.build`);
          const context = resolve(DEPLOY, str(b['context'], `${name}.build.context`));
          const dockerfile = join(context, typeof b['dockerfile'] === 'string' ? b['dockerfile'] : 'Dockerfile');
          assert.ok(existsSync(dockerfile), `${name}: ${dockerfile} missing`);
          for (const stage of parseDockerfile(readFileSync(dockerfile, 'utf8')).stages) {
            assert.match(stage.image, MULTI_ARCH_IMAGE, `${relative(ROOT, dockerfile)}: FROM ${stage.image}`);
          }
        }
      });

      it('gives coturn the secret CareFlow has, and a relay range apart from the RTP range', () => {
        const s = svc('coturn');
        assert.match(str(s['image'], 'coturn.image'), /^coturn\/coturn:/);
        const args = list(s['command'], 'coturn.command').map(String);
        assert.ok(args.includes('--use-auth-secret'));
        assert.ok(args.includes('--static-auth-secret=$$CAREFLOW_TURN_SECRET'), 'static-auth-secret from careflow.env ($$ so that compose leaves it alone)');
        const arg = (name: string): string => {
          const a = args.find((x) => x.startsWith(`--${name}=`));
          assert.ok(a, `coturn --${name}`);
          return a.slice(name.length + 3);
        };
        const relay = { min: Number(arg('min-port')), max: Number(arg('max-port')) };
        const rtp = range(envSet('CAREFLOW_RTP_PORTS'));
        assert.ok(relay.max < rtp.min || relay.min > rtp.max, `coturn relay ${relay.min}-${relay.max} overlaps RTP ${rtp.min}-${rtp.max}`);
        const listening = Number(arg('listening-port'));
        for (const url of [...envSet('CAREFLOW_STUN_URLS').split(','), ...envSet('CAREFLOW_TURN_URLS').split(',')]) {
          assert.equal(Number(/:(\d+)(\?|$)/.exec(url)?.[1]), listening, `${url} must use coturn's port ${listening}`);
        }
        for (const net of ['10.0.0.0', '127.0.0.0', '172.16.0.0', '192.168.0.0']) {
          assert.ok(args.some((a) => a.startsWith(`--denied-peer-ip=${net}-`)), `coturn must not relay into ${net}`);
        }
      });

      it('interpolates nothing at compose time; every $$NAME read in a container is in careflow.env.example', () => {
        const names = new Set<string>();
        for (const text of strings(compose['services'])) {
          const bare = text.replaceAll('$$', '');
          assert.ok(!bare.includes('$'), `compose would interpolate ${JSON.stringify(text)}: write $$ for the container's shell`);
          for (const m of text.matchAll(/\$\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(m[1] ?? '');
        }
        const exampleKeys = new Set(ENV.map((l) => l.key));
        for (const name of names) {
          assert.ok(exampleKeys.has(name), `${name} is read by a container but missing from careflow.env.example`);
          if (name.startsWith('CAREFLOW_')) assert.ok(KNOWN_ENV.has(name), `${name} is not a CareFlow setting`);
        }
      });
    });
  }

  it('x86_64 and arm64 files differ only in platform', () => {
    const strip = (compose: Obj): Obj => {
      const copy = structuredClone(compose);
      for (const s of Object.values(obj(copy['services'], 'services'))) delete obj(s, 'service')['platform'];
      return copy;
    };
    assert.deepEqual(strip(COMPOSE.arm64), strip(COMPOSE.amd64));
  });
});

// ---- careflow.env.example against the configuration schema ----------------------------------

describe('deploy/careflow.env.example', () => {
  it('names every CareFlow setting, each once, and no setting that does not exist', () => {
    const keys = ENV.map((l) => l.key);
    assert.deepEqual(keys.filter((k, i) => keys.indexOf(k) !== i), [], 'duplicates');
    for (const f of CONFIG_FIELDS) assert.ok(keys.includes(f.env), `${f.env} missing`);
    for (const k of keys) if (k.startsWith('CAREFLOW_')) assert.ok(KNOWN_ENV.has(k), `${k} is not a CareFlow setting (src/config/schema.ts)`);
  });

  it('shows the real defaults on its commented lines', () => {
    const defaults: Record<string, string> = DEFAULTS;
    for (const line of ENV.filter((l) => l.commented && l.key.startsWith('CAREFLOW_'))) {
      const field = CONFIG_FIELDS.find((f) => f.env === line.key);
      const def = field === undefined ? undefined : defaults[field.key];
      if (def !== undefined && def !== '') assert.equal(line.value, def, `# ${line.key}= must show the default`);
    }
  });

  it('keeps the data dir, the RTP range and the rtpengine address in step with the images', () => {
    assert.equal(envSet('CAREFLOW_RTP_PORTS'), DEFAULTS.rtpPorts, 'the firewall, rtpengine and EXPOSE use the default range');
    assert.match(envSet('CAREFLOW_RTPENGINE'), /^127\.0\.0\.1:\d+$/, 'rtpengine ng on the host loopback (host network)');
    const dockerfile = parseDockerfile(read('deploy/Dockerfile'));
    assert.equal(dockerfile.env.get('CAREFLOW_DATA_DIR'), envSet('CAREFLOW_DATA_DIR'));
    assert.ok(ENV_SET.has('CAREFLOW_TURN_SECRET') && ENV_SET.get('CAREFLOW_TURN_SECRET') === '', 'the TURN secret is left for the admin to fill in');
  });

  it('is a configuration the server accepts once the secret is filled in, and refuses before', () => {
    const env: Record<string, string> = Object.fromEntries(ENV_SET);
    assert.throws(() => loadConfig({ argv: [], env }), /CAREFLOW_TURN_SECRET/);
    const config = loadConfig({ argv: [], env: { ...env, CAREFLOW_TURN_SECRET: 'a'.repeat(64) } });
    assert.equal(config.dataDir, envSet('CAREFLOW_DATA_DIR'));
    assert.deepEqual(config.media.rtpengine, [{ host: '127.0.0.1', port: port(envSet('CAREFLOW_RTPENGINE')) }]);
    assert.deepEqual(config.media.rtpPorts, range(envSet('CAREFLOW_RTP_PORTS')));
    assert.equal(config.webrtc.turnUrls.length, 2);
    // Every example value on a commented line is valid too (file paths and the DuckDNS pair aside).
    const skip = new Set(['CAREFLOW_TLS_CERT', 'CAREFLOW_TLS_KEY', CONFIG_FILE_ENV, 'CAREFLOW_DDNS_PROVIDER', 'CAREFLOW_DUCKDNS_DOMAINS']);
    const all: Record<string, string> = { ...env, CAREFLOW_TURN_SECRET: 'a'.repeat(64) };
    for (const l of ENV) if (l.commented && l.key.startsWith('CAREFLOW_') && l.value !== '' && !skip.has(l.key)) all[l.key] = l.value;
    assert.doesNotThrow(() => loadConfig({ argv: [], env: all }));
  });
});

// ---- Dockerfiles ----------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}
function parseDockerfile(text: string): { stages: Stage[]; env: Map<string, string> } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue; // comments, also inside a continued instruction
    if (raw.endsWith('\\')) {
      current += raw.slice(0, -1) + ' ';
      continue;
    }
    current += raw;
    if (current.trim() !== '') logical.push(current.trim());
    current = '';
  }
  const args = new Map<string, string>();
  const env = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile: cannot read ${line}`);
    const op = (m[1] ?? '').toUpperCase();
    const rest = m[2] ?? '';
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args.set(k ?? '', v ?? '');
      continue;
    }
    if (op === 'FROM') {
      const [image = '', as, name] = rest.split(/\s+/);
      const resolved = image.replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? '');
      stages.push({ image: resolved, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    assert.ok(stage, `Dockerfile: ${op} before FROM`);
    stage.instructions.push({ op, args: rest });
    if (op === 'ENV') {
      for (const pair of rest.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env.set(pair[1] ?? '', pair[2] ?? '');
    }
  }
  return { stages, env };
}

/** .dockerignore patterns of the shapes used here: `path`, `/path`, `**\/name`, `*.ext`. */
function dockerIgnored(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    if (p.startsWith('**/')) return path.split('/').includes(p.slice(3));
    if (p.startsWith('*.')) return path.endsWith(p.slice(1));
    const plain = p.replace(/^\//, '');
    return path === plain || path.startsWith(`${plain}/`);
  });
}

describe('CAREFLOW_ variables in deploy/ and docs/hosting.md', () => {
  it('are all settings the server knows (src/config/schema.ts)', () => {
    const files: string[] = ['docs/hosting.md'];
    const walk = (dir: string): void => {
      for (const name of readdirSync(join(ROOT, dir))) {
        const path = `${dir}/${name}`;
        if (statSync(join(ROOT, path)).isDirectory()) walk(path);
        else files.push(path);
      }
    };
    walk('deploy');
    for (const file of files) {
      for (const m of read(file).matchAll(/\bCAREFLOW_[A-Z0-9_]*[A-Z0-9]\b/g)) {
        assert.ok(KNOWN_ENV.has(m[0]), `${file}: ${m[0]} is not a CareFlow setting`);
      }
    }
  });
});

describe('deploy/Dockerfile', () => {
  const { stages, env } = parseDockerfile(read('deploy/Dockerfile'));
  const build = stages[0];
  const run = stages.at(-1);
  const ops = (stage: Stage | undefined, op: string): string[] => (stage?.instructions ?? []).filter((i) => i.op === op).map((i) => i.args);

  it('is multi-stage, on the official multi-arch Node 24 image', () => {
    assert.ok(stages.length >= 2 && build !== undefined && run !== undefined && build !== run);
    for (const s of stages) assert.match(s.image, /^node:24-/, `FROM ${s.image}`);
    for (const s of stages) assert.match(s.image, MULTI_ARCH_IMAGE);
  });

  it('installs with npm ci, builds the web phone, prunes the dev dependencies', () => {
    const steps = ops(build, 'RUN').join('\n');
    assert.match(steps, /npm ci\b/);
    assert.match(steps, /build-web\.ts/);
    assert.match(steps, /npm prune --omit=dev/);
    assert.ok(steps.indexOf('build-web.ts') < steps.indexOf('npm prune'), 'prune after the web build (esbuild is a dev dependency)');
    assert.ok(!ops(run, 'RUN').some((r) => /\bnpm (ci|install)\b/.test(r)), 'the run stage copies node_modules, it does not install');
  });

  it('runs as a non-root user, with the data volume, the ports, a health check and the serve entrypoint', () => {
    const users = ops(run, 'USER');
    assert.equal(users.length, 1);
    assert.ok(!['root', '0', '0:0'].includes(users[0] ?? 'root'), 'USER must not be root');
    const order = (run?.instructions ?? []).map((i) => i.op);
    assert.ok(order.indexOf('USER') < order.indexOf('ENTRYPOINT'), 'USER before ENTRYPOINT');
    assert.equal(env.get('CAREFLOW_DATA_DIR'), '/var/lib/careflow');
    assert.deepEqual(ops(run, 'VOLUME'), ['/var/lib/careflow']);
    assert.deepEqual(JSON.parse(ops(run, 'ENTRYPOINT')[0] ?? 'null'), ['node', 'dist/cli/main.js', 'serve'], "the image's node, not node_modules/.bin/node");
    const health = ops(run, 'HEALTHCHECK');
    assert.equal(health.length, 1);
    assert.match(health[0] ?? '', /CMD \["node", "deploy\/healthcheck\.mjs"\]/);
    const expose = new Set(ops(run, 'EXPOSE').join(' ').split(/\s+/));
    const sip = port(DEFAULTS.sipListen);
    const want = [`${sip}/udp`, `${sip}/tcp`, `${port(DEFAULTS.sipTlsListen)}/tcp`, `${port(DEFAULTS.httpListen)}/tcp`, `${port(DEFAULTS.httpsListen)}/tcp`, `${DEFAULTS.rtpPorts}/udp`];
    assert.deepEqual([...expose].sort(), want.sort(), 'EXPOSE agrees with the configuration defaults');
  });

  it('copies files that exist and that .dockerignore lets through; leaves out node_modules, data, web/dist, .git, secrets', () => {
    const patterns = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    for (const p of patterns) assert.match(p, /^(\*\*\/[\w.-]+|\*\.[\w]+|\/?[\w./-]+)$/, `.dockerignore pattern ${p}: a shape this test does not understand`);
    for (const path of ['node_modules', 'web/node_modules', 'data', 'web/dist', '.git', 'tmp', 'deploy/careflow.env']) {
      assert.ok(dockerIgnored(path, patterns), `.dockerignore must leave out ${path}`);
    }
    for (const s of stages) {
      for (const copy of ops(s, 'COPY')) {
        if (copy.startsWith('--from=')) continue;
        const sources = copy.replace(/--\S+\s+/g, '').split(/\s+/).slice(0, -1);
        for (const source of sources) {
          const path = source.replace(/\/$/, '');
          assert.ok(existsSync(join(ROOT, path)), `COPY ${source}: not in the repository`);
          assert.ok(!dockerIgnored(path, patterns), `COPY ${source}: excluded by .dockerignore`);
        }
      }
    }
    const copied = ops(run, 'COPY').join('\n');
    for (const needed of ['package.json', 'node_modules', 'web/dist', '/app/dist/ dist/', 'bin/', 'deploy/healthcheck.mjs']) assert.ok(copied.includes(needed), `the run stage needs ${needed}`);
  });

  it('has every package src/ imports at run time among the dependencies the prune keeps', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts')) files.push(path);
      }
    };
    walk(join(ROOT, 'src'));
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(import|export)\s+(?!type\b)[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
        const spec = m[2] ?? m[3] ?? '';
        if (spec.startsWith('.') || spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] ?? '');
        assert.ok(pkg.dependencies[name] !== undefined, `${relative(ROOT, file)} imports ${spec}: it must be a dependency, not a devDependency (the image prunes those)`);
      }
    }
  });
});

describe('the rtpengine and kamailio images', () => {
  for (const dir of ['rtpengine', 'kamailio']) {
    it(`${dir}: Debian's package on the multi-arch debian image, as a non-root user`, () => {
      const { stages } = parseDockerfile(read(`deploy/${dir}/Dockerfile`));
      assert.equal(stages.length, 1);
      const stage = stages[0];
      assert.equal(stage?.image, 'debian:bookworm-slim');
      assert.match(stage?.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n') ?? '', new RegExp(`apt-get install .*${dir === 'rtpengine' ? 'rtpengine-daemon' : 'kamailio'}`));
      const user = stage?.instructions.find((i) => i.op === 'USER')?.args;
      assert.ok(user !== undefined && user !== 'root' && user !== '0', 'USER must not be root');
    });
  }

  it('kamailio: the edge config is accepted by `kamailio -c`', () => {
    const which = spawnSync('sh', ['-c', 'command -v kamailio || ls /usr/sbin/kamailio'], { encoding: 'utf8' });
    const bin = which.stdout.trim().split('\n')[0];
    if (which.status !== 0 || bin === undefined || bin === '') {
      assert.fail('kamailio is not installed: apt-get install -y kamailio');
    }
    const dir = mkdtempSync(join(tmpdir(), 'careflow-kam-'));
    try {
      const cfg = read('deploy/kamailio/careflow-edge.cfg').replace('/etc/kamailio/dispatcher.list', join(DEPLOY, 'kamailio', 'dispatcher.list'));
      writeFileSync(join(dir, 'edge.cfg'), cfg);
      const r = spawnSync(bin, ['-c', '-f', join(dir, 'edge.cfg')], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the coturn service', () => {
  it("starts Debian's coturn with the compose command, as the image's entrypoint evaluates it", async () => {
    const which = spawnSync('sh', ['-c', 'command -v turnserver || ls /usr/bin/turnserver'], { encoding: 'utf8' });
    if (which.status !== 0) {
      assert.fail('coturn is not installed: apt-get install -y coturn');
    }
    const free = await new Promise<number>((done) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as AddressInfo).port;
        probe.close(() => done(p));
      });
    });
    const command = list(obj(obj(COMPOSE.amd64['services'], 'services')['coturn'], 'coturn')['command'], 'command')
      .map((a) => String(a).replaceAll('$$', '$').replace(/^--listening-port=\d+$/, `--listening-port=${free}`));
    const dir = mkdtempSync(join(tmpdir(), 'careflow-turn-'));
    // coturn's docker-entrypoint.sh: exec $(eval "echo $@"), here with loopback-only listeners
    // (and line-buffered output: coturn's stdout log is block-buffered into a pipe).
    const child = spawn('bash', ['-c', 'exec stdbuf -oL turnserver $(eval "echo $@") --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --pidfile="$PIDFILE" -v', 'entrypoint', ...command], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', CAREFLOW_TURN_SECRET: 'b'.repeat(32), PUBLIC_IP: '203.0.113.7', PIDFILE: join(dir, 'turn.pid') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    try {
      await new Promise<void>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`coturn did not open its UDP listener:\n${log}`)), 10_000);
        const onData = (d: Buffer): void => {
          log += d.toString();
          if (log.includes(`UDP listener opened on: 127.0.0.1:${free}`)) {
            clearTimeout(timer);
            done();
          }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.on('exit', (code) => fail(new Error(`coturn exited (${code}):\n${log}`)));
      });
      assert.match(log, /Default realm: careflow/);
      assert.match(log, /Black listing: 10\.0\.0\.0-10\.255\.255\.255/);
      // A STUN Binding request (RFC 5389) gets a Binding success response.
      const socket = createSocket('udp4');
      try {
        const request = Buffer.alloc(20);
        request.writeUInt16BE(0x0001, 0);
        request.writeUInt32BE(0x2112a442, 4);
        randomFillSync(request, 8, 12);
        const answer = new Promise<Buffer>((done) => socket.once('message', done));
        socket.send(request, free, '127.0.0.1');
        const response = await answer;
        assert.equal(response.readUInt16BE(0), 0x0101);
        assert.deepEqual(response.subarray(8, 20), request.subarray(8, 20));
      } finally {
        socket.close();
      }
    } finally {
      child.removeAllListeners('exit');
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- the scripts the images run -------------------------------------------------------------

describe('deploy/rtpengine/entrypoint.sh', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'careflow-rtpe-'));
    // Stand-ins: `rtpengine` prints its arguments; `ip` answers like `ip -4 route get` does.
    writeFileSync(join(dir, 'rtpengine'), '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n');
    writeFileSync(join(dir, 'ip'), '#!/bin/sh\n[ -n "$FAKE_ROUTE" ] && echo "$FAKE_ROUTE"\n');
    chmodSync(join(dir, 'rtpengine'), 0o755);
    chmodSync(join(dir, 'ip'), 0o755);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (env: Record<string, string>, ...args: string[]): { status: number | null; argv: string[]; stderr: string } => {
    const r = spawnSync('sh', [join(DEPLOY, 'rtpengine', 'entrypoint.sh'), ...args], {
      encoding: 'utf8',
      env: { PATH: `${dir}:/usr/bin:/bin`, ...env },
    });
    return { status: r.status, argv: r.stdout.split('\n').filter((l) => l.startsWith('-')), stderr: r.stderr };
  };

  it('starts rtpengine in userspace with the ng address, the RTP range and LOCAL!PUBLIC behind NAT', () => {
    const r = run({ CAREFLOW_RTPENGINE: '127.0.0.1:2223,127.0.0.1:2224', CAREFLOW_RTP_PORTS: '10000-20000', RTPENGINE_LOCAL_IP: '10.0.0.12', PUBLIC_IP: '203.0.113.7' }, '--log-level=7');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.argv, ['--foreground', '--log-stderr', '--table=-1', '--interface=10.0.0.12!203.0.113.7', '--listen-ng=127.0.0.1:2223', '--port-min=10000', '--port-max=20000', '--log-level=7']);
  });

  it('finds the local address from the default route, and uses the defaults of the server', () => {
    const r = run({ FAKE_ROUTE: '192.0.2.1 via 10.0.0.1 dev enp0s6 src 10.0.0.99 uid 1000' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.argv.includes('--interface=10.0.0.99'));
    assert.ok(r.argv.includes(`--port-min=${range(DEFAULTS.rtpPorts).min}`) && r.argv.includes(`--port-max=${range(DEFAULTS.rtpPorts).max}`));
    assert.ok(r.argv.includes('--listen-ng=127.0.0.1:2223'));
  });

  it("starts Debian's rtpengine as an unprivileged user, answering ng ping", async () => {
    const which = spawnSync('sh', ['-c', 'command -v rtpengine && command -v setpriv'], { encoding: 'utf8' });
    if (which.status !== 0 || process.getuid?.() !== 0) {
      assert.fail('needs rtpengine (apt-get install -y rtpengine-daemon) and root (setpriv); run the tests as root');
    }
    const ng = await new Promise<number>((done) => {
      const probe = createSocket('udp4').bind(0, '127.0.0.1', () => {
        const p = probe.address().port;
        probe.close(() => done(p));
      });
    });
    // nobody, as the image's USER would be; a narrow RTP range of its own.
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', join(DEPLOY, 'rtpengine', 'entrypoint.sh')], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', RTPENGINE_LOCAL_IP: '127.0.0.1', CAREFLOW_RTPENGINE: `127.0.0.1:${ng}`, CAREFLOW_RTP_PORTS: '41000-41100' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const socket = createSocket('udp4');
    try {
      const reply = await new Promise<string>((done, fail) => {
        const deadline = setTimeout(() => fail(new Error(`no ng reply from rtpengine:\n${log}`)), 10_000);
        socket.on('message', (m) => {
          clearTimeout(deadline);
          clearInterval(retry);
          done(m.toString());
        });
        const ping = (): void => socket.send('c1 d7:command4:pinge', ng, '127.0.0.1');
        const retry = setInterval(ping, 200);
        ping();
      });
      assert.equal(reply, 'c1 d6:result4:ponge');
    } finally {
      socket.close();
      child.kill('SIGTERM');
    }
  });

  it('stops with advice when it cannot tell the local address', () => {
    const r = run({ FAKE_ROUTE: '' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /set RTPENGINE_LOCAL_IP/);
  });
});

describe('deploy/healthcheck.mjs', () => {
  let status = 200;
  let body = '{"status":"ok"}';
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/api/health' ? status : 404, { 'content-type': 'application/json' }).end(body);
  });
  let listen = '';
  before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    listen = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());
  const check = (httpListen: string): Promise<{ code: number | null; stderr: string }> =>
    new Promise((done) => {
      const child = spawn(process.execPath, [join(DEPLOY, 'healthcheck.mjs')], { env: { CAREFLOW_HTTP_LISTEN: httpListen }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => done({ code, stderr }));
    });

  it('exits 0 when /api/health answers ok', async () => {
    status = 200;
    body = '{"status":"ok"}';
    assert.deepEqual(await check(listen), { code: 0, stderr: '' });
    // A wildcard listen address is checked on loopback.
    assert.equal((await check(listen.replace('127.0.0.1', '0.0.0.0'))).code, 0);
  });

  it('exits 1 on an error status, a wrong body, a closed port or a bad address', async () => {
    status = 503;
    assert.equal((await check(listen)).code, 1);
    status = 200;
    body = '{"status":"starting"}';
    assert.equal((await check(listen)).code, 1);
    const closed = await check('127.0.0.1:1');
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /127\.0\.0\.1:1/);
    assert.match((await check('nonsense')).stderr, /not host:port/);
  });
});
