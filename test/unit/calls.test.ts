import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CallLog, talkSeconds } from '../../src/calls/call-log.ts';
import type { CallRecord } from '../../src/calls/types.ts';
import { CareflowError } from '../../src/config/errors.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

const call = (over: Partial<CallRecord> = {}): CallRecord => ({
  callId: 'abc@host', callerUserId: 1, callerUri: 'sip:careflow_1@d', calleeUserId: 2, calleeUri: 'sip:care4w-1000002@d',
  startedAt: 1_000, answeredAt: 3_000, endedAt: 63_000, disposition: 'answered', finalStatus: 200,
  answeredDevice: 'sip:b@192.0.2.2:5060', endedBy: 'caller', ...over,
});

describe('CallLog', () => {
  it('records calls and lists newest first with filters and paging', async () => {
    const store = new SqliteStore(':memory:');
    const log = new CallLog(store);
    const first = await log.record(call());
    assert.equal(first.id, 1);
    assert.equal(talkSeconds(first), 60);
    await log.record(call({ callId: 'b', startedAt: 2_000, answeredAt: undefined, disposition: 'busy', finalStatus: 486, callerUserId: 3, calleeUserId: undefined, answeredDevice: undefined, endedBy: undefined }));
    await log.record(call({ callId: 'c', startedAt: 3_000, disposition: 'no_answer', finalStatus: 480, answeredAt: undefined }));
    assert.deepEqual((await log.list()).map((c) => c.callId), ['c', 'b', 'abc@host']);
    assert.deepEqual((await log.list({ limit: 1, before: 3_000 })).map((c) => c.callId), ['b']);
    assert.deepEqual((await log.list({ userId: 2 })).map((c) => c.callId), ['c', 'abc@host']);
    const busy = (await log.list({ userId: 3 }))[0];
    assert.equal(busy?.answeredAt, null);
    assert.equal(busy?.calleeUserId, null);
    assert.equal(busy?.disposition, 'busy');
    await store.close();
  });

  it('refuses records that do not identify a call', async () => {
    const store = new SqliteStore(':memory:');
    const log = new CallLog(store);
    await assert.rejects(log.record(call({ disposition: 'hung' as CallRecord['disposition'] })), (e: unknown) => e instanceof CareflowError && e.field === 'disposition');
    await assert.rejects(log.record(call({ finalStatus: 42 })), (e: unknown) => e instanceof CareflowError && e.field === 'finalStatus');
    await assert.rejects(log.record(call({ callId: '' })), (e: unknown) => e instanceof CareflowError && e.field === 'callId');
    await store.close();
  });

  it('calls ended in one event-loop turn are committed together; a bad row costs only itself', async () => {
    const store = new SqliteStore(':memory:');
    const batches: string[][] = [];
    // The real store, watched: which rows each insertCalls call (one transaction) carried.
    const insertCalls = store.insertCalls.bind(store);
    store.insertCalls = async (rows) => {
      batches.push(rows.map((r) => r.callId));
      if (rows.some((r) => r.callId === 'bad')) throw new Error('constraint failed');
      return insertCalls(rows);
    };
    const log = new CallLog(store);
    const turn = await Promise.all([log.record(call({ callId: 'x1' })), log.record(call({ callId: 'x2' })), log.record(call({ callId: 'x3' }))]);
    assert.deepEqual(batches, [['x1', 'x2', 'x3']]);
    assert.deepEqual(turn.map((c) => c.id), [1, 2, 3]);
    batches.length = 0;
    const results = await Promise.allSettled([log.record(call({ callId: 'y1' })), log.record(call({ callId: 'bad' })), log.record(call({ callId: 'y2' }))]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual(batches, [['y1', 'bad', 'y2'], ['y1'], ['bad'], ['y2']]);
    assert.deepEqual((await log.list()).map((c) => c.callId), ['y2', 'y1', 'x3', 'x2', 'x1']);
    await store.close();
  });

  it('a recorded call survives the process being killed without close', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'careflow-calls-')), 'careflow.sqlite');
    const child = `
      import { SqliteStore } from ${JSON.stringify(new URL('../../src/store/sqlite-store.ts', import.meta.url).pathname)};
      import { CallLog } from ${JSON.stringify(new URL('../../src/calls/call-log.ts', import.meta.url).pathname)};
      const log = new CallLog(new SqliteStore(${JSON.stringify(path)}));
      await log.record(${JSON.stringify(call())});
      process.kill(process.pid, 'SIGKILL');
    `;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8' });
    assert.equal(result.signal, 'SIGKILL', result.stderr);
    const store = new SqliteStore(path);
    const calls = await new CallLog(store).list();
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.callId, 'abc@host');
    await store.close();
  });
});
