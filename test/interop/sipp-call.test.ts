// Calls through the CareFlow proxy between SIPp instances (Debian `sip-tester`):
// caller A authenticates with the 407 round; callee devices are SIPp UAS instances that
// registered as CareFlow users with their own address as Contact.
// Each scenario lists the exact messages it expects, so SIPp's exit code 0 is the proof.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, waitFor, type CareflowUser, type ServerHandle } from './harness.ts';
import { authInjection, requests, requireSipp, responses, runSipp, type SippResult } from './sipp.ts';
import { settleCall, startDevice } from './sipp.ts';

const NO_ANSWER_SECS = 5;
let server: ServerHandle;
let alice: CareflowUser;

before(async () => {
  requireSipp(); // fails (never skips) with the install command when SIPp is missing
  server = await startServer({ env: { CAREFLOW_NO_ANSWER_SECONDS: String(NO_ANSWER_SECS) } });
  alice = await server.addUser('Call Alice');
});

function domainArgs(): string[] { return ['-key', 'domain', server.domain]; }


function call(scenario: string, targetUser: string, args: string[] = [], timeoutMs = 30_000): Promise<SippResult> {
  return runSipp({
    scenario, target: `127.0.0.1:${server.sipPort}`, timeoutMs,
    injection: authInjection([alice]), args: ['-s', targetUser, ...domainArgs(), ...args],
  });
}


function assertProxyChallenge(uac: SippResult): void {
  const c = responses(uac, 407)[0];
  assert.ok(c !== undefined, `no 407 for the first INVITE:\n${uac.describe()}`);
  const h = c.header('Proxy-Authenticate') ?? '';
  assert.match(h, /^Digest\s/i, `407 without a Digest Proxy-Authenticate:\n${c.text}`);
  assert.match(h, new RegExp(`realm="${server.domain.replace(/\./g, '\\.')}"`), `realm must be the domain: ${h}`);
  assert.match(h, /nonce="[^"]+"/, h);
}

test('call A->B by number: 407 round, 180, 200, ACK, caller BYE, 200', async () => {
  const bob = await server.addUser('Call Bob');
  const b = await startDevice({ server, login: bob, scenario: 'uas_answer.xml', args: ['-d', '200'] });
  const uac = await call('call_uac.xml', bob.number, ['-d', '1000']);
  const [dev] = await settleCall(uac, [b], () => server.logs());
  assertProxyChallenge(uac);
  assert.ok(dev !== undefined);
  const invite = requests(dev, 'INVITE')[0];
  assert.ok(invite !== undefined);
  assert.equal(invite.headers('Proxy-Authorization').length, 0, 'the proxy must not forward the caller\'s Proxy-Authorization');
  assert.equal(requests(dev, 'BYE').length >= 1, true, dev.describe());
});

test('call A->B by SIP username: callee hangs up', async () => {
  const carol = await server.addUser('Call Carol');
  const c = await startDevice({ server, login: carol, scenario: 'uas_answer_bye.xml', args: ['-d', '1000'] });
  const uac = await call('call_uac_callee_bye.xml', carol.sipUsername);
  await settleCall(uac, [c], () => server.logs());
  assert.equal(requests(uac, 'BYE').length >= 1, true, uac.describe());
});

test('call A->B cancelled before answer: 200 for CANCEL, 487 for INVITE, ACK', async () => {
  const dave = await server.addUser('Call Dave');
  const d = await startDevice({ server, login: dave, scenario: 'uas_ring_cancel.xml' });
  const uac = await call('call_uac_cancel.xml', dave.number, ['-d', '1000']);
  const [dev] = await settleCall(uac, [d], () => server.logs());
  assert.equal(responses(uac, 487).length >= 1, true, uac.describe());
  assert.ok(dev !== undefined && requests(dev, 'CANCEL').length >= 1, 'the callee never saw the CANCEL');
});

test('call A->B busy: 486 reaches the caller, who ACKs', async () => {
  const erin = await server.addUser('Call Erin');
  const e = await startDevice({ server, login: erin, scenario: 'uas_busy.xml' });
  const uac = await call('call_uac_busy.xml', erin.number);
  await settleCall(uac, [e], () => server.logs());
  assert.equal(responses(uac, 486).length >= 1, true, uac.describe());
});

test(`call A->B not answered: the proxy gives up after CAREFLOW_NO_ANSWER_SECONDS=${NO_ANSWER_SECS} with 408 or 480`, async () => {
  const frank = await server.addUser('Call Frank');
  const f = await startDevice({ server, login: frank, scenario: 'uas_ring_cancel.xml', args: [], timeoutMs: 40_000 });
  const started = Date.now();
  const uac = await call('call_uac_noanswer.xml', frank.number, [], 40_000);
  const elapsed = Date.now() - started;
  await settleCall(uac, [f], () => server.logs());
  const final = [...responses(uac, 408), ...responses(uac, 480)];
  assert.equal(final.length >= 1, true, uac.describe());
  assert.ok(elapsed >= (NO_ANSWER_SECS - 1) * 1000, `gave up after ${elapsed} ms, before the ${NO_ANSWER_SECS} s no-answer timeout`);
  assert.ok(elapsed <= (NO_ANSWER_SECS + 10) * 1000, `gave up only after ${elapsed} ms`);
});

test('forking: B has two devices; one answers, the other is cancelled (487)', async () => {
  const grace = await server.addUser('Call Grace');
  const answering = await startDevice({ server, login: grace, scenario: 'uas_answer.xml', args: ['-d', '1000'] });
  const ringing = await startDevice({ server, login: grace, scenario: 'uas_ring_cancel.xml' });
  const uac = await call('call_uac.xml', grace.number, ['-d', '500']);
  const [a, r] = await settleCall(uac, [answering, ringing], () => server.logs());
  assert.ok(a !== undefined && r !== undefined);
  assert.equal(requests(a, 'INVITE').length >= 1, true, 'the answering device got no INVITE');
  assert.equal(requests(r, 'CANCEL').length >= 1, true, 'the other device got no CANCEL');
});

test('GET /api/calls records every call above with its disposition', async () => {
  type CallRecord = { disposition?: unknown };
  const want: Record<string, number> = { answered: 3, cancelled: 1, busy: 1, no_answer: 1 };
  const count = (calls: CallRecord[]): Record<string, number> => {
    const c: Record<string, number> = {};
    for (const r of calls) { const d = String(r.disposition); c[d] = (c[d] ?? 0) + 1; }
    return c;
  };
  let last: Record<string, number> = {};
  try {
    await waitFor('call records', async () => {
      const body = await server.apiJson<CallRecord[] | { calls?: CallRecord[]; items?: CallRecord[] }>('/api/calls');
      const calls = Array.isArray(body) ? body : (body.calls ?? body.items ?? []);
      last = count(calls);
      return Object.entries(want).every(([k, n]) => (last[k] ?? 0) >= n) ? true : undefined;
    }, 5000, 200);
  } catch (e) {
    assert.fail(`dispositions ${JSON.stringify(last)}, expected at least ${JSON.stringify(want)}: ${(e as Error).message}`);
  }
});
