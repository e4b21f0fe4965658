// Durability across restarts, with real SIPp phones: accounts (CLI `user add` and
// `user import`), finished call records and registrations survive a clean SIGTERM restart and
// a `kill -9` on the same data dir and ports. Account changes made with the CLI while the
// server runs (`user passwd`, `user disable`) take effect at once, without a restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, freeUdpPort, startServer, type CareflowUser, type ServerHandle } from './harness.ts';
import {
  authInjection, requests, requireSipp, responses, runSipp, startSippUas,
  type SippHandle, type SippResult,
} from './sipp.ts';
import { settleCall } from './sipp.ts';
import { withClient } from './sip-raw.ts';

requireSipp(); // fails (never skips) with the install command when SIPp is missing

// Module level (not in before()): see conformance-server.test.ts on harness.ts's after().
let server: ServerHandle = await startServer();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function target(): string { return `127.0.0.1:${server.sipPort}`; }
function domainArgs(): string[] { return ['-key', 'domain', server.domain]; }

/** Stops the server (SIGTERM: must exit 0; or SIGKILL) and starts it again on the same data dir and ports. */
async function restart(how: 'sigterm' | 'kill9'): Promise<void> {
  const old = server;
  if (how === 'sigterm') {
    const code = await old.stop();
    assert.equal(code, 0, `careflow serve must exit 0 on SIGTERM, got ${code}:\n${old.logs().slice(-3000)}`);
  } else {
    await old.kill9();
  }
  server = await startServer({ dataDir: old.dataDir, sipPort: old.sipPort, httpPort: old.httpPort, tlsPort: old.tlsPort });
}

async function register(user: { sipUsername: string; password: string }, localPort?: number): Promise<SippResult> {
  return runSipp({
    scenario: 'register_device.xml', target: target(), injection: authInjection([user]), args: domainArgs(), timeoutMs: 15_000,
    ...(localPort !== undefined ? { localPort } : {}),
  });
}

async function registerFails(user: { sipUsername: string; password: string }): Promise<SippResult> {
  return runSipp({ scenario: 'register_fail.xml', target: target(), injection: authInjection([user]), args: domainArgs(), timeoutMs: 15_000 });
}

/** Registers a device of `user` from a free port, then starts `scenario` as UAS on that port. */
async function device(user: CareflowUser, scenario: string, args: string[] = [], timeoutMs = 40_000): Promise<SippHandle> {
  const port = await freeUdpPort();
  const reg = await register(user, port);
  assert.ok(reg.passed, `device registration failed:\n${reg.describe()}\n${server.logs().slice(-3000)}`);
  const uas = await startSippUas({ scenario, localPort: port, args, timeoutMs });
  await sleep(300); // let SIPp bind before the INVITE comes
  return uas;
}

function call(caller: CareflowUser, scenario: string, callee: string, args: string[] = [], timeoutMs = 20_000): Promise<SippResult> {
  return runSipp({
    scenario, target: target(), timeoutMs, injection: authInjection([caller]), args: ['-s', callee, ...domainArgs(), ...args],
  });
}


type ApiUser = { id: number | string; number: string; sipUsername: string; enabled?: boolean; online?: boolean };

async function listUsers(): Promise<ApiUser[]> {
  const body = await server.apiJson<{ users: ApiUser[] }>('/api/users?limit=1000');
  assert.ok(Array.isArray(body.users), `GET /api/users: no users array: ${JSON.stringify(body)}`);
  return body.users;
}

type ApiCall = { callId: string; disposition: string; finalStatus: number; answeredAt: number | null; endedAt: number };

async function listCalls(): Promise<ApiCall[]> {
  const body = await server.apiJson<{ calls: ApiCall[] }>('/api/calls?limit=1000');
  assert.ok(Array.isArray(body.calls), `GET /api/calls: no calls array: ${JSON.stringify(body)}`);
  return body.calls;
}

function callIdOf(r: SippResult): string {
  const inv = r.messages.find((m) => m.direction === 'sent' && m.firstLine.startsWith('INVITE '));
  const id = inv?.header('Call-ID');
  assert.ok(id !== undefined, `no INVITE sent:\n${r.describe()}`);
  return id;
}

test('accounts from `user add` and `user import` survive a SIGTERM restart and a kill -9: listed, and REGISTER with the old password works', async () => {
  const added = await server.addUser('Persist Added');
  const dir = mkdtempSync(join(tmpdir(), 'careflow-import-'));
  const csv = join(dir, 'users.csv');
  writeFileSync(csv, 'name,number,password\r\nPersist Imported One,,\r\n"Persist Imported, Two",care4w-7770001,Imp0rtedPassw0rd42\r\n');
  const r = await server.cli(['user', 'import', csv, '--json']);
  assert.equal(r.code, 0, `careflow user import ${csv} --json: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const imported = JSON.parse(r.stdout) as CareflowUser[];
  assert.equal(imported.length, 2, r.stdout);
  assert.equal(imported[1]?.number, 'care4w-7770001', r.stdout);
  assert.equal(imported[1]?.password, 'Imp0rtedPassw0rd42', r.stdout);
  const all = [added, ...imported];

  for (const how of ['sigterm', 'kill9'] as const) {
    await restart(how);
    const users = await listUsers();
    for (const u of all) {
      const found = users.find((x) => String(x.id) === String(u.id));
      assert.ok(found !== undefined, `after ${how} restart: user ${u.id} (${u.number}) missing from GET /api/users: ${JSON.stringify(users.map((x) => x.id))}`);
      assert.equal(found.number, u.number);
      assert.equal(found.sipUsername, u.sipUsername);
      const reg = await register(u);
      assert.ok(reg.passed, `after ${how} restart: REGISTER of ${u.sipUsername} with its original password failed:\n${reg.describe()}\n${server.logs().slice(-3000)}`);
    }
  }
});

test('a finished call is in GET /api/calls after kill -9 right after the call ended', async () => {
  const alice = await server.addUser('Persist Caller');
  const bob = await server.addUser('Persist Callee');
  const b = await device(bob, 'uas_answer.xml', ['-d', '200']);
  const uac = await call(alice, 'call_uac.xml', bob.number, ['-d', '500']);
  await settleCall(uac, [b], () => server.logs());
  await server.kill9(); // at once: the record must already be durable
  const callId = callIdOf(uac);
  await restart('kill9'); // (already dead: just restarts)
  const calls = await listCalls();
  const rec = calls.find((c) => c.callId === callId);
  assert.ok(rec !== undefined, `call ${callId} lost by kill -9 right after its BYE; GET /api/calls has ${JSON.stringify(calls.map((c) => c.callId))}`);
  assert.equal(rec.disposition, 'answered', JSON.stringify(rec));
  assert.equal(rec.finalStatus, 200, JSON.stringify(rec));
  assert.ok(rec.answeredAt !== null && rec.endedAt >= rec.answeredAt, JSON.stringify(rec));
});

for (const how of ['sigterm', 'kill9'] as const) {
  const wait = how === 'sigterm' ? 1600 : 2000;
  test(`bindings survive a ${how} restart (after ${wait} ms): the device is called at once, without re-REGISTER`, async () => {
    const alice = await server.addUser(`Bind Caller ${how}`);
    const carol = await server.addUser(`Bind Callee ${how}`);
    const c = await device(carol, 'uas_answer.xml', ['-d', '200'], 60_000);
    try {
      await sleep(wait); // the write-behind flushes every second
      await restart(how);
      const devices = await server.apiJson<{ devices: unknown[] }>(`/api/users/${carol.id}/devices`);
      assert.equal(devices.devices.length, 1, `after the ${how} restart the registration is not restored: ${JSON.stringify(devices)}\n${server.logs().slice(-2000)}`);
      const uac = await call(alice, 'call_uac.xml', carol.number, ['-d', '300']);
      const [dev] = await settleCall(uac, [c], () => server.logs());
      assert.ok(dev !== undefined && requests(dev, 'INVITE').length >= 1, 'the device never rang');
      assert.equal(requests(dev, 'REGISTER').length, 0);
    } finally {
      await c.stop().catch(() => undefined);
    }
  });
}

test('a TCP binding survives a SIGTERM restart: the proxy opens a new connection to the device\'s Contact', async () => {
  const alice = await server.addUser('Bind Caller tcp');
  const gina = await server.addUser('Bind Callee tcp');
  const port = await freeTcpPort();
  const reg = await runSipp({ scenario: 'register_device.xml', target: target(), localPort: port, injection: authInjection([gina]), args: ['-t', 't1', ...domainArgs()], timeoutMs: 15_000 });
  assert.ok(reg.passed, reg.describe());
  const uas = await startSippUas({ scenario: 'uas_answer.xml', localPort: port, args: ['-t', 't1', '-d', '200'], timeoutMs: 60_000 });
  try {
    await sleep(1600);
    await restart('sigterm');
    const uac = await call(alice, 'call_uac.xml', gina.number, ['-d', '300']);
    const [dev] = await settleCall(uac, [uas], () => server.logs());
    assert.ok(dev !== undefined && requests(dev, 'INVITE').length >= 1, 'the TCP device never rang');
  } finally {
    await uas.stop().catch(() => undefined);
  }
});

test('`user passwd` while running: the old password gets 401 twice at once, the new one registers', async () => {
  const dan = await server.addUser('Persist Passwd');
  const before = await register(dan);
  assert.ok(before.passed, before.describe());
  const r = await server.cli(['user', 'passwd', dan.id, '--json']);
  assert.equal(r.code, 0, `careflow user passwd ${dan.id} --json: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const rotated = JSON.parse(r.stdout) as CareflowUser;
  assert.notEqual(rotated.password, dan.password);
  const old = await registerFails(dan);
  assert.ok(old.passed, `the old password must get 401, 401 right after \`user passwd\`:\n${old.describe()}`);
  assert.equal(responses(old, 401).length, 2, old.describe());
  const fresh = await register({ sipUsername: dan.sipUsername, password: rotated.password });
  assert.ok(fresh.passed, `the new password must register at once:\n${fresh.describe()}\n${server.logs().slice(-3000)}`);
});

test('`user disable` while running: no REGISTER (401 twice), no call (407 again), shown offline, calls to them get 480/404', async () => {
  const erin = await server.addUser('Persist Disabled');
  const frank = await server.addUser('Persist Other');
  // erin has a registered phone before she is disabled
  const reg = await register(erin);
  assert.ok(reg.passed, reg.describe());
  const r = await server.cli(['user', 'disable', erin.id]);
  assert.equal(r.code, 0, `careflow user disable ${erin.id}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);

  const refused = await registerFails(erin);
  assert.ok(refused.passed, `a disabled user must get 401, 401 (like a wrong password):\n${refused.describe()}`);
  const calling = await call(erin, 'call_uac_auth_fail.xml', frank.number);
  assert.ok(calling.passed, `a disabled user's call must be challenged again (407, 407):\n${calling.describe()}`);
  assert.equal(responses(calling, 407).length, 2, calling.describe());

  const final = await withClient('udp', server.sipPort, (cl) => cl.request(
    { method: 'INVITE', uri: `sip:${erin.number}@${server.domain}`, domain: server.domain, body: 'v=0\r\n', contentType: 'application/sdp' },
    { username: frank.sipUsername, password: frank.password },
  ));
  const last = final.at(-1);
  assert.ok(last !== undefined);
  assert.ok(last.status === 480 || last.status === 404, `INVITE to a disabled user: want 480 or 404, got ${last.firstLine}\n${last.text}`);
  const view = await server.apiJson<ApiUser>(`/api/users/${erin.id}`);
  assert.equal(view.enabled, false, JSON.stringify(view));
  assert.equal(view.online, false, `a disabled user must be shown offline (GET /api/users/${erin.id}): ${JSON.stringify(view)}`);
});
