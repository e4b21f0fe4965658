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

async function bound(): Promise<Socket> {
  const sock = createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return sock;
}

interface Receiver {
  readonly port: number;
  readonly got: string[];
  waitFor(n: number): Promise<void>;
}

/** Runs `body` with a receiving and a sending socket on loopback, and closes both after it. */
async function withSockets(body: (rx: Receiver, tx: Socket) => Promise<void>): Promise<void> {
  const rxSock = await bound();
  const tx = await bound();
  const got: string[] = [];
  rxSock.on('message', (m) => got.push(m.toString()));
  const waitFor = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && got.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };
  try {
    await body({ port: rxSock.address().port, got, waitFor }, tx);
  } finally {
    tx.close();
    rxSock.close();
  }
}

test('datagrams sent in one turn wait for its end, then leave in the order they were sent', () =>
  withSockets(async (rx, tx) => {
    const batch = new DatagramBatch((e) => assert.fail(String(e)));
    for (let i = 0; i < 10; i++) batch.send(tx, Buffer.from(`d${i}`), rx.port, '127.0.0.1');
    assert.equal(batch.size, 10, 'queued, not sent, within the turn');
    await nextTurn();
    assert.equal(batch.size, 0, 'sent once the turn is over');
    await rx.waitFor(10);
    assert.deepEqual(rx.got, Array.from({ length: 10 }, (_, i) => `d${i}`));
  }));

test('a full queue is sent at once, without waiting for the turn to end', () =>
  withSockets(async (rx, tx) => {
    const batch = new DatagramBatch((e) => assert.fail(String(e)), 4);
    for (let i = 0; i < 3; i++) batch.send(tx, Buffer.from(`d${i}`), rx.port, '127.0.0.1');
    assert.equal(batch.size, 3);
    batch.send(tx, Buffer.from('d3'), rx.port, '127.0.0.1');
    assert.equal(batch.size, 0, 'the fourth filled the queue: all four went out');
    batch.send(tx, Buffer.from('d4'), rx.port, '127.0.0.1');
    await nextTurn();
    await rx.waitFor(5);
    assert.deepEqual(rx.got, ['d0', 'd1', 'd2', 'd3', 'd4']);
  }));

test('a send that throws is reported and the datagrams after it still go out', () =>
  withSockets(async (rx, tx) => {
    const dead = await bound();
    dead.close(); // sending on it throws ERR_SOCKET_DGRAM_NOT_RUNNING
    const errors: unknown[] = [];
    const batch = new DatagramBatch((e) => errors.push(e));
    batch.send(tx, Buffer.from('before'), rx.port, '127.0.0.1');
    batch.send(dead, Buffer.from('lost'), rx.port, '127.0.0.1');
    batch.send(tx, Buffer.from('after'), rx.port, '127.0.0.1');
    await nextTurn();
    await rx.waitFor(2);
    assert.deepEqual(rx.got, ['before', 'after']);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as NodeJS.ErrnoException).code, 'ERR_SOCKET_DGRAM_NOT_RUNNING');
  }));

test('a datagram queued while the batch is being sent goes out in the same flush, after the others, and none is lost', () => {
  const wire: string[] = [];
  const errors: unknown[] = [];
  const batch = new DatagramBatch((e) => errors.push(e), 64);
  // A socket whose send() records the datagram and, for "A", queues two more (as a handler
  // called during the flush could): they must not overwrite "B" and "C" in the queue.
  const fake = {
    send(data: Buffer): void {
      const d = data.toString();
      wire.push(d);
      if (d === 'A') {
        batch.send(fake as unknown as Socket, Buffer.from('X'), 9, '127.0.0.1');
        batch.send(fake as unknown as Socket, Buffer.from('Y'), 9, '127.0.0.1');
      }
    },
  };
  for (const d of ['A', 'B', 'C']) batch.send(fake as unknown as Socket, Buffer.from(d), 9, '127.0.0.1');
  batch.flush();
  assert.deepEqual(wire, ['A', 'B', 'C', 'X', 'Y']);
  assert.equal(batch.size, 0);
  assert.deepEqual(errors, []);
});

test('an error handler that throws loses no datagram', () => {
  const wire: string[] = [];
  const batch = new DatagramBatch(() => {
    throw new Error('logger down');
  });
  const ok = { send: (data: Buffer): void => void wire.push(data.toString()) } as unknown as Socket;
  const bad = { send: (): void => { throw new Error('closed'); } } as unknown as Socket;
  batch.send(ok, Buffer.from('1'), 9, '127.0.0.1');
  batch.send(bad, Buffer.from('2'), 9, '127.0.0.1');
  batch.send(ok, Buffer.from('3'), 9, '127.0.0.1');
  batch.flush();
  assert.deepEqual(wire, ['1', '3']);
});

test('the transport layer refuses a UDP destination port out of range (from a Via rport or a Contact)', async () => {
  const t = new TransportLayer({ udp: { host: '127.0.0.1', port: 0 } });
  t.setHandler({ onMessage: () => {} });
  await t.listen();
  try {
    for (const port of [0, 65536, 99999, 1.5, -1]) {
      assert.equal(t.sendRaw(Buffer.from('x'), { transport: 'udp', address: '127.0.0.1', port }), false, `port ${port}`);
    }
  } finally {
    await t.close();
  }
});

test('the transport layer sends what was queued before close() closes its UDP socket', () =>
  withSockets(async (rx) => {
    const t = new TransportLayer({ udp: { host: '127.0.0.1', port: 0 } });
    t.setHandler({ onMessage: () => {} });
    await t.listen();
    assert.equal(t.sendRaw(Buffer.from('last words'), { transport: 'udp', address: '127.0.0.1', port: rx.port }), true);
    await t.close(); // in the same turn as the send
    await rx.waitFor(1);
    assert.deepEqual(rx.got, ['last words']);
  }));
