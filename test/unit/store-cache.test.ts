// The credentials cache of the SQLite store must never serve stale data: a change made by
// another connection (the CLI while the server runs) or through this one is seen at once.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { userDigests } from '../../src/accounts/credentials.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

const plan = { prefix: 'care4w-', start: 1000001 };
const digests = (password: string) => (l: { id: number; sipUsername: string; number: string }) => userDigests(l, 'r', password);

test('credentials cache: writes by another connection and by this one are seen on the next lookup', async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'cf-cache-')), 'db.sqlite');
  const server = new SqliteStore(path);
  const cli = new SqliteStore(path);
  // The data_version check runs at most every 10 ms; wait that long after each foreign write.
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 15));
  assert.equal(await server.findCredentials('careflow_1'), undefined, 'unknown user (negative answer cached)');
  const u = await cli.createUser({ name: 'A', digests: digests('first-password-1') }, plan);
  await settle();
  const c1 = await server.findCredentials(u.sipUsername);
  assert.ok(c1 !== undefined, 'a user added by another connection is found at once');
  assert.equal((await server.findCredentials(u.number))?.userId, u.id);
  await cli.updateUser(u.id, { enabled: false });
  await settle();
  assert.equal((await server.findCredentials(u.sipUsername))?.enabled, false, 'disabled by the other connection');
  await cli.updateUser(u.id, { digests: userDigests(u, 'r', 'second-password-2') });
  await settle();
  assert.notEqual((await server.findCredentials(u.sipUsername))?.ha1Md5, c1.ha1Md5, 'new password seen at once');
  await server.updateUser(u.id, { enabled: true });
  assert.equal((await server.findCredentials(u.sipUsername))?.enabled, true, 'own write seen at once');
  await cli.deleteUser(u.id);
  await settle();
  assert.equal(await server.findCredentials(u.sipUsername), undefined, 'removal seen at once');
  await server.close();
  await cli.close();
});
