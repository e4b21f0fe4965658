// The leg toward a browser: one UDP port carrying ICE (STUN), DTLS and SRTP/SRTCP together
// (rtcp-mux, RFC 5761; BUNDLE of the one audio stream, RFC 8843), told apart by their first
// byte (RFC 7983 §7):
//
//                  +----------------+
//                  |        [0..3] -+--> STUN  (ICE-lite: answer the browser's checks)
//                  |                |
//      packet -->  |      [20..63] -+--> DTLS  (handshake; then the SRTP keys)
//                  |                |
//                  |    [128..191] -+--> SRTP / SRTCP (RTCP: payload type 64-95 once masked)
//                  +----------------+
//
// ICE-lite (RFC 8445 §2.5): the engine offers one host candidate, the browser (always the
// full, controlling agent) checks it; media goes to the pair the browser nominated
// (USE-CANDIDATE), or to the first pair it checked until then. DTLS and SRTP are accepted
// only from addresses that passed a check. The DTLS role comes from a=setup (RFC 5763 §5):
// toward a browser's offer (actpass) the engine answers `active` and starts the handshake as
// soon as the browser's first check shows where it is; toward an answer of `active` (what
// browsers answer to our actpass) it is the server.
import { randomBytes } from 'node:crypto';
import type { Endpoint } from '../engine.ts';
import type { MediaLeg } from './call-session.ts';
import { DtlsAssociation, type DtlsCertificate, type DtlsRole, type SrtpPair } from './dtls.ts';
import type { PortPool, PortSlot } from './port-pool.ts';
import { isRtcp, RtpReceiveStats } from './rtp-stats.ts';
import type { Fingerprint } from './sdp.ts';
import { bindingSuccess, parseBindingRequest } from './stun.ts';

export type DtlsState = 'new' | 'connecting' | 'connected' | 'failed';

interface Address { readonly address: string; readonly port: number }

/** ice-char is ALPHA / DIGIT / "+" / "/" (RFC 8839 §5.4): base64 without padding. */
function iceString(bytes: number): string {
  return randomBytes(bytes).toString('base64');
}

export class WebRtcLeg implements MediaLeg {
  readonly endpoint: Endpoint = 'webrtc';
  readonly stats = new RtpReceiveStats();
  onRtp: ((packet: Buffer) => void) | undefined;
  onRtcp: ((packet: Buffer) => void) | undefined;
  clocks: ReadonlyMap<number, number> = new Map();
  /** Our ICE credentials (RFC 8839: ufrag 4+ characters, pwd 22+). */
  ufrag = iceString(6);
  pwd = iceString(18);
  dtlsState: DtlsState = 'new';
  dtlsError: string | undefined;
  sendErrors = 0;
  readonly #slot: PortSlot;
  readonly #pool: PortPool;
  readonly #cert: DtlsCertificate;
  readonly #validated = new Set<string>();
  #selected: Address | undefined;
  #remoteUfrag: string | undefined;
  #fingerprints: readonly Fingerprint[] = [];
  #role: DtlsRole | undefined;
  #dtls: DtlsAssociation | undefined;
  #srtp: SrtpPair | undefined;
  readonly #early: Buffer[] = [];
  #closed: Promise<void> | undefined;

  constructor(slot: PortSlot, pool: PortPool, cert: DtlsCertificate) {
    this.#slot = slot;
    this.#pool = pool;
    this.#cert = cert;
    slot.rtp.on('message', (m, r) => this.#onMessage(m, r.address, r.port));
    slot.rtp.on('error', () => { this.sendErrors++; });
  }

  get port(): number {
    return this.#slot.port;
  }

  get fingerprint(): Fingerprint {
    return this.#cert.fingerprint;
  }

  /** Our DTLS role once known (from the answer's a=setup). */
  get role(): DtlsRole | undefined {
    return this.#role;
  }

  /** The browser's address on the selected candidate pair. */
  get selected(): Address | undefined {
    return this.#selected;
  }

  /**
   * The browser's ICE and DTLS parameters from its SDP. A new ufrag is an ICE restart (RFC
   * 8839 §4.4.1.1.1): our credentials change too, and the browser checks the pair again.
   */
  setRemote(ufrag: string | undefined, fingerprints: readonly Fingerprint[]): void {
    if (this.#remoteUfrag !== undefined && ufrag !== undefined && ufrag !== this.#remoteUfrag) {
      this.ufrag = iceString(6);
      this.pwd = iceString(18);
      this.#validated.clear();
    }
    this.#remoteUfrag = ufrag;
    if (fingerprints.length > 0) this.#fingerprints = fingerprints;
  }

  /** Fixes our DTLS role (once; a re-INVITE keeps the association, RFC 8842 §5.5). */
  startDtls(role: DtlsRole): void {
    this.#role ??= role;
    this.#maybeConnect();
  }

  sendRtp(packet: Buffer): void {
    const to = this.#selected;
    if (this.#srtp === undefined || to === undefined) return;
    this.#slot.rtp.send(this.#srtp.local.protectRtp(packet), to.port, to.address);
  }

  sendRtcp(packet: Buffer): void {
    const to = this.#selected;
    if (this.#srtp === undefined || to === undefined) return;
    this.#slot.rtp.send(this.#srtp.local.protectRtcp(packet), to.port, to.address);
  }

  #onMessage(m: Buffer, address: string, port: number): void {
    const first = m[0];
    if (first === undefined) return;
    if (first >= 128 && first <= 191) {
      const srtp = this.#srtp;
      const sel = this.#selected;
      if (srtp === undefined || ((sel?.port !== port || sel.address !== address) && !this.#validated.has(`${address}|${port}`))) return;
      const now = performance.now();
      if (isRtcp(m)) {
        const rtcp = srtp.remote.unprotectRtcp(m);
        if (rtcp === undefined) return;
        this.stats.count(m.length, now);
        this.onRtcp?.(rtcp);
      } else {
        const rtp = srtp.remote.unprotectRtp(m);
        if (rtp === undefined) return;
        this.stats.count(m.length, now);
        this.stats.rtp(rtp, now, this.clocks.get(rtp[1]! & 0x7f) ?? 8000);
        this.onRtp?.(rtp);
      }
    } else if (first < 4) this.#onStun(m, address, port);
    else if (first >= 20 && first <= 63 && this.#validated.has(`${address}|${port}`)) {
      if (this.#dtls !== undefined) this.#dtls.receive(m);
      else if (this.#early.length < 16) this.#early.push(m); // before the answer fixed our role
    }
  }

  /** RFC 8445 §7.3: answer a valid check; USE-CANDIDATE selects its pair (§7.3.1.5). */
  #onStun(m: Buffer, address: string, port: number): void {
    const req = parseBindingRequest(m, this.ufrag, this.pwd);
    if (req === undefined) return;
    this.#slot.rtp.send(bindingSuccess(req, address, port, this.pwd), port, address);
    this.#validated.add(`${address}|${port}`);
    if (req.useCandidate || this.#selected === undefined) {
      this.#selected = { address, port };
      this.#maybeConnect();
    }
  }

  /** The handshake starts once the role is known and, for a client, the browser's address. */
  #maybeConnect(): void {
    const role = this.#role;
    if (this.#dtls !== undefined || role === undefined || this.#fingerprints.length === 0) return;
    if (role === 'client' && this.#selected === undefined) return;
    this.dtlsState = 'connecting';
    this.#dtls = new DtlsAssociation(role, this.#cert, this.#fingerprints, (b) => {
      const to = this.#selected;
      if (to !== undefined && this.#closed === undefined) this.#slot.rtp.send(b, to.port, to.address);
    }, (r) => {
      if (this.#closed !== undefined) return;
      if (r instanceof Error) {
        if (this.#srtp !== undefined) return; // after the handshake: the keys stay valid
        this.dtlsState = 'failed';
        this.dtlsError = r.message;
      } else if (this.#srtp === undefined) {
        this.#srtp = r;
        this.dtlsState = 'connected';
      }
    });
    for (const b of this.#early.splice(0)) this.#dtls.receive(b);
  }

  close(): Promise<void> {
    this.onRtp = undefined;
    this.onRtcp = undefined;
    this.#dtls?.close();
    this.#early.length = 0;
    this.#closed ??= this.#pool.release(this.#slot);
    return this.#closed;
  }
}
