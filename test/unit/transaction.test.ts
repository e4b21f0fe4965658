// RFC 3261 §17 (+ RFC 6026) transaction timers, driven by a manual clock and a recording
// sender (pjsip's loop transport idea): every retransmission and timeout is checked by time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDatagram } from '../../src/sip/parser.ts';
import { createResponse, SipRequest, type SipMessage, type SipResponse } from '../../src/sip/message.ts';
import { TimerWheel } from '../../src/sip/timer-wheel.ts';
import { newBranch, TransactionLayer } from '../../src/sip/transaction/layer.ts';
import type { ServerTransaction } from '../../src/sip/transaction/common.ts';
import type { Destination, Flow, MessageSender } from '../../src/sip/transport.ts';

class Recorder implements MessageSender {
  readonly sent: Array<{ at: number; text: string }> = [];
  readonly wheel: TimerWheel;
  constructor(wheel: TimerWheel) {
    this.wheel = wheel;
  }
  send(m: SipMessage, d: Destination): boolean {
    return this.sendRaw(m.toBuffer(), d);
  }
  sendRaw(b: Buffer, _d: Destination): boolean {
    this.sent.push({ at: this.wheel.now(), text: b.toString() });
    return true;
  }
  firstLines(): string[] {
    return this.sent.map((s) => s.text.split('\r\n')[0]!);
  }
}

function setup(transport: 'udp' | 'tcp' = 'udp') {
  const wheel = new TimerWheel({ clock: 'manual', resolution: 10 });
  const rec = new Recorder(wheel);
  const layer = new TransactionLayer({ sender: rec, wheel });
  const dest: Destination = { transport, address: '127.0.0.1', port: 5070 };
  return { wheel, rec, layer, dest };
}

function request(method: string, branch = newBranch()): SipRequest {
  const text =
    `${method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=${branch}\r\nMax-Forwards: 70\r\n` +
    `From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c1@test\r\nCSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`;
  return parseDatagram(Buffer.from(text)) as SipRequest;
}

function response(req: SipRequest, status: number): SipResponse {
  return parseDatagram(createResponse(req, status, undefined, 'b2').toBuffer()) as SipResponse;
}

const flow: Flow = { transport: 'udp', remoteAddress: '127.0.0.1', remotePort: 5070, localAddress: '127.0.0.1', localPort: 5060 };

test('INVITE client: Timer A doubles from T1, Timer B times out at 64*T1 (§17.1.1.2)', () => {
  const { wheel, rec, layer, dest } = setup();
  let timedOut = -1;
  layer.request(request('INVITE'), dest, { onResponse: () => assert.fail('no response expected'), onTimeout: () => (timedOut = wheel.now()) });
  wheel.advance(40_000);
  assert.deepEqual(rec.sent.map((s) => s.at), [0, 500, 1500, 3500, 7500, 15500, 31500]);
  assert.equal(timedOut, 32000);
  assert.equal(layer.clientCount, 0);
});

test('INVITE client over TCP: no Timer A retransmissions, Timer B still fires', () => {
  const { wheel, rec, layer, dest } = setup('tcp');
  let timedOut = false;
  layer.request(request('INVITE'), dest, { onResponse: () => undefined, onTimeout: () => (timedOut = true) });
  wheel.advance(33_000);
  assert.equal(rec.sent.length, 1);
  assert.equal(timedOut, true);
});

test('INVITE client: non-2xx final is ACKed inside the transaction; retransmissions re-ACKed, not passed up (§17.1.1.3)', () => {
  const { wheel, rec, layer, dest } = setup();
  const req = request('INVITE');
  const seen: number[] = [];
  layer.request(req, dest, { onResponse: (r) => seen.push(r.status), onTimeout: () => assert.fail('timeout') });
  layer.onMessage(response(req, 180), flow);
  layer.onMessage(response(req, 486), flow);
  layer.onMessage(response(req, 486), flow);
  assert.deepEqual(seen, [180, 486]);
  const acks = rec.sent.filter((s) => s.text.startsWith('ACK '));
  assert.equal(acks.length, 2);
  assert.match(acks[0]!.text, new RegExp(`branch=${req.via.branch}`));
  assert.match(acks[0]!.text, /CSeq: 1 ACK/);
  assert.match(acks[0]!.text, /To: <sip:bob@127.0.0.1>;tag=b2/);
  wheel.advance(31_000);
  assert.equal(layer.clientCount, 1, 'Timer D keeps it for 32 s');
  wheel.advance(1_100);
  assert.equal(layer.clientCount, 0);
});

test('INVITE client: 2xx -> Accepted, retransmitted 2xx reach the TU until Timer M (RFC 6026 §7.2)', () => {
  const { wheel, layer, dest } = setup();
  const req = request('INVITE');
  const seen: number[] = [];
  layer.request(req, dest, { onResponse: (r) => seen.push(r.status), onTimeout: () => assert.fail('timeout') });
  layer.onMessage(response(req, 200), flow);
  layer.onMessage(response(req, 200), flow);
  layer.onMessage(response(req, 486), flow);
  assert.deepEqual(seen, [200, 200]);
  wheel.advance(32_010);
  assert.equal(layer.clientCount, 0);
});

test('non-INVITE client: Timer E doubles to T2, then T2 in Proceeding; Timer F at 64*T1 (§17.1.2.2)', () => {
  const { wheel, rec, layer, dest } = setup();
  let timedOut = -1;
  layer.request(request('OPTIONS'), dest, { onResponse: () => undefined, onTimeout: () => (timedOut = wheel.now()) });
  wheel.advance(33_000);
  assert.deepEqual(rec.sent.map((s) => s.at).slice(0, 6), [0, 500, 1500, 3500, 7500, 11500]);
  assert.equal(timedOut, 32000);
});

test('non-INVITE client: final response -> Completed, Timer K = T4 absorbs retransmissions', () => {
  const { wheel, layer, dest } = setup();
  const req = request('OPTIONS');
  const seen: number[] = [];
  layer.request(req, dest, { onResponse: (r) => seen.push(r.status), onTimeout: () => assert.fail('timeout') });
  layer.onMessage(response(req, 200), flow);
  layer.onMessage(response(req, 200), flow);
  assert.deepEqual(seen, [200]);
  wheel.advance(4_990);
  assert.equal(layer.clientCount, 1);
  wheel.advance(20);
  assert.equal(layer.clientCount, 0);
});

function serverSetup() {
  const s = setup();
  const got: Array<{ req: SipRequest; tx: ServerTransaction | undefined }> = [];
  s.layer.setUser({ onRequest: (req, _f, tx) => got.push({ req, tx }), onStrayResponse: () => undefined });
  return { ...s, got };
}

test('INVITE server: non-2xx retransmitted by Timer G until ACK; ACK absorbed; Timer I ends it (§17.2.1)', () => {
  const { wheel, rec, layer, got } = serverSetup();
  const inv = request('INVITE');
  layer.onMessage(inv, flow);
  assert.equal(got.length, 1);
  const tx = got[0]!.tx!;
  tx.respond(createResponse(inv, 486, undefined, 'x'));
  wheel.advance(1_600);
  assert.deepEqual(rec.sent.map((s) => s.at), [0, 500, 1500]);
  const ack = request('ACK', inv.via.branch);
  layer.onMessage(ack, flow);
  assert.equal(got.length, 1, 'the ACK for a non-2xx is absorbed by the transaction');
  wheel.advance(10_000);
  assert.equal(rec.sent.length, 3, 'no more retransmissions after the ACK');
  assert.equal(layer.serverCount, 0);
});

test('INVITE server: Timer H ends a transaction whose ACK never comes, and tells the TU', () => {
  const { wheel, layer, got } = serverSetup();
  const inv = request('INVITE');
  layer.onMessage(inv, flow);
  const tx = got[0]!.tx!;
  let reason = '';
  tx.onTerminated = (r) => (reason = r);
  tx.respond(createResponse(inv, 404, undefined, 'x'));
  wheel.advance(32_010);
  assert.equal(reason, 'timeout');
  assert.equal(layer.serverCount, 0);
});

test('INVITE server: retransmitted INVITE gets the last provisional again; 2xx -> Accepted absorbs them (RFC 6026)', () => {
  const { wheel, rec, layer, got } = serverSetup();
  const inv = request('INVITE');
  layer.onMessage(inv, flow);
  const tx = got[0]!.tx!;
  tx.respond(createResponse(inv, 180, undefined, 'x'));
  layer.onMessage(request('INVITE', inv.via.branch), flow);
  assert.deepEqual(rec.firstLines(), ['SIP/2.0 180 Ringing', 'SIP/2.0 180 Ringing']);
  tx.respond(createResponse(inv, 200, undefined, 'x'));
  layer.onMessage(request('INVITE', inv.via.branch), flow);
  assert.equal(rec.sent.length, 3, 'INVITE retransmission absorbed in Accepted');
  assert.equal(got.length, 1);
  wheel.advance(32_010);
  assert.equal(layer.serverCount, 0);
});

test('non-INVITE server: retransmission answered with the last response; Timer J = 64*T1 on UDP', () => {
  const { wheel, rec, layer, got } = serverSetup();
  const req = request('OPTIONS');
  layer.onMessage(req, flow);
  got[0]!.tx!.respond(createResponse(req, 200, undefined, 'x'));
  layer.onMessage(request('OPTIONS', req.via.branch), flow);
  assert.equal(got.length, 1);
  assert.equal(rec.sent.length, 2);
  wheel.advance(31_990);
  assert.equal(layer.serverCount, 1);
  wheel.advance(20);
  assert.equal(layer.serverCount, 0);
});

test('non-INVITE server over UDP: 20,000 in Completed at once each resend their own response to where it went; Timer J ends them in order', () => {
  const { wheel, rec, layer, got } = serverSetup();
  const reqs: SipRequest[] = [];
  const sentTo: Destination[] = [];
  rec.sendRaw = (b, d) => {
    rec.sent.push({ at: wheel.now(), text: b.toString() });
    sentTo.push(d);
    return true;
  };
  const n = 20_000; // ~10 MB of responses: several of the table's chunks, and its ring grown many times
  for (let i = 0; i < n; i++) {
    const req = request('REGISTER');
    const f: Flow = { ...flow, remotePort: 10_000 + (i % 50_000) };
    layer.onMessage(req, f);
    // Responses of varied length, each naming its request.
    got[i]!.tx!.respond(createResponse(req, 200, `OK ${'x'.repeat(i % 300)} #${i}`, `tag${i}`));
    reqs.push(req);
    if (i === n / 2) wheel.advance(1_000); // the second half expires 1 s later
  }
  assert.equal(layer.serverCount, n);
  assert.equal(rec.sent.length, n);
  for (const i of [0, 1, 4_999, 10_000, 10_001, 19_999]) {
    layer.onMessage(request('REGISTER', reqs[i]!.via.branch), { ...flow, remotePort: 10_000 + i });
    const again = rec.sent.at(-1)!.text;
    assert.equal(again, rec.sent[i]!.text, `request ${i}: the same response again`);
    assert.match(again.split('\r\n')[0]!, new RegExp(`#${i}$`));
    assert.deepEqual(sentTo.at(-1), sentTo[i], 'to where the first one went');
  }
  assert.equal(got.length, n, 'retransmissions reach no transaction user');
  wheel.advance(31_000 - 10); // 31,990 ms after the first half
  assert.equal(layer.serverCount, n);
  wheel.advance(20);
  assert.equal(layer.serverCount, n / 2 - 1, 'the first half (answered before the clock moved) has ended');
  layer.onMessage(request('REGISTER', reqs[0]!.via.branch), flow);
  assert.equal(got.length, n + 1, 'after Timer J the same branch is a new request');
  wheel.advance(1_020);
  assert.equal(layer.serverCount, 1, 'only the new transaction is left');
  layer.onMessage(request('REGISTER', reqs[n - 1]!.via.branch), flow);
  assert.equal(got.length, n + 2);
});

test('a stray response goes to the TU; an ACK for a 2xx is handed up without a transaction', () => {
  const { layer, got } = serverSetup();
  let strays = 0;
  layer.setUser({ onRequest: (req, _f, tx) => got.push({ req, tx }), onStrayResponse: () => strays++ });
  layer.onMessage(response(request('INVITE'), 200), flow);
  layer.onMessage(request('ACK'), flow);
  assert.equal(strays, 1);
  assert.equal(got.length, 1);
  assert.equal(got[0]!.tx, undefined);
});

test('RFC 2543 requests without the magic cookie are matched by the fallback key', () => {
  const { rec, layer, got } = serverSetup();
  const old = parseDatagram(Buffer.from(request('OPTIONS').toString().replace(/branch=[^\r]+/, 'branch=old1'))) as SipRequest;
  layer.onMessage(old, flow);
  got[0]!.tx!.respond(createResponse(old, 200, undefined, 'x'));
  layer.onMessage(parseDatagram(old.toBuffer()), flow);
  assert.equal(got.length, 1);
  assert.equal(rec.sent.length, 2);
});

test('timer wheel: cancelled timers never fire; long delays take several revolutions', () => {
  const wheel = new TimerWheel({ clock: 'manual', resolution: 10, slots: 8 });
  const fired: number[] = [];
  const t = wheel.schedule(50, () => fired.push(50));
  wheel.schedule(1_000, () => fired.push(wheel.now()));
  wheel.cancel(t);
  wheel.advance(2_000);
  assert.deepEqual(fired, [1000]);
  assert.equal(wheel.size, 0);
});
