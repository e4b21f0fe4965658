// The Completed state of non-INVITE server transactions over UDP (RFC 3261 §17.2.2, Figure 8):
// for Timer J = 64*T1 after the final response, a retransmitted request is answered with that
// response again, and nothing else happens. A registrar at 2,000 REGISTER/s holds 64,000 of
// them at any time, so they are not kept as transaction objects with a timer each:
// - the response bytes are copied into large shared chunks, reused once everything in them has
//   expired (no Buffer per response for the garbage collector to find in the old generation);
// - the rest (destination, expiry, where the bytes are) lives in typed arrays used as a ring;
// - Timer J is the same for all of them, so they expire in the order they were added: one
//   wheel timer, set for the oldest entry, drives the expiry.
import type { Timer, TimerWheel } from '../timer-wheel.ts';
import type { MessageSender } from '../transport.ts';

const CHUNK_BYTES = 256 * 1024;
/** Emptied chunks kept for reuse; more are dropped (a burst's memory is given back). */
const SPARE_CHUNKS = 4;

interface Chunk {
  readonly id: number;
  readonly buf: Buffer;
  used: number;
  /** Sequence number of the last entry written into it. */
  last: number;
}

export class CompletedTable {
  readonly #wheel: TimerWheel;
  readonly #sender: MessageSender;
  readonly #lifetime: number;
  /** transaction key -> sequence number of its entry */
  readonly #index = new Map<string, number>();
  // The ring: entry `seq` is at slot seq % capacity; live entries are #head .. #tail-1.
  #capacity = 1024;
  #keys: Array<string | undefined> = new Array<string | undefined>(1024);
  #addresses: string[] = new Array<string>(1024);
  #ports = new Uint16Array(1024);
  #chunkIds = new Uint32Array(1024);
  #offsets = new Uint32Array(1024);
  #lengths = new Uint32Array(1024);
  #expires = new Float64Array(1024);
  #head = 0;
  #tail = 0;
  readonly #chunks: Chunk[] = [];
  readonly #spare: Buffer[] = [];
  #nextChunkId = 0;
  #timer: Timer | undefined;
  /** Interned destination addresses: a few peers send most requests. */
  readonly #addressIntern = new Map<string, string>();

  constructor(wheel: TimerWheel, sender: MessageSender, lifetimeMs: number) {
    this.#wheel = wheel;
    this.#sender = sender;
    this.#lifetime = lifetimeMs;
  }

  get size(): number {
    return this.#index.size;
  }

  /** Enters Completed: `bytes` is the final response, resent to address:port (UDP) on retransmissions. */
  add(key: string, bytes: Buffer, address: string, port: number): void {
    if (this.#tail - this.#head === this.#capacity) this.#grow();
    const seq = this.#tail++;
    const slot = seq % this.#capacity;
    const chunk = this.#chunkFor(bytes.length);
    bytes.copy(chunk.buf, chunk.used);
    this.#keys[slot] = key;
    this.#addresses[slot] = this.#intern(address);
    this.#ports[slot] = port;
    this.#chunkIds[slot] = chunk.id;
    this.#offsets[slot] = chunk.used;
    this.#lengths[slot] = bytes.length;
    this.#expires[slot] = this.#wheel.now() + this.#lifetime;
    chunk.used += bytes.length;
    chunk.last = seq;
    this.#index.set(key, seq);
    if (this.#timer === undefined) this.#schedule();
  }

  /** §17.2.2: a retransmission of a request in Completed gets the final response again. */
  retransmit(key: string): boolean {
    const seq = this.#index.get(key);
    if (seq === undefined) return false;
    const slot = seq % this.#capacity;
    const chunk = this.#chunks[this.#chunkIds[slot]! - this.#chunks[0]!.id]!;
    const off = this.#offsets[slot]!;
    this.#sender.sendRaw(chunk.buf.subarray(off, off + this.#lengths[slot]!), { transport: 'udp', address: this.#addresses[slot]!, port: this.#ports[slot]! });
    return true;
  }

  clear(): void {
    this.#wheel.cancel(this.#timer);
    this.#timer = undefined;
    this.#index.clear();
    this.#keys.fill(undefined);
    this.#head = this.#tail = 0;
    this.#chunks.length = 0;
    this.#addressIntern.clear();
  }

  #chunkFor(length: number): Chunk {
    const cur = this.#chunks[this.#chunks.length - 1];
    if (cur !== undefined && cur.used + length <= cur.buf.length) return cur;
    const buf = length > CHUNK_BYTES ? Buffer.allocUnsafeSlow(length) : this.#spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
    const chunk: Chunk = { id: this.#nextChunkId++, buf, used: 0, last: -1 };
    this.#chunks.push(chunk);
    return chunk;
  }

  #grow(): void {
    const cap = this.#capacity * 2;
    const keys = new Array<string | undefined>(cap);
    const addresses = new Array<string>(cap);
    const ports = new Uint16Array(cap);
    const chunkIds = new Uint32Array(cap);
    const offsets = new Uint32Array(cap);
    const lengths = new Uint32Array(cap);
    const expires = new Float64Array(cap);
    for (let seq = this.#head; seq < this.#tail; seq++) {
      const from = seq % this.#capacity;
      const to = seq % cap;
      keys[to] = this.#keys[from];
      addresses[to] = this.#addresses[from]!;
      ports[to] = this.#ports[from]!;
      chunkIds[to] = this.#chunkIds[from]!;
      offsets[to] = this.#offsets[from]!;
      lengths[to] = this.#lengths[from]!;
      expires[to] = this.#expires[from]!;
    }
    this.#capacity = cap;
    this.#keys = keys;
    this.#addresses = addresses;
    this.#ports = ports;
    this.#chunkIds = chunkIds;
    this.#offsets = offsets;
    this.#lengths = lengths;
    this.#expires = expires;
  }

  #intern(address: string): string {
    const known = this.#addressIntern.get(address);
    if (known !== undefined) return known;
    if (this.#addressIntern.size >= 4096) this.#addressIntern.clear();
    this.#addressIntern.set(address, address);
    return address;
  }

  #schedule(): void {
    const first = this.#expires[this.#head % this.#capacity]!;
    this.#timer = this.#wheel.schedule(Math.max(0, first - this.#wheel.now()), () => this.#expire());
  }

  /** Timer J fired for the oldest entries: forget every entry whose time is up. */
  #expire(): void {
    this.#timer = undefined;
    const now = this.#wheel.now();
    while (this.#head < this.#tail) {
      const slot = this.#head % this.#capacity;
      if (this.#expires[slot]! > now) break;
      const key = this.#keys[slot]!;
      // A key that came back after expiry-less reuse would point at a newer entry: keep that.
      if (this.#index.get(key) === this.#head) this.#index.delete(key);
      this.#keys[slot] = undefined;
      this.#head++;
    }
    // Chunks whose every entry has expired are emptied (the current one stays in use).
    while (this.#chunks.length > 1 && this.#chunks[0]!.last < this.#head) {
      const done = this.#chunks.shift()!;
      if (done.buf.length === CHUNK_BYTES && this.#spare.length < SPARE_CHUNKS) this.#spare.push(done.buf);
    }
    if (this.#head === this.#tail) {
      // Empty: start afresh, so that the current chunk does not stay pinned forever.
      this.#head = this.#tail = 0;
      const cur = this.#chunks.pop();
      if (cur !== undefined && cur.buf.length === CHUNK_BYTES && this.#spare.length < SPARE_CHUNKS) this.#spare.push(cur.buf);
      this.#chunks.length = 0;
      return;
    }
    this.#schedule();
  }
}
