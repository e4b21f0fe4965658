// The STUN codec (src/stun/message.ts) and the doctor's STUN/TURN client (src/deploy/stun.ts): the RFC 5769 test vectors, encoding
// with MESSAGE-INTEGRITY and FINGERPRINT, ICE URLs, and the client against small in-process
// servers on 127.0.0.1 (a lost datagram retransmitted, TCP framing split across writes, the
// TURN long-term credential exchange). coturn itself is test/interop/doctor.test.ts.
import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { after, describe, it } from 'node:test';
import { parseIceUrl, stunBinding, turnAllocate } from '../../src/deploy/stun.ts';
import {
  STUN_ATTR, STUN_TYPE, decodeStun, encodeStun, errorCode, getAttribute, longTermKey, newTransactionId, verifyFingerprint, verifyIntegrity,
  xorAddress, type StunAttribute, type StunMessage,
} from '../../src/stun/message.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 5769 §2.2, Sample IPv4 Response (password VOkJxbRl1RmTxUk/WvJxBt).
const IPV4_RESPONSE = hex(`
  0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200008 0001a147 e112a643
  00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
  80280004 c07d4c96`);
const PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';

describe('STUN messages', () => {
  it('decodes the RFC 5769 IPv4 response: mapped address, integrity, fingerprint', () => {
    const m = decodeStun(IPV4_RESPONSE);
    assert.ok(m !== undefined);
    assert.equal(m.type, STUN_TYPE.bindingSuccess);
    assert.equal(m.transactionId.toString('hex'), 'b7e7a701bc34d686fa87dfae');
    assert.equal(getAttribute(m, STUN_ATTR.software)?.toString(), 'test vector');
    assert.deepEqual(xorAddress(m), { address: '192.0.2.1', port: 32853 });
    assert.ok(verifyIntegrity(m, Buffer.from(PASSWORD)));
    assert.ok(!verifyIntegrity(m, Buffer.from('wrong')));
    assert.ok(verifyFingerprint(m));
    const flipped = Buffer.from(IPV4_RESPONSE);
    flipped[45] = flipped[45]! ^ 1;
    assert.ok(!verifyFingerprint(decodeStun(flipped)!));
  });

  it('decodes an IPv6 XOR-MAPPED-ADDRESS (RFC 5769 §2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853)', () => {
    const id = hex('b7e7a701bc34d686fa87dfae');
    const value = hex('0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9');
    const m = decodeStun(encodeStun(STUN_TYPE.bindingSuccess, id, [{ type: STUN_ATTR.xorMappedAddress, value }]))!;
    assert.deepEqual(xorAddress(m), { address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 });
  });

  it('encodes with padding, MESSAGE-INTEGRITY and FINGERPRINT that verify; error codes; not-STUN is refused', () => {
    const id = newTransactionId();
    const key = longTermKey('user', 'realm', 'pass');
    const bytes = encodeStun(STUN_TYPE.allocateError, id, [
      { type: STUN_ATTR.errorCode, value: Buffer.concat([Buffer.from([0, 0, 4, 1]), Buffer.from('Unauthorized')]) },
      { type: STUN_ATTR.realm, value: Buffer.from('careflow') },
    ], { integrityKey: key, fingerprint: true });
    assert.equal(bytes.length % 4, 0);
    const m = decodeStun(bytes)!;
    assert.deepEqual(errorCode(m), { code: 401, reason: 'Unauthorized' });
    assert.equal(getAttribute(m, STUN_ATTR.realm)?.toString(), 'careflow');
    assert.ok(verifyIntegrity(m, key));
    assert.ok(verifyFingerprint(m));
    assert.equal(decodeStun(Buffer.from('SIP/2.0 200 OK\r\n\r\n')), undefined);
    assert.equal(decodeStun(bytes.subarray(0, bytes.length - 4)), undefined);
  });

  it('reads stun:, stuns:, turn: and turns: URLs with their default ports and transports', () => {
    assert.deepEqual(parseIceUrl('stun:stun.example.org'), { transport: 'udp', host: 'stun.example.org', port: 3478 });
    assert.deepEqual(parseIceUrl('stuns:stun.example.org'), { transport: 'tls', host: 'stun.example.org', port: 5349 });
    assert.deepEqual(parseIceUrl('turn:[2001:db8::1]:3480?transport=tcp'), { transport: 'tcp', host: '2001:db8::1', port: 3480 });
    assert.deepEqual(parseIceUrl('turn:127.0.0.1:3478?transport=udp'), { transport: 'udp', host: '127.0.0.1', port: 3478 });
    assert.deepEqual(parseIceUrl('turns:turn.example.org:443?transport=tcp'), { transport: 'tls', host: 'turn.example.org', port: 443 });
    assert.equal(parseIceUrl('http://example.org'), undefined);
  });
});

// ---------------------------------------------------------------- against in-process servers

const closers: Array<() => void> = [];
after(() => { for (const close of closers) close(); });

const success = (request: StunMessage, type: number, attrs: StunAttribute[] = []): Buffer => encodeStun(type, request.transactionId, attrs);
const mappedTo = (address: string, port: number): StunAttribute => {
  const value = Buffer.alloc(8);
  value[1] = 0x01;
  value.writeUInt16BE(port ^ 0x2112, 2);
  value.writeUInt32BE((address.split('.').reduce((a, o) => a * 256 + Number(o), 0) ^ 0x2112a442) >>> 0, 4);
  return { type: STUN_ATTR.xorMappedAddress, value };
};

function udpServer(answer: (m: StunMessage, reply: (b: Buffer) => void) => void): Promise<{ port: number; socket: UdpSocket }> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.on('message', (msg, from) => {
      const m = decodeStun(msg);
      if (m !== undefined) answer(m, (b) => socket.send(b, from.port, from.address));
    });
    socket.bind(0, '127.0.0.1', () => resolve({ port: socket.address().port, socket }));
    closers.push(() => socket.close());
  });
}

describe('STUN client', () => {
  it('Binding over UDP: a lost first request is retransmitted; the answer gives the mapped address', async () => {
    let seen = 0;
    const { port } = await udpServer((m, reply) => {
      if (++seen === 1) return; // dropped
      reply(success(m, STUN_TYPE.bindingSuccess, [mappedTo('198.51.100.7', 40000)]));
    });
    assert.deepEqual(await stunBinding({ transport: 'udp', host: '127.0.0.1', port }, 3000), { address: '198.51.100.7', port: 40000 });
    assert.equal(seen, 2);
  });

  it('Binding over UDP: no answer rejects within the timeout', async () => {
    const { port } = await udpServer(() => undefined);
    const started = Date.now();
    await assert.rejects(stunBinding({ transport: 'udp', host: '127.0.0.1', port }, 400), /no answer within 400 ms/);
    assert.ok(Date.now() - started < 2000);
  });

  it('Binding over TCP: the answer may arrive in pieces (the header carries the length)', async () => {
    const server: Server = createServer((conn) => {
      let buffered = Buffer.alloc(0);
      conn.on('data', (d) => {
        buffered = Buffer.concat([buffered, d]);
        const m = decodeStun(buffered);
        if (m === undefined) return;
        const answer = success(m, STUN_TYPE.bindingSuccess, [mappedTo('203.0.113.5', 5000)]);
        conn.write(answer.subarray(0, 7));
        setTimeout(() => conn.write(answer.subarray(7)), 30);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => server.close());
    const port = (server.address() as { port: number }).port;
    assert.deepEqual(await stunBinding({ transport: 'tcp', host: '127.0.0.1', port }, 2000), { address: '203.0.113.5', port: 5000 });
  });

  it('TURN Allocate: challenged with 401, retried with long-term credentials, freed with a Refresh of lifetime 0', async () => {
    const realm = 'careflow.test';
    const requests: string[] = [];
    const { port } = await udpServer((m, reply) => {
      const auth = getAttribute(m, STUN_ATTR.messageIntegrity) !== undefined;
      requests.push(`${m.type === STUN_TYPE.refreshRequest ? 'refresh' : 'allocate'}${auth ? '+auth' : ''}`);
      const user = getAttribute(m, STUN_ATTR.username)?.toString() ?? '';
      const good = auth && verifyIntegrity(m, longTermKey(user, realm, 'right-password'));
      if (m.type === STUN_TYPE.refreshRequest) {
        assert.ok(good);
        assert.deepEqual(getAttribute(m, STUN_ATTR.lifetime), Buffer.alloc(4));
        return reply(success(m, STUN_TYPE.refreshSuccess));
      }
      assert.deepEqual(getAttribute(m, STUN_ATTR.requestedTransport), Buffer.from([17, 0, 0, 0]));
      if (good) return reply(success(m, STUN_TYPE.allocateSuccess, [{ ...mappedTo('127.0.0.1', 50000), type: STUN_ATTR.xorRelayedAddress }]));
      reply(success(m, STUN_TYPE.allocateError, [
        { type: STUN_ATTR.errorCode, value: Buffer.concat([Buffer.from([0, 0, 4, 1]), Buffer.from('Unauthorized')]) },
        { type: STUN_ATTR.realm, value: Buffer.from(realm) },
        { type: STUN_ATTR.nonce, value: Buffer.from('nonce-1') },
      ]));
    });
    const server = { transport: 'udp' as const, host: '127.0.0.1', port };
    assert.deepEqual(await turnAllocate(server, 'doctor', 'right-password', 2000), { kind: 'allocated', relayed: { address: '127.0.0.1', port: 50000 } });
    assert.deepEqual(requests, ['allocate', 'allocate+auth', 'refresh+auth']);
    requests.length = 0;
    assert.deepEqual(await turnAllocate(server, 'doctor', 'wrong-password', 2000), { kind: 'rejected', code: 401, reason: 'Unauthorized' });
    assert.deepEqual(requests, ['allocate', 'allocate+auth']);
  });
});
