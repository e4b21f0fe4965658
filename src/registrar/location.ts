// The location service (RFC 3261 §10, "location service"; Kamailio's usrloc): contact bindings
// per address-of-record, in memory. The registrar (registrar.ts) decides what to bind; this
// module only stores, expires and reports changes. It knows nothing of SIP messages.
//
// Memory: bindings of one AOR live in a small array (phones register 1-3 contacts), Binding
// objects are plain records (no closures or Maps per binding), and expiry is swept by one
// coarse interval timer for the whole table.

export type FlowTransport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/**
 * Where a REGISTER really came from (RFC 3581 received/rport, RFC 5626 §5.2 "flow"): the
 * proxy sends requests for this binding there, whatever private address the Contact holds.
 */
export interface Flow {
  readonly transport: FlowTransport;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  /** Connection id for stream transports (tcp/tls/ws/wss): reuse that connection. */
  readonly connectionId?: number;
}

export interface Binding {
  /** AOR id chosen by the caller (CareFlow: the user id as a string). */
  readonly aor: string;
  /** RFC 5626 §6 binding key: `inst:<instance>;reg-id=<n>`, `inst:<instance>`, or `uri:<normalised URI>`. */
  readonly key: string;
  /** The Contact URI text as the phone sent it (without < >). */
  readonly contact: string;
  /**
   * The Contact header parameters other than expires and q, serialised (`;+sip.instance="<urn:..>";reg-id=1`),
   * echoed in 200 responses (RFC 4475 §3.3.13 cparam01) and used for caller preferences.
   */
  readonly params: string;
  /** 0..1 (RFC 3261 §20.10), default 1. */
  readonly q: number;
  /** ms since the epoch. */
  readonly expiresAt: number;
  readonly callId: string;
  readonly cseq: number;
  /** RFC 5626 `+sip.instance` (without the quotes), as received. */
  readonly instance?: string;
  /** RFC 5626 `reg-id`. */
  readonly regId?: number;
  /** RFC 3327 Path header values, in order. */
  readonly path?: readonly string[];
  readonly userAgent?: string;
  readonly flow: Flow;
  /** ms since the epoch of the REGISTER that last wrote it. */
  readonly updatedAt: number;
}

export type ChangeReason = 'add' | 'refresh' | 'remove' | 'expire';
export type ChangeListener = (aor: string, binding: Binding | undefined, reason: ChangeReason) => void;
/** Receives the binding after add/refresh, the removed binding after remove/expire. */
export interface LocationEvents {
  change: ChangeListener;
}

export interface LocationOptions {
  /** Expiry sweep period (default 1000 ms). */
  readonly sweepIntervalMs?: number;
  readonly now?: () => number;
  /** Where exceptions thrown by listeners go (default console.error). */
  readonly log?: (message: string, err: unknown) => void;
}

export class LocationService {
  readonly #aors = new Map<string, Binding[]>();
  #count = 0;
  readonly #listeners: ChangeListener[] = [];
  readonly #now: () => number;
  readonly #log: (message: string, err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  /** A lower bound of every stored expiresAt: the sweep is skipped while now is below it. */
  #nextExpiry = Infinity;

  constructor(opts: LocationOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log ?? ((m, e) => console.error(m, e));
    this.#timer = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? 1000);
    this.#timer.unref();
  }

  on<E extends keyof LocationEvents>(_event: E, listener: LocationEvents[E]): void {
    this.#listeners.push(listener);
  }

  off<E extends keyof LocationEvents>(_event: E, listener: LocationEvents[E]): void {
    const i = this.#listeners.indexOf(listener);
    if (i >= 0) this.#listeners.splice(i, 1);
  }

  /** Live bindings of an AOR, best first: q descending, then most recently updated. */
  lookup(aor: string): Binding[] {
    const list = this.#aors.get(aor);
    if (list === undefined) return [];
    const now = this.#now();
    const out: Binding[] = [];
    for (const b of list) if (b.expiresAt > now) out.push(b);
    if (out.length > 1) out.sort((a, b) => b.q - a.q || b.updatedAt - a.updatedAt);
    return out;
  }

  /** The binding with that key, when live. */
  get(aor: string, key: string): Binding | undefined {
    const list = this.#aors.get(aor);
    if (list === undefined) return undefined;
    for (const b of list) if (b.key === key) return b.expiresAt > this.#now() ? b : undefined;
    return undefined;
  }

  /** Adds or replaces the binding (aor, key). Emits `add` or `refresh`. */
  upsert(binding: Binding): void {
    if (binding.expiresAt < this.#nextExpiry) this.#nextExpiry = binding.expiresAt;
    const list = this.#aors.get(binding.aor);
    if (list === undefined) {
      // An array literal holds exactly one element; `[]` + push would reserve 17 slots, and
      // most users have one device (100,000 registrations: about 15 MB less).
      this.#aors.set(binding.aor, [binding]);
      this.#count++;
      this.#emit(binding.aor, binding, 'add');
      return;
    }
    const i = list.findIndex((b) => b.key === binding.key);
    if (i >= 0) {
      const wasLive = list[i]!.expiresAt > this.#now();
      list[i] = binding;
      this.#emit(binding.aor, binding, wasLive ? 'refresh' : 'add');
    } else {
      list.push(binding);
      this.#count++;
      this.#emit(binding.aor, binding, 'add');
    }
  }

  /** Removes one binding; returns whether it existed. Emits `remove`. */
  remove(aor: string, key: string): boolean {
    const list = this.#aors.get(aor);
    if (list === undefined) return false;
    const i = list.findIndex((b) => b.key === key);
    if (i < 0) return false;
    const [b] = list.splice(i, 1);
    this.#count--;
    if (list.length === 0) this.#aors.delete(aor);
    this.#emit(aor, b, 'remove');
    return true;
  }

  /** Removes every binding of an AOR; returns how many. */
  removeAll(aor: string): number {
    const list = this.#aors.get(aor);
    if (list === undefined) return 0;
    this.#aors.delete(aor);
    this.#count -= list.length;
    for (const b of list) this.#emit(aor, b, 'remove');
    return list.length;
  }

  /**
   * Removes the bindings reached through a closed connection (RFC 5626 §5.3: a failed flow is
   * not used again; RFC 7118 WebSocket clients are unreachable once the socket is gone).
   * With `outboundOnly`, only bindings that registered with reg-id. O(bindings).
   */
  removeByConnection(connectionId: number, outboundOnly = false): number {
    let removed = 0;
    for (const [aor, list] of this.#aors) {
      for (let i = list.length - 1; i >= 0; i--) {
        const b = list[i]!;
        if (b.flow.connectionId !== connectionId || (outboundOnly && b.regId === undefined)) continue;
        list.splice(i, 1);
        this.#count--;
        removed++;
        if (list.length === 0) this.#aors.delete(aor);
        this.#emit(aor, b, 'remove');
      }
    }
    return removed;
  }

  /** Stored bindings, including expired ones not yet swept. */
  count(): number {
    return this.#count;
  }

  aorCount(): number {
    return this.#aors.size;
  }

  /** Every stored binding (for persistence and admin views). */
  *all(): IterableIterator<Binding> {
    for (const list of this.#aors.values()) yield* list;
  }

  /** Removes expired bindings, emitting `expire`. Runs on the timer; callable from tests. */
  sweep(): void {
    const now = this.#now();
    if (now < this.#nextExpiry) return;
    // Upserts made by listeners during the loop lower this again.
    this.#nextExpiry = Infinity;
    let next = Infinity;
    for (const [aor, list] of this.#aors) {
      for (let i = list.length - 1; i >= 0; i--) {
        const b = list[i]!;
        if (b.expiresAt > now) {
          if (b.expiresAt < next) next = b.expiresAt;
          continue;
        }
        list.splice(i, 1);
        this.#count--;
        if (list.length === 0) this.#aors.delete(aor);
        this.#emit(aor, b, 'expire');
      }
    }
    if (next < this.#nextExpiry) this.#nextExpiry = next;
  }

  /** Stops the sweep timer. Bindings stay readable. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #emit(aor: string, binding: Binding | undefined, reason: ChangeReason): void {
    for (const l of this.#listeners) {
      // Exceptions thrown by listeners are caught before they reach the core (STYLE §3).
      try {
        l(aor, binding, reason);
      } catch (err) {
        this.#log(`location: '${reason}' listener failed for AOR ${aor}`, err);
      }
    }
  }
}
