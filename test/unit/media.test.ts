// Media engine building blocks: bencode (BEP 3 examples, RTPEngine answers, malformed input)
// and the routing rules that pick a media mode per call.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BencodeError, decode, encode } from '../../src/media/bencode.ts';
import { endpointOf, mediaMode } from '../../src/media/engine.ts';
import { codecFlags, rtcpQuality } from '../../src/media/rtpengine.ts';

describe('bencode', () => {
  it('encodes the BEP 3 examples, dictionary keys sorted', () => {
    assert.equal(encode('spam').toString(), '4:spam');
    assert.equal(encode(3).toString(), 'i3e');
    assert.equal(encode(-3).toString(), 'i-3e');
    assert.equal(encode(['spam', 'eggs']).toString(), 'l4:spam4:eggse');
    assert.equal(encode({ spam: ['a', 'b'], cow: 'moo' }).toString(), 'd3:cow3:moo4:spaml1:a1:bee');
    assert.equal(encode('é').toString('latin1'), '2:\u00c3\u00a9', 'string lengths count bytes, not characters');
    assert.throws(() => encode(1.5), BencodeError);
  });

  it('decodes an RTPEngine answer and round-trips', () => {
    const sdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n';
    const wire = Buffer.from(`d6:result2:ok3:sdp${Buffer.byteLength(sdp)}:${sdp}e`);
    assert.deepEqual({ ...(decode(wire) as object) }, { result: 'ok', sdp });
    const v = { command: 'offer', flags: ['trust-address'], 'rtcp-mux': ['demux'], n: 0, nested: { a: [1, 2, { b: 'c' }] } };
    assert.deepEqual(JSON.parse(JSON.stringify(decode(encode(v)))), v);
  });

  it('rejects malformed input without hanging', () => {
    for (const bad of ['', 'i12', 'i01e', 'i-0e', 'ie', '5:abc', 'l4:spam', 'd3:cowe', 'di1e3:mooe', 'x', '4:spamX', '99999999999:a']) {
      assert.throws(() => decode(Buffer.from(bad)), BencodeError, JSON.stringify(bad));
    }
    assert.throws(() => decode(Buffer.from('l'.repeat(100) + 'e'.repeat(100))), BencodeError, 'depth limit');
  });
});

describe('media routing', () => {
  const chrome = 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=fingerprint:sha-256 AA:BB\r\na=ice-ufrag:x\r\n';
  const phone = 'v=0\r\nm=audio 4000 RTP/AVP 0 8\r\n';

  it('tells a browser SDP (DTLS-SRTP + ICE) from a plain RTP one', () => {
    assert.equal(endpointOf(chrome), 'webrtc');
    assert.equal(endpointOf(phone), 'rtp');
    assert.equal(endpointOf('v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n'), 'rtp', 'SDES-SRTP phones are not browsers');
  });

  it('browser to browser is p2p; browser to phone a bridge; phone to phone direct unless behind NAT', () => {
    assert.equal(mediaMode('webrtc', 'webrtc', true), 'p2p');
    assert.equal(mediaMode('webrtc', 'rtp', false), 'bridge');
    assert.equal(mediaMode('rtp', 'webrtc', false), 'bridge');
    assert.equal(mediaMode('rtp', 'rtp', false), 'direct');
    assert.equal(mediaMode('rtp', 'rtp', true), 'relay');
  });
});

describe('RTPEngine driver: codecs and RTCP quality', () => {
  it('narrows codecs only on a bridge, to what both worlds decode', () => {
    assert.deepEqual(codecFlags('rtp', 'rtp'), {});
    for (const [from, to] of [['webrtc', 'rtp'], ['rtp', 'webrtc']] as const) {
      assert.deepEqual(codecFlags(from, to), { codec: { strip: ['all'], except: ['opus', 'PCMU', 'PCMA', 'telephone-event'] } });
    }
  });

  it('reads loss (percent) and jitter (ms) of the RTCP average per SSRC, and nothing for an SSRC without reports', () => {
    const q = decode(encode({
      '43690': { 'average MOS': { MOS: 43, 'round-trip time': 1200, jitter: 20, 'packet loss': 10, samples: 3 } },
      '48059': {},
    }));
    assert.ok(typeof q === 'object' && !Array.isArray(q));
    const quality = rtcpQuality(q);
    assert.deepEqual(quality.get('43690'), { lossPercent: 10, jitterMs: 20 });
    assert.equal(quality.has('48059'), false);
  });
});
