import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Binding, type ChangeReason, LocationService } from '../../src/registrar/location.ts';
import { type BindingPersistence, WriteBehind } from '../../src/registrar/write-behind.ts';

const T0 = 1_700_000_000_000;

function binding(aor: string, key: string, over: Partial<Binding> = {}): Binding {
  return {
    aor, key, contact: `sip:${key}@192.168.1.2:5060`, params: '', q: 1, expiresAt: T0 + 60_000, callId: 'c1', cseq: 1,
    flow: { transport: 'udp', remoteAddress: '203.0.113.5', remotePort: 40000 }, updatedAt: T0, ...over,
  };
}

function setup(): { now: { t: number }; loc: LocationService; events: Array<[string, string | undefined, ChangeReason]> } {
  const now = { t: T0 };
  const loc = new LocationService({ now: () => now.t, sweepIntervalMs: 60_000 });
  const events: Array<[string, string | undefined, ChangeReason]> = [];
  loc.on('change', (aor, b, reason) => events.push([aor, b?.key, reason]));
  return { now, loc, events };
}

test('upsert / get / lookup order: q descending, then most recent', () => {
  const { loc, events } = setup();
  loc.upsert(binding('1', 'a', { q: 0.5, updatedAt: T0 }));
  loc.upsert(binding('1', 'b', { q: 1, updatedAt: T0 - 10 }));
  loc.upsert(binding('1', 'c', { q: 0.5, updatedAt: T0 + 5 }));
  loc.upsert(binding('2', 'x'));
  assert.deepEqual(loc.lookup('1').map((b) => b.key), ['b', 'c', 'a']);
  assert.equal(loc.count(), 4);
  assert.equal(loc.aorCount(), 2);
  assert.equal(loc.get('1', 'a')?.q, 0.5);
  assert.equal(loc.get('1', 'zz'), undefined);
  assert.deepEqual(loc.lookup('nobody'), []);
  loc.upsert(binding('1', 'a', { cseq: 2 }));
  assert.equal(loc.count(), 4);
  assert.deepEqual(events.map((e) => e[2]), ['add', 'add', 'add', 'add', 'refresh']);
  loc.close();
});

test('remove / removeAll / removeByConnection', () => {
  const { loc, events } = setup();
  loc.upsert(binding('1', 'a'));
  loc.upsert(binding('1', 'b', { flow: { transport: 'wss', remoteAddress: '198.51.100.1', remotePort: 1, connectionId: 7 } }));
  loc.upsert(binding('2', 'c', { flow: { transport: 'tcp', remoteAddress: '198.51.100.1', remotePort: 2, connectionId: 7 }, regId: 1 }));
  assert.equal(loc.remove('1', 'a'), true);
  assert.equal(loc.remove('1', 'a'), false);
  assert.equal(loc.removeByConnection(7, true), 1); // only the outbound one
  assert.equal(loc.removeByConnection(7), 1);
  assert.equal(loc.count(), 0);
  assert.equal(loc.aorCount(), 0);
  loc.upsert(binding('3', 'a'));
  loc.upsert(binding('3', 'b'));
  assert.equal(loc.removeAll('3'), 2);
  assert.equal(loc.count(), 0);
  assert.deepEqual(events.filter((e) => e[2] === 'remove').map((e) => `${e[0]}/${e[1]}`), ['1/a', '2/c', '1/b', '3/a', '3/b']);
  loc.close();
});

test('expired bindings disappear from lookup at once and are swept with an expire event', () => {
  const { now, loc, events } = setup();
  loc.upsert(binding('1', 'a', { expiresAt: T0 + 1000 }));
  loc.upsert(binding('1', 'b', { expiresAt: T0 + 5000 }));
  now.t = T0 + 1000;
  assert.deepEqual(loc.lookup('1').map((b) => b.key), ['b']);
  assert.equal(loc.get('1', 'a'), undefined);
  assert.equal(loc.count(), 2);
  loc.sweep();
  assert.equal(loc.count(), 1);
  assert.deepEqual(events.at(-1), ['1', 'a', 'expire']);
  // An upsert of an expired-but-unswept key counts as an add.
  loc.upsert(binding('1', 'c', { expiresAt: T0 + 1500 }));
  now.t = T0 + 2000;
  loc.upsert(binding('1', 'c', { expiresAt: T0 + 9000 }));
  assert.deepEqual(events.at(-1), ['1', 'c', 'add']);
  now.t = T0 + 10_000;
  loc.sweep();
  assert.equal(loc.count(), 0);
  assert.equal(loc.aorCount(), 0);
  loc.close();
});

test('listener exceptions are caught and logged, other listeners still run', () => {
  const logged: string[] = [];
  const loc = new LocationService({ log: (m) => logged.push(m) });
  let seen = 0;
  loc.on('change', () => { throw new Error('boom'); });
  loc.on('change', () => { seen++; });
  loc.upsert(binding('1', 'a', { expiresAt: Date.now() + 60_000 }));
  assert.equal(seen, 1);
  assert.equal(logged.length, 1);
  loc.close();
});

test('100,000 bindings stay lean', () => {
  const loc = new LocationService();
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 100_000; i++) {
    loc.upsert({
      aor: String(i), key: `uri:sip:careflow_${i}@10.0.${i >> 8 & 255}.${i & 255}:5060`,
      contact: `sip:careflow_${i}@10.0.${i >> 8 & 255}.${i & 255}:5060;ob`, params: ';+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000000>"',
      q: 1, expiresAt: Date.now() + 3_600_000, callId: `${i}-4f3a9b2c1d@10.0.0.1`, cseq: i,
      flow: { transport: 'udp', remoteAddress: '203.0.113.9', remotePort: 1024 + (i % 60000) }, updatedAt: Date.now(),
      userAgent: 'Yealink SIP-T46U 108.86.0.20',
    });
  }
  const perBinding = (process.memoryUsage().heapUsed - before) / 100_000;
  assert.equal(loc.count(), 100_000);
  assert.ok(perBinding < 1500, `~${Math.round(perBinding)} bytes per binding`);
  loc.close();
});

// ---- write-behind ---------------------------------------------------------------------------

class FakePersistence implements BindingPersistence {
  rows = new Map<string, Binding>();
  batches: Array<{ upserts: number; deletes: number }> = [];
  failNext = 0;
  async saveBindings(upserts: Binding[], deletes: Array<{ aor: string; key: string }>): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('disk full');
    }
    this.batches.push({ upserts: upserts.length, deletes: deletes.length });
    for (const b of upserts) this.rows.set(`${b.aor}/${b.key}`, b);
    for (const d of deletes) this.rows.delete(`${d.aor}/${d.key}`);
  }
  async loadBindings(nowMs: number): Promise<Binding[]> {
    return [...this.rows.values()].filter((b) => b.expiresAt > nowMs);
  }
}

test('write-behind coalesces changes: one write per key with its last state', async () => {
  const { now, loc } = setup();
  const store = new FakePersistence();
  const wb = new WriteBehind({ location: loc, persistence: store, flushIntervalMs: 60_000, now: () => now.t, log: () => {} });
  for (let cseq = 1; cseq <= 50; cseq++) loc.upsert(binding('1', 'a', { cseq }));
  loc.upsert(binding('1', 'b'));
  loc.upsert(binding('2', 'c'));
  loc.remove('2', 'c');
  assert.equal(wb.pending, 3);
  await wb.flush();
  assert.deepEqual(store.batches, [{ upserts: 2, deletes: 1 }]);
  assert.equal(store.rows.get('1/a')?.cseq, 50);
  assert.equal(wb.pending, 0);
  await wb.flush(); // nothing dirty: no write
  assert.equal(store.batches.length, 1);
  // Expiry deletes the row.
  now.t = T0 + 120_000;
  loc.sweep();
  await wb.flush();
  assert.equal(store.rows.size, 0);
  await wb.close();
  loc.close();
});

test('write-behind keeps the dirty set when saving fails', async () => {
  const { loc } = setup();
  const store = new FakePersistence();
  const errors: string[] = [];
  const wb = new WriteBehind({ location: loc, persistence: store, flushIntervalMs: 60_000, now: () => T0, log: (m) => errors.push(m) });
  loc.upsert(binding('1', 'a'));
  store.failNext = 1;
  await assert.rejects(wb.flush(), /disk full/);
  assert.equal(errors.length, 1);
  assert.equal(wb.pending, 1);
  loc.upsert(binding('1', 'b'));
  await wb.flush();
  assert.equal(store.rows.size, 2);
  await wb.close();
  loc.close();
});

test('write-behind: concurrent flushes do not overlap; close flushes; timer flushes', async () => {
  const { loc } = setup();
  let inFlight = 0;
  let maxInFlight = 0;
  const rows = new Map<string, Binding>();
  const slow: BindingPersistence = {
    async saveBindings(upserts) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      for (const b of upserts) rows.set(b.key, b);
      inFlight--;
    },
    async loadBindings() { return []; },
  };
  const wb = new WriteBehind({ location: loc, persistence: slow, flushIntervalMs: 10, now: () => T0 });
  loc.upsert(binding('1', 'a'));
  const p1 = wb.flush();
  loc.upsert(binding('1', 'b'));
  const p2 = wb.flush();
  await Promise.all([p1, p2]);
  assert.equal(maxInFlight, 1);
  assert.equal(rows.size, 2);
  loc.upsert(binding('1', 'c'));
  // bounded wait for the 10 ms interval timer (no fixed sleep: the machine may be loaded)
  for (let i = 0; i < 200 && rows.size < 3; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(rows.size, 3, 'the interval timer flushed');
  loc.upsert(binding('1', 'd'));
  await wb.close();
  assert.equal(rows.size, 4, 'close flushed');
  loc.upsert(binding('1', 'e'));
  assert.equal(wb.pending, 0, 'no longer subscribed after close');
  loc.close();
});

test('write-behind restore loads live bindings without marking them dirty', async () => {
  const store = new FakePersistence();
  store.rows.set('1/a', binding('1', 'a', { expiresAt: T0 + 60_000 }));
  store.rows.set('1/b', binding('1', 'b', { expiresAt: T0 - 1 }));
  const { loc } = setup();
  const wb = new WriteBehind({ location: loc, persistence: store, flushIntervalMs: 60_000, now: () => T0 });
  assert.equal(await wb.restore(), 1);
  assert.deepEqual(loc.lookup('1').map((b) => b.key), ['a']);
  assert.equal(wb.pending, 0);
  await wb.close();
  loc.close();
});
