import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Flow, LocationService } from '../../src/registrar/location.ts';
import { Registrar, type RegistrarCredentials } from '../../src/registrar/registrar.ts';
import { rawParamsWithout } from '../../src/registrar/bindings.ts';
import { type DigestAlgorithm, DigestServer, digestResponse, ha1 } from '../../src/sip/digest.ts';
import type { SipRequest, SipResponse } from '../../src/sip/message.ts';
import { parseDatagram } from '../../src/sip/parser.ts';

const REALM = 'care.example';
const T0 = 1_700_000_000_000;
const FLOW: Flow = { transport: 'udp', remoteAddress: '203.0.113.7', remotePort: 40312 };

/** Two users; alice also logs in as her number 1001; carol is disabled. */
const USERS: Record<string, { aor: string; password: string; enabled: boolean }> = {
  careflow_1: { aor: '1', password: 'alice-pw', enabled: true },
  '1001': { aor: '1', password: 'alice-pw', enabled: true },
  careflow_2: { aor: '2', password: 'bob-pw', enabled: true },
  careflow_3: { aor: '3', password: 'carol-pw', enabled: false },
};

async function findCredentials(login: string): Promise<RegistrarCredentials | undefined> {
  const u = USERS[login];
  if (u === undefined) return undefined;
  return {
    aor: u.aor, enabled: u.enabled,
    ha1Md5: ha1('MD5', login, REALM, u.password), ha1Sha256: ha1('SHA-256', login, REALM, u.password),
  };
}

interface Harness {
  now: { t: number };
  location: LocationService;
  registrar: Registrar;
  registered: string[];
  close(): void;
}

function harness(opts: { maxBindingsPerAor?: number; algorithms?: DigestAlgorithm[] } = {}): Harness {
  const now = { t: T0 };
  const location = new LocationService({ now: () => now.t, sweepIntervalMs: 60_000 });
  const digest = new DigestServer({ secret: Buffer.alloc(32, 1), nonceTtlMs: 300_000, algorithms: opts.algorithms ?? ['SHA-256', 'MD5'], now: () => now.t });
  const registered: string[] = [];
  const registrar = new Registrar({
    location, digest, realm: REALM,
    isLocalDomain: (h) => h === REALM || h === '192.0.2.10',
    findCredentials, minExpires: 60, maxExpires: 3600, defaultExpires: 600,
    onRegistered: (aor) => registered.push(aor),
    now: () => now.t,
    ...(opts.maxBindingsPerAor !== undefined ? { maxBindingsPerAor: opts.maxBindingsPerAor } : {}),
  });
  return { now, location, registrar, registered, close: () => location.close() };
}

interface RegOpts {
  to?: string;
  ruri?: string;
  contacts?: string[];
  expires?: number | string;
  callId?: string;
  cseq?: number;
  extra?: string[];
}

function register(o: RegOpts, authorization?: string): SipRequest {
  const lines = [
    `REGISTER ${o.ruri ?? `sip:${REALM}`} SIP/2.0`,
    'Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK' + Math.random().toString(36).slice(2) + ';rport',
    'Max-Forwards: 70',
    `From: <${o.to ?? `sip:careflow_1@${REALM}`}>;tag=abc`,
    `To: <${o.to ?? `sip:careflow_1@${REALM}`}>`,
    `Call-ID: ${o.callId ?? 'call-1@192.168.1.20'}`,
    `CSeq: ${o.cseq ?? 1} REGISTER`,
    ...(o.contacts ?? []).map((c) => `Contact: ${c}`),
    ...(o.expires !== undefined ? [`Expires: ${o.expires}`] : []),
    ...(authorization !== undefined ? [`Authorization: ${authorization}`] : []),
    ...(o.extra ?? []),
    'User-Agent: TestPhone/1.0',
    'Content-Length: 0', '', '',
  ];
  return parseDatagram(Buffer.from(lines.join('\r\n'))) as SipRequest;
}

function param(challenge: string, name: string): string {
  const m = new RegExp(`${name}="?([^",]*)"?`).exec(challenge);
  assert.ok(m, `${name} in ${challenge}`);
  return m[1]!;
}

/** Builds the Authorization a phone sends for a challenge. */
function authorize(challenge: string, login: string, password: string, nc = 1, uri = `sip:${REALM}`): string {
  const algorithm = param(challenge, 'algorithm') as DigestAlgorithm;
  const nonce = param(challenge, 'nonce');
  const ncs = nc.toString(16).padStart(8, '0');
  const response = digestResponse(algorithm, ha1(algorithm, login, REALM, password), nonce, ncs, 'deadbeef', 'auth', 'REGISTER', uri);
  return `Digest username="${login}", realm="${REALM}", nonce="${nonce}", uri="${uri}", response="${response}", `
    + `algorithm=${algorithm}, cnonce="deadbeef", qop=auth, nc=${ncs}, opaque="${param(challenge, 'opaque')}"`;
}

/** 401 round then the authenticated request; returns the final response and the challenge used. */
async function registerAuthed(h: Harness, o: RegOpts, login = 'careflow_1', password = 'alice-pw', algorithmIndex = 0): Promise<SipResponse> {
  const first = await h.registrar.handle(register({ ...o, cseq: (o.cseq ?? 1) }), FLOW);
  assert.equal(first.status, 401);
  const ch = first.getAll('www-authenticate')[algorithmIndex]!;
  return h.registrar.handle(register({ ...o, cseq: (o.cseq ?? 1) + 1 }, authorize(ch, login, password)), FLOW);
}

function contactsOf(res: SipResponse): string[] {
  return res.getAll('contact');
}

test('401 challenge lists one WWW-Authenticate per algorithm; full 401 -> 200 round', async () => {
  const h = harness();
  const r1 = await h.registrar.handle(register({ contacts: ['<sip:careflow_1@192.168.1.20:5060>'] }), FLOW);
  assert.equal(r1.status, 401);
  assert.equal(r1.reason, 'Unauthorized');
  const ch = r1.getAll('www-authenticate');
  assert.equal(ch.length, 2);
  assert.match(ch[0]!, /algorithm=SHA-256/);
  assert.match(ch[1]!, /algorithm=MD5/);
  assert.match(r1.get('to')!, /;tag=/);
  assert.equal(h.location.count(), 0);

  for (const [i, alg] of [[0, 'SHA-256'], [1, 'MD5']] as const) {
    const res = await h.registrar.handle(register({ contacts: ['<sip:careflow_1@192.168.1.20:5060>'], cseq: 2 + i }, authorize(ch[i]!, 'careflow_1', 'alice-pw', i + 1)), FLOW);
    assert.equal(res.status, 200, alg);
  }
  const res = await h.registrar.handle(register({ contacts: ['<sip:careflow_1@192.168.1.20:5060>'], cseq: 9 }, authorize(ch[0]!, 'careflow_1', 'alice-pw', 3)), FLOW);
  assert.equal(res.status, 200);
  assert.deepEqual(contactsOf(res), ['<sip:careflow_1@192.168.1.20:5060>;expires=600']);
  assert.ok(res.get('date')?.endsWith('GMT'));
  assert.match(res.get('to')!, /;tag=/);
  const [b] = h.location.lookup('1');
  assert.ok(b);
  assert.equal(b.contact, 'sip:careflow_1@192.168.1.20:5060');
  assert.equal(b.expiresAt, T0 + 600_000);
  assert.deepEqual(b.flow, FLOW);
  assert.equal(b.userAgent, 'TestPhone/1.0');
  assert.equal(b.cseq, 9);
  assert.deepEqual(h.registered, ['1', '1', '1']);
  h.close();
});

test('re-register with a reused nonce and growing nc; replayed request is refused', async () => {
  const h = harness();
  const r1 = await h.registrar.handle(register({ contacts: ['<sip:careflow_1@192.168.1.20>'] }), FLOW);
  const ch = r1.getAll('www-authenticate')[0]!;
  const c = ['<sip:careflow_1@192.168.1.20>'];
  const a2 = authorize(ch, 'careflow_1', 'alice-pw', 1);
  assert.equal((await h.registrar.handle(register({ contacts: c, cseq: 2 }, a2), FLOW)).status, 200);
  h.now.t += 300_000 - 1000;
  assert.equal((await h.registrar.handle(register({ contacts: c, cseq: 3 }, authorize(ch, 'careflow_1', 'alice-pw', 2)), FLOW)).status, 200);
  // The same Authorization again (a replay): a fresh challenge with stale=true.
  const replay = await h.registrar.handle(register({ contacts: c, cseq: 4 }, a2), FLOW);
  assert.equal(replay.status, 401);
  assert.match(replay.get('www-authenticate')!, /stale=true/);
  // After the TTL the nonce is stale.
  h.now.t += 2000;
  const stale = await h.registrar.handle(register({ contacts: c, cseq: 5 }, authorize(ch, 'careflow_1', 'alice-pw', 3)), FLOW);
  assert.equal(stale.status, 401);
  assert.match(stale.getAll('www-authenticate')[0]!, /stale=true/);
  h.close();
});

test('no user enumeration: unknown, disabled and wrong password get identical 401s', async () => {
  const h = harness();
  const first = await h.registrar.handle(register({ contacts: ['<sip:x@192.168.1.20>'] }), FLOW);
  const ch = first.getAll('www-authenticate')[0]!;
  const shape = (r: SipResponse): unknown => ({
    status: r.status, reason: r.reason, names: r.headers.map((x) => x.name),
    auth: r.getAll('www-authenticate').map((v) => v.replace(/nonce="[^"]+"/, 'nonce=""')),
  });
  const wrong = await h.registrar.handle(register({ contacts: ['<sip:x@192.168.1.20>'], cseq: 2 }, authorize(ch, 'careflow_1', 'nope', 1)), FLOW);
  const unknown = await h.registrar.handle(register({ to: `sip:ghost@${REALM}`, contacts: ['<sip:x@192.168.1.20>'], cseq: 2 }, authorize(ch, 'ghost', 'nope', 2)), FLOW);
  const disabled = await h.registrar.handle(register({ to: `sip:careflow_3@${REALM}`, contacts: ['<sip:x@192.168.1.20>'], cseq: 2 }, authorize(ch, 'careflow_3', 'carol-pw', 3)), FLOW);
  assert.equal(wrong.status, 401);
  assert.deepEqual(shape(unknown), shape(wrong));
  assert.deepEqual(shape(disabled), shape(wrong));
  assert.deepEqual(shape(first), shape(wrong));
  for (const r of [wrong, unknown, disabled]) assert.doesNotMatch(r.get('www-authenticate')!, /stale/);
  assert.equal(h.location.count(), 0);
  h.close();
});

test('403 for another user\'s AOR; the other login name of the same user is allowed', async () => {
  const h = harness();
  const bob = await registerAuthed(h, { to: `sip:careflow_2@${REALM}`, contacts: ['<sip:x@192.168.1.20>'] }, 'careflow_1', 'alice-pw');
  assert.equal(bob.status, 403);
  const byNumber = await registerAuthed(h, { to: `sip:1001@${REALM}`, contacts: ['<sip:1001@192.168.1.20>'] }, 'careflow_1', 'alice-pw');
  assert.equal(byNumber.status, 200);
  const asNumber = await registerAuthed(h, { to: `sip:careflow_1@${REALM}`, contacts: ['<sip:c1@192.168.1.21>'], callId: 'other' }, '1001', 'alice-pw');
  assert.equal(asNumber.status, 200);
  assert.equal(h.location.lookup('1').length, 2);
  assert.equal(h.location.lookup('2').length, 0);
  h.close();
});

test('domains: foreign Request-URI and To domain get 404; non-SIP To gets 400 (RFC 4475 unksm2)', async () => {
  const h = harness();
  assert.equal((await h.registrar.handle(register({ ruri: 'sip:elsewhere.example' }), FLOW)).status, 404);
  assert.equal((await h.registrar.handle(register({ ruri: 'sip:192.0.2.10' }), FLOW)).status, 401);
  const unksm2 = parseDatagram(Buffer.from([
    'REGISTER sip:care.example SIP/2.0', 'To: isbn:2983792873', 'From: <http://www.example.com>;tag=3234233',
    'Call-ID: unksm2.daksdj@hyphenated-host.example.com', 'CSeq: 234902 REGISTER', 'Max-Forwards: 70',
    'Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw', 'Contact: <name:John_Smith>', 'l: 0', '', '',
  ].join('\r\n'))) as SipRequest;
  assert.equal((await h.registrar.handle(unksm2, FLOW)).status, 400);
  const foreignTo = await registerAuthed(h, { to: 'sip:careflow_1@elsewhere.example', contacts: ['<sip:x@192.168.1.20>'] });
  assert.equal(foreignTo.status, 404);
  h.close();
});

test('unregister with Expires: 0, and Contact: * rules', async () => {
  const h = harness();
  const c = ['<sip:careflow_1@192.168.1.20:5060>', '<sip:careflow_1@192.168.1.20:5062>'];
  assert.equal((await registerAuthed(h, { contacts: c, cseq: 1 })).status, 200);
  assert.equal(h.location.count(), 2);
  const r = await registerAuthed(h, { contacts: [c[0]!], expires: 0, cseq: 10 });
  assert.equal(r.status, 200);
  assert.deepEqual(contactsOf(r), ['<sip:careflow_1@192.168.1.20:5062>;expires=600']);
  // "*" requires Expires: 0 and must be alone (§10.3 step 6).
  assert.equal((await registerAuthed(h, { contacts: ['*'], cseq: 20 })).status, 400);
  assert.equal((await registerAuthed(h, { contacts: ['*'], expires: 60, cseq: 30 })).status, 400);
  assert.equal((await registerAuthed(h, { contacts: ['*', c[0]!], expires: 0, cseq: 40 })).status, 400);
  const all = await registerAuthed(h, { contacts: ['*'], expires: 0, cseq: 50 });
  assert.equal(all.status, 200);
  assert.deepEqual(contactsOf(all), []);
  assert.equal(h.location.count(), 0);
  h.close();
});

test('expires: 423 with Min-Expires, clamped to the maximum, contact param beats header, malformed is 3600', async () => {
  const h = harness();
  const tooShort = await registerAuthed(h, { contacts: ['<sip:a@192.168.1.20>;expires=30'] });
  assert.equal(tooShort.status, 423);
  assert.equal(tooShort.reason, 'Interval Too Brief');
  assert.equal(tooShort.get('min-expires'), '60');
  const r = await registerAuthed(h, {
    contacts: ['<sip:a@192.168.1.20>;expires=99999', '<sip:b@192.168.1.20>', '<sip:c@192.168.1.20>;expires=120', '<sip:d@192.168.1.20>;expires=soon'],
    expires: 300, cseq: 10,
  });
  assert.equal(r.status, 200);
  const byUri = new Map(contactsOf(r).map((v) => [v.slice(0, v.indexOf('>') + 1), v]));
  assert.equal(byUri.get('<sip:a@192.168.1.20>'), '<sip:a@192.168.1.20>;expires=3600');
  assert.equal(byUri.get('<sip:b@192.168.1.20>'), '<sip:b@192.168.1.20>;expires=300');
  assert.equal(byUri.get('<sip:c@192.168.1.20>'), '<sip:c@192.168.1.20>;expires=120');
  assert.equal(byUri.get('<sip:d@192.168.1.20>'), '<sip:d@192.168.1.20>;expires=3600');
  // The remaining time counts down.
  h.now.t += 100_000;
  const q = await registerAuthed(h, { cseq: 20 }); // a query: no Contact
  assert.equal(q.status, 200);
  assert.ok(contactsOf(q).includes('<sip:c@192.168.1.20>;expires=20'));
  h.close();
});

test('§10.3 step 7: same Call-ID with a CSeq not higher fails with 500 and changes nothing', async () => {
  const h = harness();
  assert.equal((await registerAuthed(h, { contacts: ['<sip:a@192.168.1.20>'], cseq: 10 })).status, 200); // stored cseq 11
  const before = h.location.lookup('1')[0];
  const first = await h.registrar.handle(register({ contacts: ['<sip:a@192.168.1.20>', '<sip:new@192.168.1.20>'], cseq: 5 }), FLOW);
  const old = await h.registrar.handle(register({ contacts: ['<sip:a@192.168.1.20>', '<sip:new@192.168.1.20>'], cseq: 11 }, authorize(first.getAll('www-authenticate')[0]!, 'careflow_1', 'alice-pw')), FLOW);
  assert.equal(old.status, 500);
  assert.equal(h.location.count(), 1, 'all or nothing: the new contact was not added');
  assert.equal(h.location.lookup('1')[0], before);
  // Another Call-ID (a rebooted phone) may use any CSeq.
  assert.equal((await registerAuthed(h, { contacts: ['<sip:a@192.168.1.20>'], cseq: 1, callId: 'rebooted' })).status, 200);
  assert.equal(h.location.lookup('1')[0]?.callId, 'rebooted');
  h.close();
});

test('q-values order the bindings; invalid q is 400', async () => {
  const h = harness();
  const r = await registerAuthed(h, { contacts: ['<sip:low@192.168.1.20>;q=0.1', '<sip:high@192.168.1.20>;q=0.9', '<sip:mid@192.168.1.20>;q=0.5'] });
  assert.equal(r.status, 200);
  assert.deepEqual(h.location.lookup('1').map((b) => b.contact), ['sip:high@192.168.1.20', 'sip:mid@192.168.1.20', 'sip:low@192.168.1.20']);
  assert.deepEqual(contactsOf(r), [
    '<sip:high@192.168.1.20>;q=0.9;expires=600', '<sip:mid@192.168.1.20>;q=0.5;expires=600', '<sip:low@192.168.1.20>;q=0.1;expires=600',
  ]);
  for (const bad of ['1.5', '0.1234', 'x', '-1']) {
    assert.equal((await registerAuthed(h, { contacts: [`<sip:a@192.168.1.20>;q=${bad}`], cseq: 100 })).status, 400, bad);
  }
  h.close();
});

test('+sip.instance and reg-id key the bindings (RFC 5626 §6); Require: outbound', async () => {
  const h = harness();
  const inst = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"';
  const r1 = await registerAuthed(h, { contacts: [`<sip:careflow_1@192.168.1.20:5060;ob>;${inst};reg-id=1`] });
  assert.equal(r1.status, 200);
  assert.equal(r1.get('require'), 'outbound');
  assert.deepEqual(contactsOf(r1), [`<sip:careflow_1@192.168.1.20:5060;ob>;${inst};reg-id=1;expires=600`]);
  // The phone moved (new IP, new Call-ID): same instance and reg-id replace the binding.
  const moved = { ...FLOW, remoteAddress: '198.51.100.99' };
  const first = await h.registrar.handle(register({ contacts: [`<sip:careflow_1@10.0.0.5:5060;ob>;${inst};reg-id=1`], callId: 'new', cseq: 1 }), moved);
  const r2 = await h.registrar.handle(register({ contacts: [`<sip:careflow_1@10.0.0.5:5060;ob>;${inst};reg-id=1`], callId: 'new', cseq: 2 }, authorize(first.getAll('www-authenticate')[0]!, 'careflow_1', 'alice-pw')), moved);
  assert.equal(r2.status, 200);
  const bs = h.location.lookup('1');
  assert.equal(bs.length, 1);
  assert.equal(bs[0]!.contact, 'sip:careflow_1@10.0.0.5:5060;ob');
  assert.equal(bs[0]!.flow.remoteAddress, '198.51.100.99');
  assert.equal(bs[0]!.regId, 1);
  assert.equal(bs[0]!.instance, '<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>');
  // A second flow (reg-id=2) is a second binding; instance alone a third.
  const r3 = await registerAuthed(h, { contacts: [`<sip:careflow_1@10.0.0.5:5062;ob>;${inst};reg-id=2`], callId: 'c3' });
  assert.equal(r3.status, 200);
  const r4 = await registerAuthed(h, { contacts: [`<sip:careflow_1@10.0.0.5:5064>;${inst}`], callId: 'c4' });
  assert.equal(r4.status, 200);
  assert.equal(r4.get('require'), undefined);
  assert.deepEqual(h.location.lookup('1').map((b) => b.key).sort(), [
    'inst:<urn:uuid:00000000-0000-1000-8000-aabbccddeeff>',
    'inst:<urn:uuid:00000000-0000-1000-8000-aabbccddeeff>;reg-id=1',
    'inst:<urn:uuid:00000000-0000-1000-8000-aabbccddeeff>;reg-id=2',
  ]);
  assert.equal((await registerAuthed(h, { contacts: [`<sip:a@10.0.0.5>;${inst};reg-id=0`], callId: 'c5' })).status, 400);
  h.close();
});

test('URI comparison (§19.1.4) matches contacts; unknown params are echoed as received (RFC 4475 cparam01/02)', async () => {
  const h = harness();
  assert.equal((await registerAuthed(h, { contacts: ['<sip:%61lice@192.168.1.20:5060>;unknownparam'] })).status, 200);
  // Same URI (escaped user, extra param present in only one): refresh, not a new binding.
  const r = await registerAuthed(h, { contacts: ['<sip:alice@192.168.1.20:5060;ob>;unknownparam;expires=120'], cseq: 10 });
  assert.equal(r.status, 200);
  assert.equal(h.location.count(), 1);
  assert.deepEqual(contactsOf(r), ['<sip:alice@192.168.1.20:5060;ob>;unknownparam;expires=120']);
  // Different transport param: a different binding.
  await registerAuthed(h, { contacts: ['<sip:alice@192.168.1.20:5060;transport=tcp>'], cseq: 20 });
  assert.equal(h.location.count(), 2);
  // cparam02: without < >, the params are header params; with < >, a URI param stays in the URI.
  await registerAuthed(h, { contacts: ['<sip:bob@192.168.1.20;unknownparam>'], cseq: 30 });
  assert.ok(h.location.lookup('1').some((b) => b.contact === 'sip:bob@192.168.1.20;unknownparam' && b.params === ''));
  await registerAuthed(h, { contacts: ['sip:carol@192.168.1.20;unknownparam;q=0.7'], cseq: 40 });
  assert.ok(h.location.lookup('1').some((b) => b.contact === 'sip:carol@192.168.1.20' && b.params === ';unknownparam' && b.q === 0.7));
  h.close();
});

test('rawParamsWithout keeps params verbatim except expires and q', () => {
  assert.equal(rawParamsWithout('"A;B" <sip:a@b;x=1>;expires=60;+sip.instance="<urn:a;b>";q=0.5;methods="INVITE, BYE"'), ';+sip.instance="<urn:a;b>";methods="INVITE, BYE"');
  assert.equal(rawParamsWithout('sip:a@b;Expires=3;foo'), ';foo');
  assert.equal(rawParamsWithout('<sip:a@b>'), '');
});

test('bindings per AOR are bounded; Path is stored; the flow is stored for NAT', async () => {
  const h = harness({ maxBindingsPerAor: 2 });
  for (let i = 0; i < 4; i++) {
    h.now.t += 1000;
    const r = await registerAuthed(h, { contacts: [`<sip:c${i}@192.168.1.20>`], callId: `c${i}`, extra: ['Path: <sip:edge.example;lr>', 'Supported: path'] });
    assert.equal(r.status, 200);
    assert.equal(r.get('path'), '<sip:edge.example;lr>');
  }
  const live = h.location.lookup('1');
  assert.deepEqual(live.map((b) => b.contact), ['sip:c3@192.168.1.20', 'sip:c2@192.168.1.20']);
  assert.deepEqual(live[0]!.path, ['<sip:edge.example;lr>']);
  assert.deepEqual(live[0]!.flow, FLOW);
  h.close();
});

test('malformed input: bad Contact is 400, non-SIP Contact is 400, Request-URI scheme 416', async () => {
  const h = harness();
  // The datagram parser already refuses this one; a transport handing over a message built
  // otherwise still gets 400 from the registrar.
  const first = await h.registrar.handle(register({}), FLOW);
  const bad = register({ cseq: 2 }, authorize(first.getAll('www-authenticate')[0]!, 'careflow_1', 'alice-pw'));
  bad.set('contact', '<sip:a@192.168.1.20');
  assert.equal((await h.registrar.handle(bad, FLOW)).status, 400);
  assert.equal((await registerAuthed(h, { contacts: ['<mailto:a@example.com>'], cseq: 10 })).status, 400);
  assert.equal((await h.registrar.handle(register({ ruri: 'tel:+15551234' }), FLOW)).status, 416);
  h.close();
});
