// The media engine boundary: the proxy rewrites SDP only through this interface, and the
// drivers behind it (RTPEngine over the ng protocol; later an embedded one) relay or bridge
// the audio. Modelled on Kamailio's rtpengine module: `offer` on the SDP of a request,
// `answer` on the SDP of the reply, `delete` when the call ends, `stats` any time.
//
// What each call leg needs follows from the two ends (DESIGN: routing, media mode):
//   webrtc <-> webrtc  p2p     the engine is not asked; ICE finds a path (STUN/TURN)
//   webrtc <-> rtp     bridge  ICE + DTLS-SRTP on the browser side, plain RTP on the other
//   rtp    <-> rtp     direct  when both ends can reach each other; relay (symmetric RTP
//                              latching) when an end is behind NAT

/** What a call leg speaks: a browser (ICE, DTLS-SRTP, rtcp-mux) or a plain RTP phone. */
export type Endpoint = 'webrtc' | 'rtp';

export type MediaMode = 'p2p' | 'direct' | 'relay' | 'bridge';

export interface MediaOffer {
  readonly callId: string;
  /** From tag of the dialog's initiator. */
  readonly fromTag: string;
  /** The branch the offer is for, when one INVITE forks to several devices. */
  readonly branch?: string;
  /** The other side's tag, for offers inside an established dialog (re-INVITE, UPDATE). */
  readonly toTag?: string;
  readonly sdp: string;
  /** What sent this SDP, and what will receive the rewritten one. */
  readonly from: Endpoint;
  readonly to: Endpoint;
  /** The address the SDP's sender really sent from (NAT: the SDP may name a private one). */
  readonly sourceAddress?: string;
}

export interface MediaAnswer extends MediaOffer {
  /** To tag of the answering leg. */
  readonly toTag: string;
}

export interface DirectionStats {
  readonly packets: number;
  readonly bytes: number;
  /** Packets lost (sequence gaps), when the engine counts them. */
  readonly lost?: number;
  /** Share of the expected packets lost, in percent, when the engine knows. */
  readonly lossPercent?: number;
  /** Interarrival jitter in ms (RFC 3550 §6.4.1), when the engine knows. */
  readonly jitterMs?: number;
}

/**
 * Per leg (by dialog tag): the stream the leg's device sent. The embedded engine measures it
 * where it arrives (first hop); RTPEngine reports what the receiving device said of it in
 * RTCP receiver reports (end to end), and only when the devices send RTCP.
 */
export interface MediaStats {
  readonly callId: string;
  readonly legs: ReadonlyArray<{ readonly tag: string; readonly received: DirectionStats }>;
  /** ms since the last packet on any leg, when the engine knows. */
  readonly idleMs?: number;
}

export interface MediaEngine {
  readonly name: string;
  /** The rewritten SDP for the receiver of an offer. */
  offer(o: MediaOffer): Promise<string>;
  /** The rewritten SDP for the receiver of an answer (the offerer). */
  answer(a: MediaAnswer): Promise<string>;
  /** Releases the call (or one branch of it); resolves even when the engine no longer knows it. */
  delete(callId: string, fromTag?: string, branch?: string): Promise<void>;
  stats(callId: string): Promise<MediaStats | undefined>;
  close(): Promise<void>;
}

/** A browser's SDP: DTLS-SRTP with ICE (RFC 8829 JSEP); anything else is plain RTP. */
export function endpointOf(sdp: string): Endpoint {
  return /^m=audio \d+ UDP\/TLS\/RTP\/SAVPF? /m.test(sdp) && /^a=fingerprint:/m.test(sdp) ? 'webrtc' : 'rtp';
}

/** The media mode of a call between two ends; `natted` when either end is behind NAT. */
export function mediaMode(a: Endpoint, b: Endpoint, natted: boolean): MediaMode {
  if (a === 'webrtc' && b === 'webrtc') return 'p2p';
  if (a !== b) return 'bridge';
  return natted ? 'relay' : 'direct';
}
