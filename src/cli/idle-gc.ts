// Memory back after a burst, for small hosts (memory mode `small`): V8 collects garbage when
// the program allocates, so a server that goes quiet after a burst (every phone registering
// again after a restart or a network outage) keeps the burst's garbage and its RSS at the
// peak until traffic resumes. On a 1 GB VM or a Raspberry Pi that peak is what counts.
//
// Every `intervalMs`, if the event loop was nearly idle over the interval (utilization below
// `quietUtilization`) and the heap has grown by more than `growthBytes` since the last full
// collection, run one: the pause (~0.1-0.3 s with 100,000 registrations) lands when there is
// nothing to delay. Steady traffic never triggers it: V8's own collector keeps up there, and
// the heap does not grow by `growthBytes` between two quiet intervals.
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface IdleGcOptions {
  readonly intervalMs?: number;
  readonly quietUtilization?: number;
  readonly growthBytes?: number;
  /** Injected in tests; by default V8's own (exposeGc). */
  readonly gc?: () => void;
  readonly heapUsed?: () => number;
  /** Event-loop utilization (0..1) since the previous call. */
  readonly utilization?: () => number;
  readonly onCollect?: (before: number, after: number, ms: number) => void;
}

/** V8's full garbage collection as a function, without starting node with --expose-gc. */
export function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function loopUtilization(): () => number {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const delta = performance.eventLoopUtilization(now, last);
    last = now;
    return delta.utilization;
  };
}

export class IdleGc {
  readonly #gc: () => void;
  readonly #heapUsed: () => number;
  readonly #utilization: () => number;
  readonly #quiet: number;
  readonly #growth: number;
  readonly #intervalMs: number;
  readonly #onCollect: IdleGcOptions['onCollect'];
  #baseline: number;
  #timer: NodeJS.Timeout | undefined;
  /** Collections run so far. */
  collections = 0;

  constructor(opts: IdleGcOptions = {}) {
    this.#gc = opts.gc ?? exposeGc();
    this.#heapUsed = opts.heapUsed ?? (() => process.memoryUsage().heapUsed);
    this.#utilization = opts.utilization ?? loopUtilization();
    this.#quiet = opts.quietUtilization ?? 0.1;
    this.#growth = opts.growthBytes ?? 48 * 1024 * 1024;
    this.#intervalMs = opts.intervalMs ?? 2000;
    this.#onCollect = opts.onCollect;
    this.#baseline = this.#heapUsed();
  }

  start(): void {
    this.#timer ??= setInterval(() => this.tick(), this.#intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One check; true when it collected. */
  tick(): boolean {
    const busy = this.#utilization();
    const before = this.#heapUsed();
    if (busy >= this.#quiet || before - this.#baseline <= this.#growth) {
      // A heap that shrank by itself (V8 collected) is the new baseline.
      this.#baseline = Math.min(this.#baseline, before);
      return false;
    }
    const t0 = performance.now();
    this.#gc();
    this.#baseline = this.#heapUsed();
    this.collections++;
    this.#onCollect?.(before, this.#baseline, performance.now() - t0);
    return true;
  }
}
