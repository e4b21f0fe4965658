// Just enough SDP (RFC 4566 / RFC 8866) for the embedded engine: read the audio stream of a
// phone's or a browser's SDP, and write the SDP the engine sends to the other side.
//
//   v=0
//   o=<username> <sess-id> <sess-version> IN IP4 <address>
//   s=<session name>
//   c=IN IP4 <connection address>            session level, or per m= line
//   t=0 0
//   m=audio <port> <proto> <fmt> ...         RTP/AVP (phone), UDP/TLS/RTP/SAVPF (browser)
//   a=rtpmap:<pt> <name>/<clock>[/<channels>]
//   a=fmtp:<pt> <parameters>
//   a=sendrecv | sendonly | recvonly | inactive
//   a=rtcp:<port> [IN IP4 <address>]         RFC 3605; default: the RTP port + 1
//   a=rtcp-mux                               RFC 5761
//   a=ice-ufrag / a=ice-pwd / a=ice-lite     RFC 8839
//   a=fingerprint:<hash> <hex> / a=setup:... RFC 8122, RFC 5763 (DTLS-SRTP)
//   a=mid:<id>                               RFC 5888 (BUNDLE, RFC 8843)
//
// Only what the engine needs is kept; everything else (extmap, rtcp-fb, ssrc, candidates of
// the browser: an ICE-lite agent answers the checks instead) is dropped on the way through.
import { EmbeddedMediaError } from './errors.ts';

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
export type Setup = 'actpass' | 'active' | 'passive' | 'holdconn';

export interface Codec {
  readonly pt: number;
  /** As written in a=rtpmap (e.g. "PCMU", "opus", "telephone-event"). */
  readonly name: string;
  readonly clock: number;
  readonly channels: number;
  readonly fmtp?: string;
}

export interface Fingerprint { readonly algorithm: string; readonly value: string }

export interface MediaSection {
  readonly type: string;
  readonly port: number;
  readonly proto: string;
  readonly fmts: readonly string[];
  /** The connection address: the m= line's c=, else the session's. */
  readonly address: string | undefined;
  readonly rtcpPort: number | undefined;
  readonly rtcpAddress: string | undefined;
  readonly rtcpMux: boolean;
  readonly direction: Direction;
  readonly codecs: readonly Codec[];
  readonly ptime: number | undefined;
  readonly mid: string | undefined;
  readonly iceUfrag: string | undefined;
  readonly icePwd: string | undefined;
  readonly fingerprints: readonly Fingerprint[];
  readonly setup: Setup | undefined;
}

export interface SessionDescription {
  readonly media: readonly MediaSection[];
}

/** RFC 3551 Table 4: static payload types, used when an SDP names one without a=rtpmap. */
const STATIC: ReadonlyMap<number, readonly [string, number]> = new Map([
  [0, ['PCMU', 8000]], [3, ['GSM', 8000]], [4, ['G723', 8000]], [8, ['PCMA', 8000]],
  [9, ['G722', 8000]], [13, ['CN', 8000]], [18, ['G729', 8000]],
]);

const DIRECTIONS: ReadonlySet<string> = new Set(['sendrecv', 'sendonly', 'recvonly', 'inactive']);
const SETUPS: ReadonlySet<string> = new Set(['actpass', 'active', 'passive', 'holdconn']);

export function parseSdp(sdp: string): SessionDescription {
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 1 && l[1] === '=');
  // Session-level values apply to every m= section that does not override them.
  let sessionAddress: string | undefined;
  const sessionAttrs: string[] = [];
  const blocks: Array<{ m: string; c: string | undefined; attrs: string[] }> = [];
  for (const line of lines) {
    const kind = line[0];
    const value = line.slice(2).trim();
    const block = blocks.at(-1);
    if (kind === 'm') blocks.push({ m: value, c: undefined, attrs: [] });
    else if (kind === 'c') {
      const address = /^IN IP[46] ([^\s/]+)/.exec(value)?.[1];
      if (block === undefined) sessionAddress = address;
      else block.c = address;
    } else if (kind === 'a') (block === undefined ? sessionAttrs : block.attrs).push(value);
  }
  return { media: blocks.map((b) => section(b.m, b.c ?? sessionAddress, sessionAttrs, b.attrs)) };
}

function section(m: string, address: string | undefined, sessionAttrs: readonly string[], attrs: readonly string[]): MediaSection {
  const [type = '', port = '0', proto = '', ...fmts] = m.split(/\s+/);
  const rtpmap = new Map<number, { name: string; clock: number; channels: number }>();
  const fmtp = new Map<number, string>();
  let direction: Direction | undefined;
  let sessionDirection: Direction | undefined;
  let rtcpPort: number | undefined;
  let rtcpAddress: string | undefined;
  let rtcpMux = false;
  let ptime: number | undefined;
  let mid: string | undefined;
  const ice = { ufrag: undefined as string | undefined, pwd: undefined as string | undefined };
  const fingerprints: Fingerprint[] = [];
  let setup: Setup | undefined;
  const read = (a: string, media: boolean): void => {
    const colon = a.indexOf(':');
    const name = colon < 0 ? a : a.slice(0, colon);
    const value = colon < 0 ? '' : a.slice(colon + 1).trim();
    if (DIRECTIONS.has(name)) {
      if (media) direction = name as Direction;
      else sessionDirection = name as Direction;
    } else if (name === 'ice-ufrag') ice.ufrag = value;
    else if (name === 'ice-pwd') ice.pwd = value;
    else if (name === 'fingerprint') {
      const [algorithm, fp] = value.split(/\s+/);
      if (algorithm !== undefined && fp !== undefined) fingerprints.push({ algorithm: algorithm.toLowerCase(), value: fp.toUpperCase() });
    } else if (name === 'setup' && SETUPS.has(value)) setup = value as Setup;
    else if (!media) return;
    else if (name === 'rtpmap') {
      const r = /^(\d+)\s+([^/\s]+)\/(\d+)(?:\/(\d+))?/.exec(value);
      if (r !== null) rtpmap.set(Number(r[1]), { name: r[2] ?? '', clock: Number(r[3]), channels: r[4] !== undefined ? Number(r[4]) : 1 });
    } else if (name === 'fmtp') {
      const r = /^(\d+)\s+(.*)$/.exec(value);
      if (r !== null) fmtp.set(Number(r[1]), r[2] ?? '');
    } else if (name === 'rtcp') {
      const r = /^(\d+)(?:\s+IN\s+IP[46]\s+(\S+))?/.exec(value);
      if (r !== null) { rtcpPort = Number(r[1]); rtcpAddress = r[2]; }
    } else if (name === 'rtcp-mux') rtcpMux = true;
    else if (name === 'ptime') ptime = Number(value) || undefined;
    else if (name === 'mid') mid = value;
  };
  for (const a of sessionAttrs) read(a, false);
  for (const a of attrs) read(a, true);
  const codecs: Codec[] = [];
  for (const f of fmts) {
    if (!/^\d+$/.test(f)) continue;
    const pt = Number(f);
    const fixed = STATIC.get(pt);
    const known = rtpmap.get(pt) ?? (fixed !== undefined ? { name: fixed[0], clock: fixed[1], channels: 1 } : undefined);
    if (known === undefined) continue;
    const p = fmtp.get(pt);
    codecs.push({ pt, ...known, ...(p !== undefined ? { fmtp: p } : {}) });
  }
  return {
    type, port: Number(port) || 0, proto, fmts, address, rtcpPort, rtcpAddress, rtcpMux,
    direction: direction ?? sessionDirection ?? 'sendrecv', codecs, ptime, mid,
    iceUfrag: ice.ufrag, icePwd: ice.pwd, fingerprints, setup,
  };
}

/** The first audio stream of an SDP (the one the engine relays or bridges) and its index. */
export function audioOf(sdp: string, callId: string): { readonly desc: SessionDescription; readonly index: number; readonly audio: MediaSection } {
  const desc = parseSdp(sdp);
  const index = desc.media.findIndex((m) => m.type === 'audio' && m.port > 0);
  const audio = desc.media[index];
  if (audio === undefined) throw new EmbeddedMediaError('MEDIA_BAD_SDP', `call ${callId}: the SDP has no audio stream`);
  return { desc, index, audio };
}

// ---------------------------------------------------------------- writing

/** What the engine says about its own end of one leg. */
export interface LocalMedia {
  /** Session id and version for o= (RFC 8866 §5.2: the version grows with every change). */
  readonly sessionId: string;
  readonly version: number;
  readonly address: string;
  readonly port: number;
  readonly codecs: readonly Codec[];
  readonly direction: Direction;
  readonly ptime: number | undefined;
  /** Present for a browser leg: ICE-lite credentials and DTLS parameters. */
  readonly webrtc?: {
    readonly ufrag: string;
    readonly pwd: string;
    readonly fingerprint: Fingerprint;
    readonly setup: Setup;
    readonly mid: string;
    readonly msid: string;
  };
}

/**
 * An SDP for one leg. In an answer, `offer` is the other side's offer: every m= line of it gets
 * an m= line in the answer (RFC 3264 §6), the relayed audio at `audioIndex`, the others
 * rejected with port 0.
 */
export function writeSdp(local: LocalMedia, offer?: { readonly desc: SessionDescription; readonly audioIndex: number }): string {
  const ip = local.address.includes(':') ? 'IP6' : 'IP4';
  const w = local.webrtc;
  const out = ['v=0', `o=careflow ${local.sessionId} ${local.version} IN ${ip} ${local.address}`, 's=careflow', `c=IN ${ip} ${local.address}`, 't=0 0'];
  if (w !== undefined) out.push('a=ice-lite', `a=group:BUNDLE ${w.mid}`, 'a=msid-semantic: WMS careflow');
  const sections = offer?.desc.media ?? [undefined];
  const audioIndex = offer?.audioIndex ?? 0;
  sections.forEach((m, i) => {
    if (i !== audioIndex) {
      // RFC 3264 §6: a rejected stream keeps its place, with port 0 and its first format.
      out.push(`m=${m?.type ?? 'audio'} 0 ${m?.proto ?? 'RTP/AVP'} ${m?.fmts[0] ?? '0'}`);
      if (w !== undefined && m?.mid !== undefined) out.push(`a=mid:${m.mid}`);
      return;
    }
    out.push(`m=audio ${local.port} ${w !== undefined ? 'UDP/TLS/RTP/SAVPF' : 'RTP/AVP'} ${local.codecs.map((c) => c.pt).join(' ')}`);
    if (w !== undefined) {
      out.push(`a=mid:${w.mid}`, `a=ice-ufrag:${w.ufrag}`, `a=ice-pwd:${w.pwd}`, `a=fingerprint:${w.fingerprint.algorithm} ${w.fingerprint.value}`,
        `a=setup:${w.setup}`, 'a=rtcp-mux', `a=rtcp:${local.port} IN ${ip} ${local.address}`,
        // RFC 8839 §5.1: host candidate, component 1 (RTP and RTCP muxed); type preference 126
        `a=candidate:1 1 udp ${(126 << 24) | (65535 << 8) | 255} ${local.address} ${local.port} typ host`, 'a=end-of-candidates',
        `a=msid:careflow ${w.msid}`);
    }
    for (const c of local.codecs) {
      out.push(`a=rtpmap:${c.pt} ${c.name}/${c.clock}${c.channels !== 1 ? `/${c.channels}` : ''}`);
      if (c.fmtp !== undefined) out.push(`a=fmtp:${c.pt} ${c.fmtp}`);
    }
    if (local.ptime !== undefined) out.push(`a=ptime:${local.ptime}`);
    out.push(`a=${local.direction}`);
  });
  return out.join('\r\n') + '\r\n';
}
