import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { AccountService } from '../../src/accounts/account-service.ts';
import { PASSWORD_ALPHABET, generatePassword, ha1 } from '../../src/accounts/credentials.ts';
import { parseCsv, parseUserCsv } from '../../src/accounts/csv.ts';
import { CareflowError } from '../../src/config/errors.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

const plan = { prefix: 'care4w-', start: 1000001 };
const service = (domain = 'sip.example.org'): { store: SqliteStore; accounts: AccountService } => {
  const store = new SqliteStore(':memory:');
  return { store, accounts: new AccountService({ store, domain, numbers: plan }) };
};
const code = (c: string, pattern?: RegExp) => (e: unknown): boolean =>
  e instanceof CareflowError && e.code === c && (pattern === undefined || pattern.test(e.message));

describe('credentials', () => {
  it('HA1 matches the RFC 2617 vector', () => {
    assert.equal(ha1('MD5', 'Mufasa', 'testrealm@host.com', 'Circle Of Life'), '939e7578ed9e3c518a452acee763bce9');
    assert.equal(ha1('SHA-256', 'Mufasa', 'testrealm@host.com', 'Circle Of Life'), createHash('sha256').update('Mufasa:testrealm@host.com:Circle Of Life').digest('hex'));
  });

  it('generates strong unambiguous passwords', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = generatePassword();
      assert.equal(p.length, 20);
      for (const ch of p) assert.ok(PASSWORD_ALPHABET.includes(ch), ch);
      seen.add(p);
    }
    assert.equal(seen.size, 200);
    assert.doesNotMatch(PASSWORD_ALPHABET, /[0O1lIo]/);
  });
});

describe('AccountService', () => {
  it('adds a user and stores HA1s for both login names, never the password', async () => {
    const { store, accounts } = service();
    const a = await accounts.add({ name: '  Alice Smith ' });
    assert.deepEqual(Object.keys(a), ['id', 'number', 'sipUsername', 'password', 'domain']);
    assert.equal(a.sipUsername, 'careflow_1');
    assert.equal(a.number, 'care4w-1000001');
    assert.equal(a.domain, 'sip.example.org');
    const bySip = await store.findCredentials('careflow_1');
    assert.equal(bySip?.ha1Md5, ha1('MD5', 'careflow_1', 'sip.example.org', a.password));
    assert.equal(bySip?.ha1Sha256, ha1('SHA-256', 'careflow_1', 'sip.example.org', a.password));
    const byNumber = await store.findCredentials('care4w-1000001');
    assert.equal(byNumber?.ha1Md5, ha1('MD5', 'care4w-1000001', 'sip.example.org', a.password));
    assert.equal(byNumber?.ha1Sha256, ha1('SHA-256', 'care4w-1000001', 'sip.example.org', a.password));
    assert.equal((await accounts.show(1)).name, 'Alice Smith');
    await store.close();
  });

  it('validates name, number and password with the field named', async () => {
    const { store, accounts } = service();
    await assert.rejects(accounts.add({ name: ' ' }), (e: unknown) => e instanceof CareflowError && e.field === 'name');
    await assert.rejects(accounts.add({ name: 'A', number: 'careflow_9' }), (e: unknown) => e instanceof CareflowError && e.field === 'number');
    await assert.rejects(accounts.add({ name: 'A', password: 'short' }), code('INVALID_INPUT', /at least 12/));
    await accounts.add({ name: 'A', number: 'desk-1' });
    await assert.rejects(accounts.add({ name: 'B', number: 'desk-1' }), code('NUMBER_TAKEN'));
    await store.close();
  });

  it('resolves users by id, number or SIP username, and refuses ambiguity', async () => {
    const { store, accounts } = service();
    await accounts.add({ name: 'A' });
    await accounts.add({ name: 'B', number: '1' });
    assert.equal((await accounts.show('careflow_2')).name, 'B');
    assert.equal((await accounts.show('care4w-1000001')).name, 'A');
    await assert.rejects(accounts.show('1'), code('INVALID_INPUT', /careflow_1 or careflow_2/));
    assert.equal((await accounts.show(1)).name, 'A');
    await assert.rejects(accounts.show('nobody'), code('NOT_FOUND'));
    await store.close();
  });

  it('rotates passwords, disables, renames and removes', async () => {
    const { store, accounts } = service();
    const a = await accounts.add({ name: 'A', password: 'correct-horse-battery' });
    const rotated = await accounts.passwd(a.id);
    assert.notEqual(rotated.password, a.password);
    assert.equal((await store.findCredentials('careflow_1'))?.ha1Md5, ha1('MD5', 'careflow_1', 'sip.example.org', rotated.password));
    const explicit = await accounts.passwd('careflow_1', 'another-good-secret');
    assert.equal(explicit.password, 'another-good-secret');
    assert.equal((await accounts.setEnabled(1, false)).enabled, false);
    assert.equal((await store.findCredentials('care4w-1000001'))?.enabled, false);
    assert.equal((await accounts.update(1, { name: 'Z' })).name, 'Z');
    await assert.rejects(accounts.update(1, { enabled: 'yes' }), (e: unknown) => e instanceof CareflowError && e.field === 'enabled');
    await accounts.remove(1);
    assert.equal(await store.findCredentials('careflow_1'), undefined);
    await store.close();
  });

  it('flags users keyed with an old domain and re-keys them on passwd', async () => {
    const store = new SqliteStore(':memory:');
    await new AccountService({ store, domain: 'old.example', numbers: plan }).add({ name: 'A' });
    const accounts = new AccountService({ store, domain: 'new.example', numbers: plan });
    assert.equal(accounts.needsRekey(await accounts.show(1)), true);
    const r = await accounts.passwd(1);
    assert.equal(accounts.needsRekey(await accounts.show(1)), false);
    assert.equal((await store.findCredentials('careflow_1'))?.ha1Md5, ha1('MD5', 'careflow_1', 'new.example', r.password));
    await store.close();
  });
});

describe('CSV import', () => {
  it('parses quoted fields with commas, doubled quotes and line breaks', () => {
    const records = parseCsv('\ufeffname,number\r\n"Smith, John",x-1\n"Say ""hi""",\n\n"two\nlines",x-3\n');
    assert.deepEqual(records.map((r) => [r.line, r.fields]), [
      [1, ['name', 'number']],
      [2, ['Smith, John', 'x-1']],
      [3, ['Say "hi"', '']],
      [5, ['two\nlines', 'x-3']],
    ]);
  });

  it('names line and column of malformed input', () => {
    assert.throws(() => parseCsv('name\n"open'), code('CSV_INVALID', /line 2, column 1: quoted field is never closed/));
    assert.throws(() => parseCsv('name\nab"c"'), code('CSV_INVALID', /line 2, column 1: a quote inside an unquoted field/));
    assert.throws(() => parseUserCsv('name,phone\nA,1'), code('CSV_INVALID', /line 1, column 2: unknown column "phone"/));
    assert.throws(() => parseUserCsv('number\n1'), code('CSV_INVALID', /no name column/));
    assert.throws(() => parseUserCsv('name,number\nSmith, John,x-1'), code('CSV_INVALID', /line 2: 3 fields, the header has 2/));
  });

  it('imports all rows in one go, generating passwords where absent', async () => {
    const { store, accounts } = service();
    const created = await accounts.importCsv('name,number,password\n"Smith, John",,\n"Doe ""JD"" Jane",x-5,abcdefghijklmnop\nEve,,\n');
    assert.deepEqual(created.map((a) => [a.id, a.number, a.sipUsername]), [[1, 'care4w-1000001', 'careflow_1'], [2, 'x-5', 'careflow_2'], [3, 'care4w-1000002', 'careflow_3']]);
    assert.equal(created[1]?.password, 'abcdefghijklmnop');
    assert.equal(created[0]?.password.length, 20);
    assert.equal((await accounts.show(2)).name, 'Doe "JD" Jane');
    assert.equal((await store.findCredentials('x-5'))?.ha1Md5, ha1('MD5', 'x-5', 'sip.example.org', 'abcdefghijklmnop'));
    await store.close();
  });

  it('rejects the whole file on a bad row, naming line and column', async () => {
    const { store, accounts } = service();
    await assert.rejects(accounts.importCsv('name,password\nA,\nB,short\n'), code('CSV_INVALID', /^line 3, column 2 \(password\): too short/));
    await assert.rejects(accounts.importCsv('number,name\nx-1,A\nx-1,B\n'), code('CSV_INVALID', /line 3, column 1 \(number\): number x-1 is also on line 2/));
    await assert.rejects(accounts.importCsv('name\n""\n'), code('CSV_INVALID', /line 2, column 1 \(name\): required/));
    assert.equal(await accounts.count(), 0);
    await accounts.add({ name: 'Taken', number: 'x-9' });
    await assert.rejects(accounts.importCsv('name,number\nA,x-9\n'), code('NUMBER_TAKEN', /line 2, column 2/));
    await store.close();
  });
});
