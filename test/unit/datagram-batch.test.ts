// The UDP send batch on real loopback sockets: datagrams leave together at the end of the
// event-loop turn, in order; a full queue goes at once; a send that throws loses no other; and
// the transport layer sends what was queued before close() closes its socket.
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DatagramBatch } from '../../src/sip/datagram-batch.ts';
import { TransportLayer } from '../../src/sip/transport-layer.ts';

async function receiver(): Promise<{ sock: Socket; port: number; got: string[]; waitFor(n: number): Promise<void> }> {
  const sock = createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const got: string[] = [];
  sock.on('message', (m) => got.push(m.toString()));
  const waitFor = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && got.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };
  return { sock, port: sock.address().port, got, waitFor };
}

async function sender(): Promise<Socket> {
  const sock = createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return sock;
}

test('datagrams sent in one turn wait for its end, then leave in the order they were sent', async () => {
  const rx = await receiver();
  const tx = await sender();
  const batch = new DatagramBatch((e) => assert.fail(String(e)));
  try {
    for (let i = 0; i < 10; i++) batch.send(tx, Buffer.from(`d${i}`), rx.port, '127.0.0.1');
    assert.equal(batch.size, 10, 'queued, not sent, within the turn');
    await nextTurn();
    assert.equal(batch.size, 0, 'sent once the turn is over');
    await rx.waitFor(10);
    assert.deepEqual(rx.got, Array.from({ length: 10 }, (_, i) => `d${i}`));
  } finally {
    tx.close();
    rx.sock.close();
  }
});

test('a full queue is sent at once, without waiting for the turn to end', async () => {
  const rx = await receiver();
  const tx = await sender();
  const batch = new DatagramBatch((e) => assert.fail(String(e)), 4);
  try {
    for (let i = 0; i < 3; i++) batch.send(tx, Buffer.from(`d${i}`), rx.port, '127.0.0.1');
    assert.equal(batch.size, 3);
    batch.send(tx, Buffer.from('d3'), rx.port, '127.0.0.1');
    assert.equal(batch.size, 0, 'the fourth filled the queue: all four went out');
    batch.send(tx, Buffer.from('d4'), rx.port, '127.0.0.1');
    await nextTurn();
    await rx.waitFor(5);
    assert.deepEqual(rx.got, ['d0', 'd1', 'd2', 'd3', 'd4']);
  } finally {
    tx.close();
    rx.sock.close();
  }
});

test('a send that throws is reported and the datagrams after it still go out', async () => {
  const rx = await receiver();
  const tx = await sender();
  const dead = await sender();
  dead.close(); // sending on it throws ERR_SOCKET_DGRAM_NOT_RUNNING
  const errors: unknown[] = [];
  const batch = new DatagramBatch((e) => errors.push(e));
  try {
    batch.send(tx, Buffer.from('before'), rx.port, '127.0.0.1');
    batch.send(dead, Buffer.from('lost'), rx.port, '127.0.0.1');
    batch.send(tx, Buffer.from('after'), rx.port, '127.0.0.1');
    await nextTurn();
    await rx.waitFor(2);
    assert.deepEqual(rx.got, ['before', 'after']);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as NodeJS.ErrnoException).code, 'ERR_SOCKET_DGRAM_NOT_RUNNING');
  } finally {
    tx.close();
    rx.sock.close();
  }
});

test('the transport layer sends what was queued before close() closes its UDP socket', async () => {
  const rx = await receiver();
  const t = new TransportLayer({ udp: { host: '127.0.0.1', port: 0 } });
  t.setHandler({ onMessage: () => {} });
  await t.listen();
  try {
    assert.equal(t.sendRaw(Buffer.from('last words'), { transport: 'udp', address: '127.0.0.1', port: rx.port }), true);
    await t.close(); // in the same turn as the send
    await rx.waitFor(1);
    assert.deepEqual(rx.got, ['last words']);
  } finally {
    rx.sock.close();
  }
});
