// Registrar against SIPp (Debian `sip-tester`): digest challenge, register, re-register,
// unregister; refused registrations that do not reveal whether the user exists.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { freeUdpPort, startServer, waitFor, type ServerHandle } from './harness.ts';
import { authInjection, requireSipp, responses, runSipp, startSipp, type SippMessage } from './sipp.ts';

let server: ServerHandle;

before(async () => {
  requireSipp(); // fails (never skips) with the install command when SIPp is missing
  server = await startServer();
});

function target(): string { return `127.0.0.1:${server.sipPort}`; }
function domainArgs(): string[] { return ['-key', 'domain', server.domain]; }

async function online(id: string): Promise<boolean> {
  const body = await server.apiJson<{ online?: unknown; user?: { online?: unknown } }>(`/api/users/${encodeURIComponent(id)}`);
  const v = body.online ?? body.user?.online;
  assert.equal(typeof v, 'boolean', `GET /api/users/${id} has no boolean "online": ${JSON.stringify(body)}`);
  return v === true;
}

function assertChallenge(m: SippMessage | undefined, header: string, where: string): void {
  assert.ok(m !== undefined, `${where}: no challenge received`);
  const h = m.header(header);
  assert.ok(h !== undefined, `${where}: ${m.firstLine} without ${header}:\n${m.text}`);
  assert.match(h, /^Digest\s/i, `${where}: ${header} is not Digest: ${h}`);
  assert.match(h, new RegExp(`realm="${server.domain.replace(/\./g, '\\.')}"`), `${where}: realm must be the domain: ${h}`);
  assert.match(h, /nonce="[^"]+"/, `${where}: no nonce: ${h}`);
  assert.match(h, /qop="auth"/, `${where}: qop must be "auth": ${h}`);
  assert.match(h, /algorithm=MD5\b/, `${where}: algorithm must be MD5 (SIPp 3.6, baresip 1.0 do MD5 only): ${h}`);
}

test('REGISTER: 401 challenge, register, re-register, unregister; API shows online then offline', async () => {
  const user = await server.addUser('Reg Alice');
  const run = await startSipp({ scenario: 'register.xml', target: target(), injection: authInjection([user]), args: domainArgs(), timeoutMs: 30_000 });
  // The scenario pauses 2 s after the re-registration: the user must be online meanwhile.
  let seenOnline = false;
  let done = false;
  void run.result.finally(() => { done = true; });
  while (!done && !seenOnline) {
    seenOnline = await online(user.id).catch(() => false);
    if (!seenOnline) await new Promise((r) => setTimeout(r, 100));
  }
  const r = await run.result;
  assert.ok(r.passed, r.describe());

  const challenges = responses(r, 401);
  assertChallenge(challenges[0], 'WWW-Authenticate', 'first REGISTER');
  const oks = responses(r, 200);
  assert.ok(oks.length >= 3, `expected 200 for register, re-register and unregister:\n${r.describe()}`);
  const contact = oks[0]?.headers('Contact').join(', ') ?? '';
  assert.match(contact, new RegExp(`<sip:${user.sipUsername}@127\\.0\\.0\\.1:\\d+>`), `200 must list the registered Contact: ${contact}`);
  assert.match(contact, /;\s*expires=600\b/, `200 must echo the granted expiry on the Contact: ${contact}`);
  assert.ok(seenOnline, `GET /api/users/${user.id} never showed online: true while registered\n${r.describe()}`);

  await waitFor('the user to be offline after REGISTER Expires: 0', async () => ((await online(user.id)) ? undefined : true), 5000);
});

test('REGISTER with a wrong password and for an unknown user: 401 twice, indistinguishable', async () => {
  const user = await server.addUser('Reg Bob');
  const wrong = await runSipp({
    scenario: 'register_fail.xml', target: target(), args: domainArgs(), timeoutMs: 20_000,
    injection: authInjection([{ sipUsername: user.sipUsername, password: `${user.password}x` }]),
  });
  assert.ok(wrong.passed, `wrong password must get 401, 401 (not 403):\n${wrong.describe()}`);
  const unknown = await runSipp({
    scenario: 'register_fail.xml', target: target(), args: domainArgs(), timeoutMs: 20_000,
    injection: authInjection([{ sipUsername: 'careflow_99999999', password: 'nosuchsecret' }]),
  });
  assert.ok(unknown.passed, `unknown user must get 401, 401 (not 403/404):\n${unknown.describe()}`);

  const w = responses(wrong, 401);
  const u = responses(unknown, 401);
  assert.equal(w.length, 2, wrong.describe());
  assert.equal(u.length, 2, unknown.describe());
  const shape = (m: SippMessage): string[] => m.headerNames.map((n) => n.toLowerCase()).sort();
  for (const i of [0, 1]) {
    const a = w[i];
    const b = u[i];
    assert.ok(a !== undefined && b !== undefined);
    assertChallenge(a, 'WWW-Authenticate', `wrong password, 401 #${i + 1}`);
    assertChallenge(b, 'WWW-Authenticate', `unknown user, 401 #${i + 1}`);
    assert.equal(b.firstLine, a.firstLine, `status lines differ (#${i + 1})`);
    assert.deepEqual(shape(b), shape(a), `header names differ (#${i + 1}):\n--- wrong password\n${a.text}\n--- unknown user\n${b.text}`);
    // same challenge parameters apart from the nonce (and opaque, when used)
    const params = (m: SippMessage): string => (m.header('WWW-Authenticate') ?? '').replace(/(nonce|opaque)="[^"]*"/g, '$1=""');
    assert.equal(params(b), params(a), `challenges differ beyond the nonce (#${i + 1})`);
  }
});

test('a REGISTER retransmitted after its 200 gets the same 200 again, from the Completed transaction (RFC 3261 §17.2.2), and is not processed twice', async () => {
  const user = await server.addUser('Reg Retransmit');
  const port = await freeUdpPort();
  const first = await runSipp({ scenario: 'register_device.xml', target: target(), localPort: port, injection: authInjection([user]), args: domainArgs(), timeoutMs: 15_000 });
  assert.ok(first.passed, first.describe());
  const sent = first.messages.filter((m) => m.direction === 'sent' && m.firstLine.startsWith('REGISTER '));
  const reg = sent[1];
  assert.ok(reg !== undefined, `no authenticated REGISTER:\n${first.describe()}`);
  const branch = /;branch=([^;]+)/.exec(reg.header('Via') ?? '')?.[1];
  const fromTag = /;tag=([^;]+)/.exec(reg.header('From') ?? '')?.[1];
  const auth = reg.header('Authorization');
  assert.ok(branch !== undefined && fromTag !== undefined && auth !== undefined && !auth.includes(';'), reg.text);
  const again = await runSipp({
    // -cid_str: this SIPp's call has the first one's Call-ID, so it takes the 200 as its own.
    scenario: 'register_resend.xml', target: target(), localPort: port, args: [...domainArgs(), '-cid_str', reg.header('Call-ID') ?? ''], timeoutMs: 15_000,
    injection: [`${user.sipUsername};${branch};${fromTag};${auth}`],
  });
  assert.ok(again.passed, again.describe());
  const [ok1] = responses(first, 200);
  const [ok2] = responses(again, 200);
  // Processed a second time, the REGISTER would get a 401 (its nonce-count replayed) or a new 200
  // with another To tag: the Completed transaction resends the first response byte for byte.
  assert.equal(ok2?.text, ok1?.text, 'the retransmission must get the first 200 again');
});
