/**
 * Imports 100,000 generated users (CSV with a name column; passwords generated, 4 HA1s each)
 * into a fresh SQLite store in a temp directory, in one transaction, and prints users/s.
 *   node bench/import.bench.ts [COUNT]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccountService } from '../src/accounts/account-service.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';

const count = Number(process.argv[2] ?? 100_000);
const dir = mkdtempSync(join(tmpdir(), 'careflow-bench-'));
const store = new SqliteStore(join(dir, 'careflow.sqlite'));
const accounts = new AccountService({ store, domain: 'bench.example', numbers: { prefix: 'care4w-', start: 1000001 } });

const lines = ['name'];
for (let i = 0; i < count; i++) lines.push(`"User ${i}, Bench"`);
const csv = `${lines.join('\n')}\n`;

const t0 = performance.now();
const created = await accounts.importCsv(csv);
const seconds = (performance.now() - t0) / 1000;

const t1 = performance.now();
const lookups = 10_000;
for (let i = 0; i < lookups; i++) await store.findCredentials(i % 2 === 0 ? `careflow_${1 + (i % count)}` : `care4w-${1000001 + (i % count)}`);
const lookupUs = ((performance.now() - t1) * 1000) / lookups;

console.log(`imported ${created.length} users in ${seconds.toFixed(2)} s: ${Math.round(created.length / seconds)} users/s`);
console.log(`findCredentials: ${lookupUs.toFixed(1)} us per lookup (${lookups} lookups)`);
await store.close();
rmSync(dir, { recursive: true, force: true });
