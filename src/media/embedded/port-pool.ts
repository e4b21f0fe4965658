// UDP ports for media from the configured range (config `media.rtpPorts`, the range
// `careflow firewall` opens). Every leg takes one slot: an even port P and the odd port P+1
// (RFC 3550 §11: RTP on an even port, RTCP on the next one). A plain RTP leg binds both; a
// browser leg binds only P (rtcp-mux, RFC 5761) and leaves P+1 unused, so one rule covers
// both and 10000-20000 holds 5,000 legs (2,500 bridged calls).
//
// Slots are handed out round robin from a random start: a port just released is the last to
// be reused, so late packets of an ended call do not land in a new one. A port some other
// process holds is skipped (bind fails) and tried again on the next round.
import { createSocket, type Socket } from 'node:dgram';
import { EmbeddedMediaError } from './errors.ts';

export interface PortRange {
  readonly min: number;
  readonly max: number;
}

export interface PortSlot {
  /** The even port; RTCP (when bound) is port + 1. */
  readonly port: number;
  readonly rtp: Socket;
  readonly rtcp: Socket | undefined;
}

export class PortPool {
  readonly #first: number;
  readonly #slots: number;
  readonly #bindAddress: string;
  readonly #type: 'udp4' | 'udp6';
  readonly #held = new Set<number>();
  #next: number;

  constructor(range: PortRange, bindAddress: string) {
    if (!Number.isInteger(range.min) || !Number.isInteger(range.max) || range.min < 1 || range.max > 65535 || range.max <= range.min) {
      throw new RangeError(`RTP port range ${range.min}-${range.max} is not a range of ports`);
    }
    this.#first = range.min + (range.min % 2);
    this.#slots = Math.floor((range.max - this.#first + 1) / 2);
    if (this.#slots < 1) throw new RangeError(`RTP port range ${range.min}-${range.max} holds no even/odd port pair`);
    this.#bindAddress = bindAddress;
    this.#type = bindAddress.includes(':') ? 'udp6' : 'udp4';
    this.#next = Math.floor(Math.random() * this.#slots);
  }

  /** Slots in use. */
  get size(): number {
    return this.#held.size;
  }

  /** Binds the next free slot: RTP only (`withRtcp` false) or RTP and RTCP. */
  async allocate(withRtcp: boolean): Promise<PortSlot> {
    for (let tried = 0; tried < this.#slots; tried++) {
      const port = this.#first + 2 * this.#next;
      this.#next = (this.#next + 1) % this.#slots;
      if (this.#held.has(port)) continue;
      this.#held.add(port); // claimed before the first await: concurrent allocations skip it
      const rtp = await this.#bind(port);
      const rtcp = rtp !== undefined && withRtcp ? await this.#bind(port + 1) : undefined;
      if (rtp !== undefined && (rtcp !== undefined || !withRtcp)) return { port, rtp, rtcp };
      if (rtp !== undefined) await closeSocket(rtp);
      this.#held.delete(port);
    }
    throw new EmbeddedMediaError('MEDIA_NO_PORTS', `no free UDP port pair left in ${this.#first}-${this.#first + 2 * this.#slots - 1} on ${this.#bindAddress}`);
  }

  /** Closes the slot's sockets; the port is free again once they are closed. */
  async release(slot: PortSlot): Promise<void> {
    await Promise.all([closeSocket(slot.rtp), slot.rtcp !== undefined ? closeSocket(slot.rtcp) : undefined]);
    this.#held.delete(slot.port);
  }

  #bind(port: number): Promise<Socket | undefined> {
    return new Promise((resolve) => {
      const s = createSocket({ type: this.#type });
      const fail = (): void => { s.close(); resolve(undefined); };
      s.once('error', fail);
      s.bind({ port, address: this.#bindAddress, exclusive: true }, () => {
        s.off('error', fail);
        resolve(s);
      });
    });
  }
}

function closeSocket(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      s.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
