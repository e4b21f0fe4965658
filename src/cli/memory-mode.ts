// How much memory V8 may keep beyond the live data, per the `memoryMode` setting.
//
// small: V8's --optimize-for-size. The heap stays close to the live data; a call costs about
//   12 % more CPU (bench/RESULTS.md). What `auto` picks on hosts with up to 4 GiB.
// fast: V8's compiler at full speed, with two bounds on the heap. V8 sizes the young
//   generation from the host's RAM: on a 24 GiB host a semi-space grows to 64 MiB, so new space
//   alone held 128 MiB of RSS after a burst of registrations. And V8 lets the old generation
//   grow up to 4x the live data between full collections (its factor depends on GC vs mutator
//   speed): right after 100,000 phones registered, 80 MiB of it was garbage. With new space
//   capped at 2 x 16 MiB and the old generation's growth at 30 % (--heap-growing-percent, read
//   at each collection), RSS at 100,000 phones went from 381 to 260 MiB and 1,500 calls/s still
//   passed at 90 % of a core (bench/RESULTS.md).
//
// Node applies --max-semi-space-size only at start, and `careflow serve` reads its memory mode
// from the config after the start. V8 reads --semi-space-growth-factor at each growth of new
// space (SemiSpaceNewSpace::Grow: new capacity = min(max, factor x current)), so after each GC
// the factor is set to 2 (V8's default) while doubling stays within the cap, else to 1 (no
// growth). V8 grows new space only after more than its current capacity has survived scavenges
// since the last growth, which at the server's rates takes far longer than the one or two
// event-loop turns a GC entry takes to reach its observer. A single synchronous task in which
// more than the cap survives could still grow it once more before the observer runs (the unit
// test's load does: 32.5 MiB once, from a size V8's shrinking had left just above half the cap);
// the server's work comes in small turns (a datagram batch, a timer tick).
import { totalmem } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

export type MemoryMode = 'auto' | 'small' | 'fast';

/** New space (both semi-spaces) at most this many bytes in fast mode. */
export const FAST_NEW_SPACE_CAP = 32 * 1024 * 1024;
/** Fast mode's old generation may grow by this share of the live data before a full collection. */
const FAST_OLD_SPACE_GROWTH_PERCENT = 30;
/** `auto` picks small at or below this much RAM. */
const SMALL_HOST_BYTES = 4 * 1024 ** 3;

export interface AppliedMemoryMode {
  readonly mode: 'small' | 'fast';
  /** For the start-up log line. */
  readonly description: string;
  /** Stops watching the young generation (tests; the server keeps it for its lifetime). */
  stop(): void;
}

export function applyMemoryMode(setting: MemoryMode, hostBytes = totalmem()): AppliedMemoryMode {
  const small = setting === 'small' || (setting === 'auto' && hostBytes <= SMALL_HOST_BYTES);
  if (small) {
    setFlagsFromString('--optimize-for-size');
    return { mode: 'small', description: 'small (V8 --optimize-for-size)', stop: () => {} };
  }
  setFlagsFromString(`--heap-growing-percent=${FAST_OLD_SPACE_GROWTH_PERCENT}`);
  const stop = capNewSpace(FAST_NEW_SPACE_CAP);
  return {
    mode: 'fast',
    description: `fast (young generation at most ${FAST_NEW_SPACE_CAP / 1048576} MiB, old generation grows by ${FAST_OLD_SPACE_GROWTH_PERCENT} % between collections)`,
    stop,
  };
}

/** Bytes of new space now (both semi-spaces), as V8 reports it. */
export function newSpaceBytes(): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_size;
  return 0;
}

/** Keeps V8's new space at or below `cap` bytes; returns the function that stops it. */
export function capNewSpace(cap: number): () => void {
  let factor = 0; // not set yet
  const check = (): void => {
    // Doubling must stay within the cap: V8 may have shrunk new space to a size between half the
    // cap and the cap, from which a doubling would overshoot.
    const want = newSpaceBytes() * 2 <= cap ? 2 : 1;
    if (want === factor) return;
    setFlagsFromString(`--semi-space-growth-factor=${want}`);
    factor = want;
  };
  check();
  const observer = new PerformanceObserver(check);
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    observer.disconnect();
    if (factor === 1) setFlagsFromString('--semi-space-growth-factor=2');
  };
}
