// Pure helpers of the request router: which destination reaches a registered phone, and
// which credentials are consumed by the proxy rather than forwarded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Binding } from '../../src/registrar/location.ts';
import { bindingDestination, stripOwnCredentials } from '../../src/router/sip-router.ts';
import type { SipRequest } from '../../src/sip/message.ts';
import { parseDatagram } from '../../src/sip/parser.ts';

function binding(contact: string, flow: Binding['flow'], extra: Partial<Binding> = {}): Binding {
  return { aor: '1', key: 'k', contact, params: '', q: 1, expiresAt: Date.now() + 60_000, callId: 'c', cseq: 1, flow, updatedAt: Date.now(), ...extra };
}

test('UDP phone whose REGISTER came from its Contact host: sent to the Contact port (SIPp registers from another port)', () => {
  const b = binding('sip:alice@127.0.0.1:7000', { transport: 'udp', remoteAddress: '127.0.0.1', remotePort: 6000 });
  assert.deepEqual(bindingDestination(b), { transport: 'udp', address: '127.0.0.1', port: 7000 });
});

test('UDP phone behind NAT (Contact names a private address): sent where its REGISTER came from', () => {
  const b = binding('sip:alice@192.168.1.20:5060', { transport: 'udp', remoteAddress: '203.0.113.9', remotePort: 61000 });
  assert.deepEqual(bindingDestination(b), { transport: 'udp', address: '203.0.113.9', port: 61000 });
});

test('RFC 5626 instance: always the flow', () => {
  const b = binding('sip:alice@127.0.0.1:7000', { transport: 'udp', remoteAddress: '127.0.0.1', remotePort: 6000 }, { instance: '<urn:uuid:1>' });
  assert.equal(bindingDestination(b).port, 6000);
});

test('TCP phone: its open connection; once closed, a new connection to its Contact', () => {
  const b = binding('sip:alice@127.0.0.1:7000;transport=tcp', { transport: 'tcp', remoteAddress: '127.0.0.1', remotePort: 45000, connectionId: 9 });
  assert.deepEqual(bindingDestination(b, () => true), { transport: 'tcp', address: '127.0.0.1', port: 45000, connectionId: 9 });
  assert.deepEqual(bindingDestination(b, () => false), { transport: 'tcp', address: '127.0.0.1', port: 7000 });
});

test('§22.3: Proxy-Authorization for our realm is removed, other realms pass', () => {
  const req = parseDatagram(Buffer.from(
    'BYE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n' +
    'From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n' +
    'Proxy-Authorization: Digest username="care4w-1", realm="voice.example.org", nonce="n", uri="sip:b@x", response="r"\r\n' +
    'Proxy-Authorization: Digest username="x", realm=other.example, nonce="n2", uri="sip:b@x", response="r2"\r\nContent-Length: 0\r\n\r\n',
  )) as SipRequest;
  stripOwnCredentials(req, 'voice.example.org');
  const left = req.getAll('proxy-authorization');
  assert.equal(left.length, 1);
  assert.match(left[0]!, /realm=other\.example/);
  stripOwnCredentials(req, 'other.example');
  assert.equal(req.has('proxy-authorization'), false);
});

test('flow tokens: verified, tamper-evident, and decoded from the cache the second time', async () => {
  const { FlowTokens } = await import('../../src/proxy/record-route.ts');
  const t = new FlowTokens(Buffer.alloc(32, 3));
  const tok = t.encode({ transport: 'tcp', remoteAddress: '203.0.113.9', remotePort: 40000, connectionId: 7 });
  assert.deepEqual(t.decode(tok), { transport: 'tcp', address: '203.0.113.9', port: 40000, connectionId: 7 });
  assert.deepEqual(t.decode(tok), { transport: 'tcp', address: '203.0.113.9', port: 40000, connectionId: 7 });
  const forged = Buffer.from('udp~198.51.100.1~5060~').toString('base64url') + tok.slice(tok.indexOf('.'));
  assert.equal(t.decode(forged), undefined, 'a token for another destination with a copied MAC');
  assert.equal(new FlowTokens(Buffer.alloc(32, 4)).decode(tok), undefined, 'another server secret');
});
