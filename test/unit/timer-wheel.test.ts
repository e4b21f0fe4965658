// The timer wheel with the real clock: it sleeps while nothing is scheduled (no 10 ms
// wake-ups on an idle server) and wakes for the next timer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TimerWheel } from '../../src/sip/timer-wheel.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, pred: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('the interval runs only while timers are scheduled, and timers still fire after a sleep', async () => {
  const wheel = new TimerWheel({ resolution: 10 });
  assert.equal(wheel.running, false, 'asleep when empty');
  let fired = 0;
  wheel.schedule(30, () => fired++);
  assert.equal(wheel.running, true);
  await until('the timer to fire', () => fired === 1);
  await until('the wheel to sleep again', () => !wheel.running);
  await sleep(120); // asleep for a while: the wheel's own time stands still
  const t0 = performance.now();
  let at = 0;
  wheel.schedule(50, () => { at = performance.now(); });
  await until('the second timer', () => at > 0);
  assert.ok(at - t0 >= 45 && at - t0 < 500, `fired after ${(at - t0).toFixed(0)} ms, scheduled for 50`);
  const t = wheel.schedule(1000, () => fired++);
  wheel.cancel(t);
  await until('sleep after the only timer was cancelled', () => !wheel.running);
  assert.equal(fired, 1);
  wheel.close();
});
