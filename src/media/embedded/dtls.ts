// DTLS for DTLS-SRTP (RFC 5763, RFC 5764), done by werift's DTLS 1.2 client and server over a
// transport we feed: the browser leg hands it the datagrams whose first byte is 20-63 (RFC
// 7983) and sends what it writes to the ICE-selected address. When the handshake is done the
// peer's certificate must match the a=fingerprint of its SDP (RFC 8122 §5), and the exporter
// gives the SRTP master keys (RFC 5764 §4.2); SRTP itself is ours (srtp.ts).
//
// werift is imported on first use only: it costs ~40 MB of memory and ~140 ms to load, which
// a server that never bridges a browser (phones only, or RTPEngine) should not pay.
import { createHash, X509Certificate } from 'node:crypto';
import type { Fingerprint } from './sdp.ts';
import { SrtpContext } from './srtp.ts';

type Werift = typeof import('werift');
type WeriftDtls = InstanceType<Werift['DtlsClient']> | InstanceType<Werift['DtlsServer']>;
let werift: Promise<Werift> | undefined;

function load(): Promise<Werift> {
  werift ??= import('werift');
  return werift;
}

/** The engine's DTLS certificate (one for all calls, like a browser's per-connection one). */
export interface DtlsCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly signatureHash: { hash: number; signature: number };
  readonly fingerprint: Fingerprint;
}

/** A fresh self-signed ECDSA P-256 certificate, as browsers make (RFC 8827 §6.5). */
export async function createCertificate(): Promise<DtlsCertificate> {
  const w = await load();
  const { certPem, keyPem, signatureHash } = await w.CipherContext.createSelfSignedCertificateWithKey(
    { signature: w.SignatureAlgorithm.ecdsa_3, hash: w.HashAlgorithm.sha256_4 }, w.NamedCurveAlgorithm.secp256r1_23);
  const cert = new w.RTCCertificate(keyPem, certPem, signatureHash);
  return { certPem: cert.certPem, keyPem: cert.privateKey, signatureHash, fingerprint: { algorithm: 'sha-256', value: fingerprintOf(new X509Certificate(certPem).raw, 'sha-256') } };
}

const HASHES: Readonly<Record<string, string>> = { 'sha-1': 'sha1', 'sha-224': 'sha224', 'sha-256': 'sha256', 'sha-384': 'sha384', 'sha-512': 'sha512' };

function fingerprintOf(der: Buffer, algorithm: string): string {
  const hash = HASHES[algorithm];
  if (hash === undefined) return '';
  return createHash(hash).update(der).digest('hex').toUpperCase().match(/../g)?.join(':') ?? '';
}

export type DtlsRole = 'client' | 'server';

/** The SRTP contexts a finished handshake yields: ours to protect, the peer's to unprotect. */
export interface SrtpPair {
  readonly local: SrtpContext;
  readonly remote: SrtpContext;
}

/** One DTLS association toward a browser. */
export class DtlsAssociation {
  readonly role: DtlsRole;
  #socket: WeriftDtls | undefined;
  #deliver: ((data: Buffer) => void) | undefined;
  #closed = false;
  readonly #pending: Buffer[] = [];

  /**
   * `send` writes a datagram toward the browser; `done` gets the SRTP keys once the handshake
   * finished and the certificate matched, or an error.
   */
  constructor(role: DtlsRole, cert: DtlsCertificate, remote: readonly Fingerprint[], send: (b: Buffer) => void, done: (r: SrtpPair | Error) => void) {
    this.role = role;
    void load().then((w) => {
      if (this.#closed) return;
      const transport = {
        type: 'udp', address: {}, closed: false,
        onData: (_: Buffer, __: unknown): void => {},
        send: async (b: Buffer): Promise<void> => { if (!this.#closed) send(b); },
        close: async (): Promise<void> => {},
      };
      const options = {
        transport: transport as never, cert: cert.certPem, key: cert.keyPem, signatureHash: cert.signatureHash as never,
        srtpProfiles: [w.ProtectionProfileAes128CmHmacSha1_80], extendedMasterSecret: true,
      };
      const socket = role === 'server' ? new w.DtlsServer({ ...options, certificateRequest: true }) : new w.DtlsClient(options);
      this.#socket = socket;
      this.#deliver = (b) => transport.onData(b, undefined);
      socket.onConnect.once(() => {
        if (this.#closed) return;
        try {
          done(this.#keys(socket, remote));
        } catch (e) {
          done(e as Error);
        }
      });
      socket.onError.once((e) => done(e instanceof Error ? e : new Error(String(e))));
      for (const b of this.#pending.splice(0)) this.#deliver(b);
      if (socket instanceof w.DtlsClient) socket.connect().catch((e: unknown) => done(e instanceof Error ? e : new Error(String(e))));
    }, (e: unknown) => done(e instanceof Error ? e : new Error(String(e))));
  }

  /** A DTLS record from the browser. */
  receive(b: Buffer): void {
    if (this.#closed) return;
    if (this.#deliver === undefined) {
      if (this.#pending.length < 16) this.#pending.push(b); // before werift has loaded
      return;
    }
    this.#deliver(b);
  }

  #keys(socket: WeriftDtls, remote: readonly Fingerprint[]): SrtpPair {
    const der = socket.remoteCertificate;
    if (der === undefined) throw new Error('DTLS: the browser sent no certificate');
    // RFC 8122 §5: the certificate must match a fingerprint of the SDP, with its hash function
    if (!remote.some((f) => fingerprintOf(Buffer.from(der), f.algorithm) === f.value.toUpperCase())) {
      throw new Error('DTLS: the browser\'s certificate does not match the a=fingerprint of its SDP');
    }
    // RFC 5764 §4.2: client key, server key, client salt, server salt (16 + 16 + 14 + 14 bytes)
    const { localKey, localSalt, remoteKey, remoteSalt } = socket.extractSessionKeys(16, 14);
    return { local: new SrtpContext(localKey, localSalt), remote: new SrtpContext(remoteKey, remoteSalt) };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending.length = 0;
    const socket = this.#socket;
    if (socket === undefined) return;
    // A handshake in progress retransmits its flight for ~30 s (werift's timers): marking the
    // handshake as past every flight ends that loop at its next timer.
    socket.dtls.flight = Number.MAX_SAFE_INTEGER;
    try { socket.close(); } catch { /* already closed */ }
  }
}
