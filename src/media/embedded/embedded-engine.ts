// The embedded media engine: MediaEngine in the server's own process, the default when no
// RTPEngine is configured, so `careflow serve` bridges a browser and a SIP phone out of the box.
//
//   bridge  webrtc <-> rtp   ICE-lite + DTLS-SRTP + rtcp-mux toward the browser (webrtc-leg.ts),
//                            plain RTP/AVP toward the phone (rtp-leg.ts)
//   relay   rtp    <-> rtp   plain RTP both ways, symmetric RTP latching on both sides
//
// G.711 and Opus pass through unchanged (codecs.ts): no transcoding, so a packet costs one
// SRTP transform and one sendto. Ports come from the configured range (port-pool.ts): an
// even/odd pair per leg. delete(callId) closes every socket of the call; delete with a branch
// only that branch's leg; close() everything.
//
// Chosen by measurement (bench/embedded-media.ts and bench/srtp.bench.ts on the project's
// 2-vCPU VM, Node 24; figures and conditions in bench/RESULTS.md "Embedded media engine"):
// G.711 calls at 50 packets/s each way, CPU of the server process, devices simulated by a
// generator in another process, 0 % loss in every row unless said:
//
//                                      10 calls    100 calls   200 calls   per packet at 100
//   plain dgram relay (the floor)       2.4 %       15.4 %      25.5 %      15 µs
//   this engine, relay (rtp <-> rtp)    2.5 %       17.8 %      32.3 %      18 µs
//   this engine, bridge (webrtc<->rtp)  5.4 %       32.6 %      46.7 %      33 µs
//   werift RTCPeerConnection bridge    23.7 %       fails: 49 % loss        (159 µs at 50 calls)
//   (the werift row from the run before, same machine and generator)
//
// The difference is per-packet crypto: with OpenSSL 3 every createCipheriv / createHmac pays
// an algorithm fetch (~15 µs), and werift's SrtpSession makes both for every packet (protect
// + unprotect 82 µs), on top of the work of a whole peer connection per call, which a
// pass-through bridge does not need. So werift does what is hard and cold (the DTLS
// handshake, dtls.ts) and nothing per packet: SRTP is ours (srtp.ts, 12.5 µs protect +
// unprotect, checked against werift's and RFC 3711's vectors in test/unit), STUN for
// ICE-lite too (stun.ts). One core carries the bar of 100 bridged G.711 calls at a
// third of its time.
import type { MediaAnswer, MediaEngine, MediaOffer, MediaStats } from '../engine.ts';
import { CallSession } from './call-session.ts';
import { createCertificate, type DtlsCertificate } from './dtls.ts';
import { EmbeddedMediaError } from './errors.ts';
import { PortPool, type PortRange } from './port-pool.ts';

export interface EmbeddedMediaOptions {
  /** UDP ports for media (config `media.rtpPorts`), default 10000-20000. */
  readonly rtpPorts?: PortRange;
  /** The address written in SDP (c=, candidates): how devices reach this server. */
  readonly advertiseAddress: string;
  /** The address the media sockets bind, default 0.0.0.0 (every IPv4 interface). */
  readonly bindAddress?: string;
}

export class EmbeddedMediaEngine implements MediaEngine {
  readonly name = 'embedded';
  readonly #pool: PortPool;
  readonly #advertise: string;
  readonly #sessions = new Map<string, CallSession>();
  #certificate: Promise<DtlsCertificate> | undefined;
  #closed = false;

  constructor(opts: EmbeddedMediaOptions) {
    this.#pool = new PortPool(opts.rtpPorts ?? { min: 10000, max: 20000 }, opts.bindAddress ?? '0.0.0.0');
    this.#advertise = opts.advertiseAddress;
  }

  /** Calls held. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Port slots (even/odd pairs) in use: 0 when every call is released. */
  get portsInUse(): number {
    return this.#pool.size;
  }

  async offer(o: MediaOffer): Promise<string> {
    const s = this.#session(o.callId, true);
    try {
      return await s.offer(o);
    } catch (e) {
      // A refused first offer leaves nothing behind (the proxy only deletes calls it engaged).
      if (s.unused && this.#sessions.get(o.callId) === s) {
        this.#sessions.delete(o.callId);
        await s.close();
      }
      throw e;
    }
  }

  async answer(a: MediaAnswer): Promise<string> {
    return this.#session(a.callId, false).answer(a);
  }

  async delete(callId: string, _fromTag?: string, branch?: string): Promise<void> {
    const s = this.#sessions.get(callId);
    if (s === undefined) return;
    if (branch !== undefined) {
      await s.deleteBranch(branch);
      if (s.legCount > 0) return;
    }
    this.#sessions.delete(callId);
    await s.close();
  }

  async stats(callId: string): Promise<MediaStats | undefined> {
    return this.#sessions.get(callId)?.stats();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(all.map((s) => s.close()));
  }

  #session(callId: string, create: boolean): CallSession {
    if (this.#closed) throw new EmbeddedMediaError('MEDIA_CLOSED', `the media engine is closed (call ${callId})`);
    let s = this.#sessions.get(callId);
    if (s === undefined) {
      if (!create) throw new EmbeddedMediaError('MEDIA_UNKNOWN_CALL', `no media session for call ${callId}`);
      s = new CallSession(callId, { pool: this.#pool, advertiseAddress: this.#advertise, certificate: () => this.#cert() });
      this.#sessions.set(callId, s);
    }
    return s;
  }

  #cert(): Promise<DtlsCertificate> {
    this.#certificate ??= createCertificate();
    return this.#certificate;
  }
}
