// Codec negotiation without transcoding: which of an offer's codecs the other side may be
// offered, which the answer keeps, and how payload type numbers are rewritten when the two
// sides number the same codec differently (RFC 3264 §6.1 only RECOMMENDS reusing the offer's
// numbers; phones do renumber dynamic types).
//
// Toward or from a browser only what both worlds decode is kept: G.711 (PCMU, PCMA) and Opus,
// plus telephone-event (RFC 4733, DTMF) at the clock rate of a kept codec. Chromium offers
// "opus red G722 PCMU PCMA CN telephone-event/48000 telephone-event/8000": RED needs the
// browser's redundancy format, G722 is left out by design (the issue: G.711 and Opus), CN is
// comfort noise a browser does not send. Opus stays in the browser's order, so a phone that
// speaks Opus (Linphone, baresip with its opus module) gets wideband audio and one that does
// not (baresip with g711 only) answers PCMU or PCMA; the browser then sends what the phone
// chose. Between two plain RTP phones (relay) every codec passes: both speak RTP/AVP and the
// engine only forwards packets.
import type { Endpoint } from '../engine.ts';
import type { Codec } from './sdp.ts';

/** name/clock/channels, lower case: how two SDPs name the same codec. */
export function codecKey(c: Codec): string {
  return `${c.name.toLowerCase()}/${c.clock}/${c.channels}`;
}

const BRIDGEABLE: ReadonlySet<string> = new Set(['pcmu/8000/1', 'pcma/8000/1', 'opus/48000/2']);

function isEvent(c: Codec): boolean {
  return c.name.toLowerCase() === 'telephone-event';
}

/** The codecs of an offer from `from` that may be offered to `to`, in the offer's order. */
export function offerable(codecs: readonly Codec[], from: Endpoint, to: Endpoint): Codec[] {
  if (from === 'rtp' && to === 'rtp') return [...codecs];
  const audio = codecs.filter((c) => BRIDGEABLE.has(codecKey(c)));
  const rates = new Set(audio.map((c) => c.clock));
  return codecs.filter((c) => audio.includes(c) || (isEvent(c) && rates.has(c.clock)));
}

/**
 * The codecs of an answer, for the offerer: those of `answered` (in the answerer's order,
 * with its fmtp) that the offerer offered, numbered as the offerer numbered them.
 */
export function answerable(offered: readonly Codec[], answered: readonly Codec[]): Codec[] {
  const out: Codec[] = [];
  for (const a of answered) {
    const o = offered.find((c) => codecKey(c) === codecKey(a));
    if (o === undefined || out.some((c) => c.pt === o.pt)) continue;
    out.push({ pt: o.pt, name: o.name, clock: o.clock, channels: o.channels, ...(a.fmtp !== undefined ? { fmtp: a.fmtp } : {}) });
  }
  // telephone-event alone carries no audio: an answer needs a real codec
  return out.some((c) => !isEvent(c)) ? out : [];
}

/**
 * Payload type rewriting for packets from device L to device M. L sends with the numbers of
 * the SDP it received from the engine (`toL`), falling back to its own (`ofL`: a phone that
 * renumbered sends its own numbers); M expects the numbers of its own SDP (`ofM`), else those
 * the engine sent it (`toM`). Only the types that change are in the map.
 */
export function payloadTypeMap(ofL: readonly Codec[], toL: readonly Codec[], ofM: readonly Codec[], toM: readonly Codec[]): Map<number, number> {
  const sent = new Map<number, string>();
  for (const c of [...ofL, ...toL]) sent.set(c.pt, codecKey(c)); // toL wins
  const expected = new Map<string, number>();
  for (const c of [...toM, ...ofM]) expected.set(codecKey(c), c.pt); // ofM wins
  const map = new Map<number, number>();
  for (const [pt, key] of sent) {
    const out = expected.get(key);
    if (out !== undefined && out !== pt) map.set(pt, out);
  }
  return map;
}

/** The clock rate of a payload type as L uses it (RTP timestamps, jitter); 8000 when unknown. */
export function clockRates(...lists: ReadonlyArray<readonly Codec[]>): Map<number, number> {
  const m = new Map<number, number>();
  for (const list of lists) for (const c of list) m.set(c.pt, c.clock);
  return m;
}
