// The forking proxy core (RFC 3261 §16.6-16.10) over the real transaction layer, with a
// recording sender and a manual clock: best-response choice, CANCEL of the other branches,
// the §9.1 rule that CANCEL waits for a provisional, Timer C, loop detection.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyCore, loopHash, type ProxyOutcome } from '../../src/proxy/proxy.ts';
import { FlowTokens } from '../../src/proxy/record-route.ts';
import { createResponse, type SipMessage, type SipRequest, type SipResponse } from '../../src/sip/message.ts';
import { parseDatagram } from '../../src/sip/parser.ts';
import { TimerWheel } from '../../src/sip/timer-wheel.ts';
import type { ServerTransaction } from '../../src/sip/transaction/common.ts';
import { TransactionLayer } from '../../src/sip/transaction/layer.ts';
import type { Destination, Flow, MessageSender } from '../../src/sip/transport.ts';

interface Sent {
  readonly to: number;
  readonly msg: SipMessage;
}

class Net implements MessageSender {
  readonly sent: Sent[] = [];
  send(m: SipMessage, d: Destination): boolean {
    return this.sendRaw(m.toBuffer(), d);
  }
  sendRaw(b: Buffer, d: Destination): boolean {
    this.sent.push({ to: d.port, msg: parseDatagram(b) });
    return true;
  }
  requests(port: number, method: string): SipRequest[] {
    return this.sent.filter((s) => s.to === port && 'method' in s.msg && (s.msg as SipRequest).method === method).map((s) => s.msg as SipRequest);
  }
  responses(port: number): SipResponse[] {
    return this.sent.filter((s) => s.to === port && 'status' in s.msg).map((s) => s.msg as SipResponse);
  }
}

const CALLER = 5070;
const flow: Flow = { transport: 'udp', remoteAddress: '127.0.0.1', remotePort: CALLER, localAddress: '127.0.0.1', localPort: 5060 };

function invite(extra = ''): SipRequest {
  return parseDatagram(Buffer.from(
    `INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${CALLER};branch=z9hG4bKcaller1;rport=${CALLER};received=127.0.0.1\r\nMax-Forwards: 70\r\n` +
    `From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: call1@test\r\nCSeq: 7 INVITE\r\n${extra}Content-Length: 0\r\n\r\n`,
  )) as SipRequest;
}

function setup(targets: number[], opts: { noAnswerMs?: number; timerCMs?: number } = {}) {
  const wheel = new TimerWheel({ clock: 'manual', resolution: 10 });
  const net = new Net();
  const layer = new TransactionLayer({ sender: net, wheel });
  const outcomes: ProxyOutcome[] = [];
  let serverTx: ServerTransaction | undefined;
  layer.setUser({ onRequest: (_r, _f, tx) => (serverTx = tx), onStrayResponse: () => undefined });
  const req = invite();
  layer.onMessage(req, flow);
  const proxy = new ProxyCore({
    layer, tokens: new FlowTokens(Buffer.alloc(32, 1)), interfaces: { udp: { transport: 'udp', host: '127.0.0.1', port: 5060 } },
    ...(opts.timerCMs !== undefined ? { timerCMs: opts.timerCMs } : {}),
  });
  proxy.forward({
    serverTx: serverTx!, request: req, flow, recordRoute: true,
    targets: targets.map((p) => ({ uri: `sip:bob@127.0.0.1:${p}`, destination: { transport: 'udp', address: '127.0.0.1', port: p }, label: `dev${p}` })),
    ...(opts.noAnswerMs !== undefined ? { noAnswerMs: opts.noAnswerMs } : {}),
    onOutcome: (o) => outcomes.push(o),
  });
  /** Answer the INVITE that went to `port` with `status`. */
  const answer = (port: number, status: number, mutate?: (r: SipResponse) => void): void => {
    const inv = net.requests(port, 'INVITE')[0]!;
    const r = createResponse(inv, status, undefined, `t${port}`);
    mutate?.(r);
    layer.onMessage(parseDatagram(r.toBuffer()), { ...flow, remotePort: port });
  };
  return { wheel, net, layer, proxy, outcomes, serverTx: serverTx!, answer, req };
}

test('§16.6: each branch gets its own Via, Record-Route, R-URI and decremented Max-Forwards', () => {
  const { net } = setup([6001, 6002]);
  const a = net.requests(6001, 'INVITE')[0]!;
  const b = net.requests(6002, 'INVITE')[0]!;
  assert.equal(a.uri, 'sip:bob@127.0.0.1:6001');
  assert.equal(a.get('max-forwards'), '69');
  assert.notEqual(a.via.branch, b.via.branch);
  assert.equal(a.getAll('via').length, 2);
  assert.match(a.get('record-route')!, /^<sip:127\.0\.0\.1:5060;lr;ftag=a1;cf=[^;]+;ef=[^>]+>$/);
});

test('§16.7: lowest class wins, 4xx preference list (407 over 486), 503 becomes 500', () => {
  const s1 = setup([6001, 6002]);
  s1.answer(6001, 486);
  assert.equal(s1.net.responses(CALLER).filter((r) => r.status >= 200).length, 0, 'waits for every branch');
  s1.answer(6002, 407, (r) => r.append('proxy-authenticate', 'Digest realm="x", nonce="n"'));
  assert.equal(s1.net.responses(CALLER).at(-1)!.status, 407);

  const s2 = setup([6001, 6002]);
  s2.answer(6001, 503);
  s2.answer(6002, 302);
  assert.equal(s2.net.responses(CALLER).at(-1)!.status, 302, '3xx is a lower class than 5xx');

  const s3 = setup([6001]);
  s3.answer(6001, 503);
  assert.equal(s3.net.responses(CALLER).at(-1)!.status, 500);
});

test('§16.7 step 7: challenges of all 401/407 branches are collected', () => {
  const s = setup([6001, 6002]);
  s.answer(6001, 401, (r) => r.append('www-authenticate', 'Digest realm="a", nonce="1"'));
  s.answer(6002, 401, (r) => r.append('www-authenticate', 'Digest realm="b", nonce="2"'));
  const final = s.net.responses(CALLER).at(-1)!;
  assert.equal(final.status, 401);
  assert.deepEqual(final.getAll('www-authenticate').map((v) => /realm="(.)"/.exec(v)![1]).sort(), ['a', 'b']);
});

test('§16.7 step 10 + §9.1: a 2xx cancels ringing branches; a branch without a provisional is cancelled only after its 1xx', () => {
  const s = setup([6001, 6002, 6003]);
  s.answer(6002, 180);
  s.answer(6001, 200);
  assert.equal(s.net.responses(CALLER).at(-1)!.status, 200);
  assert.equal(s.net.requests(6002, 'CANCEL').length, 1, 'ringing branch cancelled');
  assert.equal(s.net.requests(6003, 'CANCEL').length, 0, 'no CANCEL before a provisional (§9.1)');
  s.answer(6003, 100);
  assert.equal(s.net.requests(6003, 'CANCEL').length, 1, 'CANCEL sent once the provisional arrived');
  const cancel = s.net.requests(6002, 'CANCEL')[0]!;
  const inv = s.net.requests(6002, 'INVITE')[0]!;
  assert.equal(cancel.via.branch, inv.via.branch);
  assert.equal(cancel.cseq.seq, inv.cseq.seq);
  assert.equal(s.outcomes[0]?.kind, 'answered');
});

test('§16.7: a 6xx cancels the other branches and is the final answer', () => {
  const s = setup([6001, 6002]);
  s.answer(6001, 180);
  s.answer(6002, 603);
  assert.equal(s.net.requests(6001, 'CANCEL').length, 1);
  s.answer(6001, 487);
  assert.equal(s.net.responses(CALLER).at(-1)!.status, 603);
});

test('§16.10: CANCEL from upstream cancels the branches and the caller gets 487', () => {
  const s = setup([6001]);
  s.answer(6001, 180);
  assert.equal(s.proxy.cancel(s.serverTx), true);
  assert.equal(s.net.requests(6001, 'CANCEL').length, 1);
  s.answer(6001, 487);
  const final = s.outcomes.at(-1)!;
  assert.equal(final.kind, 'final');
  assert.equal(final.kind === 'final' && final.cancelled, true);
  assert.equal(s.net.responses(CALLER).at(-1)!.status, 487);
});

test('no-answer timeout cancels ringing branches and answers 408 No Answer', () => {
  const s = setup([6001], { noAnswerMs: 5000 });
  s.answer(6001, 180);
  s.wheel.advance(5010);
  assert.equal(s.net.requests(6001, 'CANCEL').length, 1);
  s.answer(6001, 487);
  const last = s.net.responses(CALLER).at(-1)!;
  assert.equal(last.status, 408);
  assert.equal(last.reason, 'No Answer');
});

test('§16.8 Timer C: with a provisional the branch is cancelled; without one it counts as a 408', () => {
  const s = setup([6001, 6002], { timerCMs: 200_000 });
  s.answer(6001, 180);
  s.wheel.advance(200_010);
  assert.equal(s.net.requests(6001, 'CANCEL').length, 1);
  s.answer(6001, 487);
  // 6002 never answered: its Timer B (32 s) already made it a 408 long before
  assert.equal(s.net.responses(CALLER).at(-1)!.status, 408);
});

test('§16.3 step 4: a request carrying our Via with a matching loop hash has looped; a spiral has not', () => {
  const { proxy } = setup([6001]);
  const req = invite();
  const top = req.first('via')!;
  const looped = parseDatagram(req.toBuffer()) as SipRequest;
  looped.prepend('via', `SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcf${loopHash(req, top)}.x1`);
  const own = (h: string, p: number | undefined): boolean => h === '127.0.0.1' && p === 5060;
  assert.equal(proxy.isLooped(looped, own), true);
  const spiral = parseDatagram(looped.toBuffer()) as SipRequest;
  spiral.uri = 'sip:carol@127.0.0.1';
  assert.equal(proxy.isLooped(spiral, own), false, 'a changed Request-URI is a spiral');
  assert.equal(proxy.isLooped(looped, () => false), false, 'someone else\'s Via');
});
