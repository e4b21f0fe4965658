// IdleGc (src/cli/idle-gc.ts): a full collection only when the event loop was quiet and the
// heap grew by more than the threshold since the last one; and V8's own gc, exposed at run
// time, really frees a burst's garbage.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exposeGc, IdleGc } from '../../src/cli/idle-gc.ts';

const MiB = 1024 * 1024;

describe('IdleGc', () => {
  /** An IdleGc over a fake heap and loop: `at(heapMiB, busy)` sets both, then ticks. */
  function fake(): { at: (heapMiB: number, busy: number) => boolean; collected: () => number } {
    let heap = 100 * MiB;
    let load = 0;
    let gcs = 0;
    const idle = new IdleGc({
      gc: () => { gcs++; heap = 110 * MiB; },
      heapUsed: () => heap,
      utilization: () => load,
      growthBytes: 48 * MiB,
    });
    return {
      at: (heapMiB, busy) => { heap = heapMiB * MiB; load = busy; return idle.tick(); },
      collected: () => gcs,
    };
  }

  it('collects once the loop is quiet after the heap grew past the threshold, then waits for new growth', () => {
    const { at, collected } = fake();
    assert.equal(at(200, 0.9), false, 'busy: no collection even though the heap grew');
    assert.equal(at(260, 0.02), true, 'quiet and grown by 160 MiB: collect');
    assert.equal(collected(), 1);
    assert.equal(at(150, 0.02), false, 'grown by 40 MiB since the collection left 110 MiB: below the threshold');
    assert.equal(at(170, 0.02), true, 'grown by 60 MiB: collect again');
    assert.equal(collected(), 2);
  });

  it('a heap V8 shrank by itself becomes the new baseline', () => {
    const { at, collected } = fake();
    assert.equal(at(60, 0.01), false);
    assert.equal(at(100, 0.01), false, '40 MiB above the 60 MiB low point');
    assert.equal(at(120, 0.01), true, '60 MiB above it');
    assert.equal(collected(), 1);
  });

  it('exposeGc gives V8\'s full collection: a burst of garbage is freed', () => {
    const gc = exposeGc();
    gc();
    const base = process.memoryUsage().heapUsed;
    let keep: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `entry ${i}`, a: [i, i + 1] }));
    const grown = process.memoryUsage().heapUsed;
    assert.ok(grown - base > 10 * MiB, `the burst allocated ${(grown - base) / MiB} MiB`);
    keep = undefined;
    gc();
    const after = process.memoryUsage().heapUsed;
    assert.equal(keep, undefined);
    assert.ok(after - base < 2 * MiB, `after gc the heap is back near ${base / MiB} MiB (now ${after / MiB})`);
  });
});
