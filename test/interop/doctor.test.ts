// `careflow doctor` run for real (`node src/cli/main.ts doctor`, configured through the
// environment) against deliberately broken setups, each giving its specific advice (issue 5:
// port in use, wrong advertised address, expired certificate, plus DNS and the clock), and
// against real peers: a running careflow answering OPTIONS over UDP, TCP and TLS, coturn
// answering STUN and accepting (or refusing) TURN credentials, RTPEngine answering ping.
// Everything on 127.0.0.1; every wait is bounded; every process is stopped by its PID.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCoturn } from './coturn.ts';
import { startPebble } from './pebble.ts';
import { ROOT, freeSipPort, freeTcpPort, freeUdpPort, startServer } from './harness.ts';
import { startRtpEngine } from './rtpengine.ts';

const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const work = mkdtempSync(join(tmpdir(), 'careflow-doctor-'));
after(() => rmSync(work, { recursive: true, force: true }));
before(() => {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('openssl is missing: apt-get install -y openssl');
});

interface DoctorRun { code: number | null; stdout: string; stderr: string }

/** Runs `careflow doctor ARGS` with only the given configuration in its environment; killed by PID after 30 s. */
function doctor(env: Record<string, string>, args: string[] = []): Promise<DoctorRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'doctor', '--timeout-ms', '1500', ...args], {
      cwd: ROOT, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL'); }, 30_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** A configuration of free loopback ports and a fresh data directory (careflow not running). */
async function baseEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const data = mkdtempSync(join(work, 'data-'));
  return {
    CAREFLOW_DATA_DIR: data,
    CAREFLOW_DOMAIN: '127.0.0.1',
    CAREFLOW_SIP_LISTEN: `127.0.0.1:${await freeSipPort()}`,
    CAREFLOW_SIP_TLS_LISTEN: `127.0.0.1:${await freeTcpPort()}`,
    CAREFLOW_HTTP_LISTEN: `127.0.0.1:${await freeTcpPort()}`,
    CAREFLOW_HTTPS_LISTEN: `127.0.0.1:${await freeTcpPort()}`,
    ...extra,
  };
}

const show = (r: DoctorRun): string => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
}

/**
 * A certificate for 127.0.0.1 and localhost with chosen validity dates (YYYYMMDDHHMMSSZ):
 * OpenSSL 3.0's `req -x509` cannot set a start date, `ca -selfsign -startdate -enddate` can.
 */
function certificate(name: string, start: string, end: string): { cert: string; key: string } {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '01\n');
  writeFileSync(join(dir, 'ca.cnf'), [
    '[ ca ]', 'default_ca = doctor', '[ doctor ]', `database = ${join(dir, 'index.txt')}`, `new_certs_dir = ${dir}`, `serial = ${join(dir, 'serial')}`,
    'default_md = sha256', 'policy = any', 'email_in_dn = no', 'x509_extensions = ext',
    '[ any ]', 'commonName = supplied', '[ ext ]', 'subjectAltName = IP:127.0.0.1,DNS:localhost', 'basicConstraints = CA:FALSE', '',
  ].join('\n'));
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'key.pem'], dir);
  openssl(['req', '-new', '-key', 'key.pem', '-subj', '/CN=localhost', '-out', 'req.csr'], dir);
  openssl(['ca', '-batch', '-config', 'ca.cnf', '-selfsign', '-keyfile', 'key.pem', '-in', 'req.csr', '-out', 'cert.pem', '-startdate', start, '-enddate', end, '-notext'], dir);
  return { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
}

const stamp = (offsetDays: number): string => new Date(Date.now() + offsetDays * 86_400_000).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';

describe('careflow doctor: broken setups', () => {
  it('port in use: the SIP UDP port held by another socket fails, naming the port and the fix', async () => {
    const env = await baseEnv();
    const port = Number(env['CAREFLOW_SIP_LISTEN']!.split(':')[1]);
    const squatter = createSocket('udp4');
    await new Promise<void>((r) => squatter.bind(port, '127.0.0.1', r));
    try {
      const r = await doctor(env);
      assert.equal(r.code, 1, show(r));
      assert.ok(r.stdout.includes(`  ✗ port ${port}/udp (SIP) is in use by another program\n      fix: stop it (find it with \`ss -lunp | grep ${port}\`) or set CAREFLOW_SIP_LISTEN to another port\n`), show(r));
      assert.ok(r.stdout.includes(`  ✓ port ${port}/tcp (SIP) is free on 127.0.0.1`), show(r));
      assert.match(r.stdout, /  ! careflow is not running \(http:\/\/127\.0\.0\.1:\d+\/api\/health: nothing answered\)/);
      assert.match(r.stdout, /\nFAILED: \d+ checks passed, \d+ warnings?, 1 failed, \d+ skipped\n$/);
    } finally {
      await new Promise<void>((r) => squatter.close(() => r()));
    }
  });

  it('wrong advertised address: behind NAT (--public-ip) with another address advertised fails with the exact setting', async () => {
    const env = await baseEnv({ CAREFLOW_SIP_ADVERTISE: '203.0.113.9' });
    const r = await doctor(env, ['--public-ip', '198.51.100.7']);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /  ✓ public address 198\.51\.100\.7 \(from --public-ip\)\n/);
    assert.match(r.stdout, /  ✗ this machine is behind NAT \(its public address 198\.51\.100\.7 is on none of its interfaces\) but SIP advertises 203\.0\.113\.9 \(CAREFLOW_SIP_ADVERTISE\)\n      fix: set CAREFLOW_SIP_ADVERTISE=198\.51\.100\.7 so phones/);
    const json = JSON.parse((await doctor(env, ['--public-ip', '198.51.100.7', '--json'])).stdout) as { ok: boolean; checks: Array<{ id: string; status: string; fix?: string }> };
    assert.equal(json.ok, false);
    const adv = json.checks.find((c) => c.id === 'advertised-address');
    assert.equal(adv?.status, 'fail');
    assert.match(adv?.fix ?? '', /^set CAREFLOW_SIP_ADVERTISE=198\.51\.100\.7 /);
    const fixed = await doctor({ ...env, CAREFLOW_SIP_ADVERTISE: '198.51.100.7' }, ['--public-ip', '198.51.100.7']);
    assert.equal(fixed.code, 0, show(fixed));
    assert.match(fixed.stdout, /  ✓ SIP advertises 198\.51\.100\.7, the public address \(this machine is behind NAT/);
  });

  it('expired certificate (made with openssl ca -enddate in the past): fails with the date and "renew it"; key and names still pass', async () => {
    const { cert, key } = certificate('expired', '20200101000000Z', '20200201000000Z');
    const r = await doctor(await baseEnv({ CAREFLOW_TLS_CERT: cert, CAREFLOW_TLS_KEY: key }));
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /  ✗ the certificate expired on 2020-02-01 00:00 UTC\n      fix: renew it \(`certbot renew`, or ask your certificate authority\)/);
    assert.match(r.stdout, /  ✓ the key .*key\.pem belongs to the certificate\n/);
    assert.match(r.stdout, /  ✓ the certificate covers the domain 127\.0\.0\.1\n/);
    const soon = certificate('soon', stamp(-30), stamp(5));
    const s = await doctor(await baseEnv({ CAREFLOW_TLS_CERT: soon.cert, CAREFLOW_TLS_KEY: soon.key, CAREFLOW_DOMAIN: 'localhost' }));
    assert.match(s.stdout, /  ! the certificate expires in [45] days, on /, show(s));
    assert.match(s.stdout, /  ✓ the certificate covers the domain localhost\n/);
  });

  it('DNS: a name that does not resolve fails with the record to create; localhost points here', async () => {
    const bad = await doctor(await baseEnv({ CAREFLOW_DOMAIN: 'careflow-doctor-test.invalid' }));
    assert.equal(bad.code, 1, show(bad));
    assert.match(bad.stdout, /  ✗ the domain careflow-doctor-test\.invalid does not resolve \(.*\)\n      fix: create a DNS A record for careflow-doctor-test\.invalid pointing at 127\.0\.0\.1/);
    const good = await doctor(await baseEnv({ CAREFLOW_DOMAIN: 'localhost' }));
    assert.match(good.stdout, /  ✓ localhost points at .*127\.0\.0\.1.*, this server\n/, show(good));
  });

  it('clock: compared with a web server\'s Date header (--time-url); ten minutes off fails, in step passes', async () => {
    let offsetMs = 0;
    const server = createServer((_req, res) => { res.setHeader('date', new Date(Date.now() + offsetMs).toUTCString()); res.end(); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
    try {
      const env = await baseEnv();
      const inStep = await doctor(env, ['--time-url', url]);
      assert.match(inStep.stdout, new RegExp(`  ✓ clock agrees with ${url.replaceAll('.', '\\.')} \\(within 1 s\\)`), show(inStep));
      offsetMs = -600_000;
      const off = await doctor(env, ['--time-url', url]);
      assert.equal(off.code, 1, show(off));
      assert.match(off.stdout, /  ✗ this clock is (?:599|600|601) s ahead of http:.*\n      fix: turn on time synchronisation: `timedatectl set-ntp true`/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('careflow doctor: real peers', () => {
  it('a running careflow (with TLS) answers OPTIONS over UDP, TCP and TLS and HTTPS; the run passes', async () => {
    const { cert, key } = certificate('valid', stamp(-1), stamp(60));
    const server = await startServer({ env: { CAREFLOW_TLS_CERT: cert, CAREFLOW_TLS_KEY: key, CAREFLOW_HTTPS_LISTEN: `127.0.0.1:${await freeTcpPort()}` } });
    const r = await doctor(server.env);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`  ✓ careflow is running: http://127\\.0\\.0\\.1:${server.httpPort}/api/health answered ok\n`));
    for (const [t, port] of [['UDP', server.sipPort], ['TCP', server.sipPort], ['TLS', server.tlsPort]] as const) {
      assert.match(r.stdout, new RegExp(`  ✓ SIP over ${t} at 127\\.0\\.0\\.1:${port} answers OPTIONS \\(200 OK\\)\n`), show(r));
    }
    assert.match(r.stdout, /  ✓ HTTPS answers: https:\/\/127\.0\.0\.1:\d+\/api\/health\n/);
    assert.match(r.stdout, /  ✓ the certificate is valid until .* \(\d+ days left\)\n/);
    assert.ok(!/in use by another program/.test(r.stdout), 'a running careflow is not "another program"');
    await server.stop();
  });

  it('a running careflow with an ACME certificate (pebble): the challenge listener, SIP over TLS, HTTPS and the stored certificate pass', async () => {
    const acmeHttp = await freeTcpPort();
    const pebble = await startPebble({ httpPort: acmeHttp });
    const server = await startServer({
      domain: 'careflow.test', readyTimeoutMs: 60_000,
      env: {
        CAREFLOW_ACME: 'on', CAREFLOW_ACME_DIRECTORY: pebble.directoryUrl, CAREFLOW_ACME_HTTP_LISTEN: `127.0.0.1:${acmeHttp}`,
        CAREFLOW_HTTPS_LISTEN: `127.0.0.1:${await freeTcpPort()}`, NODE_EXTRA_CA_CERTS: pebble.tlsCaFile,
      },
    });
    const r = await doctor(server.env);
    assert.match(r.stdout, new RegExp(`  ✓ the ACME challenge listener answers at 127\\.0\\.0\\.1:${acmeHttp}\n`), show(r));
    assert.match(r.stdout, new RegExp(`  ✓ SIP over TLS at 127\\.0\\.0\\.1:${server.tlsPort} answers OPTIONS \\(200 OK\\)\n`), show(r));
    assert.match(r.stdout, /  ✓ HTTPS answers: /);
    assert.match(r.stdout, /  ✓ certificate .*\/acme\/cert\.pem \(from ACME\): for careflow\.test, issued by Pebble/, show(r));
    assert.match(r.stdout, /  ✓ the certificate covers the domain careflow\.test\n/);
    // pebble's names resolve only in pebble's own DNS: here the name does not resolve.
    assert.match(r.stdout, /  ✗ the domain careflow\.test does not resolve/);
    await server.stop();
    await pebble.stop();
  });

  it('coturn: STUN gives the public address, TURN accepts the secret (UDP and TCP); a wrong secret or port fails', async () => {
    const secret = 'doctor-coturn-shared-secret';
    const turn = await startCoturn({ secret, realm: 'careflow.test' });
    const env = await baseEnv({
      CAREFLOW_STUN_URLS: `stun:127.0.0.1:${turn.port}`,
      CAREFLOW_TURN_URLS: `${turn.url},${turn.tcpUrl}`,
      CAREFLOW_TURN_SECRET: secret,
    });
    const r = await doctor(env);
    assert.match(r.stdout, new RegExp(`  ✓ public address 127\\.0\\.0\\.1 \\(the STUN server stun:127\\.0\\.0\\.1:${turn.port} saw this machine at 127\\.0\\.0\\.1:\\d+\\)\n`), show(r));
    for (const url of [turn.url, turn.tcpUrl]) {
      assert.match(r.stdout, new RegExp(`  ✓ the TURN server ${url.replace(/[.?]/g, '\\$&')} answers and accepts credentials made with CAREFLOW_TURN_SECRET, relay address 127\\.0\\.0\\.1:\\d+\n`), show(r));
    }
    assert.equal(r.code, 0, show(r));

    const wrong = await doctor({ ...env, CAREFLOW_TURN_URLS: turn.url, CAREFLOW_TURN_SECRET: 'not-the-coturn-secret' });
    assert.equal(wrong.code, 1, show(wrong));
    assert.match(wrong.stdout, /  ✗ the TURN server .* refused credentials made with CAREFLOW_TURN_SECRET \(401 Unauthorized\)\n      fix: set CAREFLOW_TURN_SECRET to the static-auth-secret/, show(wrong));

    const deadPort = await freeUdpPort();
    const dead = await doctor({ ...env, CAREFLOW_TURN_URLS: `turn:127.0.0.1:${deadPort}?transport=udp` });
    assert.equal(dead.code, 1, show(dead));
    assert.match(dead.stdout, new RegExp(`  ✗ the TURN server turn:127\\.0\\.0\\.1:${deadPort}\\?transport=udp did not answer a STUN binding request \\(.*\\)\n      fix: start coturn`), show(dead));
    await turn.stop();
  });

  it('RTPEngine: a running instance answers ping; a dead control port fails', async () => {
    const engine = await startRtpEngine();
    const deadPort = await freeUdpPort();
    const r = await doctor(await baseEnv({ CAREFLOW_RTPENGINE: `127.0.0.1:${engine.ngPort},127.0.0.1:${deadPort}` }));
    assert.match(r.stdout, new RegExp(`  ✓ RTPEngine 127\\.0\\.0\\.1:${engine.ngPort} answers ping\n`), show(r));
    assert.match(r.stdout, new RegExp(`  ✗ RTPEngine 127\\.0\\.0\\.1:${deadPort} did not answer ping within 1500 ms\n      fix: start it`), show(r));
    assert.equal(r.code, 1);
    const alone = await doctor(await baseEnv({ CAREFLOW_RTPENGINE: `127.0.0.1:${engine.ngPort}` }));
    assert.equal(alone.code, 0, show(alone));
    await engine.stop();
  });
});
