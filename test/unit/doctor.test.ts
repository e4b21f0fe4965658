// `careflow doctor` check by check, with fake probes: every pass, warn, fail and skip branch
// and its advice; the report, its text and JSON renderings and the command's exit codes.
// The real probes against real peers are test/interop/doctor.test.ts.
import assert from 'node:assert/strict';
import { X509Certificate, createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runDoctorCommand } from '../../src/cli/doctor.ts';
import { CareflowError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import { renderJson, renderText, runDoctor, type CheckResult, type DoctorProbes } from '../../src/deploy/doctor.ts';
import { checkCertificate } from '../../src/deploy/doctor/certificate.ts';
import { checkClock, checkDataDir, checkNode } from '../../src/deploy/doctor/host.ts';
import { checkRtpEngine, checkRtpRange, checkTurn } from '../../src/deploy/doctor/media.ts';
import { advertisedHost, checkAdvertised, checkDns, checkPorts, discoverPublicAddress, isPrivateAddress } from '../../src/deploy/doctor/network.ts';

// An EC certificate for sip.example.org and 192.0.2.10, its key, and an unrelated key.
const CERT = `-----BEGIN CERTIFICATE-----
MIIBqzCCAVGgAwIBAgIULMzOXIKrN71RIdz+D8E3th5TtmUwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPc2lwLmV4YW1wbGUub3JnMB4XDTI2MTEyODAwNTEwMFoXDTM2
MTEyNTAwNTEwMFowGjEYMBYGA1UEAwwPc2lwLmV4YW1wbGUub3JnMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEQ6EPQ1xTSjkWidlbiB83IOMWsboOO68EKqZt4d+x
ay7Z9UXz75mBMTR66vL2WKjdFJ+JcYSPmC812jOl1BjEw6N1MHMwHQYDVR0OBBYE
FNlgoepdwOTwqUtXIFrh0AOWP0BOMB8GA1UdIwQYMBaAFNlgoepdwOTwqUtXIFrh
0AOWP0BOMA8GA1UdEwEB/wQFMAMBAf8wIAYDVR0RBBkwF4IPc2lwLmV4YW1wbGUu
b3JnhwTAAAIKMAoGCCqGSM49BAMCA0gAMEUCIDnrcIshc9Ell2V0cCSPOmPCI7b/
3UOfFiDipajaGd4cAiEA91ibkF08Xkihylgb08PwGK5SjzMXtuNwhmx4AL90SGU=
-----END CERTIFICATE-----
`;
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQga22GKS1oTFmBFNva
ik8EPrf1AP6kdOvJPaYUo2QQpjmhRANCAARDoQ9DXFNKORaJ2VuIHzcg4xaxug47
rwQqpm3h37FrLtn1RfPvmYExNHrq8vZYqN0Un4lxhI+YLzXaM6XUGMTD
-----END PRIVATE KEY-----
`;
const OTHER_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgovFiVQdcoigqBGNz
ymERp7f4S7tDzUO4nsA+LTskfjKhRANCAAS9qZop+Ik5RUFFZYNGQ+FWtUgdGG/o
Gue0LQmCdG7ZEj1Qx5aJ8g0oGEIqSwLDHTJLmULFJ7aP85GfxYlRMn7C
-----END PRIVATE KEY-----
`;
const VALID_FROM = new X509Certificate(CERT).validFromDate.getTime();
const VALID_TO = new X509Certificate(CERT).validToDate.getTime();
const DAY = 86_400_000;
const NOW = VALID_FROM + 100 * DAY;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const dir = mkdtempSync(join(tmpdir(), 'careflow-doctor-unit-'));
const files = new Map<string, string>([[join(dir, 'cert.pem'), CERT], [join(dir, 'key.pem'), KEY], [join(dir, 'other.pem'), OTHER_KEY], [join(dir, 'junk.pem'), 'not a certificate']]);
for (const [path, text] of files) writeFileSync(path, text);

const config = (...argv: string[]) => loadConfig({ argv: ['--data-dir', join(dir, 'data'), '--domain', 'sip.example.org', ...argv], env: {} });
const tlsConfig = (...argv: string[]) => config('--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem'), ...argv);

/** Probes of a healthy machine at 10.0.0.5 behind nothing; each test overrides what it needs. */
function probes(over: Partial<DoctorProbes> = {}): DoctorProbes {
  return {
    nodeVersion: '24.21.0',
    now: () => NOW,
    interfaces: () => [{ address: '127.0.0.1', family: 'IPv4', internal: true }, { address: '10.0.0.5', family: 'IPv4', internal: false }],
    dirKind: async () => 'dir',
    writable: async () => true,
    freeBytes: async () => 50 * GiB,
    health: async () => ({ kind: 'none', error: 'ECONNREFUSED' }),
    sipOptions: async () => ({ status: 200, reason: 'OK' }),
    bind: async () => ({ kind: 'free' }),
    stunBinding: async () => ({ address: '198.51.100.7', port: 40000 }),
    turnAllocate: async () => ({ kind: 'allocated', relayed: { address: '10.0.0.5', port: 49152 } }),
    lookup: async () => ['10.0.0.5'],
    readFile: async (path) => {
      const text = files.get(path);
      if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
      return Buffer.from(text);
    },
    httpDate: async () => ({ date: new Date(NOW).toUTCString(), sentAt: NOW - 20, receivedAt: NOW + 20 }),
    ngPing: async (instances) => instances.map(() => true),
    ephemeralPorts: async () => ({ min: 32768, max: 60999 }),
    ...over,
  };
}

const T = 500;
const byId = (results: readonly CheckResult[], id: string): CheckResult => {
  const r = results.find((c) => c.id === id);
  assert.ok(r !== undefined, `no check ${id} in ${JSON.stringify(results.map((c) => c.id))}`);
  return r;
};

describe('doctor: system', () => {
  it('Node.js 24 passes; older fails with how to get 24', () => {
    assert.equal(checkNode('24.21.0').status, 'pass');
    assert.equal(checkNode('25.0.0').status, 'pass');
    const old = checkNode('22.12.0');
    assert.equal(old.status, 'fail');
    assert.match(old.message, /Node\.js 22\.12\.0 is too old: CareFlow needs Node\.js 24 or later/);
    assert.match(old.fix ?? '', /npm install/);
  });

  it('data directory: writable passes; not writable, a file, or uncreatable fails; missing but creatable warns', async () => {
    const d = join(dir, 'data');
    assert.equal((await checkDataDir(d, probes()))[0]?.status, 'pass');
    const ro = (await checkDataDir(d, probes({ writable: async () => false })))[0]!;
    assert.equal(ro.status, 'fail');
    assert.match(ro.message, /is not writable by this user/);
    assert.match(ro.fix ?? '', /chown/);
    const file = await checkDataDir(d, probes({ dirKind: async () => 'not-dir' }));
    assert.equal(file.length, 1);
    assert.match(file[0]!.message, /is a file, not a directory/);
    const missing = probes({ dirKind: async (p) => (p === d ? 'missing' : 'dir') });
    const m = await checkDataDir(d, missing);
    assert.equal(m[0]?.status, 'warn');
    assert.match(m[0]?.fix ?? '', /careflow serve creates it/);
    const blocked = await checkDataDir(d, probes({ dirKind: async (p) => (p === d ? 'missing' : 'dir'), writable: async () => false }));
    assert.equal(blocked[0]?.status, 'fail');
    assert.match(blocked[0]!.message, new RegExp(`cannot be created: ${dir} is not writable`));
    assert.match(blocked[0]?.fix ?? '', /sudo mkdir -p/);
  });

  it('free disk: 1 GiB and more passes, under 1 GiB warns, under 100 MiB fails; statfs looks at the nearest existing directory', async () => {
    const d = join(dir, 'data');
    const disk = async (free: number) => byId(await checkDataDir(d, probes({ freeBytes: async () => free })), 'disk');
    assert.equal((await disk(50 * GiB)).status, 'pass');
    assert.match((await disk(50 * GiB)).message, /^50\.0 GiB free on the disk of /);
    assert.equal((await disk(GiB)).status, 'pass');
    assert.equal((await disk(GiB - 1)).status, 'warn');
    assert.match((await disk(500 * MiB)).message, /only 500 MiB free/);
    assert.equal((await disk(100 * MiB)).status, 'warn');
    const low = await disk(99 * MiB);
    assert.equal(low.status, 'fail');
    assert.match(low.fix ?? '', /free some space/);
    const asked: string[] = [];
    await checkDataDir(d, probes({ dirKind: async (p) => (p === d ? 'missing' : 'dir'), freeBytes: async (p) => { asked.push(p); return GiB * 2; } }));
    assert.deepEqual(asked, [dir]);
    const unknown = byId(await checkDataDir(d, probes({ freeBytes: async () => { throw new Error('ENOSYS'); } })), 'disk');
    assert.equal(unknown.status, 'warn');
  });

  it('clock: skipped without --time-url; within 5 s passes, within a minute warns, beyond fails; no Date header or no answer warns', async () => {
    const at = (offsetMs: number, date?: string) => checkClock('http://time.test', probes({
      httpDate: async () => ({ date: date ?? new Date(NOW - offsetMs).toUTCString(), sentAt: NOW - 10, receivedAt: NOW + 10 }),
    }), T);
    assert.equal((await checkClock(undefined, probes(), T)).status, 'skip');
    assert.match((await checkClock(undefined, probes(), T)).fix ?? '', /--time-url/);
    assert.equal((await at(0)).status, 'pass');
    assert.equal((await at(3000)).status, 'pass');
    const ahead = await at(20_000);
    assert.equal(ahead.status, 'warn');
    assert.match(ahead.message, /this clock is 2\d s ahead of http:\/\/time\.test/);
    assert.match(ahead.fix ?? '', /timedatectl set-ntp true/);
    const behind = await at(-300_000);
    assert.equal(behind.status, 'fail');
    assert.match(behind.message, /this clock is 30\d s behind http:\/\/time\.test/);
    assert.equal((await at(0, 'yesterday-ish')).status, 'warn');
    const down = await checkClock('http://time.test', probes({ httpDate: async () => { throw new Error('ECONNREFUSED'); } }), T);
    assert.equal(down.status, 'warn');
    assert.match(down.message, /did not answer/);
  });
});

describe('doctor: ports', () => {
  it('careflow not running: a warning, then every configured port is bound to see that it is free', async () => {
    const bound: string[] = [];
    const urls: string[] = [];
    const r = await checkPorts(config('--sip-listen', '0.0.0.0:5060', '--http-listen', '0.0.0.0:8080'), probes({
      health: async (url) => { urls.push(url); return { kind: 'none', error: 'ECONNREFUSED' }; },
      bind: async (p, host, port) => { bound.push(`${host}:${port}/${p}`); return { kind: 'free' }; },
      sipOptions: async () => assert.fail('no OPTIONS when careflow is not running'),
    }), T);
    assert.deepEqual(urls, ['http://127.0.0.1:8080/api/health']);
    assert.equal(byId(r, 'server').status, 'warn');
    assert.match(byId(r, 'server').message, /careflow is not running/);
    assert.deepEqual(bound, ['0.0.0.0:5060/udp', '0.0.0.0:5060/tcp', '0.0.0.0:8080/tcp']);
    assert.equal(byId(r, 'port.sip.udp').message, 'port 5060/udp (SIP) is free on 0.0.0.0');
    assert.ok(r.every((c) => c.status !== 'fail'));
  });

  it('a port held by another program fails with the ss command and the setting to change', async () => {
    const r = await checkPorts(config(), probes({
      bind: async (p) => (p === 'udp' ? { kind: 'error', code: 'EADDRINUSE', message: 'bind EADDRINUSE 0.0.0.0:5060' } : { kind: 'free' }),
    }), T);
    const udp = byId(r, 'port.sip.udp');
    assert.equal(udp.status, 'fail');
    assert.equal(udp.message, 'port 5060/udp (SIP) is in use by another program');
    assert.equal(udp.fix, 'stop it (find it with `ss -lunp | grep 5060`) or set CAREFLOW_SIP_LISTEN to another port');
    assert.equal(byId(r, 'port.sip.tcp').status, 'pass');
  });

  it('privileged ports, foreign addresses, other errors and port 0 each get their own advice; TLS adds its ports', async () => {
    const codes: Record<string, string> = { '443': 'EACCES', '5061': 'EADDRNOTAVAIL', '8080': 'EINVAL' };
    const r = await checkPorts(tlsConfig('--https-listen', '0.0.0.0:443', '--sip-tls-listen', '192.0.2.99:5061', '--sip-listen', '127.0.0.1:0'), probes({
      bind: async (_p, _h, port) => {
        const code = codes[port];
        return code !== undefined ? { kind: 'error', code, message: `bind ${code}` } : { kind: 'free' };
      },
    }), T);
    assert.equal(byId(r, 'port.sip.udp').status, 'skip');
    // A warning only: the installed service may have the capability this user lacks.
    assert.equal(byId(r, 'port.https').status, 'warn');
    assert.match(byId(r, 'port.https').message, /this user may not open port 443\/tcp \(HTTPS and WSS\): ports below 1024 need root or CAP_NET_BIND_SERVICE/);
    assert.match(byId(r, 'port.https').fix ?? '', /installed service has the capability.*CAREFLOW_HTTPS_LISTEN/);
    assert.match(byId(r, 'port.sip.tls').message, /192\.0\.2\.99 \(SIP over TLS, CAREFLOW_SIP_TLS_LISTEN\) is not an address of this machine/);
    assert.match(byId(r, 'port.sip.tls').fix ?? '', /0\.0\.0\.0:5061 or to one of this machine's addresses \(10\.0\.0\.5\)/);
    assert.match(byId(r, 'port.http').message, /cannot open port 8080\/tcp .*bind EINVAL/);
  });

  it('another web server on the HTTP port: careflow is not running, and the port is reported in use', async () => {
    const r = await checkPorts(config(), probes({
      health: async () => ({ kind: 'other', status: 404 }),
      bind: async (p, _h, port) => (p === 'tcp' && port === 8080 ? { kind: 'error', code: 'EADDRINUSE', message: '' } : { kind: 'free' }),
    }), T);
    assert.match(byId(r, 'server').message, /HTTP 404 from another program/);
    assert.match(byId(r, 'port.http').fix ?? '', /ss -ltnp \| grep 8080.*CAREFLOW_HTTP_LISTEN/);
  });

  it('careflow running: SIP must answer OPTIONS over UDP and TCP (and TLS, and HTTPS) at loopback for 0.0.0.0; nothing is bound', async () => {
    const asked: string[] = [];
    const running = probes({
      health: async (url) => { asked.push(url); return { kind: 'ok' }; },
      sipOptions: async (t, host, port) => { asked.push(`${t}:${host}:${port}`); return { status: 200, reason: 'OK' }; },
      bind: async () => assert.fail('nothing is bound while careflow runs'),
    });
    const r = await checkPorts(tlsConfig(), running, T);
    assert.deepEqual(asked.sort(), ['http://127.0.0.1:8080/api/health', 'https://127.0.0.1:8443/api/health', 'tcp:127.0.0.1:5060', 'tls:127.0.0.1:5061', 'udp:127.0.0.1:5060']);
    assert.deepEqual(r.map((c) => `${c.id}=${c.status}`), ['server=pass', 'sip.udp=pass', 'sip.tcp=pass', 'sip.tls=pass', 'https=pass']);
    assert.equal(byId(r, 'sip.udp').message, 'SIP over UDP at 127.0.0.1:5060 answers OPTIONS (200 OK)');

    const v6 = await checkPorts(config('--sip-listen', '[::]:5070', '--http-listen', '[::1]:8081'), probes({
      health: async (url) => (url === 'http://[::1]:8081/api/health' ? { kind: 'ok' } : { kind: 'none', error: url }),
      sipOptions: async (t, host) => { assert.equal(host, '::1'); return t === 'udp' ? { status: 200, reason: 'OK' } : Promise.reject(new Error('no answer within 500 ms')); },
    }), T);
    assert.equal(byId(v6, 'sip.udp').message, 'SIP over UDP at [::1]:5070 answers OPTIONS (200 OK)');
    const tcp = byId(v6, 'sip.tcp');
    assert.equal(tcp.status, 'fail');
    assert.match(tcp.message, /SIP over TCP at \[::1\]:5070 did not answer an OPTIONS request \(no answer within 500 ms\)/);
    assert.match(tcp.fix ?? '', /CAREFLOW_SIP_LISTEN/);
  });

  it('with ACME: the TLS ports and the challenge port are checked, free when stopped, answering when running', async () => {
    const acme = config('--acme', 'on');
    const bound: string[] = [];
    const stopped = await checkPorts(acme, probes({ bind: async (p, _h, port) => { bound.push(`${port}/${p}`); return { kind: 'free' }; } }), T);
    assert.deepEqual(bound, ['5060/udp', '5060/tcp', '5061/tcp', '8080/tcp', '8443/tcp', '80/tcp']);
    assert.equal(byId(stopped, 'port.acme').message, 'port 80/tcp (ACME HTTP-01 challenges) is free on 0.0.0.0');
    const asked: string[] = [];
    const answering = (acmeAnswers: boolean) => probes({
      health: async (url) => {
        asked.push(url);
        if (url.includes('acme-challenge')) return acmeAnswers ? { kind: 'other', status: 404 } : { kind: 'none', error: 'ECONNREFUSED' };
        return { kind: 'ok' };
      },
    });
    const running = await checkPorts(acme, answering(true), T);
    assert.deepEqual(running.map((c) => `${c.id}=${c.status}`), ['server=pass', 'sip.udp=pass', 'sip.tcp=pass', 'sip.tls=pass', 'https=pass', 'acme-http=pass']);
    assert.ok(asked.includes('http://127.0.0.1:80/.well-known/acme-challenge/careflow-doctor'));
    const silent = byId(await checkPorts(acme, answering(false), T), 'acme-http');
    assert.equal(silent.status, 'fail');
    assert.match(silent.fix ?? '', /CAREFLOW_ACME_HTTP_LISTEN/);
  });

  it('careflow running but its database failing: the server check fails', async () => {
    const r = await checkPorts(config(), probes({ health: async () => ({ kind: 'unhealthy', status: 503 }) }), T);
    assert.equal(byId(r, 'server').status, 'fail');
    assert.match(byId(r, 'server').message, /running but unhealthy: .* answered 503/);
  });
});

describe('doctor: addresses', () => {
  it('the advertised address is chosen like the server does', () => {
    const ifs = probes().interfaces();
    assert.equal(advertisedHost(config(), ifs), '10.0.0.5');
    assert.equal(advertisedHost(config('--sip-listen', '127.0.0.1:5060'), ifs), '127.0.0.1');
    assert.equal(advertisedHost(config('--sip-advertise', '203.0.113.9'), ifs), '203.0.113.9');
    assert.equal(advertisedHost(config(), [{ address: '127.0.0.1', family: 'IPv4', internal: true }]), '127.0.0.1');
    assert.ok(isPrivateAddress('10.0.0.5') && isPrivateAddress('100.64.1.1') && isPrivateAddress('fd00::1') && !isPrivateAddress('198.51.100.7'));
  });

  it('the public address: --public-ip first, else the first STUN server, else not checked; a silent STUN server fails', async () => {
    let stunAsked = 0;
    const counting = probes({ stunBinding: async (server) => { stunAsked++; assert.deepEqual(server, { transport: 'udp', host: 'stun.example.org', port: 3479 }); return { address: '198.51.100.7', port: 4000 }; } });
    const given = await discoverPublicAddress(config('--stun-urls', 'stun:stun.example.org:3479'), { publicIp: '203.0.113.1', timeoutMs: T }, counting);
    assert.equal(given.address, '203.0.113.1');
    assert.match(given.check.message, /from --public-ip/);
    assert.equal(stunAsked, 0);
    const stun = await discoverPublicAddress(config('--stun-urls', 'stun:stun.example.org:3479'), { timeoutMs: T }, counting);
    assert.equal(stun.address, '198.51.100.7');
    assert.equal(stun.check.status, 'pass');
    assert.match(stun.check.message, /the STUN server stun:stun\.example\.org:3479 saw this machine at 198\.51\.100\.7:4000/);
    const none = await discoverPublicAddress(config(), { timeoutMs: T }, counting);
    assert.equal(none.address, undefined);
    assert.equal(none.check.status, 'skip');
    assert.match(none.check.fix ?? '', /--public-ip ADDR.*CAREFLOW_STUN_URLS/);
    const silent = await discoverPublicAddress(config('--stun-urls', 'stun:stun.example.org'), { timeoutMs: T }, probes({ stunBinding: async () => { throw new Error('no answer within 500 ms'); } }));
    assert.equal(silent.check.status, 'fail');
    assert.match(silent.check.message, /the STUN server stun:stun\.example\.org did not answer a binding request \(no answer within 500 ms\)/);
  });

  it('behind NAT with the advertised address not the public one: fails with the exact setting (the Oracle Cloud case)', async () => {
    const r = await checkAdvertised(config('--sip-advertise', '203.0.113.9'), '198.51.100.7', probes(), T);
    assert.equal(r.status, 'fail');
    assert.match(r.message, /behind NAT \(its public address 198\.51\.100\.7 is on none of its interfaces\) but SIP advertises 203\.0\.113\.9 \(CAREFLOW_SIP_ADVERTISE\)/);
    assert.match(r.fix ?? '', /^set CAREFLOW_SIP_ADVERTISE=198\.51\.100\.7 /);
    const unset = await checkAdvertised(config(), '198.51.100.7', probes(), T);
    assert.equal(unset.status, 'fail');
    assert.match(unset.message, /SIP advertises 10\.0\.0\.5 \(chosen from CAREFLOW_SIP_LISTEN and the interfaces\)/);
  });

  it('advertising the public address passes (noting NAT); a public interface advertised as something else warns', async () => {
    const nat = await checkAdvertised(config('--sip-advertise', '198.51.100.7'), '198.51.100.7', probes(), T);
    assert.equal(nat.status, 'pass');
    assert.match(nat.message, /the public address \(this machine is behind NAT/);
    const direct = probes({ interfaces: () => [{ address: '198.51.100.7', family: 'IPv4', internal: false }, { address: '10.0.0.5', family: 'IPv4', internal: false }] });
    assert.equal((await checkAdvertised(config('--sip-listen', '198.51.100.7:5060'), '198.51.100.7', direct, T)).status, 'pass');
    const lan = await checkAdvertised(config('--sip-listen', '10.0.0.5:5060'), '198.51.100.7', direct, T);
    assert.equal(lan.status, 'warn');
    assert.match(lan.fix ?? '', /set CAREFLOW_SIP_ADVERTISE=198\.51\.100\.7, unless the server is for the local network only/);
  });

  it('without a public address: an interface address passes, loopback warns, a foreign address warns', async () => {
    const own = await checkAdvertised(config(), undefined, probes(), T);
    assert.equal(own.status, 'pass');
    assert.match(own.message, /SIP advertises 10\.0\.0\.5, an address of this machine, a private address/);
    assert.equal((await checkAdvertised(config('--sip-listen', '127.0.0.1:5060'), undefined, probes(), T)).status, 'warn');
    const foreign = await checkAdvertised(config('--sip-advertise', '203.0.113.9'), undefined, probes(), T);
    assert.equal(foreign.status, 'warn');
    assert.match(foreign.message, /not an address of this machine/);
  });

  it('an advertised name is resolved; one that does not resolve fails', async () => {
    const named = await checkAdvertised(config('--sip-advertise', 'sip.example.org'), '198.51.100.7', probes({ lookup: async () => ['198.51.100.7'] }), T);
    assert.equal(named.status, 'pass');
    assert.match(named.message, /SIP advertises sip\.example\.org \(198\.51\.100\.7\), the public address/);
    const broken = await checkAdvertised(config('--sip-advertise', 'nowhere.example.org'), '198.51.100.7', probes({ lookup: async () => { throw new Error('ENOTFOUND'); } }), T);
    assert.equal(broken.status, 'fail');
    assert.match(broken.fix ?? '', /CAREFLOW_SIP_ADVERTISE to this server's public IP address \(198\.51\.100\.7\)/);
  });
});

describe('doctor: DNS', () => {
  it('an IP address domain is skipped', async () => {
    const r = await checkDns(config('--domain', '192.0.2.10'), undefined, probes({ lookup: async () => assert.fail('no lookup of an IP') }), T);
    assert.equal(r.status, 'skip');
    assert.equal((await checkDns(config('--domain', '[2001:db8::1]'), undefined, probes(), T)).status, 'skip');
  });

  it('a name that does not resolve fails with the record to create (and the DuckDNS hint when the updater is on)', async () => {
    const gone = probes({ lookup: async () => { throw Object.assign(new Error('getaddrinfo ENOTFOUND sip.example.org'), { code: 'ENOTFOUND' }); } });
    const r = await checkDns(config(), '198.51.100.7', gone, T);
    assert.equal(r.status, 'fail');
    assert.match(r.message, /the domain sip\.example\.org does not resolve \(getaddrinfo ENOTFOUND sip\.example\.org\)/);
    assert.match(r.fix ?? '', /create a DNS A record for sip\.example\.org pointing at 198\.51\.100\.7/);
    const ddns = await checkDns(config('--ddns-provider', 'duckdns', '--duckdns-domains', 'careflow-home', '--duckdns-token', '7c9e6679-7425-40de-944b-e07fc1f90ae7'), undefined, gone, T);
    assert.match(ddns.fix ?? '', /pointing at 10\.0\.0\.5; the DuckDNS updater sets it/);
  });

  it('with a public address the name must point at it', async () => {
    assert.equal((await checkDns(config(), '198.51.100.7', probes({ lookup: async () => ['198.51.100.7'] }), T)).status, 'pass');
    const wrong = await checkDns(config(), '198.51.100.7', probes({ lookup: async () => ['203.0.113.50'] }), T);
    assert.equal(wrong.status, 'fail');
    assert.equal(wrong.message, 'sip.example.org points at 203.0.113.50, not at this server\'s public address 198.51.100.7');
    assert.match(wrong.fix ?? '', /change the DNS A record of sip\.example\.org to 198\.51\.100\.7/);
  });

  it('without one it must point at this machine or the advertised address', async () => {
    assert.equal((await checkDns(config(), undefined, probes({ lookup: async () => ['10.0.0.5'] }), T)).status, 'pass');
    const adv = config('--sip-advertise', '203.0.113.9');
    assert.equal((await checkDns(adv, undefined, probes({ lookup: async () => ['203.0.113.9'] }), T)).status, 'pass');
    const elsewhere = await checkDns(config(), undefined, probes({ lookup: async () => ['203.0.113.50'] }), T);
    assert.equal(elsewhere.status, 'fail');
    assert.match(elsewhere.fix ?? '', /point sip\.example\.org at 10\.0\.0\.5; or, if 203\.0\.113\.50 is this server's public address behind NAT, set CAREFLOW_SIP_ADVERTISE=203\.0\.113\.50/);
  });
});

describe('doctor: certificate', () => {
  it('no certificate: skipped with why it matters', async () => {
    const r = await checkCertificate(config(), probes());
    assert.deepEqual(r.map((c) => c.status), ['skip']);
    assert.match(r[0]?.fix ?? '', /CAREFLOW_TLS_CERT and CAREFLOW_TLS_KEY/);
  });

  it('a good certificate: readable, its key, the domain (name or IP), valid', async () => {
    const r = await checkCertificate(tlsConfig(), probes());
    assert.deepEqual(r.map((c) => `${c.id}=${c.status}`), ['certificate.file=pass', 'certificate.key=pass', 'certificate.names=pass', 'certificate.validity=pass']);
    assert.match(byId(r, 'certificate.file').message, /for sip\.example\.org, 192\.0\.2\.10, issued by sip\.example\.org/);
    assert.match(byId(r, 'certificate.validity').message, /valid until 2036-.* UTC \(\d+ days left\)/);
    assert.equal(byId(await checkCertificate(tlsConfig('--domain', '192.0.2.10'), probes()), 'certificate.names').status, 'pass');
  });

  it('another name, a foreign key, an unreadable or garbled file each fail with their own advice', async () => {
    const names = byId(await checkCertificate(tlsConfig('--domain', 'other.example.org'), probes()), 'certificate.names');
    assert.equal(names.status, 'fail');
    assert.equal(names.message, 'the certificate is for sip.example.org, 192.0.2.10, not for the domain other.example.org');
    assert.match(names.fix ?? '', /certbot certonly --standalone -d other\.example\.org/);
    const key = byId(await checkCertificate(config('--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'other.pem')), probes()), 'certificate.key');
    assert.equal(key.status, 'fail');
    assert.match(key.message, /the key .*other\.pem does not belong to the certificate/);
    const junkKey = byId(await checkCertificate(config('--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'junk.pem')), probes()), 'certificate.key');
    assert.equal(junkKey.status, 'fail');
    const junk = await checkCertificate(config('--tls-cert', join(dir, 'junk.pem'), '--tls-key', join(dir, 'key.pem')), probes());
    assert.deepEqual(junk.map((c) => `${c.id}=${c.status}`), ['certificate.file=fail']);
    const gone = await checkCertificate(tlsConfig(), probes({ readFile: async () => { throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' }); } }));
    assert.match(gone[0]!.message, /cannot use the certificate .*cert\.pem: EACCES: permission denied/);
  });

  it('with ACME: the certificate in <data-dir>/acme/ is checked; none yet is a warning', async () => {
    const acme = config('--acme', 'on');
    const none = await checkCertificate(acme, probes());
    assert.deepEqual(none.map((c) => `${c.id}=${c.status}`), ['certificate.file=warn']);
    assert.match(none[0]!.message, /no certificate from the ACME CA yet \(.*\/data\/acme\/cert\.pem\)/);
    assert.match(none[0]!.fix ?? '', /port 80 \(CAREFLOW_ACME_HTTP_LISTEN\) reachable/);
    const stored = new Map([[join(dir, 'data', 'acme', 'cert.pem'), CERT], [join(dir, 'data', 'acme', 'key.pem'), KEY]]);
    const fromAcme = probes({ readFile: async (path) => Buffer.from(stored.get(path) ?? assert.fail(`unexpected read of ${path}`)), now: () => VALID_TO + DAY });
    const r = await checkCertificate(acme, fromAcme);
    assert.deepEqual(r.map((c) => `${c.id}=${c.status}`), ['certificate.file=pass', 'certificate.key=pass', 'certificate.names=pass', 'certificate.validity=fail']);
    assert.match(byId(r, 'certificate.file').message, /\(from ACME\)/);
    assert.match(byId(r, 'certificate.validity').fix ?? '', /careflow renews it by itself/);
  });

  it('validity: expired and not yet valid fail, under 14 days left warns', async () => {
    const at = async (now: number) => byId(await checkCertificate(tlsConfig(), probes({ now: () => now })), 'certificate.validity');
    const expired = await at(VALID_TO + DAY);
    assert.equal(expired.status, 'fail');
    assert.match(expired.message, /^the certificate expired on 2036-11-25 00:51 UTC$/);
    assert.match(expired.fix ?? '', /^renew it/);
    const early = await at(VALID_FROM - DAY);
    assert.equal(early.status, 'fail');
    assert.match(early.message, /not valid before 2026-11-28 00:51 UTC/);
    assert.match(early.fix ?? '', /clock/);
    const soon = await at(VALID_TO - 5 * DAY - 1000);
    assert.equal(soon.status, 'warn');
    assert.match(soon.message, /expires in 5 days, on 2036-11-25/);
    assert.equal((await at(VALID_TO - 15 * DAY)).status, 'pass');
    assert.equal((await at(VALID_TO - 13 * DAY)).status, 'warn');
  });
});

describe('doctor: media', () => {
  it('RTP range: large passes, under 100 ports warns, containing the SIP port fails, overlapping ephemeral ports warns', async () => {
    const r = await checkRtpRange(config(), probes());
    assert.deepEqual(r.map((c) => c.status), ['pass']);
    assert.match(r[0]!.message, /RTP range 10000-20000: 10001 ports, room for about 2500 relayed calls/);
    const small = await checkRtpRange(config('--rtp-ports', '30000-30049'), probes({ ephemeralPorts: async () => undefined }));
    assert.equal(small[0]?.status, 'warn');
    assert.match(small[0]!.message, /has only 50 ports: room for about 12 relayed calls at once/);
    const clash = await checkRtpRange(config('--rtp-ports', '5000-6000'), probes());
    assert.equal(byId(clash, 'rtp-range.overlap').status, 'fail');
    assert.match(byId(clash, 'rtp-range.overlap').message, /contains the SIP port 5060\/udp/);
    const eph = await checkRtpRange(config('--rtp-ports', '40000-50000'), probes());
    assert.equal(byId(eph, 'rtp-range.ephemeral').status, 'warn');
    assert.match(byId(eph, 'rtp-range.ephemeral').fix ?? '', /outside 32768-60999/);
  });

  it('RTPEngine: not configured is skipped; each instance must answer ping', async () => {
    assert.equal((await checkRtpEngine(config(), probes(), T))[0]?.status, 'skip');
    const r = await checkRtpEngine(config('--rtpengine', '127.0.0.1:2223,[::1]:2224'), probes({ ngPing: async () => [true, false] }), T);
    assert.deepEqual(r.map((c) => `${c.id}=${c.status}`), ['rtpengine.127.0.0.1:2223=pass', 'rtpengine.[::1]:2224=fail']);
    assert.match(r[1]!.message, /RTPEngine \[::1\]:2224 did not answer ping within 500 ms/);
    assert.match(r[1]!.fix ?? '', /systemctl start rtpengine-daemon/);
  });

  const SECRET = 'a-shared-secret-of-coturn';
  const turn = (...urls: string[]) => config('--turn-urls', urls.join(','), '--turn-secret', SECRET);

  it('TURN: not configured is skipped; a server that answers and takes the credentials passes', async () => {
    assert.equal((await checkTurn(config(), probes(), T))[0]?.status, 'skip');
    const seen: string[] = [];
    const r = await checkTurn(turn('turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org'), probes({
      stunBinding: async (s) => { seen.push(`binding ${s.transport}:${s.host}:${s.port}`); return { address: '198.51.100.7', port: 1 }; },
      turnAllocate: async (s, username, password) => {
        seen.push(`allocate ${s.transport}:${s.port}`);
        assert.match(username, /^\d+:careflow-doctor$/);
        assert.ok(Number(username.split(':')[0]) > NOW / 1000, 'the credentials have not expired');
        assert.equal(password, createHmac('sha1', SECRET).update(username).digest('base64'));
        return { kind: 'allocated', relayed: { address: '198.51.100.7', port: 50000 } };
      },
    }), T);
    assert.deepEqual(seen.sort(), ['allocate tls:5349', 'allocate udp:3478', 'binding tls:turn.example.org:5349', 'binding udp:turn.example.org:3478']);
    assert.deepEqual(r.map((c) => c.status), ['pass', 'pass']);
    assert.match(r[0]!.message, /answers and accepts credentials made with CAREFLOW_TURN_SECRET, relay address 198\.51\.100\.7:50000/);
  });

  it('TURN: no answer, refused credentials, a refused allocation and no allocation answer each fail with advice', async () => {
    const url = 'turn:turn.example.org:3478?transport=tcp';
    const silent = await checkTurn(turn(url), probes({ stunBinding: async () => { throw new Error('ECONNREFUSED'); } }), T);
    assert.equal(silent[0]?.status, 'fail');
    assert.match(silent[0]!.message, /did not answer a STUN binding request \(ECONNREFUSED\)/);
    assert.match(silent[0]!.fix ?? '', /open 3478\/tcp/);
    const refused = await checkTurn(turn(url), probes({ turnAllocate: async () => ({ kind: 'rejected', code: 401, reason: 'Unauthorized' }) }), T);
    assert.match(refused[0]!.message, /refused credentials made with CAREFLOW_TURN_SECRET \(401 Unauthorized\)/);
    assert.match(refused[0]!.fix ?? '', /static-auth-secret/);
    const quota = await checkTurn(turn(url), probes({ turnAllocate: async () => ({ kind: 'error', code: 486, reason: 'Allocation Quota Reached' }) }), T);
    assert.match(quota[0]!.message, /refused an allocation \(486 Allocation Quota Reached\)/);
    const stunOnly = await checkTurn(turn(url), probes({ turnAllocate: async () => { throw new Error('no answer within 500 ms'); } }), T);
    assert.match(stunOnly[0]!.message, /answers STUN but not an allocation/);
    assert.ok([...refused, ...quota, ...stunOnly].every((c) => c.status === 'fail'));
  });
});

describe('doctor: the report and the command', () => {
  it('runs every group in a fixed order; ok unless a check failed (warnings and skips allowed)', async () => {
    const report = await runDoctor(config(), { timeoutMs: T }, probes());
    assert.deepEqual([...new Set(report.checks.map((c) => c.group))], ['system', 'ports', 'addresses', 'dns', 'certificate', 'clock', 'media', 'turn']);
    assert.equal(report.ok, true);
    assert.ok(report.counts.warn > 0 && report.counts.skip > 0);
    assert.equal(report.counts.pass + report.counts.warn + report.counts.fail + report.counts.skip, report.checks.length);
    const bad = await runDoctor(config(), { timeoutMs: T, publicIp: '198.51.100.7' }, probes());
    assert.equal(bad.ok, false);
    assert.equal(bad.counts.fail, 2); // advertised address behind NAT, DNS not pointing at the public address
  });

  it('renders a checklist with marks, indented advice and a summary; JSON has the same checks', async () => {
    const report = await runDoctor(config(), { timeoutMs: T, publicIp: '198.51.100.7' }, probes({ lookup: async () => ['198.51.100.7'] }));
    const text = renderText(report, 'careflow doctor: test');
    assert.match(text, /^careflow doctor: test\n\nSystem\n  ✓ Node\.js 24\.21\.0\n/);
    assert.match(text, /\nAddresses\n  ✓ public address 198\.51\.100\.7 \(from --public-ip\)\n  ✗ this machine is behind NAT .*\n      fix: set CAREFLOW_SIP_ADVERTISE=198\.51\.100\.7 /);
    assert.match(text, /\n  ! careflow is not running .*\n      fix: start it/);
    assert.match(text, /\n  - no TLS certificate configured\n      note: /);
    assert.match(text, /\nFAILED: \d+ checks passed, \d+ warnings?, 1 failed, \d+ skipped$/);
    const json = JSON.parse(renderJson(report)) as { ok: boolean; checks: CheckResult[] };
    assert.equal(json.ok, false);
    assert.deepEqual(json.checks, JSON.parse(JSON.stringify(report.checks)));
  });

  it('careflow doctor: exit 0 when nothing failed, 1 when something did; --json; bad flags are usage errors', async () => {
    const out: string[] = [];
    const io = { out: (t: string) => void out.push(t) };
    assert.equal(await runDoctorCommand([], config(), io, probes()), 0);
    assert.match(out.join('\n'), /^careflow doctor: domain sip\.example\.org, config from the environment and defaults, data /);
    out.length = 0;
    assert.equal(await runDoctorCommand(['--json', '--public-ip', '198.51.100.7', '--timeout-ms', '300', '--time-url', 'http://time.test'], config(), io, probes({
      stunBinding: async () => assert.fail('--public-ip wins over STUN'),
    })), 1);
    const json = JSON.parse(out.join('\n')) as { ok: boolean; checks: CheckResult[] };
    assert.equal(json.ok, false);
    assert.equal(byId(json.checks, 'clock').status, 'pass');
    for (const args of [['--public-ip', 'my-server'], ['--timeout-ms', '0'], ['--time-url', 'ftp://x'], ['--bogus'], ['extra']]) {
      await assert.rejects(runDoctorCommand(args, config(), io, probes()), (e: unknown) => e instanceof CareflowError && e.code === 'USAGE', args.join(' '));
    }
  });
});
