// Request routing through the CareFlow proxy: MESSAGE (RFC 3428) to a registered SIPp
// device with the 407 round, MESSAGE to an offline user (480), INVITE to an unknown number
// (404), login by number (REGISTER and calls with the number as digest username), From
// spoofing (403), Max-Forwards: 0 (483) and Proxy-Require of an unknown extension (420).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startServer, type CareflowUser, type ServerHandle } from './harness.ts';
import { authInjection, requests, requireSipp, responses, runSipp } from './sipp.ts';
import { settleCall, startDevice } from './sipp.ts';
import { withClient, type RawMessage, type RequestSpec } from './sip-raw.ts';

requireSipp(); // fails (never skips) with the install command when SIPp is missing

// Module level (not in before()): see conformance-server.test.ts on harness.ts's after().
const server: ServerHandle = await startServer();
const alice = await server.addUser('Route Alice');

function target(): string { return `127.0.0.1:${server.sipPort}`; }
function domainArgs(): string[] { return ['-key', 'domain', server.domain]; }
const SDP = 'v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n';

/** One request from a raw UDP client, answering one challenge with `as`; all final responses in order. */
function send(spec: Omit<RequestSpec, 'domain'>, as?: CareflowUser): Promise<RawMessage[]> {
  return withClient('udp', server.sipPort, (c) => c.request({ domain: server.domain, ...spec }, as === undefined ? undefined : { username: as.sipUsername, password: as.password }));
}

function flow(rs: RawMessage[]): string {
  return rs.map((r) => r.text).join('\n----\n');
}

test('MESSAGE A->B: 407 round, then the proxy delivers it with its body to B\'s SIPp device, which answers 200', async () => {
  const bob = await server.addUser('Route Bob');
  const word = `hello-${randomBytes(4).toString('hex')}`;
  const b = await startDevice({ server, login: bob, scenario: 'uas_message.xml' });
  const uac = await runSipp({
    scenario: 'message_uac.xml', target: target(), timeoutMs: 15_000, injection: authInjection([alice]),
    args: ['-s', bob.number, '-key', 'text', word, ...domainArgs()],
  });
  const [dev] = await settleCall(uac, [b], () => server.logs());
  assert.equal(responses(uac, 407).length, 1, uac.describe());
  assert.equal(responses(uac, 200).length, 1, uac.describe());
  assert.ok(dev !== undefined);
  const msg = requests(dev, 'MESSAGE')[0];
  assert.ok(msg !== undefined, dev.describe());
  assert.match(msg.text, new RegExp(`\\r?\\n\\r?\\ncareflow-message ${word}`), `the body did not arrive:\n${msg.text}`);
  assert.equal(msg.header('Content-Type'), 'text/plain', msg.text);
  assert.equal(msg.headers('Proxy-Authorization').length, 0, `the proxy must not forward the caller's credentials:\n${msg.text}`);
  assert.equal(msg.header('Max-Forwards'), '69', msg.text);
  assert.equal(msg.headers('Record-Route').length, 0, `MESSAGE is not dialog-forming: no Record-Route expected:\n${msg.text}`);
});

test('MESSAGE to a user with no registered device: 480', async () => {
  const carol = await server.addUser('Route Offline');
  const rs = await send({ method: 'MESSAGE', uri: `sip:${carol.number}@${server.domain}`, body: 'are you there?' }, alice);
  assert.deepEqual(rs.map((r) => r.status), [407, 480], flow(rs));
});

test('INVITE to an unknown number: 404 (after authentication)', async () => {
  const rs = await send({ method: 'INVITE', uri: `sip:care4w-0000000@${server.domain}`, body: SDP, contentType: 'application/sdp' }, alice);
  assert.deepEqual(rs.map((r) => r.status), [407, 404], flow(rs));
});

test('login by number: a device REGISTERs with the number as digest username and a caller calls with its number as username', async () => {
  const dave = await server.addUser('Route ByNumber');
  const d = await startDevice({ server, login: { sipUsername: dave.number, password: dave.password }, scenario: 'uas_answer.xml', args: ['-d', '200'] });
  const uac = await runSipp({
    scenario: 'call_uac.xml', target: target(), timeoutMs: 20_000,
    injection: authInjection([{ sipUsername: alice.number, password: alice.password }]),
    args: ['-s', dave.number, '-d', '300', ...domainArgs()],
  });
  const [dev] = await settleCall(uac, [d], () => server.logs());
  assert.ok(dev !== undefined && requests(dev, 'INVITE').length >= 1, 'the device registered by number never rang');
  const auth = uac.messages.find((m) => m.direction === 'sent' && m.header('Proxy-Authorization') !== undefined)?.header('Proxy-Authorization') ?? '';
  assert.match(auth, new RegExp(`username="${alice.number}"`), auth);
  const devices = await server.apiJson<{ devices: unknown[] }>(`/api/users/${dave.id}/devices`);
  assert.equal(devices.devices.length, 1, `the binding made with the number login belongs to user ${dave.id}: ${JSON.stringify(devices)}`);
});

test('From spoofing: authenticated as A with another user\'s number in From: 403', async () => {
  const erin = await server.addUser('Route Victim');
  const frank = await server.addUser('Route Callee');
  const invite = await send({ method: 'INVITE', uri: `sip:${frank.number}@${server.domain}`, fromUser: erin.number, body: SDP, contentType: 'application/sdp' }, alice);
  assert.deepEqual(invite.map((r) => r.status), [407, 403], flow(invite));
  const message = await send({ method: 'MESSAGE', uri: `sip:${frank.number}@${server.domain}`, fromUser: erin.sipUsername, body: 'spoofed' }, alice);
  assert.deepEqual(message.map((r) => r.status), [407, 403], flow(message));
});

test('Max-Forwards: 0 on an INVITE to a user: 483 (RFC 3261 §16.3 step 3)', async () => {
  const grace = await server.addUser('Route MaxFwd');
  const rs = await send({ method: 'INVITE', uri: `sip:${grace.number}@${server.domain}`, maxForwards: 0, body: SDP, contentType: 'application/sdp' }, alice);
  assert.equal(rs.at(-1)?.status, 483, flow(rs));
  assert.equal(rs.length, 1, `483 comes before any challenge (§16.3 checks precede proxy authentication):\n${flow(rs)}`);
});

test('Proxy-Require: foo on an INVITE: 420 with Unsupported: foo (RFC 3261 §16.3 step 5)', async () => {
  const henry = await server.addUser('Route ProxyRequire');
  const rs = await send({ method: 'INVITE', uri: `sip:${henry.number}@${server.domain}`, extra: ['Proxy-Require: foo'], body: SDP, contentType: 'application/sdp' }, alice);
  const last = rs.at(-1);
  assert.equal(last?.status, 420, flow(rs));
  assert.deepEqual(last.headers('unsupported').flatMap((v) => v.split(',')).map((s) => s.trim()), ['foo'], last.text);
});

test('§16.3 loop detection: a user whose registered Contact is this server gets 482 Loop Detected, not an endless loop', async () => {
  const loopy = await server.addUser('Routing Loopy');
  const contact = `sip:${loopy.sipUsername}@127.0.0.1:${server.sipPort}`;
  const reg = await send({ method: 'REGISTER', uri: `sip:${server.domain}:${server.sipPort}`, toUri: `sip:${loopy.sipUsername}@${server.domain}`, contact: `<${contact}>`, extra: ['Expires: 60'] }, loopy);
  assert.deepEqual(reg.map((r) => r.status), [401, 200], 'registration of the looping Contact');
  // The proxy forwards the INVITE to itself; it comes back carrying our Via with the same loop hash.
  const res = await send({ method: 'INVITE', uri: contact, toUri: `sip:${loopy.sipUsername}@${server.domain}` }, alice);
  assert.deepEqual(res.map((r) => r.status), [407, 482], `statuses: ${res.map((r) => `${r.status}`).join(', ')}\n${server.logs().slice(-2000)}`);
});
