// The leg toward a plain RTP device (a SIP phone): RTP/AVP on an even port, RTCP on the next
// one, with symmetric RTP latching (RFC 4961 symmetric RTP; "latching" as in RFC 7362 §4):
// until the device has sent, packets go where its SDP says (the address its SIP came from
// when the SDP names another one, i.e. a private address behind NAT); once it has sent, they
// go back to where its packets come from. Packets from any other source are dropped, unless
// the latched source has been silent for RELATCH_MS (the phone moved: new NAT binding, new
// network) or the device renegotiated (re-INVITE with a new address), and a source on the
// address the device signalled replaces one elsewhere that happened to send first (the
// "RTP bleed" hijack of a latching relay).
import type { Socket } from 'node:dgram';
import type { Endpoint } from '../engine.ts';
import type { MediaLeg } from './call-session.ts';
import type { PortPool, PortSlot } from './port-pool.ts';
import { isRtcp, isRtp, RtpReceiveStats } from './rtp-stats.ts';

const RELATCH_MS = 2000;

interface Target { address: string; port: number }

/** One UDP flow (RTP or RTCP) with its own latch. */
class LatchedFlow {
  readonly #socket: Socket;
  #signalled: Target | undefined;
  #latched: Target | undefined;
  #lastFromLatched = 0;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  get destination(): Target | undefined {
    return this.#latched ?? this.#signalled;
  }

  signal(t: Target | undefined): void {
    const changed = t?.address !== this.#signalled?.address || t?.port !== this.#signalled?.port;
    this.#signalled = t;
    if (changed) this.#latched = undefined; // renegotiated: learn the source again
  }

  /** Whether a packet from `address:port` at `now` is the device's (latching onto it if new). */
  accept(address: string, port: number, now: number): boolean {
    const l = this.#latched;
    if (l !== undefined && l.port === port && l.address === address) {
      this.#lastFromLatched = now;
      return true;
    }
    // A source on the signalled address wins over a stranger that sent first ("RTP bleed").
    const fromSignalled = address === this.#signalled?.address && l?.address !== address;
    if (l !== undefined && !fromSignalled && now - this.#lastFromLatched < RELATCH_MS) return false;
    this.#latched = { address, port };
    this.#lastFromLatched = now;
    return true;
  }

  send(packet: Buffer): void {
    const to = this.destination;
    if (to === undefined || to.port === 0 || to.address === '0.0.0.0' || to.address === '::') return;
    this.#socket.send(packet, to.port, to.address);
  }
}

export class RtpLeg implements MediaLeg {
  readonly endpoint: Endpoint = 'rtp';
  readonly stats = new RtpReceiveStats();
  onRtp: ((packet: Buffer) => void) | undefined;
  onRtcp: ((packet: Buffer) => void) | undefined;
  clocks: ReadonlyMap<number, number> = new Map();
  /** Send errors (ICMP unreachable and the like): counted, never thrown. */
  sendErrors = 0;
  readonly #slot: PortSlot;
  readonly #pool: PortPool;
  readonly #rtp: LatchedFlow;
  readonly #rtcp: LatchedFlow | undefined;
  #closed: Promise<void> | undefined;

  constructor(slot: PortSlot, pool: PortPool) {
    this.#slot = slot;
    this.#pool = pool;
    this.#rtp = new LatchedFlow(slot.rtp);
    this.#rtcp = slot.rtcp !== undefined ? new LatchedFlow(slot.rtcp) : undefined;
    slot.rtp.on('message', (m, r) => this.#onRtpSocket(m, r.address, r.port));
    slot.rtp.on('error', () => { this.sendErrors++; });
    slot.rtcp?.on('message', (m, r) => this.#onRtcpSocket(m, r.address, r.port));
    slot.rtcp?.on('error', () => { this.sendErrors++; });
  }

  get port(): number {
    return this.#slot.port;
  }

  /** Where the packets go until the device has sent (from its SDP). */
  setRemote(rtp: Target | undefined, rtcp: Target | undefined): void {
    this.#rtp.signal(rtp);
    this.#rtcp?.signal(rtcp);
  }

  /** Where RTP goes now (latched source, else the signalled address). */
  get destination(): Target | undefined {
    return this.#rtp.destination;
  }

  sendRtp(packet: Buffer): void {
    this.#rtp.send(packet);
  }

  sendRtcp(packet: Buffer): void {
    (this.#rtcp ?? this.#rtp).send(packet);
  }

  #onRtpSocket(m: Buffer, address: string, port: number): void {
    const now = performance.now();
    if (!this.#rtp.accept(address, port, now)) return;
    this.stats.count(m.length, now);
    if (isRtp(m)) {
      this.stats.rtp(m, now, this.clocks.get(m[1]! & 0x7f) ?? 8000);
      this.onRtp?.(m);
    } else if (isRtcp(m)) this.onRtcp?.(m); // RTCP on the RTP port (rtcp-mux)
  }

  #onRtcpSocket(m: Buffer, address: string, port: number): void {
    const now = performance.now();
    if (this.#rtcp === undefined || !this.#rtcp.accept(address, port, now)) return;
    this.stats.count(m.length, now);
    if (isRtcp(m)) this.onRtcp?.(m);
  }

  close(): Promise<void> {
    this.onRtp = undefined;
    this.onRtcp = undefined;
    this.#closed ??= this.#pool.release(this.#slot);
    return this.#closed;
  }
}
