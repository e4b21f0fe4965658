import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AccountService } from '../../src/accounts/account-service.ts';
import { CallLog } from '../../src/calls/call-log.ts';
import { createHttpApi } from '../../src/http/api.ts';
import type { DeviceInfo } from '../../src/http/api.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

const TOKEN = 'test-admin-token-0123456789abcdefghijklmnop';
const logged: unknown[] = [];
const logger = { info: () => {}, warn: () => {}, error: (obj: object) => void logged.push(obj) };
const devices = new Map<number, DeviceInfo[]>([[1, [{ contact: 'sip:careflow_1@192.0.2.9:5060', transport: 'udp', source: '192.0.2.9:5060', expiresAt: 9e12, userAgent: 'baresip' }]]]);

let base = '';
let store: SqliteStore;
const server = createServer();

before(async () => {
  store = new SqliteStore(':memory:');
  const accounts = new AccountService({ store, domain: 'sip.example.org', numbers: { prefix: 'care4w-', start: 1000001 } });
  const callLog = new CallLog(store);
  await callLog.record({ callId: 'c1', callerUserId: 1, callerUri: 'sip:a@d', calleeUri: 'sip:b@d', startedAt: 10, endedAt: 20, disposition: 'cancelled', finalStatus: 487 });
  server.on('request', createHttpApi({ store, accounts, callLog, presence: { devicesOf: (id) => devices.get(id) ?? [] }, adminToken: TOKEN, logger }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise((resolve) => server.close(resolve));
  await store.close();
});

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const init: RequestInit = { method, headers: { authorization: `Bearer ${TOKEN}`, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text), headers: res.headers };
}

describe('HTTP API', () => {
  it('health needs no token', async () => {
    const res = await fetch(`${base}/api/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok' });
  });

  it('answers 401 with the same body for a missing and a wrong token', async () => {
    const missing = await fetch(`${base}/api/users`);
    const wrong = await fetch(`${base}/api/users`, { headers: { authorization: 'Bearer nope' } });
    const basic = await fetch(`${base}/api/users`, { headers: { authorization: `Basic ${TOKEN}` } });
    for (const res of [missing, wrong, basic]) {
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
    assert.deepEqual(await missing.json(), await wrong.json());
  });

  it('creates a user (password once), shows it online with its devices', async () => {
    const created = await api('POST', '/api/users', { name: 'Alice' });
    assert.equal(created.status, 201);
    assert.deepEqual(Object.keys(created.body), ['id', 'number', 'sipUsername', 'password', 'domain']);
    assert.equal(created.headers.get('location'), '/api/users/1');
    const shown = await api('GET', '/api/users/1');
    assert.equal(shown.status, 200);
    assert.equal(shown.body.online, true);
    assert.equal(shown.body.devices, 1);
    assert.equal(shown.body.password, undefined);
    assert.equal(JSON.stringify(shown.body).includes('ha1'), false);
    const devs = await api('GET', '/api/users/1/devices');
    assert.deepEqual(devs.body, { devices: devices.get(1) });
  });

  it('lists, rotates, patches and deletes', async () => {
    await api('POST', '/api/users', { name: 'Bob', number: 'desk-7' });
    const list = await api('GET', '/api/users?query=bob&limit=10');
    assert.equal(list.body.total, 1);
    assert.equal(list.body.users[0].number, 'desk-7');
    assert.equal(list.body.users[0].online, false);
    const rotated = await api('POST', '/api/users/2/password');
    assert.equal(rotated.status, 200);
    assert.equal(rotated.body.password.length, 20);
    const patched = await api('PATCH', '/api/users/2', { enabled: false, name: 'Robert' });
    assert.equal(patched.body.enabled, false);
    assert.equal(patched.body.name, 'Robert');
    assert.equal((await api('DELETE', '/api/users/2')).status, 204);
    assert.equal((await api('GET', '/api/users/2')).status, 404);
  });

  it('answers bad requests with coded JSON errors', async () => {
    const dup = await api('POST', '/api/users', { name: 'X', number: 'care4w-1000001' });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, 'NUMBER_TAKEN');
    const noName = await api('POST', '/api/users', {});
    assert.deepEqual([noName.status, noName.body.error.code, noName.body.error.field], [400, 'INVALID_INPUT', 'name']);
    const extra = await api('POST', '/api/users', { name: 'X', password: 'x' });
    assert.equal(extra.body.error.field, 'password');
    const badJson = await api('POST', '/api/users', '{"name":');
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error.code, 'INVALID_JSON');
    assert.match(badJson.body.error.message, /not valid JSON/);
    const big = await api('POST', '/api/users', { name: 'x'.repeat(70 * 1024) });
    assert.equal(big.status, 413);
    const form = await api('POST', '/api/users', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415);
    const badId = await api('GET', '/api/users/abc');
    assert.deepEqual([badId.status, badId.body.error.field], [400, 'id']);
    const badLimit = await api('GET', '/api/users?limit=0');
    assert.equal(badLimit.body.error.field, 'limit');
    assert.equal((await api('PUT', '/api/users/1')).status, 405);
    assert.equal((await api('GET', '/api/nothing')).status, 404);
  });

  it('lists calls with a paging cursor', async () => {
    const calls = await api('GET', '/api/calls?limit=1');
    assert.equal(calls.status, 200);
    assert.equal(calls.body.calls[0].callId, 'c1');
    assert.equal(calls.body.nextBefore, 10);
    assert.equal((await api('GET', '/api/calls?userId=5')).body.calls.length, 0);
    assert.deepEqual(logged, []);
  });
});
