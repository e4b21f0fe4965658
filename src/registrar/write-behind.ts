// Write-behind persistence of the location service: a REGISTER only touches memory; changed
// bindings are collected by key and written in one batch every `flushIntervalMs`, so the
// database sees at most one write per binding per interval whatever the REGISTER rate
// (Kamailio usrloc db_mode=1 "write-back" works the same way).
import type { Binding, LocationService } from './location.ts';

/** What the store provides (src/store implements it; the server wires it). */
export interface BindingPersistence {
  /** One batch: bindings to insert-or-replace by (aor, key), and keys to delete. */
  saveBindings(upserts: Binding[], deletes: Array<{ aor: string; key: string }>): Promise<void>;
  /** Every binding with expiresAt > nowMs. */
  loadBindings(nowMs: number): Promise<Binding[]>;
}

export interface WriteBehindOptions {
  readonly location: LocationService;
  readonly persistence: BindingPersistence;
  /** default 1000 */
  readonly flushIntervalMs?: number;
  readonly now?: () => number;
  readonly log?: (message: string, err: unknown) => void;
}

const SEP = '\u0000';

export class WriteBehind {
  readonly #location: LocationService;
  readonly #persistence: BindingPersistence;
  readonly #now: () => number;
  readonly #log: (message: string, err: unknown) => void;
  /** `aor \0 key` of every binding whose stored state may differ from memory. */
  #dirty = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  /** The flush in progress; flushes never overlap. */
  #running: Promise<void> | undefined;
  #restoring = false;
  #closed = false;
  readonly #onChange = (aor: string, binding: Binding | undefined): void => {
    if (this.#restoring || binding === undefined) return;
    this.#dirty.add(aor + SEP + binding.key);
  };

  constructor(opts: WriteBehindOptions) {
    this.#location = opts.location;
    this.#persistence = opts.persistence;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log ?? ((m, e) => console.error(m, e));
    this.#location.on('change', this.#onChange);
    this.#timer = setInterval(() => {
      this.flush().catch(() => { /* logged in #flushOnce */ });
    }, opts.flushIntervalMs ?? 1000);
    this.#timer.unref();
  }

  /** Keys waiting to be written. */
  get pending(): number {
    return this.#dirty.size;
  }

  /**
   * Loads the non-expired bindings into the location service at start-up. They are already
   * stored, so they are not marked dirty. Returns how many were loaded.
   */
  async restore(location: LocationService = this.#location): Promise<number> {
    const bindings = await this.#persistence.loadBindings(this.#now());
    this.#restoring = true;
    let n = 0;
    try {
      const now = this.#now();
      for (const b of bindings) {
        if (b.expiresAt <= now) continue;
        location.upsert(b);
        n++;
      }
    } finally {
      this.#restoring = false;
    }
    return n;
  }

  /**
   * Writes the current state of every dirty key. Resolves when written; on failure the keys
   * stay dirty for the next flush and the error is logged (and rethrown to a direct caller).
   */
  flush(): Promise<void> {
    // Chain behind a running flush, then write what became dirty meanwhile.
    const p = (this.#running ?? Promise.resolve()).then(() => this.#flushOnce());
    const settled: Promise<void> = p.then(
      () => { if (this.#running === settled) this.#running = undefined; },
      () => { if (this.#running === settled) this.#running = undefined; },
    );
    this.#running = settled;
    return p;
  }

  async #flushOnce(): Promise<void> {
    if (this.#dirty.size === 0) return;
    const batch = this.#dirty;
    this.#dirty = new Set();
    const upserts: Binding[] = [];
    const deletes: Array<{ aor: string; key: string }> = [];
    for (const id of batch) {
      const sep = id.indexOf(SEP);
      const aor = id.slice(0, sep);
      const key = id.slice(sep + 1);
      // Coalescing: only the latest state of the key is written.
      const b = this.#location.get(aor, key);
      if (b !== undefined) upserts.push(b);
      else deletes.push({ aor, key });
    }
    try {
      await this.#persistence.saveBindings(upserts, deletes);
    } catch (err) {
      // Never lost: merge back; keys changed meanwhile are already in the new set.
      for (const id of batch) this.#dirty.add(id);
      this.#log(`write-behind: saving ${upserts.length} bindings and ${deletes.length} deletions failed; will retry`, err);
      throw err;
    }
  }

  /** Stops the timer, unsubscribes and writes what is pending (server shutdown). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#location.off('change', this.#onChange);
    await this.flush();
  }
}
