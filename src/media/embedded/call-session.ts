// One call in the embedded engine: a leg per device, each holding its own UDP port(s), and
// the forwarding between the two legs that an answer linked.
//
//     caller's device                    engine                         callee's device
//    (phone or browser)  <-->  [caller leg] ==forward==> [branch leg]  <-->  (browser or phone)
//                                   ^ <====forward====== |
//
// The caller leg is made by the first offer (its SDP is the same for every branch of a forked
// INVITE); each branch gets its own leg toward its device. An answer links the caller leg to
// the answering branch (a later answer from another branch re-links). In-dialog offers
// (re-INVITE, UPDATE) name the sender by its dialog tag and reuse both legs and their ports.
// Forwarding rewrites only the payload type byte, when the two SDPs number a codec
// differently: SSRC, sequence numbers and timestamps pass as the sender wrote them.
import { randomInt } from 'node:crypto';
import type { DirectionStats, Endpoint, MediaAnswer, MediaOffer, MediaStats } from '../engine.ts';
import { answerable, clockRates, codecKey, offerable, payloadTypeMap } from './codecs.ts';
import type { DtlsCertificate, DtlsRole } from './dtls.ts';
import { EmbeddedMediaError } from './errors.ts';
import type { PortPool } from './port-pool.ts';
import { RtpLeg } from './rtp-leg.ts';
import type { RtpReceiveStats } from './rtp-stats.ts';
import { audioOf, type Codec, type MediaSection, type SessionDescription, type Setup, writeSdp } from './sdp.ts';
import { WebRtcLeg } from './webrtc-leg.ts';

/** What the session needs of a leg, whatever it speaks. */
export interface MediaLeg {
  readonly endpoint: Endpoint;
  readonly port: number;
  readonly stats: RtpReceiveStats;
  /** Plain RTP / RTCP received from the device (decrypted for a browser). */
  onRtp: ((packet: Buffer) => void) | undefined;
  onRtcp: ((packet: Buffer) => void) | undefined;
  /** Clock rate per payload type, for jitter. */
  clocks: ReadonlyMap<number, number>;
  sendRtp(packet: Buffer): void;
  sendRtcp(packet: Buffer): void;
  close(): Promise<void>;
}

export interface SessionContext {
  readonly pool: PortPool;
  readonly advertiseAddress: string;
  readonly certificate: () => Promise<DtlsCertificate>;
}

interface Leg {
  readonly key: string;
  /** The dialog tag of the device (the branch key until its answer names it). */
  tag: string;
  readonly media: RtpLeg | WebRtcLeg;
  /** The device's own SDP (its audio stream, and the whole for answering an offer). */
  remote: { readonly desc: SessionDescription; readonly index: number; readonly audio: MediaSection } | undefined;
  /** The codecs of the last SDP the engine sent the device. */
  told: readonly Codec[];
  peer: Leg | undefined;
  readonly sessionId: string;
  version: number;
  lastBody: string;
}

/** RFC 1918, CGNAT, link-local and ULA addresses: what a phone behind NAT writes in its SDP. */
function isPrivate(a: string): boolean {
  return /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.|169\.254\.|0\.0\.0\.0$)/.test(a) || /^f[cd]|^fe80:/i.test(a);
}

function isEvent(c: Codec): boolean {
  return c.name.toLowerCase() === 'telephone-event';
}

export class CallSession {
  readonly callId: string;
  readonly #ctx: SessionContext;
  readonly #branches = new Map<string, Leg>();
  #caller: Promise<Leg> | undefined;
  #callerLeg: Leg | undefined;
  #closed = false;
  #pending = 0;
  readonly #createdAt = performance.now();

  constructor(callId: string, ctx: SessionContext) {
    this.callId = callId;
    this.#ctx = ctx;
  }

  get legCount(): number {
    return this.#branches.size + (this.#callerLeg !== undefined ? 1 : 0);
  }

  async offer(o: MediaOffer): Promise<string> {
    const parsed = audioOf(o.sdp, this.callId);
    const existing = o.toTag !== undefined && o.toTag !== '' ? [this.#byTag(o.fromTag), this.#byTag(o.toTag)] : [];
    const inDialog = existing[0] !== undefined && existing[1] !== undefined;
    // Everything that can be refused is checked before a port is taken.
    const from = inDialog ? existing[0]!.media.endpoint : o.from;
    const to = inDialog ? existing[1]!.media.endpoint : o.to;
    const codecs = offerable(parsed.audio.codecs, from, to);
    if (!codecs.some((c) => !isEvent(c))) {
      throw new EmbeddedMediaError('MEDIA_NO_CODEC', `call ${this.callId}: no codec of [${parsed.audio.codecs.map(codecKey).join(', ')}] can reach a ${to} device without transcoding`);
    }
    if (from === 'webrtc') this.#checkWebRtc(parsed.audio);
    let sender: Leg;
    let receiver: Leg;
    if (inDialog) [sender, receiver] = [existing[0]!, existing[1]!];
    else {
      this.#pending++;
      try {
        this.#caller ??= this.#newLeg(o.from, 'caller', o.fromTag).then((l) => (this.#callerLeg = l));
        sender = await this.#caller;
        const key = o.branch ?? `branch-${this.#branches.size}`;
        receiver = this.#branches.get(key) ?? await this.#newLeg(o.to, key, key, this.#branches);
      } finally {
        this.#pending--;
      }
    }
    this.#setRemote(sender, parsed, o.sourceAddress);
    receiver.told = codecs;
    if (sender.peer === receiver) this.#link(sender, receiver); // re-INVITE: payload types may have moved
    return this.#write(receiver, codecs, parsed.audio, 'actpass');
  }

  /** No branch leg and no offer in flight: an offer failed and nothing of the call is in use. */
  get unused(): boolean {
    return this.#pending === 0 && this.#branches.size === 0;
  }

  async answer(a: MediaAnswer): Promise<string> {
    const parsed = audioOf(a.sdp, this.callId);
    const answering = a.branch !== undefined ? this.#branches.get(a.branch) : this.#byTag(a.toTag);
    const offerer = this.#byTag(a.fromTag) ?? this.#callerLeg;
    if (answering === undefined || offerer === undefined || offerer.remote === undefined || offerer === answering) {
      throw new EmbeddedMediaError('MEDIA_UNKNOWN_CALL', `call ${this.callId}: no offer for the answer of ${a.branch ?? a.toTag}`);
    }
    if (a.branch !== undefined && a.toTag !== '') answering.tag = a.toTag;
    this.#setRemote(answering, parsed, a.sourceAddress);
    const told = new Set(answering.told.map(codecKey));
    const codecs = answerable(offerer.remote.audio.codecs, parsed.audio.codecs.filter((c) => told.has(codecKey(c))));
    if (codecs.length === 0) {
      throw new EmbeddedMediaError('MEDIA_NO_CODEC', `call ${this.callId}: the answer's codecs [${parsed.audio.codecs.map(codecKey).join(', ')}] were not offered`);
    }
    offerer.told = codecs;
    this.#link(offerer, answering);
    if (answering.media instanceof WebRtcLeg) {
      // We offered actpass; the browser chose (RFC 5763 §5): active makes us the server.
      answering.media.startDtls(parsed.audio.setup === 'passive' ? 'client' : 'server');
    }
    let setup: Setup = 'actpass';
    if (offerer.media instanceof WebRtcLeg) {
      // RFC 5763 §5: the answerer picks; `active` (RECOMMENDED) unless the browser took it.
      const role: DtlsRole = offerer.media.role ?? (offerer.remote.audio.setup === 'active' ? 'server' : 'client');
      offerer.media.startDtls(role);
      setup = offerer.media.role === 'server' ? 'passive' : 'active';
    }
    return this.#write(offerer, codecs, parsed.audio, setup, offerer.remote);
  }

  /** Releases one branch's leg (a branch that will not answer). */
  async deleteBranch(branch: string): Promise<void> {
    const leg = this.#branches.get(branch);
    if (leg === undefined) return;
    this.#branches.delete(branch);
    if (leg.peer?.peer === leg) this.#unlink(leg.peer);
    await leg.media.close();
  }

  stats(): MediaStats {
    const legs: Array<{ tag: string; received: DirectionStats }> = [];
    let last = this.#createdAt;
    for (const l of this.#legs()) {
      legs.push({ tag: l.tag, received: l.media.stats.snapshot() });
      last = Math.max(last, l.media.stats.lastPacketAt);
    }
    return { callId: this.callId, legs, idleMs: Math.round(performance.now() - last) };
  }

  /** Closes every leg (and so every socket) of the call. */
  async close(): Promise<void> {
    this.#closed = true;
    const legs = [...this.#legs()];
    this.#branches.clear();
    if (this.#caller !== undefined) await this.#caller.catch(() => undefined); // an allocation in flight
    this.#callerLeg = undefined;
    await Promise.all(legs.map((l) => l.media.close()));
  }

  *#legs(): Iterable<Leg> {
    if (this.#callerLeg !== undefined) yield this.#callerLeg;
    yield* this.#branches.values();
  }

  #byTag(tag: string): Leg | undefined {
    for (const l of this.#legs()) if (l.tag === tag) return l;
    return undefined;
  }

  async #newLeg(endpoint: Endpoint, key: string, tag: string, into?: Map<string, Leg>): Promise<Leg> {
    const pool = this.#ctx.pool;
    const cert = endpoint === 'webrtc' ? await this.#ctx.certificate() : undefined;
    const slot = await pool.allocate(endpoint === 'rtp');
    const media = cert !== undefined ? new WebRtcLeg(slot, pool, cert) : new RtpLeg(slot, pool);
    const leg: Leg = { key, tag, media, remote: undefined, told: [], peer: undefined, sessionId: String(randomInt(1, 2 ** 47)), version: 0, lastBody: '' };
    if (this.#closed) {
      await media.close();
      throw new EmbeddedMediaError('MEDIA_CLOSED', `call ${this.callId} was released while its media was being set up`);
    }
    into?.set(key, leg);
    return leg;
  }

  /** The device's SDP: where to send (phone) or whom to expect (browser). */
  #setRemote(leg: Leg, parsed: NonNullable<Leg['remote']>, sourceAddress: string | undefined): void {
    const a = parsed.audio;
    leg.remote = parsed;
    const m = leg.media;
    if (m instanceof WebRtcLeg) {
      this.#checkWebRtc(a);
      m.setRemote(a.iceUfrag, a.fingerprints);
      return;
    }
    // A private address in the SDP of a device whose SIP came from elsewhere: it is behind NAT,
    // so its packets will come from (and ours should go to) that public address.
    const nat = (x: string | undefined): string | undefined => (x === undefined || (sourceAddress !== undefined && isPrivate(x) && x !== sourceAddress) ? sourceAddress : x);
    const address = nat(a.address);
    const rtp = address !== undefined ? { address, port: a.port } : undefined;
    const rtcpAddress = nat(a.rtcpAddress ?? a.address);
    // The engine never offers a phone rtcp-mux, so RTCP has its own port (RFC 5761 §5.1.1).
    const rtcp = rtcpAddress !== undefined ? { address: rtcpAddress, port: a.rtcpPort ?? a.port + 1 } : undefined;
    m.setRemote(rtp, rtcp);
  }

  #checkWebRtc(a: MediaSection): void {
    if (a.iceUfrag === undefined || a.icePwd === undefined || a.fingerprints.length === 0) {
      throw new EmbeddedMediaError('MEDIA_BAD_SDP', `call ${this.callId}: a browser's SDP without ICE credentials or DTLS fingerprint`);
    }
  }

  /** Forwarding both ways between `a` and `b`, with the payload type rewrites each way needs. */
  #link(a: Leg, b: Leg): void {
    if (a.peer !== undefined && a.peer !== b) this.#unlink(a.peer);
    a.peer = b;
    b.peer = a;
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const ofFrom = from.remote?.audio.codecs ?? [];
      const map = payloadTypeMap(ofFrom, from.told, to.remote?.audio.codecs ?? [], to.told);
      from.media.clocks = clockRates(ofFrom, from.told);
      const out = to.media;
      from.media.onRtp = map.size === 0 ? (p) => out.sendRtp(p) : (p) => {
        const pt = map.get(p[1]! & 0x7f);
        if (pt !== undefined) p[1] = (p[1]! & 0x80) | pt;
        out.sendRtp(p);
      };
      from.media.onRtcp = (p) => out.sendRtcp(p);
    }
  }

  #unlink(leg: Leg): void {
    leg.peer = undefined;
    leg.media.onRtp = undefined;
    leg.media.onRtcp = undefined;
  }

  /** The SDP for `leg`'s device; an answer when `offer` (the device's own offer) is given. */
  #write(leg: Leg, codecs: readonly Codec[], from: MediaSection, setup: Setup, offer?: NonNullable<Leg['remote']>): string {
    const m = leg.media;
    const local = {
      sessionId: leg.sessionId, version: leg.version, address: this.#ctx.advertiseAddress, port: m.port, codecs,
      direction: from.direction, ptime: from.ptime,
      ...(m instanceof WebRtcLeg ? {
        webrtc: { ufrag: m.ufrag, pwd: m.pwd, fingerprint: m.fingerprint, setup, mid: (offer ?? leg.remote)?.audio.mid ?? '0', msid: `${leg.sessionId}-audio` },
      } : {}),
    };
    const answerTo = offer !== undefined ? { desc: offer.desc, audioIndex: offer.index } : undefined;
    const body = writeSdp(local, answerTo);
    if (body === leg.lastBody) return body;
    // RFC 3264 §8: a changed SDP carries a higher o= version than the last one
    leg.version++;
    leg.lastBody = writeSdp({ ...local, version: leg.version }, answerTo);
    return leg.lastBody;
  }
}
