// src/sip/framing.ts: StreamFramer (RFC 3261 §18.3 framing on streams, RFC 5626 §4.4.1 keep-alives).
// Every corpus message that frames as one message on a stream is split at every byte offset
// (undici test/fuzzing style) and must come out identical.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadCorpus } from '../conformance/corpus.ts';
import { type FrameEvent, StreamFramer } from '../../src/sip/framing.ts';
import { SipRequest } from '../../src/sip/message.ts';
import { DEFAULT_LIMITS, parseDatagram, SipParseError } from '../../src/sip/parser.ts';

function msg(id: string, body = '', method = 'OPTIONS'): Buffer {
  return Buffer.from([
    `${method} sip:a@example.com SIP/2.0`,
    `Via: SIP/2.0/TCP h.example.com;branch=z9hG4bK${id}`,
    'To: <sip:a@example.com>',
    'From: <sip:b@example.com>;tag=f',
    `Call-ID: ${id}`,
    `CSeq: 1 ${method}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n'));
}

/** One-line summary of an event for equality checks. */
function describeEvent(e: FrameEvent): string {
  switch (e.kind) {
    case 'message': return `message ${e.message.toBuffer().toString('base64')}`;
    case 'error':
    case 'fatal': return `${e.kind} ${e.error.status} ${e.error.message}`;
    case 'ping': return 'ping';
  }
}

function feed(chunks: Buffer[]): { events: FrameEvent[]; framer: StreamFramer } {
  const framer = new StreamFramer();
  const events: FrameEvent[] = [];
  for (const c of chunks) events.push(...framer.push(c));
  return { events, framer };
}

describe('StreamFramer basics', () => {
  test('one message in one chunk', () => {
    const { events, framer } = feed([msg('one', 'hello')]);
    assert.equal(events.length, 1);
    const e = events[0]!;
    assert.equal(e.kind, 'message');
    assert.ok(e.kind === 'message' && e.message instanceof SipRequest);
    assert.equal(e.message.callId, 'one');
    assert.equal(e.message.body.toString(), 'hello');
    assert.equal(framer.pending, 0);
  });

  test('several messages in one chunk, in order, with bodies', () => {
    const all = Buffer.concat([msg('a', 'x'), msg('b'), msg('c', 'hello\r\n\r\nworld')]);
    const { events, framer } = feed([all]);
    assert.deepEqual(events.map((e) => e.kind), ['message', 'message', 'message']);
    assert.deepEqual(events.map((e) => (e.kind === 'message' ? e.message.callId : '')), ['a', 'b', 'c']);
    assert.equal(events[2]!.kind === 'message' && events[2]!.message.body.toString(), 'hello\r\n\r\nworld');
    assert.equal(framer.pending, 0);
  });

  test('the body is copied out of the receive buffer', () => {
    const chunk = msg('copy', 'abc');
    const { events } = feed([chunk]);
    chunk.fill(0);
    assert.ok(events[0]!.kind === 'message');
    assert.equal(events[0]!.message.body.toString(), 'abc');
  });

  test('CRLFCRLF ping between messages gives a ping event; lone CRLF is ignored', () => {
    const { events } = feed([Buffer.concat([Buffer.from('\r\n\r\n'), msg('a'), Buffer.from('\r\n'), msg('b'), Buffer.from('\r\n\r\n')])]);
    assert.deepEqual(events.map((e) => e.kind), ['ping', 'message', 'message', 'ping']);
  });

  test('two pings in one chunk give two events', () => {
    assert.deepEqual(feed([Buffer.from('\r\n\r\n\r\n\r\n')]).events.map((e) => e.kind), ['ping', 'ping']);
  });

  test('a ping split across reads is still a ping', () => {
    for (let k = 1; k < 4; k++) {
      const p = Buffer.from('\r\n\r\n');
      assert.deepEqual(feed([p.subarray(0, k), p.subarray(k)]).events.map((e) => e.kind), ['ping'], `split at ${k}`);
    }
  });

  test('a lone CRLF produces no event, and a message after it still parses', () => {
    const f = new StreamFramer();
    assert.deepEqual(f.push(Buffer.from('\r\n')), []);
    const ev = f.push(msg('after'));
    assert.deepEqual(ev.map((e) => e.kind), ['message']);
  });

  test('partial message produces nothing until complete', () => {
    const m = msg('p', 'body!');
    const f = new StreamFramer();
    assert.deepEqual(f.push(m.subarray(0, 40)), []);
    assert.equal(f.pending, 40);
    assert.deepEqual(f.push(m.subarray(40, m.length - 1)), []);
    assert.deepEqual(f.push(m.subarray(m.length - 1)).map((e) => e.kind), ['message']);
  });

  test('missing Content-Length: error event (request kept for the answer), stream continues', () => {
    const bad = Buffer.from(msg('nocl').toString().replace('Content-Length: 0\r\n', ''));
    const { events } = feed([Buffer.concat([bad, msg('next')])]);
    assert.deepEqual(events.map((e) => e.kind), ['error', 'message']);
    const e = events[0]!;
    assert.ok(e.kind === 'error');
    assert.equal(e.error.status, 400);
    assert.match(e.error.message, /Content-Length/);
    assert.ok(e.error.request instanceof SipRequest);
  });

  test('a message that frames but does not parse is an error event, not fatal', () => {
    const bad = Buffer.from(msg('x').toString().replace('CSeq: 1 OPTIONS', 'CSeq: 1 INVITE'));
    const { events } = feed([Buffer.concat([bad, msg('y')])]);
    assert.deepEqual(events.map((e) => e.kind), ['error', 'message']);
  });

  for (const [name, value] of [['negative', '-999'], ['garbage', 'five'], ['two numbers', '5 6'], ['hex', '0x10'], ['empty', ''], ['too many digits', '12345678901']] as const) {
    test(`${name} Content-Length (${JSON.stringify(value)}) is fatal; nothing after it is read`, () => {
      const bad = Buffer.from(msg('bad').toString().replace('Content-Length: 0', `Content-Length: ${value}`));
      const f = new StreamFramer();
      const events = f.push(Buffer.concat([bad, msg('next')]));
      assert.deepEqual(events.map((e) => e.kind), ['fatal']);
      assert.ok(events[0]!.kind === 'fatal' && events[0]!.error instanceof SipParseError);
      assert.equal(events[0]!.error.status, 400);
      assert.deepEqual(f.push(msg('more')), [], 'a dead framer yields nothing');
      assert.equal(f.pending, 0);
    });
  }

  test('two Content-Length headers are fatal (RFC 4475 §3.3.9 over TCP)', () => {
    const bad = Buffer.from(msg('two', 'abc').toString().replace('Content-Length: 3', 'Content-Length: 3\r\nl: 1'));
    assert.deepEqual(feed([bad]).events.map((e) => e.kind), ['fatal']);
  });

  test('Content-Length with LWS and compact form', () => {
    const m = Buffer.from(msg('lws', 'abc').toString().replace('Content-Length: 3', 'l  :   3  '));
    const { events } = feed([m]);
    assert.deepEqual(events.map((e) => e.kind), ['message']);
    assert.ok(events[0]!.kind === 'message' && events[0]!.message.body.toString() === 'abc');
  });

  test('oversize: huge Content-Length is fatal 413 at once', () => {
    const bad = Buffer.from(msg('big').toString().replace('Content-Length: 0', 'Content-Length: 9999999'));
    const ev = feed([bad]).events;
    assert.deepEqual(ev.map((e) => e.kind), ['fatal']);
    assert.ok(ev[0]!.kind === 'fatal' && ev[0]!.error.status === 413);
  });

  test('oversize: a header section that never ends is fatal 413 once past the limit', () => {
    const f = new StreamFramer({ ...DEFAULT_LIMITS, maxMessageBytes: 1000 });
    assert.deepEqual(f.push(Buffer.from('OPTIONS sip:a@example.com SIP/2.0\r\nX: ')), []);
    const ev = f.push(Buffer.alloc(1000, 0x61));
    assert.deepEqual(ev.map((e) => e.kind), ['fatal']);
    assert.ok(ev[0]!.kind === 'fatal' && ev[0]!.error.status === 413);
  });

  test('clerr over a stream waits for more bytes (no event)', () => {
    const clerr = loadCorpus().find((c) => c.name === 'clerr');
    assert.ok(clerr);
    const f = new StreamFramer();
    assert.deepEqual(f.push(clerr.bytes), []);
    assert.equal(f.pending, clerr.bytes.length);
  });

  test('ncl and mcl01 over a stream are fatal', () => {
    for (const name of ['ncl', 'mcl01']) {
      const e = loadCorpus().find((c) => c.name === name);
      assert.ok(e);
      assert.deepEqual(feed([e.bytes]).events.map((x) => x.kind), ['fatal'], name);
    }
  });
});

describe('StreamFramer: corpus messages split at every byte offset', () => {
  const corpus = loadCorpus();
  // Messages that parse as datagrams and frame as exactly one message on a stream. inv2543 has
  // no Content-Length (an error on streams); dblreq carries a second request after the first.
  const framed = corpus.filter((c) => {
    try {
      parseDatagram(c.bytes);
    } catch {
      return false;
    }
    const { events, framer } = feed([c.bytes]);
    return events.length === 1 && events[0]!.kind === 'message' && framer.pending === 0;
  });

  test('every parseable corpus message except inv2543 and dblreq frames as one message', () => {
    const parseable = corpus.filter((c) => {
      try {
        parseDatagram(c.bytes);
        return true;
      } catch {
        return false;
      }
    });
    const missing = parseable.filter((c) => !framed.includes(c)).map((c) => c.name).sort();
    assert.deepEqual(missing, ['dblreq', 'inv2543']);
    assert.ok(framed.length >= 36, `only ${framed.length} messages frame`);
  });

  test('inv2543 (no Content-Length) is an error on a stream; dblreq yields its two requests and the excess', () => {
    const inv = corpus.find((c) => c.name === 'inv2543')!;
    assert.deepEqual(feed([inv.bytes]).events.map((e) => e.kind), ['error']);
    const dbl = corpus.find((c) => c.name === 'dblreq')!;
    const ev = feed([dbl.bytes]).events;
    // The trailing INVITE says Content-Length 150 but carries 155 body bytes: the last 5 bytes
    // frame as a (malformed) next message.
    assert.deepEqual(ev.map((e) => (e.kind === 'message' && e.message instanceof SipRequest ? e.message.method : e.kind)), ['REGISTER', 'INVITE', 'error']);
  });

  for (const c of framed) {
    test(`${c.corpus}/${c.name}: ${c.bytes.length + 1} splits, byte by byte, and back to back`, () => {
      const expected = feed([c.bytes]).events.map(describeEvent);
      // The framed message equals the datagram parse.
      assert.equal(expected[0], `message ${parseDatagram(c.bytes).toBuffer().toString('base64')}`);
      for (let k = 0; k <= c.bytes.length; k++) {
        const { events, framer } = feed([c.bytes.subarray(0, k), c.bytes.subarray(k)]);
        assert.deepEqual(events.map(describeEvent), expected, `split at offset ${k}`);
        assert.equal(framer.pending, 0);
      }
      const bytes: Buffer[] = [];
      for (let k = 0; k < c.bytes.length; k++) bytes.push(c.bytes.subarray(k, k + 1));
      assert.deepEqual(feed(bytes).events.map(describeEvent), expected, 'byte by byte');
      // The same message three times with a ping in between, split at every offset of the middle copy.
      const triple = Buffer.concat([c.bytes, Buffer.from('\r\n\r\n'), c.bytes, c.bytes]);
      const want = [expected[0], 'ping', expected[0], expected[0]];
      for (let k = c.bytes.length; k <= c.bytes.length * 2 + 4; k += 7) {
        assert.deepEqual(feed([triple.subarray(0, k), triple.subarray(k)]).events.map(describeEvent), want, `triple split at ${k}`);
      }
    });
  }
});
