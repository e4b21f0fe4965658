// The transport layer on real loopback sockets: connection cap, stream framing into messages,
// stateless 400 for a malformed request, UDP keep-alive datagrams ignored, and no sends after close.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import type { SipMessage } from '../../src/sip/message.ts';
import type { Flow } from '../../src/sip/transport.ts';
import { TransportLayer } from '../../src/sip/transport-layer.ts';

const OPTIONS = (port: number): string =>
  `OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:${port};branch=z9hG4bKt1\r\nMax-Forwards: 70\r\n` +
  'From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n';

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

const closed = (s: Socket, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });

test('TCP connections beyond maxConnections are refused; the others keep working', async () => {
  const t = new TransportLayer({ tcp: { host: '127.0.0.1', port: 0 }, maxConnections: 2 });
  const got: Array<{ m: SipMessage; f: Flow }> = [];
  t.setHandler({ onMessage: (m, f) => got.push({ m, f }) });
  await t.listen();
  const port = t.bound.tcp!.port;
  const socks: Socket[] = [];
  try {
    const a = await open(port);
    socks.push(a, await open(port));
    const c = await open(port);
    socks.push(c);
    c.on('error', () => undefined);
    assert.equal(await closed(c, 2000), true, 'the third connection is closed by the server');
    a.write(OPTIONS(a.localPort!));
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 1, 'a connection within the cap still delivers messages');
    assert.equal(got[0]!.f.transport, 'tcp');
  } finally {
    for (const s of socks) s.destroy();
    await t.close();
  }
});

test('UDP: CRLF keep-alives are ignored; a malformed request gets a stateless 400 at its source (force_rport)', async () => {
  const t = new TransportLayer({ udp: { host: '127.0.0.1', port: 0 }, forceRport: true });
  const got: SipMessage[] = [];
  t.setHandler({ onMessage: (m) => got.push(m) });
  await t.listen();
  const sock = createSocket('udp4');
  try {
    const replies: string[] = [];
    sock.on('message', (m) => replies.push(m.toString()));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const port = t.bound.udp!.port;
    sock.send('\r\n\r\n', port, '127.0.0.1');
    // Via names port 9 (nobody there): only force_rport brings the answer back to this socket.
    sock.send(OPTIONS(9).replace('SIP/2.0/TCP', 'SIP/2.0/UDP').replace('CSeq: 1 OPTIONS', 'CSeq: 1 INVITE'), port, '127.0.0.1');
    for (let i = 0; i < 100 && replies.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 0, 'neither the keep-alive nor the malformed request reaches the transaction layer');
    assert.equal(replies.length, 1);
    assert.match(replies[0]!, /^SIP\/2\.0 400 CSeq method does not match\r\n/);
    assert.match(replies[0]!, new RegExp(`;rport=${sock.address().port};received=127\\.0\\.0\\.1`));
    assert.equal(t.stats.parseErrors, 1);
  } finally {
    sock.close();
    await t.close();
  }
});

test('after close() nothing is sent and nothing throws: a transaction still running at shutdown gets false', async () => {
  const t = new TransportLayer({ udp: { host: '127.0.0.1', port: 0 }, tcp: { host: '127.0.0.1', port: 0 } });
  t.setHandler({ onMessage: () => {} });
  await t.listen();
  const data = Buffer.from(OPTIONS(9));
  assert.equal(t.sendRaw(data, { transport: 'udp', address: '127.0.0.1', port: 9 }), true, 'sends while open');
  await t.close();
  // Before, a closed dgram socket threw ERR_SOCKET_DGRAM_NOT_RUNNING here, uncaught at shutdown.
  assert.equal(t.sendRaw(data, { transport: 'udp', address: '127.0.0.1', port: 9 }), false);
  assert.equal(t.sendRaw(data, { transport: 'tcp', address: '127.0.0.1', port: 9 }), false, 'no new connection after close');
});
