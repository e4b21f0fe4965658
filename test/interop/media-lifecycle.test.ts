// Media sessions are released on every end of a call: 200 consecutive bridged calls (a SIPp
// caller offering a browser's SDP — DTLS-SRTP with ICE — to a SIPp phone answering plain RTP),
// then calls the callee refuses (486) and calls the caller cancels while ringing. After each
// batch the engine (Debian's rtpengine, asked with the ng `list` command) and the server
// (`mediaSessions` in /api/status) hold no session, and the call log has every call. Last, a
// bridged call whose audio never flows is ended by the server after CAREFLOW_MEDIA_TIMEOUT:
// both SIPp parties get a BYE, and the call log says media_timeout.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NgClient } from '../../src/media/ng-client.ts';
import { startServer } from './harness.ts';
import { startRtpEngine } from './rtpengine.ts';
import { authInjection, requests, requireSipp, runSipp, SCENARIOS, settleCall, startDevice, startSipp } from './sipp.ts';

requireSipp();

const rtpe = await startRtpEngine();
const server = await startServer({ env: { CAREFLOW_RTPENGINE: `127.0.0.1:${rtpe.ngPort}` } });
const ng = new NgClient({ instances: [{ host: '127.0.0.1', port: rtpe.ngPort }] });
const caller = await server.addUser('Lifecycle Browser');

/** A browser's audio offer (Chromium's shape): what makes the server bridge toward a phone. */
const WEBRTC_SDP = [
  'v=0', 'o=- 4611731400430051336 2 IN IP[local_ip_type] [local_ip]', 's=-', 't=0 0', 'a=group:BUNDLE 0', 'a=msid-semantic: WMS',
  'm=audio [media_port] UDP/TLS/RTP/SAVPF 111 0 8 126', 'c=IN IP[media_ip_type] [media_ip]',
  'a=candidate:1 1 udp 2122260223 [media_ip] 9 typ host generation 0', 'a=ice-ufrag:sIpP', 'a=ice-pwd:sippsippsippsippsippsipp',
  'a=ice-options:trickle', 'a=fingerprint:sha-256 5B:3A:14:8C:59:AB:30:19:7A:1E:46:0C:2B:91:0F:E4:8D:22:6A:77:0B:9E:31:C8:A2:4F:60:1D:E9:88:03:B7',
  'a=setup:actpass', 'a=mid:0', 'a=sendrecv', 'a=rtcp-mux', 'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000', 'a=rtpmap:126 telephone-event/8000',
].map((l) => `      ${l}`).join('\n');

/** A copy of a caller scenario whose INVITEs offer WEBRTC_SDP instead of plain RTP. */
function webrtcScenario(name: string): string {
  const xml = readFileSync(join(SCENARIOS, name), 'utf8');
  const sdp = /( *v=0\n[\s\S]*?a=rtpmap:0 PCMU\/8000)/g;
  const out = xml.replace(sdp, WEBRTC_SDP);
  assert.notEqual(out, xml, `no SDP found in ${name}`);
  const path = join(mkdtempSync(join(tmpdir(), 'careflow-webrtc-sipp-')), name);
  writeFileSync(path, out);
  return path;
}

async function settled(what: string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const list = await ng.request('list', { limit: 1000 });
    const sessions = Array.isArray(list['calls']) ? list['calls'].length : -1;
    const status = await server.apiJson<{ sip: { mediaSessions: number; activeCalls: number } }>('/api/status');
    if (sessions === 0 && status.sip.mediaSessions === 0 && status.sip.activeCalls === 0) return;
    if (Date.now() > end) assert.fail(`${what}: ${sessions} rtpengine sessions, ${status.sip.mediaSessions} media sessions, ${status.sip.activeCalls} calls left\n${server.logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function callsOf(calleeId: string): Promise<Array<{ disposition: string; mediaMode: string | null }>> {
  const body = await server.apiJson<{ calls: Array<{ disposition: string; mediaMode: string | null; calleeUserId: number }> }>(`/api/calls?userId=${calleeId}&limit=1000`);
  return body.calls;
}

test('200 consecutive bridged calls, answered and hung up: every engine session is released', async () => {
  const phone = await server.addUser('Lifecycle Phone');
  const device = await startDevice({ server, login: phone, scenario: 'uas_answer.xml', args: ['-m', '200'], timeoutMs: 120_000 });
  const uac = await runSipp({
    scenario: webrtcScenario('call_uac.xml'), target: `127.0.0.1:${server.sipPort}`, calls: 200, timeoutMs: 120_000,
    injection: authInjection([caller]), args: ['-s', phone.number, '-key', 'domain', server.domain, '-d', '50', '-r', '20', '-l', '20'],
  });
  assert.ok(uac.passed, `${uac.describe()}\n${server.logs().slice(-3000)}`);
  assert.equal(uac.stats?.successful, 200, uac.describe());
  await device.stop();
  await settled('after 200 answered calls');
  const rows = await callsOf(phone.id);
  assert.equal(rows.length, 200);
  assert.ok(rows.every((r) => r.disposition === 'answered' && r.mediaMode === 'bridge'), JSON.stringify(rows.slice(0, 3)));
});

test('refused (486) and cancelled bridged calls release their sessions too', async () => {
  const busy = await server.addUser('Lifecycle Busy');
  const device = await startDevice({ server, login: busy, scenario: 'uas_busy.xml', args: ['-m', '20'], timeoutMs: 60_000 });
  const refused = await runSipp({
    scenario: webrtcScenario('call_uac_busy.xml'), target: `127.0.0.1:${server.sipPort}`, calls: 20, timeoutMs: 60_000,
    injection: authInjection([caller]), args: ['-s', busy.number, '-key', 'domain', server.domain, '-r', '10'],
  });
  assert.ok(refused.passed, refused.describe());
  await device.stop();
  await settled('after 20 refused calls');
  assert.ok((await callsOf(busy.id)).every((r) => r.disposition === 'busy'));

  const ringing = await server.addUser('Lifecycle Ringing');
  const dev2 = await startDevice({ server, login: ringing, scenario: 'uas_ring_cancel.xml', args: ['-m', '20'], timeoutMs: 60_000 });
  const cancelled = await runSipp({
    scenario: webrtcScenario('call_uac_cancel.xml'), target: `127.0.0.1:${server.sipPort}`, calls: 20, timeoutMs: 60_000,
    injection: authInjection([caller]), args: ['-s', ringing.number, '-key', 'domain', server.domain, '-d', '200', '-r', '10'],
  });
  assert.ok(cancelled.passed, cancelled.describe());
  await dev2.stop();
  await settled('after 20 cancelled calls');
  const rows = await callsOf(ringing.id);
  assert.equal(rows.length, 20);
  assert.ok(rows.every((r) => r.disposition === 'cancelled'), JSON.stringify(rows.slice(0, 3)));
});

test('a forked bridged call: the branch that did not answer is released at once, the answered call keeps its media', async () => {
  const grace = await server.addUser('Lifecycle Forked');
  const answering = await startDevice({ server, login: grace, scenario: 'uas_answer.xml', args: ['-d', '500'] });
  const ringing = await startDevice({ server, login: grace, scenario: 'uas_ring_cancel.xml' });
  const uacDone = runSipp({
    scenario: webrtcScenario('call_uac.xml'), target: `127.0.0.1:${server.sipPort}`, timeoutMs: 30_000,
    injection: authInjection([caller]), args: ['-s', grace.number, '-key', 'domain', server.domain, '-d', '3000'],
  });
  // While the call is up (answered after ~0.5 s, held 3 s): RTPEngine still has it.
  await new Promise((r) => setTimeout(r, 2000));
  const during = await ng.request('list', { limit: 100 });
  assert.equal(Array.isArray(during['calls']) ? during['calls'].length : -1, 1, `the answered call's media must survive the losing branch's release\n${rtpe.logs().slice(-2000)}`);
  const uac = await uacDone;
  const [a, r] = await settleCall(uac, [answering, ringing], () => server.logs());
  assert.ok(a !== undefined && r !== undefined && requests(r, 'CANCEL').length === 1, 'the ringing device was cancelled');
  await settled('after the forked call');
  assert.match(rtpe.logs(), /Call branch .*\(via-branch 'b\d'\) deleted/, 'the losing branch was deleted on its own, before the call ended');
});

test('a bridged call without audio is ended after the media timeout: BYE to both sides, logged as media_timeout', async () => {
  const quick = await startServer({ env: { CAREFLOW_RTPENGINE: `127.0.0.1:${rtpe.ngPort}`, CAREFLOW_MEDIA_TIMEOUT: '5' } });
  const a = await quick.addUser('Silent Browser');
  const b = await quick.addUser('Silent Phone');
  const device = await startDevice({ server: quick, login: b, scenario: 'uas_answer.xml', timeoutMs: 30_000 });
  const t0 = Date.now();
  const uac = await runSipp({
    scenario: webrtcScenario('call_uac_callee_bye.xml'), target: `127.0.0.1:${quick.sipPort}`, timeoutMs: 30_000,
    injection: authInjection([a]), args: ['-s', b.number, '-key', 'domain', quick.domain],
  });
  const elapsed = Date.now() - t0;
  assert.ok(uac.passed, `the caller did not get its BYE: ${uac.describe()}\n${quick.logs().slice(-3000)}`);
  const [dev] = await settleCall(uac, [device], () => quick.logs());
  assert.ok(dev !== undefined && requests(dev, 'BYE').length === 1, 'the phone got its BYE');
  const bye = requests(dev!, 'BYE')[0]!;
  assert.match(bye.header('Reason') ?? '', /Q\.850;cause=102/, bye.text);
  assert.ok(elapsed >= 5000 && elapsed < 20_000, `ended after ${elapsed} ms (timeout 5 s)`);
  const rows = await quick.apiJson<{ calls: Array<{ disposition: string; endedBy: string; mediaMode: string }> }>(`/api/calls?userId=${a.id}`);
  assert.deepEqual([rows.calls[0]?.disposition, rows.calls[0]?.endedBy, rows.calls[0]?.mediaMode], ['answered', 'media_timeout', 'bridge']);
  const end = Date.now() + 5000;
  for (;;) {
    const list = await ng.request('list', { limit: 100 });
    if (Array.isArray(list['calls']) && list['calls'].length === 0) break;
    if (Date.now() > end) assert.fail('the engine session of the timed-out call is left');
    await new Promise((r) => setTimeout(r, 200));
  }
  ng.close();
});

test('embedded engine: 200 consecutive bridged calls through the server leave no socket or session behind', async () => {
  const embedded = await startServer({ env: { CAREFLOW_MEDIA_ENGINE: 'embedded', CAREFLOW_RTP_PORTS: '21000-21999' } });
  const from = await embedded.addUser('Embedded Browser');
  const to = await embedded.addUser('Embedded Phone');
  const fds = (): number => readdirSync(`/proc/${embedded.pid}/fd`).length;
  const device = await startDevice({ server: embedded, login: to, scenario: 'uas_answer.xml', args: ['-m', '200'], timeoutMs: 120_000 });
  const before = fds();
  const uac = await runSipp({
    scenario: webrtcScenario('call_uac.xml'), target: `127.0.0.1:${embedded.sipPort}`, calls: 200, timeoutMs: 120_000,
    injection: authInjection([from]), args: ['-s', to.number, '-key', 'domain', embedded.domain, '-d', '50', '-r', '20', '-l', '20'],
  });
  assert.ok(uac.passed, `${uac.describe()}\n${embedded.logs().slice(-3000)}`);
  await device.stop();
  const end = Date.now() + 10_000;
  for (;;) {
    const status = await embedded.apiJson<{ sip: { mediaSessions: number; activeCalls: number } }>('/api/status');
    const open = fds();
    if (status.sip.mediaSessions === 0 && status.sip.activeCalls === 0 && open <= before + 2) break;
    if (Date.now() > end) assert.fail(`left behind: ${status.sip.mediaSessions} media sessions, ${status.sip.activeCalls} calls, ${open} fds (${before} before)`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const rows = await embedded.apiJson<{ calls: Array<{ disposition: string; mediaMode: string | null }> }>(`/api/calls?userId=${to.id}&limit=1000`);
  assert.equal(rows.calls.length, 200);
  assert.ok(rows.calls.every((r) => r.disposition === 'answered' && r.mediaMode === 'bridge'));
  await embedded.stop();
});

test('server shutdown in the middle of a bridged call releases its RTPEngine session', async () => {
  const ng2 = new NgClient({ instances: [{ host: '127.0.0.1', port: rtpe.ngPort }] });
  const count = async (): Promise<number> => {
    const list = await ng2.request('list', { limit: 100 });
    return Array.isArray(list['calls']) ? list['calls'].length : -1;
  };
  const doomed = await startServer({ env: { CAREFLOW_RTPENGINE: `127.0.0.1:${rtpe.ngPort}` } });
  const a = await doomed.addUser('Shutdown Browser');
  const b = await doomed.addUser('Shutdown Phone');
  const device = await startDevice({ server: doomed, login: b, scenario: 'uas_answer.xml', timeoutMs: 30_000 });
  const uac = await startSipp({
    scenario: webrtcScenario('call_uac.xml'), target: `127.0.0.1:${doomed.sipPort}`, timeoutMs: 30_000,
    injection: authInjection([a]), args: ['-s', b.number, '-key', 'domain', doomed.domain, '-d', '20000'],
  });
  const end = Date.now() + 10_000;
  while ((await count()) !== 1) {
    if (Date.now() > end) assert.fail('the call never reached RTPEngine');
    await new Promise((r) => setTimeout(r, 100));
  }
  const code = await doomed.stop();
  assert.equal(code, 0, `a clean exit; the server's last output:\n${doomed.logs().slice(-4000)}`);
  assert.equal(await count(), 0, 'shutdown deleted the session');
  await Promise.all([device.stop(), uac.stop()]);
  ng2.close();
});
