// Outgoing UDP datagrams are sent together once the event loop's current turn has read and
// handled its input: queued here, sent from setImmediate (Node's check phase, which follows the
// poll phase that delivered the requests), or at once when `maxQueued` are waiting.
//
// Why: a busy server reads several datagrams per turn, and sending each response the moment it
// is built wakes the peer's process once per datagram. Sent back to back, a burst costs the peer
// one wake-up, and both sides spend less CPU. Measured with SIPp on the 2-vCPU bench VM
// (bench/RESULTS.md): at 4,000 REGISTER/s our server's CPU went from 71 % to 55 % and SIPp's
// from 24 % to 18 %; REGISTER/s at zero failures went from 4,000 (6,000 in some runs) to 8,000.
//
// The transport layer's sockets look IP literals up synchronously (`literalLookup`), so a flush
// sends them at once, also the one right before close(); a host name is resolved by dns.lookup
// and sent when known (lost if the socket closes first, as without the batch).
//
// What does not change: the order (one queue for every socket and destination, so datagrams to
// a peer leave in the order they were sent), and how long a datagram can wait is bounded by
// the rest of the current turn. When the server is idle, a turn handles one datagram and its
// response leaves right after it.
import type dgram from 'node:dgram';

/** Datagrams waiting at most, then they are sent at once (bounds memory and delay in a long turn). */
const DEFAULT_MAX_QUEUED = 64;

export class DatagramBatch {
  readonly #onError: (err: unknown) => void;
  readonly #max: number;
  // The queue as parallel arrays (no object per datagram); slots are reused.
  readonly #sockets: Array<dgram.Socket | undefined> = [];
  readonly #data: Array<Buffer | undefined> = [];
  readonly #ports: number[] = [];
  readonly #addresses: string[] = [];
  #count = 0;
  #scheduled = false;
  #flushing = false;
  readonly #flushLater = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  /** `onError` receives what a send threw (a socket closed under it); the others still go out. */
  constructor(onError: (err: unknown) => void, maxQueued = DEFAULT_MAX_QUEUED) {
    if (!(maxQueued >= 1)) throw new RangeError('maxQueued must be at least 1');
    this.#onError = onError;
    this.#max = maxQueued;
  }

  /** Datagrams waiting to be sent. */
  get size(): number {
    return this.#count;
  }

  send(socket: dgram.Socket, data: Buffer, port: number, address: string): void {
    const i = this.#count++;
    this.#sockets[i] = socket;
    this.#data[i] = data;
    this.#ports[i] = port;
    this.#addresses[i] = address;
    if (this.#count >= this.#max) this.flush(); // (no-op inside a flush: its loop sends this one)
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushLater);
    }
  }

  /**
   * Sends everything queued, in order (also called before the sockets close). A datagram queued
   * while this runs (by a handler it calls) is sent by the same loop, after the others.
   */
  flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (let i = 0; i < this.#count; i++) {
        const socket = this.#sockets[i]!;
        const data = this.#data[i]!;
        this.#sockets[i] = undefined;
        this.#data[i] = undefined; // the bytes are not kept alive until the slot is reused
        try {
          // Without a callback Node reports no failure of the send itself (EMSGSIZE,
          // ENETUNREACH): a datagram lost as UDP allows, which retransmissions (§17) cover. It
          // throws only when the socket is closed or an argument is invalid.
          socket.send(data, this.#ports[i]!, this.#addresses[i]!);
        } catch (err) {
          try {
            this.#onError(err);
          } catch {
            // a failing error handler must not lose the datagrams after this one
          }
        }
      }
    } finally {
      this.#count = 0;
      this.#flushing = false;
    }
  }
}
