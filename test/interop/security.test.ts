// The server is no open relay: requests that look in-dialog (To tag) and carry a Route to us
// are followed only along a route this server recorded (a verified flow token), never toward
// whatever Request-URI or next Route the sender chose. Foreign domains are refused too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { startServer, type ServerHandle } from './harness.ts';
import { RawSipClient } from './sip-raw.ts';

let server: ServerHandle;
let victim: Socket;
let victimPort = 0;
const reached: string[] = [];

before(async () => {
  server = await startServer();
  victim = createSocket('udp4');
  victim.on('message', (m) => reached.push(m.toString('latin1').split('\r\n')[0] ?? ''));
  await new Promise<void>((r) => victim.bind(0, '127.0.0.1', () => r()));
  victimPort = victim.address().port;
});

after(() => victim.close());

async function send(lines: string[]): Promise<number> {
  const c = await RawSipClient.open('udp', server.sipPort);
  try {
    const branch = `z9hG4bK${Math.random().toString(36).slice(2)}`;
    const text = lines.join('\r\n').replace('BRANCH', branch).replace(/LOCALPORT/g, String(c.localPort)) + '\r\n\r\n';
    return (await c.transaction(text, branch)).status;
  } finally {
    c.close();
  }
}

const base = (method: string, uri: string, route: string): string[] => [
  `${method} ${uri} SIP/2.0`,
  'Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=BRANCH;rport',
  route,
  'Max-Forwards: 70',
  'From: <sip:mallory@127.0.0.1>;tag=m1',
  'To: <sip:victim@127.0.0.1>;tag=v1',
  `Call-ID: relay-${Math.random()}@127.0.0.1`,
  `CSeq: 1 ${method}`,
  'Content-Length: 0',
];

test('a forged Route to us (no flow token) with a To tag is refused with 403, nothing is relayed', async () => {
  const status = await send(base('BYE', `sip:victim@127.0.0.1:${victimPort}`, `Route: <sip:127.0.0.1:${server.sipPort};lr>`));
  assert.equal(status, 403);
});

test('a forged Route with a made-up flow token is refused with 403', async () => {
  const fake = Buffer.from(`udp~127.0.0.1~${victimPort}~`).toString('base64url') + '.AAAAAAAAAAAA';
  const status = await send(base('INFO', `sip:victim@127.0.0.1:${victimPort}`, `Route: <sip:127.0.0.1:${server.sipPort};lr;ftag=m1;cf=${fake};ef=${fake}>`));
  assert.equal(status, 403);
});

test('a Route through us to a second hop chosen by the sender is refused', async () => {
  const status = await send(base('BYE', 'sip:victim@example.net', `Route: <sip:127.0.0.1:${server.sipPort};lr>, <sip:127.0.0.1:${victimPort};lr>`));
  assert.equal(status, 403);
});

test('an out-of-dialog request for a foreign domain is refused (403), not relayed', async () => {
  const lines = base('OPTIONS', `sip:victim@example.net`, 'X-Filler: 1').filter((l) => !l.startsWith('To:')).concat([]);
  lines.splice(5, 0, 'To: <sip:victim@example.net>');
  assert.equal(await send(lines), 403);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(reached, [], `the victim must have received nothing, got: ${reached.join(' | ')}`);
});

test('GET /api/status needs the admin token and reports memory and live SIP counters', async () => {
  const anonymous = await fetch(`http://127.0.0.1:${server.httpPort}/api/status`);
  assert.equal(anonymous.status, 401);
  const body = await server.apiJson<{ memoryMiB: { rss: number; heapUsed: number }; sip: Record<string, number> }>('/api/status');
  assert.ok(body.memoryMiB.rss > 0 && body.memoryMiB.heapUsed > 0, JSON.stringify(body));
  for (const k of ['registrations', 'activeCalls', 'serverTransactions', 'clientTransactions', 'received']) {
    assert.equal(typeof body.sip[k], 'number', `sip.${k} in ${JSON.stringify(body.sip)}`);
  }
  assert.ok(body.sip['received']! >= 4, 'the requests of the tests above were counted');
});
