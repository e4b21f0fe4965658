// SRTP protect / unprotect of one G.711 packet (12-byte header, 160-byte payload): the
// embedded engine's SRTP (src/media/embedded/srtp.ts) against werift's SrtpSession, and the
// node:crypto primitives behind the difference (per-packet createCipheriv / createHmac cost
// an OpenSSL 3 algorithm fetch each; a kept AES-ECB cipher and one-shot hash() do not).
//
//   node_modules/.bin/node bench/srtp.bench.ts
import { createCipheriv, createHmac, hash, randomBytes } from 'node:crypto';
import { SrtpContext } from '../src/media/embedded/srtp.ts';

const w = await import('werift');
const [k, s] = [randomBytes(16), randomBytes(14)];
const keys = { localMasterKey: k, localMasterSalt: s, remoteMasterKey: k, remoteMasterSalt: s };
// a fresh sender per case: sequence numbers restart at 0 in each
const ours = (): SrtpContext => new SrtpContext(k, s);
const theirs = (): InstanceType<typeof w.SrtpSession> => new w.SrtpSession({ keys, profile: w.ProtectionProfileAes128CmHmacSha1_80 });
const [o1, o2, o2rx, t1, t2, t2rx] = [ours(), ours(), ours(), theirs(), theirs(), theirs()];
const p = Buffer.alloc(172, 0xd5);
p[0] = 0x80;
p[1] = 0;
const [key, iv, auth, payload] = [randomBytes(16), randomBytes(16), randomBytes(20), randomBytes(160)];
const ecb = createCipheriv('aes-128-ecb', key, null);
ecb.setAutoPadding(false);
const blocks = Buffer.alloc(160);
const N = 50_000;
const cases: Array<[string, (i: number) => unknown]> = [
  ['ours: protect', (i) => { p.writeUInt16BE(i & 0xffff, 2); return o1.protectRtp(p); }],
  ['ours: protect + unprotect', (i) => { p.writeUInt16BE(i & 0xffff, 2); const r = o2rx.unprotectRtp(o2.protectRtp(p)); if (r === undefined) throw new Error('auth'); return r; }],
  ['werift: protect', (i) => { p.writeUInt16BE(i & 0xffff, 2); return t1.encrypt(p.subarray(12), w.RtpHeader.deSerialize(p)); }],
  ['werift: protect + unprotect', (i) => { p.writeUInt16BE(i & 0xffff, 2); return t2rx.decrypt(t2.encrypt(p.subarray(12), w.RtpHeader.deSerialize(p))); }],
  ['createCipheriv(aes-128-ctr) per packet', () => createCipheriv('aes-128-ctr', key, iv).update(payload)],
  ['kept aes-128-ecb, 10 counter blocks', () => ecb.update(blocks)],
  ['createHmac(sha1) per packet', () => createHmac('sha1', auth).update(payload).digest()],
  ['HMAC as two hash() calls', () => hash('sha1', Buffer.concat([auth, hash('sha1', Buffer.concat([auth, payload]), 'buffer')]), 'buffer')],
];
for (const [name, fn] of cases) {
  for (let i = 0; i < 5000; i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) fn(i);
  console.log(`${name.padEnd(40)} ${(((performance.now() - t0) * 1000) / N).toFixed(2).padStart(7)} µs`);
}
