// SIP over UDP, TCP and TLS against the real server: SIPp calls with the caller and the callee
// on different transports (the proxy records two routes, RFC 5658, and reuses the phones'
// connections), OPTIONS to the domain, RFC 5626 §4.4.1 CRLF keep-alives, stream framing of
// a message written one byte at a time, and TLS with a self-signed certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, freeUdpPort, startServer, waitFor, type CareflowUser, type ServerHandle } from './harness.ts';
import {
  authInjection, requests, requireSipp, responses, runSipp, startSipp, startSippUas,
  type SippHandle, type SippResult,
} from './sipp.ts';
import { settleCall } from './sipp.ts';
import { withClient, type RawTransport } from './sip-raw.ts';

requireSipp(); // fails (never skips) with the install command when SIPp is missing

// A self-signed certificate for the TLS listener.
const certDir = mkdtempSync(join(tmpdir(), 'careflow-tls-'));
const cert = join(certDir, 'cert.pem');
const key = join(certDir, 'key.pem');
const ossl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-days', '1', '-keyout', key, '-out', cert], { encoding: 'utf8', timeout: 30_000 });
if (ossl.status !== 0) throw new Error(`openssl req -x509 failed (${ossl.status}): ${ossl.stderr}`);

// Module level (not in before()): see conformance-server.test.ts on harness.ts's after().
const tlsPort = await freeTcpPort();
const server: ServerHandle = await startServer({ tlsPort, env: { CAREFLOW_TLS_CERT: cert, CAREFLOW_TLS_KEY: key } });
const alice = await server.addUser('Transport Alice');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function target(): string { return `127.0.0.1:${server.sipPort}`; }
function domainArgs(): string[] { return ['-key', 'domain', server.domain]; }

/** UDP device: register_device.xml, then a UAS on that port. */
async function udpDevice(user: CareflowUser, scenario: string, args: string[]): Promise<SippHandle> {
  const port = await freeUdpPort();
  const reg = await runSipp({ scenario: 'register_device.xml', target: target(), localPort: port, injection: authInjection([user]), args: domainArgs(), timeoutMs: 15_000 });
  assert.ok(reg.passed, `device registration failed:\n${reg.describe()}`);
  const uas = await startSippUas({ scenario, localPort: port, args, timeoutMs: 30_000 });
  await sleep(300);
  return uas;
}

/** TCP device: registers and takes the call on the same connection (tcp_device*.xml, shared Call-ID). */
async function tcpDevice(user: CareflowUser, scenario: string, callId: string, args: string[]): Promise<SippHandle> {
  const port = await freeTcpPort();
  const dev = await startSipp({
    scenario, target: target(), localPort: port, injection: authInjection([user]), timeoutMs: 30_000,
    args: ['-t', 't1', '-cid_str', callId, ...domainArgs(), ...args],
  });
  try {
    await waitFor(`${user.sipUsername} registered over TCP`, async () => {
      const body = await server.apiJson<{ devices: Array<{ transport: string }> }>(`/api/users/${user.id}/devices`);
      return body.devices.some((d) => d.transport === 'tcp') ? true : undefined;
    }, 10_000, 100);
  } catch (e) {
    const r = await dev.stop();
    assert.fail(`${(e as Error).message}\n${r.describe()}`);
  }
  return dev;
}

function call(scenario: string, callee: string, transport: 'udp' | 'tcp', extra: string[] = []): Promise<SippResult> {
  return runSipp({
    scenario, target: target(), timeoutMs: 20_000, injection: authInjection([alice]),
    args: ['-s', callee, ...domainArgs(), ...(transport === 'tcp' ? ['-t', 't1'] : []), ...extra],
  });
}


/** The 200 for the INVITE carries two Record-Routes of ours, one per transport (RFC 5658). */
function assertDoubleRecordRoute(uac: SippResult): void {
  const ok = responses(uac, 200).find((m) => /INVITE/.test(m.header('CSeq') ?? ''));
  assert.ok(ok !== undefined, uac.describe());
  const rr = ok.headers('Record-Route').flatMap((v) => v.split(/,(?=\s*<)/)).map((s) => s.trim());
  assert.equal(rr.length, 2, `caller and callee on different transports: want 2 Record-Route values (RFC 5658), got ${JSON.stringify(rr)}\n${ok.text}`);
  assert.ok(rr.some((r) => /transport=tcp/i.test(r)), `no Record-Route for the TCP side: ${JSON.stringify(rr)}`);
}

test('SIPp over TCP: caller on TCP, callee device on UDP; caller hangs up', async () => {
  const bob = await server.addUser('Tcp2Udp Bob');
  const b = await udpDevice(bob, 'uas_answer.xml', ['-d', '200']);
  const uac = await call('call_uac.xml', bob.number, 'tcp', ['-d', '500']);
  const [dev] = await settleCall(uac, [b], () => server.logs());
  assertDoubleRecordRoute(uac);
  assert.ok(dev !== undefined && requests(dev, 'BYE').length >= 1, 'the UDP device got no BYE');
});

test('SIPp over TCP: caller on TCP, callee device on UDP; callee hangs up (BYE back over the caller\'s connection)', async () => {
  const carol = await server.addUser('Tcp2Udp Carol');
  const c = await udpDevice(carol, 'uas_answer_bye.xml', ['-d', '500']);
  const uac = await call('call_uac_callee_bye.xml', carol.number, 'tcp');
  await settleCall(uac, [c], () => server.logs());
  assertDoubleRecordRoute(uac);
  assert.ok(requests(uac, 'BYE').length >= 1, uac.describe());
});

test('SIPp over TCP: caller on UDP, callee device registered over TCP (same connection); caller hangs up', async () => {
  const dave = await server.addUser('Udp2Tcp Dave');
  const callId = `cf-tcpdev-${randomBytes(6).toString('hex')}@127.0.0.1`;
  const d = await tcpDevice(dave, 'tcp_device.xml', callId, ['-d', '200']);
  const uac = await call('call_uac.xml', dave.number, 'udp', ['-d', '500', '-cid_str', callId]);
  const [dev] = await settleCall(uac, [d], () => server.logs());
  assertDoubleRecordRoute(uac);
  assert.ok(dev !== undefined && requests(dev, 'BYE').length >= 1, 'the TCP device got no BYE');
});

test('SIPp over TCP: caller on UDP, callee device registered over TCP; callee hangs up', async () => {
  const erin = await server.addUser('Udp2Tcp Erin');
  const callId = `cf-tcpdev-${randomBytes(6).toString('hex')}@127.0.0.1`;
  const d = await tcpDevice(erin, 'tcp_device_bye.xml', callId, ['-d', '500']);
  const uac = await call('call_uac_callee_bye.xml', erin.number, 'udp', ['-cid_str', callId]);
  await settleCall(uac, [d], () => server.logs());
  assertDoubleRecordRoute(uac);
  assert.ok(requests(uac, 'BYE').length >= 1, uac.describe());
});

test('TCP device whose registration connection has closed: the proxy connects to its Contact for the call (RFC 3261 §18.1.1)', async () => {
  const gina = await server.addUser('TcpClosed Gina');
  const port = await freeTcpPort();
  // SIPp -t t1 sends from its -p port and exits after the 200: the connection is gone
  const reg = await runSipp({ scenario: 'register_device.xml', target: target(), localPort: port, injection: authInjection([gina]), args: ['-t', 't1', ...domainArgs()], timeoutMs: 15_000 });
  assert.ok(reg.passed, reg.describe());
  const uas = await startSippUas({ scenario: 'uas_answer.xml', localPort: port, args: ['-t', 't1', '-d', '200'], timeoutMs: 30_000 });
  await sleep(300);
  const uac = await call('call_uac.xml', gina.number, 'udp', ['-d', '300']);
  const [dev] = await settleCall(uac, [uas], () => server.logs());
  assertDoubleRecordRoute(uac);
  assert.ok(dev !== undefined && requests(dev, 'BYE').length >= 1, 'the TCP device got no BYE');
});

for (const transport of ['udp', 'tcp', 'tls'] as RawTransport[]) {
  test(`OPTIONS sip:<domain> over ${transport.toUpperCase()}: 200 with Allow`, async () => {
    const port = transport === 'tls' ? tlsPort : server.sipPort;
    const [res] = await withClient(transport, port, (c) => c.request({ method: 'OPTIONS', uri: `sip:${server.domain}`, domain: server.domain, fromUser: 'probe' }));
    assert.ok(res !== undefined);
    assert.equal(res.status, 200, res.text);
    const allow = res.headers('allow').join(',');
    for (const m of ['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'MESSAGE']) {
      assert.match(allow, new RegExp(`\\b${m}\\b`), `Allow lacks ${m}: ${allow}`);
    }
  });
}

test('CRLF keep-alive over TCP: "\\r\\n\\r\\n" is answered with "\\r\\n" (RFC 5626 §4.4.1), and the connection stays usable', async () => {
  await withClient('tcp', server.sipPort, async (c) => {
    await c.sendRaw('\r\n\r\n');
    await c.waitUntil('the CRLF pong', () => (c.rawStream.includes('\r\n') ? true : undefined), 3000);
    await sleep(200);
    assert.equal(c.rawStream, '\r\n', `pong must be exactly one CRLF, got ${JSON.stringify(c.rawStream)}`);
    const [res] = await c.request({ method: 'OPTIONS', uri: `sip:${server.domain}`, domain: server.domain, fromUser: 'probe' });
    assert.equal(res?.status, 200, res?.text);
  });
});

test('TCP: a REGISTER written one byte at a time is framed and answered (401)', async () => {
  await withClient('tcp', server.sipPort, async (c) => {
    const req = c.build({ method: 'REGISTER', uri: `sip:${server.domain}`, toUri: `sip:${alice.sipUsername}@${server.domain}`, domain: server.domain, extra: ['Expires: 60'] }, { username: alice.sipUsername, password: alice.password });
    await c.sendRaw(req.text, { byteByByte: true });
    const res = await c.waitUntil('the answer to the byte-by-byte REGISTER', () => c.received.find((r) => (r.header('via') ?? '').includes(req.branch) && r.status >= 200), 10_000);
    assert.equal(res.status, 401, res.text);
    assert.match(res.header('www-authenticate') ?? '', /^Digest /i, res.text);
  });
});

test('TCP: a message split inside its body and two messages in one write are each answered', async () => {
  await withClient('tcp', server.sipPort, async (c) => {
    const a = c.build({ method: 'OPTIONS', uri: `sip:${server.domain}`, domain: server.domain, fromUser: 'probe', body: 'hello body' }, undefined);
    const b = c.build({ method: 'OPTIONS', uri: `sip:${server.domain}`, domain: server.domain, fromUser: 'probe' }, undefined);
    const both = a.text + b.text;
    const cut = a.text.length - 4; // inside the first body
    await c.sendRaw(both.slice(0, cut));
    await sleep(100);
    await c.sendRaw(both.slice(cut));
    for (const r of [a, b]) {
      const res = await c.waitUntil(`answer to ${r.branch}`, () => c.received.find((m) => (m.header('via') ?? '').includes(r.branch)), 5000);
      assert.equal(res.status, 200, res.text);
    }
  });
});

test('TLS (CAREFLOW_TLS_CERT/KEY, self-signed): REGISTER is challenged (401) and registers with digest (binding transport tls)', async () => {
  const user = await server.addUser('Tls Frank');
  await withClient('tls', tlsPort, async (c) => {
    const [challenge, ok] = await c.request({
      method: 'REGISTER', uri: `sip:${server.domain}`, toUri: `sip:${user.sipUsername}@${server.domain}`, fromUser: user.sipUsername, domain: server.domain, extra: ['Expires: 120'],
    }, { username: user.sipUsername, password: user.password });
    assert.equal(challenge?.status, 401, challenge?.text);
    assert.equal(ok?.status, 200, ok?.text);
    const body = await server.apiJson<{ devices: Array<{ transport: string }> }>(`/api/users/${user.id}/devices`);
    assert.deepEqual(body.devices.map((d) => d.transport), ['tls'], JSON.stringify(body));
  });
});

// SIPp over TLS needs a SIPp built with OpenSSL (its version string then names TLS);
// Debian's sip-tester 3.6.1 is "-SCTP-PCAP-RTPSTREAM" without it: the node:tls test above
// covers the listener there, and this test is only defined where SIPp can do -t l1.
const sippVersion = /SIPp v\S+/.exec(spawnSync('sipp', ['-v'], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '')?.[0] ?? '';
if (/TLS/.test(sippVersion)) {
  test(`SIPp (${sippVersion}) REGISTER over TLS (-t l1)`, async () => {
    const user = await server.addUser('Tls Sipp');
    const reg = await runSipp({
      scenario: 'register_device.xml', target: `127.0.0.1:${tlsPort}`, injection: authInjection([user]), timeoutMs: 15_000,
      args: ['-t', 'l1', ...domainArgs()],
    });
    assert.ok(reg.passed, reg.describe());
  });
} else {
  console.log(`transports: ${sippVersion || 'this SIPp'} has no TLS; SIPp-over-TLS not run (node:tls covers the listener)`);
}
