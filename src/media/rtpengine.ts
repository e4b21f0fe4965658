// The RTPEngine driver of MediaEngine: ng-protocol `offer`, `answer`, `delete` and `query`
// with the flag sets that make a browser (ICE + DTLS-SRTP, rtcp-mux) and a plain RTP phone
// hear each other without transcoding, and that relay (latch onto) a phone behind NAT.
//
// Flags per receiving side (measured with Chromium and RTPEngine 10.5, shared/DESIGN.md):
//   toward a browser:  ICE force, DTLS-SRTP (UDP/TLS/RTP/SAVPF), rtcp-mux offered/required,
//                      a=mid generated; no DTLS role flag: offers carry setup:actpass (RFC 5763
//                      §5, the offerer's MUST), and a forced role on an answer leaves
//                      Chromium's DTLS stuck
//   toward a phone:    ICE removed, plain RTP/AVP, rtcp-mux demuxed, no SDES/DTLS
// Always: the SDP origin and connection address are rewritten to RTPEngine's, and the
// address the SDP's sender really used is trusted over the one it wrote (NAT).
// Codecs (bridge only): RTPEngine transcodes nothing unless told to, so an offer crossing
// between a browser and a phone keeps only what both worlds decode, as the embedded engine
// does (src/media/embedded/codecs.ts): PCMU, PCMA, Opus and telephone-event. Chromium's RED,
// G722 and CN never reach a phone, a phone's G.729 or GSM never reaches a browser, and the
// answerer can only pick a codec the other side sends as is. Between two phones every codec
// passes (relay forwards packets).
import type { DirectionStats, Endpoint, MediaAnswer, MediaEngine, MediaOffer, MediaStats } from './engine.ts';
import type { BValue } from './bencode.ts';
import { NgClient, type NgClientOptions, type NgDict, NgError } from './ng-client.ts';

export interface RtpEngineOptions extends NgClientOptions {}

/** What a bridged leg may carry without transcoding (codec names as RTPEngine matches them). */
export const BRIDGE_CODECS: readonly string[] = ['opus', 'PCMU', 'PCMA', 'telephone-event'];

/** The ng `codec` dictionary of an offer from `from` to `to`, when codecs must be narrowed. */
export function codecFlags(from: Endpoint, to: Endpoint): NgDict {
  if (from === 'rtp' && to === 'rtp') return {};
  return { codec: { strip: ['all'], except: [...BRIDGE_CODECS] } };
}

function sideFlags(to: Endpoint, isOffer: boolean): NgDict {
  if (to === 'webrtc') {
    return {
      ICE: 'force',
      'transport-protocol': 'UDP/TLS/RTP/SAVPF',
      'rtcp-mux': isOffer ? ['offer'] : ['require'],
      SDES: ['off'],
      flags: ['generate-mid'],
    };
  }
  return { ICE: 'remove', 'transport-protocol': 'RTP/AVP', 'rtcp-mux': ['demux'], SDES: ['off'], DTLS: 'off' };
}

function common(o: MediaOffer): NgDict {
  const d: NgDict = { 'call-id': o.callId, 'from-tag': o.fromTag, sdp: o.sdp, replace: ['origin', 'session-connection'] };
  if (o.branch !== undefined) d['via-branch'] = o.branch;
  if (o.toTag !== undefined && o.toTag !== '') d['to-tag'] = o.toTag;
  if (o.sourceAddress !== undefined) d['received-from'] = [o.sourceAddress.includes(':') ? 'IP6' : 'IP4', o.sourceAddress];
  return d;
}

export class RtpEngineDriver implements MediaEngine {
  readonly name = 'rtpengine';
  readonly #ng: NgClient;

  constructor(opts: RtpEngineOptions) {
    this.#ng = new NgClient(opts);
  }

  async offer(o: MediaOffer): Promise<string> {
    const params: NgDict = { ...common(o), ...sideFlags(o.to, true), ...codecFlags(o.from, o.to) };
    return sdpOf(await this.#ng.request('offer', params, o.callId));
  }

  async answer(a: MediaAnswer): Promise<string> {
    const params: NgDict = { ...common(a), 'to-tag': a.toTag, ...sideFlags(a.to, false) };
    return sdpOf(await this.#ng.request('answer', params, a.callId));
  }

  async delete(callId: string, fromTag?: string, branch?: string): Promise<void> {
    const params: NgDict = { 'call-id': callId, 'delete-delay': 0 };
    if (fromTag !== undefined) params['from-tag'] = fromTag;
    if (branch !== undefined) params['via-branch'] = branch;
    try {
      await this.#ng.request('delete', params, callId);
    } catch (e) {
      // Already gone (timed out, deleted by the other branch): the goal is reached.
      if (!(e instanceof NgError) || e.code !== 'NG_ERROR') throw e;
    } finally {
      if (branch === undefined) this.#ng.forget(callId);
    }
  }

  async stats(callId: string): Promise<MediaStats | undefined> {
    let q: NgDict;
    try {
      q = await this.#ng.request('query', { 'call-id': callId }, callId);
    } catch (e) {
      if (e instanceof NgError && e.code === 'NG_ERROR') return undefined; // unknown call
      throw e;
    }
    const quality = rtcpQuality(dict(q['SSRC']));
    const legs: Array<{ tag: string; received: DirectionStats }> = [];
    let lastPacket = 0;
    for (const [tag, t] of Object.entries(dict(q['tags']))) {
      let packets = 0;
      let bytes = 0;
      let reported: { lossPercent: number; jitterMs: number } | undefined;
      for (const m of list(dict(t)['medias'])) {
        for (const s of list(dict(m)['streams'])) {
          const stream = dict(s);
          const st = dict(stream['stats']);
          lastPacket = Math.max(lastPacket, num(stream['last packet']));
          if (!list(stream['flags']).includes('RTP')) continue; // RTCP carries no audio
          packets += num(st['packets']);
          bytes += num(st['bytes']);
          reported ??= quality.get(String(num(stream['SSRC'])));
        }
      }
      legs.push({ tag, received: { packets, bytes, ...reported } });
    }
    const created = num(q['created']);
    const now = Math.floor(Date.now() / 1000);
    return { callId, legs, ...(created > 0 ? { idleMs: Math.max(0, now - Math.max(lastPacket, created)) * 1000 } : {}) };
  }

  /** Instances answering `ping`. */
  ping(): Promise<boolean[]> {
    return this.#ng.ping();
  }

  async close(): Promise<void> {
    this.#ng.close();
  }
}

/**
 * Loss and jitter per SSRC from the query's `SSRC` section: RTPEngine averages the RTCP
 * receiver reports (RFC 3550 §6.4.2) the far device sent about that SSRC ("packet loss" in
 * percent, "jitter" in ms). RTPEngine 10.5 (Debian 12) leaves the section empty even with
 * SR/RR flowing (docs/pitfalls.md); then loss and jitter stay unknown rather than zero.
 */
export function rtcpQuality(ssrcs: { [ssrc: string]: BValue }): Map<string, { lossPercent: number; jitterMs: number }> {
  const out = new Map<string, { lossPercent: number; jitterMs: number }>();
  for (const [ssrc, entry] of Object.entries(ssrcs)) {
    const avg = dict(dict(entry)['average MOS']);
    if (avg['packet loss'] === undefined || avg['jitter'] === undefined) continue;
    out.set(ssrc, { lossPercent: num(avg['packet loss']), jitterMs: num(avg['jitter']) });
  }
  return out;
}

function sdpOf(answer: NgDict): string {
  const sdp = answer['sdp'];
  if (typeof sdp !== 'string' || sdp === '') throw new NgError('NG_BAD_ANSWER', 'RTPEngine answered without an SDP');
  return sdp;
}

function dict(v: BValue | undefined): { [key: string]: BValue } {
  return v !== undefined && typeof v === 'object' && !Array.isArray(v) ? v : {};
}

function list(v: BValue | undefined): BValue[] {
  return Array.isArray(v) ? v : [];
}

function num(v: BValue | undefined): number {
  return typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : 0;
}
