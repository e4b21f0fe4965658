// src/sip/parser.ts (parseDatagram, parseHead) and the message model of src/sip/message.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HeaderError } from '../../src/sip/headers.ts';
import { createResponse, MissingHeaderError, SipRequest, SipResponse, type SipMessage } from '../../src/sip/message.ts';
import { DEFAULT_LIMITS, findHeaderEnd, parseDatagram, SipParseError, skipLeadingCrlf } from '../../src/sip/parser.ts';

const crlf = (lines: string[]): string => lines.join('\r\n');

function invite(extra: string[] = [], body = ''): string {
  return crlf([
    'INVITE sip:bob@biloxi.example.com SIP/2.0',
    'Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2',
    'Via: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK3;received=192.0.2.10',
    'Max-Forwards: 70',
    'To: Bob <sip:bob@biloxi.example.com>',
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    'Call-ID: a84b4c76e66710@pc33.atlanta.example.com',
    'CSeq: 314159 INVITE',
    'Contact: <sip:alice@pc33.atlanta.example.com>',
    ...extra,
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ]);
}

const parse = (s: string | Buffer): SipMessage => parseDatagram(typeof s === 'string' ? Buffer.from(s) : s);

function rejects(s: string | Buffer, status: number, re?: RegExp): SipParseError {
  try {
    parse(s);
  } catch (e) {
    assert.ok(e instanceof SipParseError, `expected SipParseError, got ${String(e)}`);
    assert.equal(e.status, status, e.message);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail('expected a SipParseError');
}

describe('parseDatagram: requests', () => {
  test('a plain INVITE', () => {
    const m = parse(invite([], 'v=0\r\n'));
    assert.ok(m instanceof SipRequest);
    assert.equal(m.method, 'INVITE');
    assert.equal(m.uri, 'sip:bob@biloxi.example.com');
    assert.equal(m.body.toString(), 'v=0\r\n');
    assert.equal(m.via.host, 'pc33.atlanta.example.com');
    assert.equal(m.via.branch, 'z9hG4bK776asdhds');
    assert.equal(m.getAll('via').length, 3);
    assert.equal(m.callId, 'a84b4c76e66710@pc33.atlanta.example.com');
    assert.deepEqual(m.cseq, { seq: 314159, method: 'INVITE' });
    assert.equal(m.fromTag, '1928301774');
    assert.equal(m.toTag, undefined);
    assert.equal(m.to.displayName, 'Bob');
  });

  test('compact header names are stored under long names', () => {
    const m = parse(crlf([
      'OPTIONS sip:a@example.com SIP/2.0', 'v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 't: <sip:a@example.com>',
      'f: <sip:b@example.com>;tag=x', 'i: cid', 'CSeq: 1 OPTIONS', 'm: <sip:b@h.example.com>', 'k: path', 'l: 0', '', '',
    ]));
    assert.equal(m.get('call-id'), 'cid');
    assert.equal(m.get('i'), 'cid');
    assert.equal(m.get('Supported'), 'path');
    assert.equal(m.first('contact'), '<sip:b@h.example.com>');
    assert.deepEqual(m.headers.map((h) => h.name), ['via', 'to', 'from', 'call-id', 'cseq', 'contact', 'supported', 'content-length']);
  });

  test('folded header lines are unfolded with one space, and an empty first line adds none', () => {
    const m = parse(crlf([
      'OPTIONS sip:a@example.com SIP/2.0', 'Via: SIP/2.0/UDP h.example.com', '  ;branch=z9hG4bK1', 'To:', '\t<sip:a@example.com>',
      'From: <sip:b@example.com>;tag=x', 'Call-ID: cid', 'CSeq: 1', ' OPTIONS', 'Subject: a', ' b', '\tc', 'l: 0', '', '',
    ]));
    assert.equal(m.get('via'), 'SIP/2.0/UDP h.example.com ;branch=z9hG4bK1');
    assert.equal(m.get('to'), '<sip:a@example.com>');
    assert.equal(m.get('subject'), 'a b c');
    assert.equal(m.via.branch, 'z9hG4bK1');
    assert.deepEqual(m.cseq, { seq: 1, method: 'OPTIONS' });
  });

  test('leading CRLFs before the start line are ignored (§7.5)', () => {
    const m = parse('\r\n\r\n' + invite());
    assert.ok(m instanceof SipRequest);
    assert.equal(skipLeadingCrlf(Buffer.from('\r\n\nX')), 3);
  });

  test('bare-LF line endings are tolerated', () => {
    const m = parse(invite([], 'body').replaceAll('\r\n', '\n'));
    assert.equal(m.body.toString(), 'body');
  });

  test('body is Content-Length octets; trailing octets are discarded (§18.3)', () => {
    const m = parse(invite([], 'abc') + 'TRAILING GARBAGE');
    assert.equal(m.body.toString(), 'abc');
  });

  test('without Content-Length the body is the rest of the datagram', () => {
    const s = invite([], 'xyz').replace('Content-Length: 3\r\n', '');
    assert.equal(parse(s).body.toString(), 'xyz');
  });

  test('a missing closing empty line is read to the end of the datagram', () => {
    const s = invite().replace(/\r\n\r\n$/, '\r\n');
    const m = parse(s);
    assert.equal(m.body.length, 0);
    assert.equal(m.get('content-length'), '0');
  });

  test('Max-Forwards up to 255, Expires up to 2**32-1', () => {
    assert.ok(parse(invite(['Expires: 4294967295'])));
    rejects(invite(['Expires: 4294967296']), 400, /Expires/);
    assert.ok(parse(invite()).get('max-forwards'));
    rejects(invite().replace('Max-Forwards: 70', 'Max-Forwards: 256'), 400, /Max-Forwards/);
    rejects(invite().replace('Max-Forwards: 70', 'Max-Forwards: -1'), 400);
  });

  test('Contact "*" is allowed', () => {
    const m = parse(invite().replace('Contact: <sip:alice@pc33.atlanta.example.com>', 'Contact: *'));
    assert.deepEqual(m.getAll('contact'), ['*']);
  });

  test('findHeaderEnd picks the earliest terminator', () => {
    assert.equal(findHeaderEnd(Buffer.from('A\r\n\r\nB')), 5);
    assert.equal(findHeaderEnd(Buffer.from('A\n\nB\r\n\r\n')), 3);
    assert.equal(findHeaderEnd(Buffer.from('A\r\n\r\nB\n\n')), 5);
    assert.equal(findHeaderEnd(Buffer.from('A\r\nB\r\n')), -1);
  });
});

describe('parseDatagram: responses', () => {
  test('status line, reason with UTF-8, empty reason', () => {
    const base = crlf(['Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1', 'To: <sip:a@example.com>;tag=t', 'From: <sip:b@example.com>;tag=f',
      'Call-ID: c', 'CSeq: 1 INVITE', 'Content-Length: 0', '', '']);
    const ok = parse('SIP/2.0 200 OK Привет\r\n' + base);
    assert.ok(ok instanceof SipResponse);
    assert.equal(ok.status, 200);
    assert.equal(ok.reason, 'OK Привет');
    const empty = parse('SIP/2.0 100 \r\n' + base);
    assert.ok(empty instanceof SipResponse);
    assert.equal(empty.reason, '');
    const e1 = rejects('SIP/2.0 099 Too Small\r\n' + base, 400);
    assert.equal(e1.request, undefined);
    rejects('SIP/2.0 700 Too Big\r\n' + base, 400);
    rejects('SIP/2.0 4294967301 better not break the receiver\r\n' + base, 400);
    rejects('SIP/3.0 200 OK\r\n' + base, 505);
    rejects('SIP/2.0 20 OK\r\n' + base, 400);
    // The CSeq method of a response is not compared with anything.
    assert.ok(parse('SIP/2.0 200 OK\r\n' + base.replace('1 INVITE', '1 BYE')));
  });
});

describe('parseDatagram: rejections', () => {
  const cases: Array<[string, string, number, RegExp?]> = [
    ['empty datagram', '', 400],
    ['garbage', 'hello world', 400],
    ['double SP in the request line', invite().replace('INVITE sip:', 'INVITE  sip:'), 400],
    ['trailing SP in the request line', invite().replace('SIP/2.0\r\n', 'SIP/2.0 \r\n'), 400],
    ['<> around the Request-URI', invite().replace('sip:bob@biloxi.example.com SIP', '<sip:bob@biloxi.example.com> SIP'), 400],
    ['unknown SIP version', invite().replace(' SIP/2.0\r\n', ' SIP/7.0\r\n'), 505],
    ['not SIP at all', invite().replace(' SIP/2.0\r\n', ' HTTP/1.1\r\n'), 400],
    ['invalid method token', invite().replace(/^INVITE/, 'INV@ITE').replace('CSeq: 314159 INVITE', 'CSeq: 314159 INV@ITE'), 400],
    ['bad Request-URI', invite().replace('sip:bob@biloxi.example.com SIP', 'sip:2001:db8::1 SIP'), 400, /Request-URI/],
    ['missing Via', invite().replace(/Via: [^\r]*\r\n/g, ''), 400, /via/i],
    ['missing Call-ID', invite().replace(/Call-ID: [^\r]*\r\n/, ''), 400, /call-id/i],
    ['empty Call-ID', invite().replace(/Call-ID: [^\r]*\r\n/, 'Call-ID: \r\n'), 400, /Call-ID/],
    ['two From headers', invite(['From: <sip:x@example.com>;tag=2']), 400, /from/i],
    ['two Content-Length headers', invite(['l: 0']), 400, /content-length/i],
    ['CSeq method mismatch', invite().replace('314159 INVITE', '314159 BYE'), 400, /CSeq/],
    ['CSeq too large', invite().replace('314159 INVITE', '4294967296 INVITE'), 400, /CSeq/],
    ['malformed second Via value', invite().replace('branch=z9hG4bK2', 'branch=z9hG4bK2;;'), 400],
    ['malformed To', invite().replace('To: Bob <sip:bob@biloxi.example.com>', 'To: Bob, Jr <sip:bob@biloxi.example.com>'), 400],
    ['malformed Contact', invite().replace('Contact: <sip:alice@pc33.atlanta.example.com>', 'Contact: <sip:alice@pc33.atlanta.example.com;>'), 400],
    ['header line without colon', invite(['NoColonHere']), 400, /malformed header/],
    ['header name with space', invite(['Bad Name: x']), 400, /malformed header/],
    ['continuation line right after the start line', invite().replace('SIP/2.0\r\n', 'SIP/2.0\r\n folded\r\n'), 400],
    ['Content-Length larger than the datagram', invite([], 'abc').replace('Content-Length: 3', 'Content-Length: 9999'), 400, /Content-Length/],
    ['negative Content-Length', invite().replace('Content-Length: 0', 'Content-Length: -999'), 400, /Content-Length/],
    ['non-numeric Content-Length', invite().replace('Content-Length: 0', 'Content-Length: five'), 400, /Content-Length/],
  ];
  for (const [name, msg, status, re] of cases) {
    test(name, () => {
      rejects(msg, status, re);
    });
  }

  test('a rejected request carries what was parsed, for a stateless answer', () => {
    const e = rejects(invite().replace('314159 INVITE', '314159 BYE'), 400);
    assert.ok(e.request instanceof SipRequest);
    assert.equal(e.request.get('call-id'), 'a84b4c76e66710@pc33.atlanta.example.com');
    assert.equal(e.code, 'SIP_PARSE_ERROR');
  });

  test('limits: message size, header count, line length, URI length', () => {
    const big = Buffer.alloc(DEFAULT_LIMITS.maxMessageBytes + 1, 0x41);
    rejects(big, 413);
    const small = { ...DEFAULT_LIMITS, maxHeaders: 5 };
    assert.throws(() => parseDatagram(Buffer.from(invite()), small), (e: unknown) => e instanceof SipParseError && /Too many headers/.test(e.message));
    rejects(invite([`X-Long: ${'a'.repeat(DEFAULT_LIMITS.maxHeaderLineBytes)}`]), 400, /too long/);
    const longUri = `sip:${'a'.repeat(DEFAULT_LIMITS.maxUriBytes)}@example.com`;
    rejects(invite().replace('INVITE sip:bob@biloxi.example.com', `INVITE ${longUri}`), 414);
  });
});

describe('SipMessage accessors', () => {
  test('get / getAll / first / has across lines and compact names', () => {
    const m = parse(invite(['Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>', 'Route: <sip:p3.example.com;lr>', 'Subject: a, b']));
    assert.equal(m.get('route'), '<sip:p1.example.com;lr>, <sip:p2.example.com;lr>');
    assert.deepEqual(m.getAll('Route'), ['<sip:p1.example.com;lr>', '<sip:p2.example.com;lr>', '<sip:p3.example.com;lr>']);
    assert.equal(m.first('route'), '<sip:p1.example.com;lr>');
    assert.deepEqual(m.getAll('subject'), ['a, b'], 'Subject is not a list header');
    assert.equal(m.first('subject'), 'a, b');
    assert.equal(m.get('x-missing'), undefined);
    assert.deepEqual(m.getAll('x-missing'), []);
    assert.equal(m.first('x-missing'), undefined);
    assert.equal(m.has('v'), true);
    assert.equal(m.has('x-missing'), false);
  });

  test('set replaces the first line, removes the others, appends when absent', () => {
    const m = parse(invite());
    m.set('via', 'SIP/2.0/UDP new.example.com;branch=z9hG4bKnew');
    assert.deepEqual(m.getAll('via'), ['SIP/2.0/UDP new.example.com;branch=z9hG4bKnew']);
    assert.equal(m.headers.findIndex((h) => h.name === 'via'), 0, 'kept in place');
    m.set('X-New', '1');
    assert.equal(m.headers.at(-1)?.name, 'x-new');
  });

  test('set / prepend / removeFirst invalidate the cached Via', () => {
    const m = parse(invite());
    assert.equal(m.via.host, 'pc33.atlanta.example.com');
    m.prepend('v', 'SIP/2.0/TCP proxy2.example.com:5061;branch=z9hG4bKp2');
    assert.equal(m.headers[0]!.name, 'via', 'inserted before the first Via line');
    assert.equal(m.via.host, 'proxy2.example.com');
    assert.equal(m.via.port, 5061);
    assert.equal(m.getAll('via').length, 4);
    assert.equal(m.removeFirst('via'), 'SIP/2.0/TCP proxy2.example.com:5061;branch=z9hG4bKp2');
    assert.equal(m.via.host, 'pc33.atlanta.example.com');
    assert.equal(m.removeFirst('via'), 'SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds');
    assert.equal(m.get('via'), 'SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2', 'the rest of a combined line stays');
    assert.equal(m.via.host, 'proxy.example.com');
    m.removeFirst('via');
    m.removeFirst('via');
    assert.equal(m.removeFirst('via'), undefined);
    assert.throws(() => m.via, MissingHeaderError);
  });

  test('prepend of a header that is not present goes to the top', () => {
    const m = parse(invite());
    m.prepend('Record-Route', '<sip:p.example.com;lr>');
    assert.equal(m.headers[0]!.name, 'record-route');
  });

  test('remove / append', () => {
    const m = parse(invite());
    m.append('Route', '<sip:a.example.com;lr>');
    m.append('route', '<sip:b.example.com;lr>');
    assert.equal(m.getAll('route').length, 2);
    m.remove('ROUTE');
    assert.equal(m.has('route'), false);
  });

  test('lazy accessors throw MissingHeaderError / HeaderError on a hand-built message', () => {
    const r = new SipRequest('OPTIONS', 'sip:a@example.com');
    assert.throws(() => r.via, MissingHeaderError);
    assert.throws(() => r.callId, MissingHeaderError);
    assert.throws(() => r.cseq, MissingHeaderError);
    assert.throws(() => r.from, MissingHeaderError);
    assert.throws(() => r.to, MissingHeaderError);
    r.set('cseq', 'garbage');
    assert.throws(() => r.cseq, HeaderError);
    r.set('cseq', '2 OPTIONS');
    assert.equal(r.cseq.seq, 2);
    assert.equal(new MissingHeaderError('Via').code, 'SIP_HEADER_MISSING');
  });

  test('clone is a deep copy of the header list', () => {
    const m = parse(invite());
    assert.ok(m instanceof SipRequest);
    const c = m.clone();
    c.set('max-forwards', '69');
    c.method = 'ACK';
    assert.equal(m.get('max-forwards'), '70');
    assert.equal(m.method, 'INVITE');
  });
});

describe('toBuffer', () => {
  test('recomputes Content-Length (dropping compact or stale ones) and round-trips', () => {
    const m = parse(invite([], 'hello'));
    m.body = Buffer.from('hello, world');
    const out = m.toBuffer().toString();
    assert.match(out, /\r\nContent-Length: 12\r\n\r\nhello, world$/);
    assert.equal(out.match(/content-length/gi)?.length, 1);
    const again = parse(out);
    assert.equal(again.body.toString(), 'hello, world');
    assert.equal(again.toString(), out);
  });

  test('a message without Content-Length gets one; binary bodies are kept byte for byte', () => {
    const r = new SipRequest('MESSAGE', 'sip:a@example.com', [{ name: 'content-length', value: '999' }], Buffer.from([0, 255, 13, 10, 1]));
    const b = r.toBuffer();
    assert.equal(b.toString('latin1'), 'MESSAGE sip:a@example.com SIP/2.0\r\nContent-Length: 5\r\n\r\n\u0000\u00ff\r\n\u0001');
    const s = new SipResponse(200, 'OK');
    assert.equal(s.toString(), 'SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n');
  });

  test('header names are printed in their canonical form', () => {
    const out = parse(invite().replace('Call-ID:', 'i:').replace('CSeq:', 'cseq:')).toString();
    assert.match(out, /\r\nCall-ID: a84b4c76e66710@pc33\.atlanta\.example\.com\r\n/);
    assert.match(out, /\r\nCSeq: 314159 INVITE\r\n/);
  });
});

describe('createResponse', () => {
  const req = (): SipRequest => {
    const m = parse(invite(['Timestamp: 54', 'Record-Route: <sip:p.example.com;lr>', 'Subject: hi'], 'v=0'));
    assert.ok(m instanceof SipRequest);
    return m;
  };

  test('copies Via (all, in order), From, To, Call-ID and CSeq; adds the To tag', () => {
    const r = req();
    const res = createResponse(r, 486, undefined, 'totag1');
    assert.equal(res.status, 486);
    assert.equal(res.reason, 'Busy Here');
    assert.deepEqual(res.getAll('via'), r.getAll('via'));
    assert.equal(res.get('from'), r.get('from'));
    assert.equal(res.get('call-id'), r.get('call-id'));
    assert.equal(res.get('cseq'), r.get('cseq'));
    assert.equal(res.get('to'), 'Bob <sip:bob@biloxi.example.com>;tag=totag1');
    assert.equal(res.toTag, 'totag1');
    assert.equal(res.has('contact'), false);
    assert.equal(res.has('record-route'), false);
    assert.equal(res.has('subject'), false);
    assert.equal(res.has('timestamp'), false);
    assert.equal(res.body.length, 0);
    // Serialises and parses back as a valid response.
    const back = parse(res.toBuffer());
    assert.ok(back instanceof SipResponse);
    assert.equal(back.toTag, 'totag1');
    assert.equal(back.get('content-length'), '0');
  });

  test('keeps an existing To tag, and 100 Trying gets no tag but copies Timestamp', () => {
    const r = req();
    r.set('to', '<sip:bob@biloxi.example.com>;tag=existing');
    assert.equal(createResponse(r, 200, 'OK', 'new').toTag, 'existing');
    const trying = createResponse(req(), 100, undefined, 'x');
    assert.equal(trying.reason, 'Trying');
    assert.equal(trying.toTag, undefined);
    assert.equal(trying.get('timestamp'), '54');
  });

  test('custom and unknown reason phrases; the response does not share header objects', () => {
    const r = req();
    assert.equal(createResponse(r, 299).reason, 'Unknown');
    assert.equal(createResponse(r, 404, 'Nobody Here').reason, 'Nobody Here');
    const res = createResponse(r, 200);
    res.set('via', 'changed');
    res.headers.find((h) => h.name === 'from')!.value = 'changed';
    assert.notEqual(r.get('from'), 'changed');
    assert.notEqual(r.first('via'), 'changed');
  });
});
