// Building blocks of the embedded media engine: SRTP against RFC 3711's key derivation
// vectors and werift's own SRTP (both directions, across a sequence number wrap), STUN
// Binding for ICE-lite (integrity, fingerprint, wrong credentials), SDP reading of a real
// Chromium offer and writing, codec negotiation and payload type maps, RTP receive stats.
import assert from 'node:assert/strict';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { describe, it } from 'node:test';
import { answerable, offerable, payloadTypeMap } from '../../src/media/embedded/codecs.ts';
import { RtpReceiveStats, isRtcp, isRtp } from '../../src/media/embedded/rtp-stats.ts';
import { audioOf, parseSdp, writeSdp } from '../../src/media/embedded/sdp.ts';
import { SrtpContext } from '../../src/media/embedded/srtp.ts';
import { bindingSuccess, isStun, parseBindingRequest } from '../../src/media/embedded/stun.ts';

// Debian Chromium's offer for one audio transceiver (embedded-driver.test.ts takes a fresh one).
const CHROME_OFFER = [
  'v=0', 'o=- 4968826430655342410 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', 'a=extmap-allow-mixed', 'a=msid-semantic: WMS',
  'm=audio 50308 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126', 'c=IN IP4 127.0.0.1', 'a=rtcp:9 IN IP4 0.0.0.0',
  'a=candidate:3012104640 1 udp 2122194687 127.0.0.1 50308 typ host generation 0 network-id 3 network-cost 50',
  'a=ice-ufrag:PxQP', 'a=ice-pwd:KIeJj/mXkjmB4zArY+wlqynO', 'a=ice-options:trickle',
  'a=fingerprint:sha-256 9B:1C:0A:A6:C3:C4:27:F4:DB:D4:1D:5D:5E:FA:BB:EF:D9:4B:71:A2:AB:0A:19:15:C3:36:41:A9:69:BF:DE:95',
  'a=setup:actpass', 'a=mid:0', 'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level', 'a=sendrecv', 'a=msid:- f57e7af3',
  'a=rtcp-mux', 'a=rtcp-rsize', 'a=rtpmap:111 opus/48000/2', 'a=rtcp-fb:111 transport-cc', 'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:63 red/48000/2', 'a=fmtp:63 111/111', 'a=rtpmap:9 G722/8000', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:13 CN/8000', 'a=rtpmap:110 telephone-event/48000', 'a=rtpmap:126 telephone-event/8000', 'a=ssrc:779533511 cname:a7aMNxs+Tri/fJnl', '',
].join('\r\n');

function rtp(seq: number, ssrc: number, payload = 160, pt = 0): Buffer {
  const b = Buffer.alloc(12 + payload);
  b[0] = 0x80;
  b[1] = pt;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  for (let i = 12; i < b.length; i++) b[i] = (i * 7 + seq) & 0xff;
  return b;
}

describe('SRTP (AES_CM_128_HMAC_SHA1_80)', () => {
  it('derives the session keys of RFC 3711 Appendix B.3', () => {
    const masterKey = Buffer.from('E1F97A0D3E018BE0D64FA32C06DE4139', 'hex');
    const masterSalt = Buffer.from('0EC675AD498AFEEBB6960B3AABE6', 'hex');
    // The derived keys are private; check them through the keystream they produce: the
    // cipher key encrypts a zero payload of SSRC 0 / index 0 as AES-CM(key, salt || 0000).
    const ctx = new SrtpContext(masterKey, masterSalt);
    const zero = Buffer.alloc(12 + 16);
    zero[0] = 0x80;
    const enc = ctx.protectRtp(zero);
    const key = Buffer.from('C61E7A93744F39EE10734AFE3FF7A087', 'hex');
    const salt = Buffer.from('30CBBC08863D8C85D49DB34A9AE1', 'hex');
    const iv = Buffer.concat([salt, Buffer.alloc(2)]);
    assert.deepEqual(enc.subarray(12, 28), createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(16)));
    const auth = Buffer.from('CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4', 'hex');
    const tag = createHmac('sha1', auth).update(enc.subarray(0, 28)).update(Buffer.alloc(4)).digest().subarray(0, 10);
    assert.deepEqual(enc.subarray(28), tag);
  });

  it('interoperates with werift\'s SRTP and SRTCP both ways, across a sequence number wrap', async () => {
    const w = await import('werift');
    const [k1, s1, k2, s2] = [randomBytes(16), randomBytes(14), randomBytes(16), randomBytes(14)];
    const ours = { local: new SrtpContext(k1, s1), remote: new SrtpContext(k2, s2) };
    const keys = { localMasterKey: k2, localMasterSalt: s2, remoteMasterKey: k1, remoteMasterSalt: s1 };
    const theirs = new w.SrtpSession({ keys, profile: w.ProtectionProfileAes128CmHmacSha1_80 });
    const theirsRtcp = new w.SrtcpSession({ keys, profile: w.ProtectionProfileAes128CmHmacSha1_80 });
    for (const seq of [65530, 65531, 65532, 65533, 65534, 65535, 65536, 65537, 65540]) {
      const p = rtp(seq, 0x1234abcd);
      assert.deepEqual(theirs.decrypt(ours.local.protectRtp(p)), p, `ours -> werift, seq ${seq}`);
      const h = w.RtpHeader.deSerialize(p);
      const back = ours.remote.unprotectRtp(theirs.encrypt(p.subarray(12), h));
      assert.deepEqual(back, p, `werift -> ours, seq ${seq}`);
    }
    const rr = Buffer.from('81c90007deadbeef1234abcd00000000000000000000000000000000000000000000', 'hex').subarray(0, 32);
    rr.writeUInt16BE(7, 2);
    assert.deepEqual(theirsRtcp.decrypt(ours.local.protectRtcp(rr)), rr, 'SRTCP ours -> werift');
    assert.deepEqual(ours.remote.unprotectRtcp(theirsRtcp.encrypt(rr)), rr, 'SRTCP werift -> ours');
    const bad = ours.local.protectRtp(rtp(1, 1));
    bad[20]! ^= 1;
    assert.equal(new SrtpContext(k1, s1).unprotectRtp(bad), undefined, 'a tampered packet is dropped');
  });
});

describe('STUN for ICE-lite', () => {
  function request(ufrag: string, pwd: string, useCandidate: boolean): Buffer {
    const attrs: Buffer[] = [];
    const attr = (type: number, v: Buffer): Buffer => {
      const a = Buffer.alloc(4 + v.length + ((4 - (v.length % 4)) % 4));
      a.writeUInt16BE(type, 0);
      a.writeUInt16BE(v.length, 2);
      v.copy(a, 4);
      return a;
    };
    attrs.push(attr(0x0006, Buffer.from(`${ufrag}:browser`)));
    if (useCandidate) attrs.push(attr(0x0025, Buffer.alloc(0)));
    const head = Buffer.alloc(20);
    head.writeUInt16BE(0x0001, 0);
    head.writeUInt32BE(0x2112a442, 4);
    randomBytes(12).copy(head, 8);
    let body = Buffer.concat(attrs);
    head.writeUInt16BE(body.length + 24, 2);
    const mac = createHmac('sha1', pwd).update(head).update(body).digest();
    body = Buffer.concat([body, attr(0x0008, mac)]);
    head.writeUInt16BE(body.length + 8, 2);
    const fp = Buffer.alloc(4);
    fp.writeUInt32BE((crc32(Buffer.concat([head, body])) ^ 0x5354554e) >>> 0);
    return Buffer.concat([head, body, attr(0x8028, fp)]);
  }

  it('accepts a signed check for our ufrag and answers with a signed XOR-MAPPED-ADDRESS', () => {
    const m = request('abcd', 'p'.repeat(24), true);
    assert.ok(isStun(m));
    const req = parseBindingRequest(m, 'abcd', 'p'.repeat(24));
    assert.ok(req !== undefined && req.useCandidate && req.remoteUfrag === 'browser');
    const res = bindingSuccess(req, '192.0.2.1', 32853, 'p'.repeat(24));
    assert.equal(res.readUInt16BE(0), 0x0101);
    assert.equal(res.readUInt16BE(2) + 20, res.length);
    assert.deepEqual(res.subarray(8, 20), req.transactionId);
    // XOR-MAPPED-ADDRESS: port ^ 0x2112, address ^ magic cookie
    assert.equal(res.readUInt16BE(20), 0x0020);
    assert.equal(res.readUInt16BE(26) ^ 0x2112, 32853);
    assert.equal((res.readUInt32BE(28) ^ 0x2112a442) >>> 0, 0xc0000201);
    const fpAt = res.length - 8;
    assert.equal(res.readUInt32BE(fpAt + 4), (crc32(res.subarray(0, fpAt)) ^ 0x5354554e) >>> 0);
    const v6 = bindingSuccess(req, '2001:db8::1', 5000, 'p'.repeat(24));
    assert.equal(v6.readUInt16BE(22), 20, 'an IPv6 XOR-MAPPED-ADDRESS is 20 bytes');
  });

  it('ignores checks with a wrong password, a wrong ufrag or a broken fingerprint', () => {
    assert.equal(parseBindingRequest(request('abcd', 'wrong-password-xxxxxxxx', false), 'abcd', 'p'.repeat(24)), undefined);
    assert.equal(parseBindingRequest(request('zzzz', 'p'.repeat(24), false), 'abcd', 'p'.repeat(24)), undefined);
    const m = request('abcd', 'p'.repeat(24), false);
    m[m.length - 1]! ^= 0xff;
    assert.equal(parseBindingRequest(m, 'abcd', 'p'.repeat(24)), undefined);
  });
});

describe('SDP and codecs', () => {
  it('reads Chromium\'s offer: ICE, DTLS, mid, rtcp-mux and its codecs', () => {
    const { audio, index } = audioOf(CHROME_OFFER, 'c1');
    assert.equal(index, 0);
    assert.equal(audio.proto, 'UDP/TLS/RTP/SAVPF');
    assert.deepEqual([audio.iceUfrag, audio.icePwd, audio.setup, audio.mid, audio.rtcpMux], ['PxQP', 'KIeJj/mXkjmB4zArY+wlqynO', 'actpass', '0', true]);
    assert.equal(audio.fingerprints[0]?.algorithm, 'sha-256');
    assert.deepEqual(audio.codecs.map((c) => `${c.pt} ${c.name}/${c.clock}/${c.channels}`),
      ['111 opus/48000/2', '63 red/48000/2', '9 G722/8000/1', '0 PCMU/8000/1', '8 PCMA/8000/1', '13 CN/8000/1', '110 telephone-event/48000/1', '126 telephone-event/8000/1']);
  });

  it('offers a phone only what passes through: Opus, G.711 and their telephone-events', () => {
    const { audio } = audioOf(CHROME_OFFER, 'c1');
    assert.deepEqual(offerable(audio.codecs, 'webrtc', 'rtp').map((c) => c.pt), [111, 0, 8, 110, 126]);
    const phone = parseSdp('v=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 4000 RTP/AVP 18 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n').media[0]!;
    assert.deepEqual(offerable(phone.codecs, 'rtp', 'webrtc').map((c) => c.pt), [0, 101], 'G.729 cannot reach a browser');
    assert.deepEqual(offerable(phone.codecs, 'rtp', 'rtp').map((c) => c.pt), [18, 0, 101], 'a relay passes every codec');
    assert.deepEqual([phone.address, phone.port, phone.ptime, phone.direction], ['10.0.0.2', 4000, 20, 'sendrecv']);
  });

  it('answers with the offerer\'s numbers and maps payload types a phone renumbered', () => {
    const offered = audioOf(CHROME_OFFER, 'c1').audio.codecs;
    const phoneAnswer = parseSdp('v=0\r\nm=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n').media[0]!.codecs;
    const toBrowser = answerable(offered, phoneAnswer);
    assert.deepEqual(toBrowser.map((c) => c.pt), [0, 126]);
    assert.deepEqual([...payloadTypeMap(offered, toBrowser, phoneAnswer, [])], [[126, 96]], 'browser -> phone: 126 becomes 96');
    assert.deepEqual(answerable(offered, parseSdp('m=audio 1 RTP/AVP 96\r\na=rtpmap:96 telephone-event/8000\r\n').media[0]!.codecs), [], 'DTMF alone is no answer');
  });

  it('writes an ICE-lite answer that rejects the streams it does not bridge', () => {
    const offer = parseSdp(CHROME_OFFER.replace('a=ssrc', 'm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ssrc'));
    const sdp = writeSdp({
      sessionId: '42', version: 1, address: '127.0.0.1', port: 10000, codecs: offer.media[0]!.codecs.filter((c) => c.pt === 0), direction: 'sendrecv', ptime: 20,
      webrtc: { ufrag: 'uf', pwd: 'pw', fingerprint: { algorithm: 'sha-256', value: 'AA:BB' }, setup: 'active', mid: '0', msid: 'x' },
    }, { desc: offer, audioIndex: 0 });
    for (const l of ['a=ice-lite', 'm=audio 10000 UDP/TLS/RTP/SAVPF 0', 'a=setup:active', 'a=rtcp-mux', 'a=candidate:1 1 udp 2130706431 127.0.0.1 10000 typ host', 'm=video 0 UDP/TLS/RTP/SAVPF 96', 'a=mid:1']) {
      assert.ok(sdp.split('\r\n').includes(l), `${l}\n${sdp}`);
    }
    assert.equal(parseSdp(sdp).media.length, 2);
  });
});

describe('RTP receive stats', () => {
  it('counts loss across a sequence wrap and tells RTP from RTCP', () => {
    const s = new RtpReceiveStats();
    let t = 0;
    for (const seq of [65533, 65534, 0, 1, 3, 4]) { // 65535 and 2 lost
      const p = rtp(seq, 7);
      p.writeUInt32BE(((seq + (seq < 100 ? 65536 : 0)) * 160) >>> 0, 4);
      s.count(p.length, t);
      s.rtp(p, t, 8000);
      t += 20;
    }
    const snap = s.snapshot();
    assert.equal(snap.packets, 6);
    assert.equal(snap.lost, 2);
    assert.ok((snap.jitterMs ?? -1) >= 0);
    assert.ok(isRtp(rtp(1, 1)) && !isRtcp(rtp(1, 1)));
    assert.ok(isRtcp(Buffer.from('80c8000600000001', 'hex')) && !isRtp(Buffer.from('80c8000600000001000000000000', 'hex')));
  });
});
