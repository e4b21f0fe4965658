import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

function careflow(dataDir: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '', CAREFLOW_DOMAIN: 'sip.example.org', CAREFLOW_HTTP_LISTEN: '127.0.0.1:9' };
  const r = spawnSync(process.execPath, [MAIN, ...args, '--data-dir', dataDir], { encoding: 'utf8', env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('careflow CLI', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'careflow-cli-')), 'data');

  it('user add --json prints exactly id, number, sipUsername, password, domain', () => {
    const r = careflow(dir, 'user', 'add', '--name', 'Alice Smith', '--json');
    assert.equal(r.code, 0, r.stderr);
    const account = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(account), ['id', 'number', 'sipUsername', 'password', 'domain']);
    assert.deepEqual({ ...account, password: 'x' }, { id: 1, number: 'care4w-1000001', sipUsername: 'careflow_1', password: 'x', domain: 'sip.example.org' });
    assert.match(account.password, /^[A-Za-z0-9]{20}$/);
  });

  it('plain user add explains how to connect a phone', () => {
    const r = careflow(dir, 'user', 'add', '--name', 'Bob', '--password', 'correct-horse-battery');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Port: +5060 \(UDP or TCP\)/);
    assert.match(r.stdout, /Username: +careflow_2 or care4w-1000002/);
    assert.match(r.stdout, /Password: +correct-horse-battery/);
  });

  it('lists, shows (server offline), disables and removes', () => {
    const list = careflow(dir, 'user', 'list', '--json');
    assert.deepEqual(JSON.parse(list.stdout).map((u: { sipUsername: string }) => u.sipUsername), ['careflow_1', 'careflow_2']);
    const show = careflow(dir, 'user', 'show', 'care4w-1000002');
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /Online: +unknown \(server not reachable at http:\/\/127\.0\.0\.1:9/);
    const showJson = JSON.parse(careflow(dir, 'user', 'show', 'careflow_1', '--json').stdout);
    assert.equal(showJson.serverReachable, false);
    assert.equal(showJson.online, null);
    assert.equal(careflow(dir, 'user', 'disable', '2').code, 0);
    assert.equal(JSON.parse(careflow(dir, 'user', 'show', '2', '--json').stdout).enabled, false);
    assert.equal(careflow(dir, 'user', 'remove', '2').code, 0);
    const gone = careflow(dir, 'user', 'show', '2');
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no user "2"/);
  });

  it('imports CSV and prints the add --json objects (numbers continue from the highest left)', () => {
    const csv = join(dir, '..', 'users.csv');
    writeFileSync(csv, 'name,number\n"Smith, John",\n"Doe ""JD""",desk-9\n');
    const r = careflow(dir, 'user', 'import', csv, '--json');
    assert.equal(r.code, 0, r.stderr);
    const created = JSON.parse(r.stdout);
    assert.deepEqual(created.map((a: { number: string }) => a.number), ['care4w-1000002', 'desk-9']);
    assert.deepEqual(Object.keys(created[0]), ['id', 'number', 'sipUsername', 'password', 'domain']);
  });

  it('passwd --json rotates; calls prints an empty log', () => {
    const r = careflow(dir, 'user', 'passwd', '1', '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).sipUsername, 'careflow_1');
    const calls = careflow(dir, 'calls', '--json');
    assert.deepEqual(JSON.parse(calls.stdout), []);
  });

  it('exits 2 naming the bad flag or field', () => {
    const unknown = careflow(dir, 'user', 'add', '--nmae', 'x');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown flag --nmae/);
    const missing = careflow(dir, 'user', 'add');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--name is required/);
    const badConfig = careflow(dir, 'user', 'list', '--sip-listen', 'abc');
    assert.equal(badConfig.code, 2);
    assert.match(badConfig.stderr, /--sip-listen: expected host:port like 0\.0\.0\.0:5060, got "abc"/);
    const badCommand = careflow(dir, 'frobnicate');
    assert.equal(badCommand.code, 2);
    const badCsv = join(dir, '..', 'bad.csv');
    writeFileSync(badCsv, 'name,number\nA,bad number\n');
    const csv = careflow(dir, 'user', 'import', badCsv);
    assert.equal(csv.code, 2);
    assert.match(csv.stderr, /line 2, column 2 \(number\)/);
  });

  it('--help works everywhere', () => {
    for (const args of [['--help'], ['user', '--help'], ['user', 'add', '--help'], ['calls', '--help'], ['serve', '--help']]) {
      const r = careflow(dir, ...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /Usage: careflow/);
    }
  });
});
