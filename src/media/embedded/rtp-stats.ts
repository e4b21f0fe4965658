// What one leg received from its device: packets, bytes, loss and interarrival jitter, as an
// RTP receiver counts them (RFC 3550 Appendix A.1 for sequence numbers and loss, A.8 for
// jitter). Kept per leg, for the SSRC currently received (a new SSRC restarts the count of
// expected packets, as a receiver report would for a new source).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                           timestamp                           |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |           synchronization source (SSRC) identifier            |
//  +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
import type { DirectionStats } from '../engine.ts';

const RTP_SEQ_MOD = 1 << 16;
const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;

/** RTP (not RTCP) by RFC 5761 §4: payload types 64-95 (marker bit folded in) are RTCP's. */
export function isRtp(b: Buffer): boolean {
  if (b.length < 12 || (b[0]! & 0xc0) !== 0x80) return false;
  const pt = b[1]! & 0x7f;
  return pt < 64 || pt > 95;
}

export function isRtcp(b: Buffer): boolean {
  if (b.length < 8 || (b[0]! & 0xc0) !== 0x80) return false;
  const pt = b[1]! & 0x7f;
  return pt >= 64 && pt <= 95;
}

export class RtpReceiveStats {
  packets = 0;
  bytes = 0;
  /** performance.now() of the last packet (RTP or RTCP), 0 before the first. */
  lastPacketAt = 0;
  #ssrc = -1;
  #baseSeq = 0;
  #maxSeq = 0;
  #cycles = 0;
  #received = 0;
  #transit = Number.NaN;
  #jitter = 0; // in timestamp units, RFC 3550 A.8
  #clock = 8000;

  /** Any packet from the device (RTP or RTCP; `bytes` as on the wire). */
  count(bytes: number, now: number): void {
    this.packets++;
    this.bytes += bytes;
    this.lastPacketAt = now;
  }

  /** An RTP packet (plain, or decrypted SRTP) received at `now` (ms), its codec at `clock` Hz. */
  rtp(packet: Buffer, now: number, clock: number): void {
    const seq = packet.readUInt16BE(2);
    const ssrc = packet.readUInt32BE(8);
    if (ssrc !== this.#ssrc) {
      this.#ssrc = ssrc;
      this.#baseSeq = seq;
      this.#maxSeq = seq;
      this.#cycles = 0;
      this.#received = 0;
      this.#transit = Number.NaN;
      this.#clock = clock;
    }
    // A.1 update_seq, without the probation of a new source (the engine knows its peers)
    const delta = (seq - this.#maxSeq + RTP_SEQ_MOD) % RTP_SEQ_MOD;
    if (delta < MAX_DROPOUT) {
      if (seq < this.#maxSeq) this.#cycles += RTP_SEQ_MOD;
      this.#maxSeq = seq;
    } else if (delta <= RTP_SEQ_MOD - MAX_MISORDER) {
      // a large jump: the source restarted its numbering
      this.#baseSeq = seq;
      this.#maxSeq = seq;
      this.#cycles = 0;
      this.#received = 0;
    } // else: a late or duplicate packet
    this.#received++;
    // A.8: J += (|D(i-1,i)| - J) / 16, with D from arrival and RTP timestamps in clock units
    const arrival = (now * this.#clock) / 1000;
    const transit = arrival - packet.readUInt32BE(4);
    if (!Number.isNaN(this.#transit)) {
      const d = Math.abs(transit - this.#transit);
      this.#jitter += (d - this.#jitter) / 16;
    }
    this.#transit = transit;
  }

  snapshot(): DirectionStats {
    if (this.#ssrc < 0) return { packets: this.packets, bytes: this.bytes };
    const expected = this.#cycles + this.#maxSeq - this.#baseSeq + 1;
    const lost = Math.max(0, expected - this.#received);
    return {
      packets: this.packets,
      bytes: this.bytes,
      lost,
      lossPercent: expected > 0 ? Math.round((lost / expected) * 100 * 100) / 100 : 0,
      jitterMs: Math.round((this.#jitter / this.#clock) * 1000 * 100) / 100,
    };
  }
}
