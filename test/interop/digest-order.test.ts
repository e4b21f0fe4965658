// Which digest challenges the server offers, in which order (CAREFLOW_AUTH_ALGORITHMS), and
// what real clients do with them (RFC 7616 / RFC 8760):
// - default (MD5 only): one WWW-Authenticate, algorithm=MD5; SIPp registers;
// - `MD5,SHA-256`: two challenges, MD5 first, on the 401 and on the proxy's 407; SIPp 3.6
//   (it reads only the first challenge, MD5 only) registers and calls;
// - `SHA-256,MD5`: SHA-256 first; linphonec (liblinphone / belle-sip 5.1, a real SHA-256
//   capable phone) registers WITH SHA-256; SIPp 3.6 cannot (it gives up on the first
//   challenge): this is why the default is not SHA-256 first;
// - `MD5,SHA-256` and baresip 1.0: it does not register at all (libre gives up on a 401 that
//   carries any challenge it cannot compute, "Function not implemented"): this is why the
//   default is MD5 only. If one of the "does not work" tests starts failing, a newer client
//   works: revisit the default (src config + README "Digest algorithms").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, waitFor, type CareflowUser, type ServerHandle } from './harness.ts';
import { authInjection, requireSipp, responses, runSipp, type SippMessage, type SippResult } from './sipp.ts';
import { requireLinphonec, startLinphonec, type LinphoneSipMessage, type Linphonec } from './linphone.ts';
import { makeTone, requireBaresip, startBaresip, type BaresipUa } from './baresip.ts';

// One server per configuration, started on first use and stopped by the harness at the end.
const servers = new Map<string, Promise<ServerHandle>>();
function server(algorithms: string | undefined): Promise<ServerHandle> {
  const key = algorithms ?? '(default)';
  let s = servers.get(key);
  if (s === undefined) {
    s = startServer(algorithms === undefined ? {} : { env: { CAREFLOW_AUTH_ALGORITHMS: algorithms } });
    servers.set(key, s);
  }
  return s;
}

/** The algorithm= of one challenge or credentials value (quoted or not), upper-cased. */
function algorithmOf(value: string): string | undefined {
  return /(?:^|[\s,])algorithm\s*=\s*"?([A-Za-z0-9-]+)"?/i.exec(value)?.[1]?.toUpperCase();
}

/** A digest parameter (quoted or token) of a challenge or credentials value. */
function param(value: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|[\\s,])${name}\\s*=\\s*(?:"([^"]*)"|([^\\s,]+))`, 'i').exec(value);
  return m === null ? undefined : (m[1] ?? m[2]);
}

async function isOnline(s: ServerHandle, user: CareflowUser): Promise<boolean> {
  const body = await s.apiJson<{ online?: unknown; user?: { online?: unknown } }>(`/api/users/${encodeURIComponent(user.id)}`);
  const v = body.online ?? body.user?.online;
  assert.equal(typeof v, 'boolean', `GET /api/users/${user.id} has no boolean "online": ${JSON.stringify(body)}`);
  return v === true;
}

function serverLog(s: ServerHandle): string {
  return `--- last 4 KB of the server log (CAREFLOW_AUTH_ALGORITHMS=${s.env['CAREFLOW_AUTH_ALGORITHMS'] ?? '(unset)'})\n${s.logs().slice(-4096)}`;
}

/** Every challenge of a response must share the realm, nonce, opaque and qop; only algorithm differs. */
function assertChallenges(values: string[], want: string[], s: ServerHandle, where: string, text: string): void {
  assert.deepEqual(values.map(algorithmOf), want,
    `${where}: expected ${want.length} challenge(s) with algorithm ${want.join(', ')} in this order, got:\n${text}`);
  for (const v of values) {
    assert.match(v, /^Digest\s/i, `${where}: not a Digest challenge: ${v}`);
    assert.equal(param(v, 'realm'), s.domain, `${where}: realm must be the domain: ${v}`);
    assert.match(param(v, 'nonce') ?? '', /^\S+$/, `${where}: no nonce: ${v}`);
    assert.equal(param(v, 'qop'), 'auth', `${where}: qop must be "auth": ${v}`);
  }
  const first = values[0] ?? '';
  for (const v of values.slice(1)) {
    for (const p of ['realm', 'nonce', 'opaque', 'qop']) {
      assert.equal(param(v, p), param(first, p), `${where}: the challenges differ in ${p}:\n${text}`);
    }
  }
}

/** The credentials SIPp sent in the request that followed the challenge. */
function sippCredentials(r: SippResult, method: string, header: string): string[] {
  return r.messages
    .filter((m) => m.direction === 'sent' && m.firstLine.startsWith(`${method} `))
    .flatMap((m) => m.headers(header));
}

// ---------------------------------------------------------------- 1. default

test('default configuration: the 401 carries exactly one challenge, algorithm=MD5; SIPp registers', async () => {
  requireSipp(); // fails (never skips) with the install command
  assert.equal(process.env['CAREFLOW_AUTH_ALGORITHMS'], undefined,
    'CAREFLOW_AUTH_ALGORITHMS is set in the environment of the test run: the default cannot be tested; unset it');
  const s = await server(undefined);
  const user = await s.addUser('Order Default');
  const r = await runSipp({
    scenario: 'register.xml', target: `127.0.0.1:${s.sipPort}`, injection: authInjection([user]),
    args: ['-key', 'domain', s.domain], timeoutMs: 30_000,
  });
  assert.ok(r.passed, `${r.describe()}\n${serverLog(s)}`);
  const challenges = responses(r, 401);
  assert.ok(challenges.length >= 1, r.describe());
  challenges.forEach((m, i) => {
    assertChallenges(m.headers('WWW-Authenticate'), ['MD5'], s, `default, 401 #${i + 1}`, m.text);
  });
  assert.equal(responses(r, 401)[0]?.headers('Proxy-Authenticate').length, 0, 'a 401 must not carry Proxy-Authenticate');
  for (const c of sippCredentials(r, 'REGISTER', 'Authorization')) assert.equal(algorithmOf(c), 'MD5', c);
});

// ---------------------------------------------------------------- 2. MD5,SHA-256

test('CAREFLOW_AUTH_ALGORITHMS=MD5,SHA-256: 401 and 407 carry MD5 then SHA-256; SIPp 3.6 registers and calls with MD5', async () => {
  requireSipp();
  const s = await server('MD5,SHA-256');
  const [alice, bob] = [await s.addUser('Order Md5first A'), await s.addUser('Order Md5first B')];
  const target = `127.0.0.1:${s.sipPort}`;
  const domain = ['-key', 'domain', s.domain];

  // register.xml also checks that the challenge SIPp reads (the first) is MD5
  const reg = await runSipp({ scenario: 'register.xml', target, injection: authInjection([alice]), args: domain, timeoutMs: 30_000 });
  assert.ok(reg.passed, `SIPp must register when MD5 comes first:\n${reg.describe()}\n${serverLog(s)}`);
  const r401 = responses(reg, 401);
  assert.ok(r401.length >= 1, reg.describe());
  r401.forEach((m, i) => assertChallenges(m.headers('WWW-Authenticate'), ['MD5', 'SHA-256'], s, `MD5,SHA-256, 401 #${i + 1}`, m.text));
  const regCreds = sippCredentials(reg, 'REGISTER', 'Authorization');
  assert.ok(regCreds.length >= 1, reg.describe());
  for (const c of regCreds) assert.equal(algorithmOf(c), 'MD5', `SIPp answered with: ${c}`);

  // the same with a scenario that does not look at the algorithm at all (the control for test 3b)
  const any = await runSipp({ scenario: 'register_first_challenge.xml', target, injection: authInjection([alice]), args: domain, timeoutMs: 20_000 });
  assert.ok(any.passed, `register_first_challenge.xml must pass when MD5 comes first:\n${any.describe()}\n${serverLog(s)}`);

  // the proxy's 407 on INVITE: same challenges, same order; MD5 credentials get the call routed (480: B is offline)
  const call = await runSipp({
    scenario: 'invite_407_offline.xml', target, injection: authInjection([alice]),
    args: ['-s', bob.sipUsername, ...domain], timeoutMs: 20_000,
  });
  assert.ok(call.passed, `INVITE -> 407 -> INVITE with MD5 credentials -> 480 expected:\n${call.describe()}\n${serverLog(s)}`);
  const r407 = responses(call, 407);
  assert.equal(r407.length, 1, call.describe());
  const p = r407[0] as SippMessage;
  assertChallenges(p.headers('Proxy-Authenticate'), ['MD5', 'SHA-256'], s, 'MD5,SHA-256, 407', p.text);
  assert.equal(p.headers('WWW-Authenticate').length, 0, `a 407 must not carry WWW-Authenticate:\n${p.text}`);
  const callCreds = sippCredentials(call, 'INVITE', 'Proxy-Authorization');
  assert.equal(callCreds.length, 1, call.describe());
  assert.equal(algorithmOf(callCreds[0] ?? ''), 'MD5', `SIPp answered with: ${callCreds[0]}`);
});

// ---------------------------------------------------------------- 3. SHA-256,MD5

/** RFC 7616 §3.4.1 (qop=auth) with SHA-256, computed here, independently of src/sip/digest.ts. */
function sha256Response(user: string, realm: string, password: string, method: string, creds: string): string {
  const h = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');
  const get = (n: string): string => {
    const v = param(creds, n);
    assert.ok(v !== undefined, `no ${n} in ${creds}`);
    return v;
  };
  const ha1 = h(`${user}:${realm}:${password}`);
  const ha2 = h(`${method}:${get('uri')}`);
  return h(`${ha1}:${get('nonce')}:${get('nc')}:${get('cnonce')}:${get('qop')}:${ha2}`);
}

test('CAREFLOW_AUTH_ALGORITHMS=SHA-256,MD5: linphonec registers using SHA-256', async (t) => {
  const version = requireLinphonec(); // fails (never skips) with the install command
  const s = await server('SHA-256,MD5');
  const user = await s.addUser('Order Linphone');
  let lp: Linphonec | undefined;
  const context = (): string => [`${version}, user ${user.sipUsername} (id ${user.id})`, lp?.describe() ?? '(linphonec not started)', serverLog(s)].join('\n');
  let failed = true;
  try {
    lp = await startLinphonec({ name: 'sha256' });
    const l = lp;
    l.register(`sip:${user.sipUsername}@${s.domain}`, `sip:127.0.0.1:${s.sipPort};transport=udp`, user.password);
    await waitFor(`GET /api/users/${user.id} online: true`, async () => ((await isOnline(s, user)) ? true : undefined), 10_000, 200)
      .catch((e: unknown) => assert.fail(`${(e as Error).message}\n${context()}`));
    const status = await l.waitRegistered(5000).catch((e: unknown) => assert.fail(`${(e as Error).message}\n${context()}`));
    assert.match(status, new RegExp(`identity=sip:${user.sipUsername}@`), context());

    // from belle-sip's message log: 401 with SHA-256 first, REGISTER answered with SHA-256, 200
    const msgs = l.messages();
    const isRegister = (m: LinphoneSipMessage): boolean => / REGISTER$/.test(m.header('CSeq') ?? '');
    const challenge = msgs.find((m) => m.direction === 'received' && m.firstLine.startsWith('SIP/2.0 401 ') && isRegister(m));
    assert.ok(challenge !== undefined, `linphonec received no 401 to its REGISTER\n${context()}`);
    assertChallenges(challenge.headers('WWW-Authenticate'), ['SHA-256', 'MD5'], s, 'SHA-256,MD5, 401 to linphonec', challenge.text);
    const authed = msgs.filter((m) => m.direction === 'sent' && m.firstLine.startsWith('REGISTER ') && m.header('Authorization') !== undefined);
    assert.ok(authed.length >= 1, `linphonec sent no REGISTER with Authorization\n${context()}`);
    const first = authed[0] as LinphoneSipMessage;
    const creds = first.header('Authorization') ?? '';
    assert.equal(algorithmOf(creds), 'SHA-256', `linphonec's REGISTER must answer the SHA-256 challenge:\n${first.text}`);
    assert.equal(param(creds, 'username'), user.sipUsername, creds);
    assert.equal(param(creds, 'qop'), 'auth', creds);
    assert.match(param(creds, 'response') ?? '', /^[0-9a-f]{64}$/, `a SHA-256 response is 64 hex digits: ${creds}`);
    // the response really is RFC 7616 SHA-256 (not MD5 labelled SHA-256)
    assert.equal(param(creds, 'response'), sha256Response(user.sipUsername, s.domain, user.password, 'REGISTER', creds),
      `response is not SHA-256 digest of the credentials: ${creds}`);
    const cseq = first.header('CSeq');
    const ok = msgs.find((m) => m.direction === 'received' && m.firstLine.startsWith('SIP/2.0 200 ') && m.header('CSeq') === cseq);
    assert.ok(ok !== undefined, `no 200 to linphonec's REGISTER with SHA-256 credentials (CSeq ${cseq})\n${context()}`);
    t.diagnostic(`${version}: ${first.firstLine} with Authorization: ${creds.replace(/response="[^"]*"/, 'response="<64 hex>"')} -> ${ok.firstLine}`);

    // `quit` unregisters (with the same SHA-256 credentials)
    await l.stop();
    await waitFor(`GET /api/users/${user.id} online: false after linphonec quit`, async () => ((await isOnline(s, user)) ? undefined : true), 5000, 200)
      .catch((e: unknown) => assert.fail(`${(e as Error).message}\n${context()}`));
    failed = false;
  } finally {
    await lp?.stop();
    if (!failed && lp !== undefined) rmSync(lp.home, { recursive: true, force: true });
  }
});

test('CAREFLOW_AUTH_ALGORITHMS=SHA-256,MD5: SIPp 3.6 reads only the SHA-256 challenge and gives up (why MD5 stays first)', async (t) => {
  requireSipp();
  const s = await server('SHA-256,MD5');
  const user = await s.addUser('Order Sipp Sha');
  const r = await runSipp({
    scenario: 'register_first_challenge.xml', target: `127.0.0.1:${s.sipPort}`, injection: authInjection([user]),
    args: ['-key', 'domain', s.domain], timeoutMs: 15_000,
  });
  const d = `${r.describe()}\n${serverLog(s)}`;
  // If this ever passes, SIPp learnt SHA-256 (or to pick a challenge it knows): revisit the default.
  assert.ok(!r.passed, `SIPp registered although SHA-256 came first: revisit the default order\n${d}`);
  const c = responses(r, 401)[0];
  assert.ok(c !== undefined, `SIPp got no 401 (the failure must be the challenge, not the setup):\n${d}`);
  assertChallenges(c.headers('WWW-Authenticate'), ['SHA-256', 'MD5'], s, 'SHA-256,MD5, 401 to SIPp', c.text);
  assert.match(`${r.errors}\n${r.stdout}\n${r.stderr}`, /createAuthHeader: authentication must use MD5 or AKAv1-MD5/,
    `expected SIPp 3.6's "createAuthHeader: authentication must use MD5 or AKAv1-MD5":\n${d}`);
  assert.equal(responses(r, 200).length, 0, `SIPp must never get a 200:\n${d}`);
  assert.equal(sippCredentials(r, 'REGISTER', 'Authorization').length, 0, `SIPp must not have sent any credentials:\n${d}`);
  assert.equal(await isOnline(s, user), false, `the user must not be online:\n${d}`);
  t.diagnostic(`SIPp: ${r.messages.map((m) => `${m.direction === 'sent' ? '-->' : '<--'} ${m.firstLine}`).join(', ')}; exit ${r.code}: ` +
    'createAuthHeader: authentication must use MD5 or AKAv1-MD5');
});

// ---------------------------------------------------------------- 4. baresip with MD5,SHA-256

test('CAREFLOW_AUTH_ALGORITHMS=MD5,SHA-256: baresip 1.0 does NOT register within 5 s (why the default is MD5 only)', async (t) => {
  const version = requireBaresip(); // fails (never skips) with the install command
  const s = await server('MD5,SHA-256');
  const user = await s.addUser('Order Baresip');
  const media = mkdtempSync(join(tmpdir(), 'careflow-tones-'));
  let ua: BaresipUa | undefined;
  let failed = true;
  try {
    makeTone(join(media, 'tone.wav'), 440, 5);
    ua = await startBaresip({
      name: 'md5-sha256', toneWav: join(media, 'tone.wav'),
      account: { user: user.sipUsername, domain: s.domain, password: user.password, proxy: { host: '127.0.0.1', port: s.sipPort }, transport: 'udp', answermode: 'manual' },
    });
    const u = ua;
    const context = (): string => [`${version}, user ${user.sipUsername} (id ${user.id})`, u.describe(), serverLog(s)].join('\n');
    const started = Date.now();
    const registered = await u.waitEvent('REGISTER_OK', (e) => e.type === 'REGISTER_OK', 5000).then(() => true, () => false);
    const elapsed = Date.now() - started;
    const onlineNow = await isOnline(s, user);
    assert.ok(!registered && !onlineNow,
      `${version} registered with CAREFLOW_AUTH_ALGORITHMS=MD5,SHA-256 (after ${elapsed} ms): a newer baresip copes with a SHA-256 ` +
      `challenge; revisit the default (README "Digest algorithms")\n${context()}`);
    // It must have failed because of the challenge (not a broken setup): the server answered,
    // and baresip gave up on that answer (libre 2.x: ENOSYS, "Function not implemented").
    const fail = u.events.find((e) => e.type === 'REGISTER_FAIL');
    const out = u.output();
    assert.ok(fail !== undefined || /Function not implemented/.test(out),
      `baresip neither registered nor reported a failure within 5 s: the setup, not the challenge, is at fault?\n${context()}`);
    assert.match(`${fail?.param ?? ''}\n${out}`, /Function not implemented/,
      `baresip failed for another reason than the known one ("Function not implemented"):\n${context()}`);
    t.diagnostic(`${version}: ${fail !== undefined ? `REGISTER_FAIL "${fail.param ?? ''}"` : 'no REGISTER_FAIL event'}, ` +
      `output: ${/[^\n]*Function not implemented[^\n]*/.exec(out)?.[0]?.replace(/\x1b\[[0-9;]*m/g, '').trim() ?? ''}`);
    failed = false;
  } finally {
    await ua?.stop();
    if (!failed) {
      rmSync(media, { recursive: true, force: true });
      if (ua !== undefined) rmSync(ua.dir, { recursive: true, force: true });
    }
  }
});
