import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { CareflowError } from '../../src/config/errors.ts';
import { MIGRATIONS, migrate } from '../../src/store/migrations.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import type { BindingRow, NewUser, UserDigests } from '../../src/store/types.ts';

const plan = { prefix: 'care4w-', start: 1000001 };
const dbPath = (): string => join(mkdtempSync(join(tmpdir(), 'careflow-store-')), 'careflow.sqlite');
const digests = (tag: string): UserDigests => ({ realm: 'r.example', ha1Md5: `${tag}-md5`, ha1Sha256: `${tag}-sha`, ha1Md5Number: `${tag}-md5n`, ha1Sha256Number: `${tag}-shan` });
const user = (name: string, number?: string): NewUser => ({ name, number, digests: (l) => digests(l.sipUsername) });

function binding(userId: number, key: string, expiresAtMs: number): BindingRow {
  return {
    userId, bindingKey: key, contactUri: `sip:${key}@192.0.2.1:5060`, contactParams: ';+sip.instance="<urn:uuid:1>";reg-id=1', expiresAtMs, q: 0.5, instance: '<urn:uuid:1>', regId: 1,
    callId: 'c1', cseq: 7, path: null, received: null, sourceTransport: 'udp', sourceAddress: '192.0.2.1', sourcePort: 5060,
    userAgent: 'baresip', updatedAt: 1,
  };
}

describe('migrations', () => {
  it('apply once and are idempotent', () => {
    const db = new DatabaseSync(':memory:');
    assert.deepEqual(migrate(db), MIGRATIONS.map((m) => m.version));
    assert.deepEqual(migrate(db), []);
    const rows = db.prepare('SELECT version, name FROM schema_migrations').all();
    assert.equal(rows.length, MIGRATIONS.length);
    db.close();
  });

  it('refuse a database from a newer careflow', () => {
    const db = new DatabaseSync(':memory:');
    migrate(db);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)").run();
    assert.throws(() => migrate(db), /schema version 999, newer/);
  });

  it('reopening a file store keeps data and applies nothing twice', async () => {
    const path = dbPath();
    const a = new SqliteStore(path);
    await a.createUser(user('Alice'), plan);
    await a.close();
    const b = new SqliteStore(path);
    assert.equal((await b.listUsers({})).length, 1);
    await b.close();
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });
});

describe('SqliteStore users', () => {
  it('creates users with careflow_<id> and sequential numbers', async () => {
    const s = new SqliteStore(':memory:');
    const a = await s.createUser(user('Alice'), plan);
    const b = await s.createUser(user('Bob'), plan);
    assert.equal(a.sipUsername, 'careflow_1');
    assert.equal(a.number, 'care4w-1000001');
    assert.equal(b.sipUsername, 'careflow_2');
    assert.equal(b.number, 'care4w-1000002');
    assert.equal(a.enabled, true);
    assert.equal(await s.nextNumber(plan), 'care4w-1000003');
    await s.close();
  });

  it('numbers continue above the highest, honour explicit numbers and other prefixes', async () => {
    const s = new SqliteStore(':memory:');
    await s.createUser(user('A', 'care4w-1000050'), plan);
    await s.createUser(user('B', 'reception'), plan);
    assert.equal((await s.createUser(user('C'), plan)).number, 'care4w-1000051');
    assert.equal(await s.nextNumber({ prefix: 'x-', start: 10 }), 'x-10');
    const bulk = await s.createUsersBulk([user('D'), user('E', 'care4w-1000060'), user('F')], plan);
    assert.deepEqual(bulk.map((u) => u.number), ['care4w-1000061', 'care4w-1000060', 'care4w-1000062']);
    await s.close();
  });

  it('never reuses the id of a deleted user', async () => {
    const s = new SqliteStore(':memory:');
    await s.createUser(user('A'), plan);
    const b = await s.createUser(user('B'), plan);
    assert.equal(await s.deleteUser(b.id), true);
    assert.equal(await s.deleteUser(b.id), false);
    assert.equal((await s.createUser(user('C'), plan)).sipUsername, 'careflow_3');
    await s.close();
  });

  it('rejects a taken number with NUMBER_TAKEN and rolls the batch back', async () => {
    const s = new SqliteStore(':memory:');
    await s.createUser(user('A', 'n-1'), plan);
    await assert.rejects(s.createUsersBulk([user('B'), user('C', 'n-1')], plan), (e: unknown) => e instanceof CareflowError && e.code === 'NUMBER_TAKEN' && e.field === 'number');
    assert.equal(await s.countUsers(), 1);
    await s.close();
  });

  it('finds, lists, updates and deletes', async () => {
    const s = new SqliteStore(':memory:');
    const a = await s.createUser(user('Alice Smith'), plan);
    await s.createUser(user('Bob 100%'), plan);
    assert.equal((await s.findUserBySipUsernameOrNumber('careflow_1'))?.id, a.id);
    assert.equal((await s.findUserBySipUsernameOrNumber('care4w-1000002'))?.name, 'Bob 100%');
    assert.equal(await s.findUserBySipUsernameOrNumber('careflow_99'), undefined);
    assert.deepEqual((await s.listUsers({ query: 'smith' })).map((u) => u.id), [1]);
    assert.deepEqual((await s.listUsers({ query: '100%' })).map((u) => u.id), [2]);
    assert.deepEqual((await s.listUsers({ query: '_' })).map((u) => u.id), [1, 2]); // careflow_ matches both, literally
    assert.deepEqual((await s.listUsers({ limit: 1, offset: 1 })).map((u) => u.id), [2]);
    assert.equal(await s.countUsers('alice'), 1);
    const renamed = await s.updateUser(a.id, { name: 'Alice Jones', enabled: false });
    assert.equal(renamed?.name, 'Alice Jones');
    assert.equal(renamed?.enabled, false);
    assert.equal(await s.updateUser(42, { name: 'x' }), undefined);
    await s.close();
  });

  it('findCredentials returns the HA1 pair of the exact login name', async () => {
    const s = new SqliteStore(':memory:');
    await s.createUser(user('Alice'), plan);
    const bySip = await s.findCredentials('careflow_1');
    assert.deepEqual(bySip, { userId: 1, sipUsername: 'careflow_1', number: 'care4w-1000001', enabled: true, realm: 'r.example', ha1Md5: 'careflow_1-md5', ha1Sha256: 'careflow_1-sha' });
    const byNumber = await s.findCredentials('care4w-1000001');
    assert.equal(byNumber?.ha1Md5, 'careflow_1-md5n');
    assert.equal(byNumber?.ha1Sha256, 'careflow_1-shan');
    assert.equal(await s.findCredentials('nobody'), undefined);
    await s.updateUser(1, { enabled: false, digests: digests('new') });
    const after = await s.findCredentials('careflow_1');
    assert.equal(after?.enabled, false);
    assert.equal(after?.ha1Md5, 'new-md5');
    await s.close();
  });
});

describe('SqliteStore bindings and settings', () => {
  it('saves, replaces, deletes and loads only live bindings; they go with the user', async () => {
    const s = new SqliteStore(':memory:');
    await s.createUser(user('A'), plan);
    await s.createUser(user('B'), plan);
    await s.saveBindings([binding(1, 'k1', 5000), binding(1, 'k2', 500), binding(2, 'k3', 5000)], []);
    await s.saveBindings([{ ...binding(1, 'k1', 9000), cseq: 8 }], [{ userId: 2, bindingKey: 'k3' }]);
    const live = await s.loadBindings(1000);
    assert.deepEqual(live.map((b) => [b.userId, b.bindingKey, b.expiresAtMs, b.cseq]), [[1, 'k1', 9000, 8]]);
    assert.deepEqual(live[0], { ...binding(1, 'k1', 9000), cseq: 8 });
    await s.deleteUser(1);
    assert.deepEqual(await s.loadBindings(0), []);
    await s.close();
  });

  it('keeps settings', async () => {
    const s = new SqliteStore(':memory:');
    assert.equal(await s.getSetting('x'), undefined);
    await s.setSetting('x', '1');
    await s.setSetting('x', '2');
    assert.equal(await s.getSetting('x'), '2');
    await s.check();
    await s.close();
  });
});
