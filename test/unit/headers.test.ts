// src/sip/headers.ts: header names, lists, parameters, Via, name-addr, CSeq (RFC 3261 §7.3, §20, §25.1).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  canonicalName, formatNameAddr, formatParams, HeaderError, isListHeader, isToken, parseCSeq, parseNameAddr,
  parseParams, parseUint, parseVia, printableName, quote, splitList, unquote,
} from '../../src/sip/headers.ts';

describe('header names', () => {
  test('RFC 3261 §7.3.3 compact forms map to long names', () => {
    const compact: Record<string, string> = {
      i: 'call-id', m: 'contact', e: 'content-encoding', l: 'content-length', c: 'content-type', f: 'from',
      s: 'subject', k: 'supported', t: 'to', v: 'via',
    };
    for (const [short, long] of Object.entries(compact)) {
      assert.equal(canonicalName(short), long, short);
      assert.equal(canonicalName(short.toUpperCase()), long, short.toUpperCase());
    }
    assert.equal(canonicalName('o'), 'event');
    assert.equal(canonicalName('r'), 'refer-to');
    assert.equal(canonicalName('x'), 'session-expires');
  });

  test('long names are lower-cased; unknown names kept', () => {
    assert.equal(canonicalName('Via'), 'via');
    assert.equal(canonicalName('MaX-fOrWaRdS'), 'max-forwards');
    assert.equal(canonicalName('X-CareFlow-Trace'), 'x-careflow-trace');
    assert.equal(canonicalName('C%6Fntact'), 'c%6fntact');
  });

  test('printable names', () => {
    assert.equal(printableName('call-id'), 'Call-ID');
    assert.equal(printableName('cseq'), 'CSeq');
    assert.equal(printableName('www-authenticate'), 'WWW-Authenticate');
    assert.equal(printableName('max-forwards'), 'Max-Forwards');
    assert.equal(printableName('via'), 'Via');
    assert.equal(printableName('content-length'), 'Content-Length');
    assert.equal(printableName('x-foo-bar'), 'X-Foo-Bar');
  });

  test('list headers vs single values that contain commas', () => {
    for (const l of ['via', 'contact', 'route', 'record-route', 'allow', 'supported', 'require']) assert.ok(isListHeader(l), l);
    for (const n of ['www-authenticate', 'authorization', 'proxy-authorization', 'date', 'from', 'to', 'call-id', 'cseq', 'subject']) {
      assert.ok(!isListHeader(n), n);
    }
  });

  test('isToken', () => {
    assert.ok(isToken("-.!%*_+`'~azAZ09"));
    for (const bad of ['', 'a b', 'a:b', 'a;b', 'a,b', 'a"b', 'a<b', 'a@b', 'a/b', 'é']) assert.ok(!isToken(bad), bad);
  });
});

describe('splitList', () => {
  test('splits at commas and trims', () => {
    assert.deepEqual(splitList('INVITE, ACK ,BYE'), ['INVITE', 'ACK', 'BYE']);
    assert.deepEqual(splitList('single'), ['single']);
  });

  test('commas inside quoted strings and <> do not split', () => {
    assert.deepEqual(splitList('"Doe, John" <sip:jd@example.com>;tag=1, <sip:a@b?x=1,2>;q=0.5, sip:c@d'), [
      '"Doe, John" <sip:jd@example.com>;tag=1', '<sip:a@b?x=1,2>;q=0.5', 'sip:c@d',
    ]);
  });

  test('escaped quotes inside quoted strings', () => {
    assert.deepEqual(splitList('"a \\"b, c\\"" <sip:x@y>, "\\\\" <sip:z@w>'), ['"a \\"b, c\\"" <sip:x@y>', '"\\\\" <sip:z@w>']);
  });

  test('"<" inside a quoted string does not open an angle bracket', () => {
    assert.deepEqual(splitList('"<" <sip:a@b>, <sip:c@d>'), ['"<" <sip:a@b>', '<sip:c@d>']);
  });

  test('Via values', () => {
    assert.deepEqual(splitList('SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK2'), [
      'SIP/2.0/UDP a;branch=z9hG4bK1', 'SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK2',
    ]);
  });

  test('empty elements are kept (so the caller can reject them)', () => {
    assert.deepEqual(splitList('a,,b'), ['a', '', 'b']);
    assert.deepEqual(splitList(''), ['']);
  });

  test('unterminated quoted string throws HeaderError', () => {
    assert.throws(() => splitList('"Doe, John <sip:jd@example.com>'), HeaderError);
    assert.throws(() => splitList('"ends in escape\\"'), HeaderError);
  });
});

describe('parseParams / formatParams', () => {
  test('values, flags, LWS around = and ;, quoted values', () => {
    const p = parseParams(' ;  tag = 98asjd8 ;lr; Q=0.5;x="a;b \\"c\\""');
    assert.deepEqual([...p], [['tag', '98asjd8'], ['lr', null], ['q', '0.5'], ['x', 'a;b "c"']]);
  });

  test('empty string gives no parameters', () => {
    assert.equal(parseParams('').size, 0);
    assert.equal(parseParams('   ').size, 0);
  });

  for (const bad of [';', ';;a', ';a=', 'a=1', ';a b', ';a="x', ';=1', ';a=1 junk', ';a,b=1']) {
    test(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseParams(bad), HeaderError));
  }

  test('formatParams quotes values that are not tokens', () => {
    const p = new Map<string, string | null>([['tag', 'abc'], ['lr', null], ['received', '2001:db8::1'], ['x', 'a b"c']]);
    assert.equal(formatParams(p), ';tag=abc;lr;received=2001:db8::1;x="a b\\"c"');
    assert.deepEqual(parseParams(formatParams(p)), p);
  });

  test('quote / unquote', () => {
    assert.equal(quote('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(unquote(quote('a"b\\c')), 'a"b\\c');
  });
});

describe('parseVia', () => {
  test('sent-protocol, sent-by, branch, received, rport', () => {
    const v = parseVia('SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=198.51.100.7;rport=5061');
    assert.equal(v.transport, 'UDP');
    assert.equal(v.host, '192.0.2.1');
    assert.equal(v.port, 5060);
    assert.equal(v.branch, 'z9hG4bK776asdhds');
    assert.equal(v.params.get('received'), '198.51.100.7');
    assert.equal(v.params.get('rport'), '5061');
  });

  test('rport flag without value (RFC 3581) and no port', () => {
    const v = parseVia('SIP/2.0/TCP client.atlanta.example.com;rport;branch=z9hG4bK74bf9');
    assert.equal(v.params.get('rport'), null);
    assert.ok(v.params.has('rport'));
    assert.equal(v.port, undefined);
    assert.equal(v.host, 'client.atlanta.example.com');
  });

  test('LWS everywhere and a lower-case / unknown transport', () => {
    const v = parseVia('sip  / 2.0  / tls     spindle.example.com   ;   branch  =   z9hG4bK9ikj8');
    assert.equal(v.transport, 'TLS');
    assert.equal(v.host, 'spindle.example.com');
    assert.equal(v.branch, 'z9hG4bK9ikj8');
    assert.equal(parseVia('SIP/2.0/UNKNOWN t.example.com;branch=z9hG4bK1').transport, 'UNKNOWN');
    assert.equal(parseVia('SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1').transport, 'WSS');
  });

  test('IPv6 sent-by with port, received with and without brackets (RFC 5118 §4.5, §4.7)', () => {
    const a = parseVia('SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111');
    assert.equal(a.host, '2001:db8::9:1');
    assert.equal(a.port, 6050);
    const b = parseVia('SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111');
    assert.equal(b.params.get('received'), '[2001:db8::9:255]');
    assert.equal(b.branch, 'z9hG4bKas3-111');
    const c = parseVia('SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3');
    assert.equal(c.params.get('received'), '2001:db8::9:255');
    assert.equal(c.branch, 'z9hG4bKas3');
    const d = parseVia('SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbzz;received=192.0.2.1');
    assert.equal(d.host, '::ffff:192.0.2.10');
    assert.equal(d.port, 19823);
  });

  test('no branch', () => {
    assert.equal(parseVia('SIP/2.0/UDP 192.0.2.1').branch, undefined);
  });

  for (const bad of [
    '', 'SIP/2.0/UDP', 'SIP/2.0/UDP ', 'SIP/3.0/UDP host', 'SIP/2.0 host', 'SIP/2.0/UDP host;;branch=z9hG4bK1',
    'SIP/2.0/UDP host;branch=z9hG4bK1;', 'SIP/2.0/UDP 2001:db8::1;branch=z', 'SIP/2.0/UDP [2001:db8::1;branch=z',
    'SIP/2.0/UDP host:99999', 'SIP/2.0/UDP host;branch=', 'SIP/2.0/UDP ho st;branch=z', 'SIP/2.0/UDP host;received="x',
  ]) {
    test(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseVia(bad), HeaderError));
  }
});

describe('parseNameAddr', () => {
  test('quoted display name with escapes, bracketed URI, header params', () => {
    const na = parseNameAddr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8');
    assert.equal(na.displayName, 'J Rosenberg \\"');
    assert.equal(na.uri.user, 'jdrosen');
    assert.equal(na.uriText, 'sip:jdrosen@example.com');
    assert.equal(na.params.get('tag'), '98asjd8');
    assert.equal(na.bracketed, true);
  });

  test('quoted display name containing comma, < and >', () => {
    const na = parseNameAddr('"Watson, <Thomas>" <sip:t.watson@example.org>');
    assert.equal(na.displayName, 'Watson, <Thomas>');
    assert.equal(na.uri.host, 'example.org');
  });

  test('empty quoted display name', () => {
    assert.equal(parseNameAddr('"" <sip:a@example.com>').displayName, '');
  });

  test('unquoted token display name, with and without LWS before < (RFC 4475 §3.1.1.6)', () => {
    assert.equal(parseNameAddr('Bob Smith <sip:bob@biloxi.com>').displayName, 'Bob Smith');
    const na = parseNameAddr('caller<sip:caller@example.com>;tag=323');
    assert.equal(na.displayName, 'caller');
    assert.equal(na.params.get('tag'), '323');
  });

  test('no display name', () => {
    const na = parseNameAddr('<sip:alice@atlanta.com>;tag=1928301774');
    assert.equal(na.displayName, undefined);
    assert.equal(na.params.get('tag'), '1928301774');
  });

  test('unbracketed addr-spec: parameters belong to the header, not the URI (§20.10, RFC 4475 §3.3.12)', () => {
    const na = parseNameAddr('sip:+19725552222@gw1.example.net;unknownparam;tag=x');
    assert.equal(na.bracketed, false);
    assert.equal(na.uriText, 'sip:+19725552222@gw1.example.net');
    assert.equal(na.uri.params.size, 0);
    assert.deepEqual([...na.params], [['unknownparam', null], ['tag', 'x']]);
  });

  test('bracketed URI keeps its own parameters (RFC 4475 §3.3.13)', () => {
    const na = parseNameAddr('<sip:+19725552222@gw1.example.net;unknownparam>;expires=60');
    assert.ok(na.uri.params.has('unknownparam'));
    assert.deepEqual([...na.params], [['expires', '60']]);
  });

  test('unbracketed non-SIP URI and tel URI', () => {
    assert.equal(parseNameAddr('tel:+12015550123;tag=a').uri.scheme, 'tel');
    assert.equal(parseNameAddr('<isbn:2983792873>').uri.opaque, '2983792873');
  });

  test('IPv6 URI in <>', () => {
    assert.equal(parseNameAddr('<sip:user@[2001:db8::10]:5070>').uri.port, 5070);
  });

  for (const [bad, why] of [
    ['"unterminated <sip:a@example.com>', 'unterminated quoted string (RFC 4475 §3.1.2.6)'],
    ['Watson, Thomas <sip:t.watson@example.org>', 'non-token display name (RFC 4475 §3.1.2.15)'],
    ['"Watson" < sip:t.watson@example.org >', 'spaces inside <> (RFC 4475 §3.1.2.14)'],
    ['sip:user@example.com?Route=%3Csip:sip.example.com%3E', 'addr-spec with ? must be bracketed (RFC 4475 §3.1.2.13)'],
    ['"Display" sip:a@example.com', 'display name without <>'],
    ['"Display" junk <sip:a@example.com>', 'junk after quoted display name'],
    ['<sip:a@example.com', 'missing >'],
    ['<sip:a@example.com>;;tag=1', 'empty parameter'],
    ['<>', 'empty URI'],
    ['', 'empty value'],
    ['example.com', 'no scheme'],
    ['<sip:2001:db8::1>', 'unbracketed IPv6 in URI'],
  ] as const) {
    test(`rejects ${JSON.stringify(bad)}: ${why}`, () => assert.throws(() => parseNameAddr(bad), HeaderError));
  }

  test('formatNameAddr round trip', () => {
    const na = parseNameAddr('"A \\"B\\"" <sip:a@example.com;lr>;tag=1;x="y z"');
    const s = formatNameAddr(na);
    assert.equal(s, '"A \\"B\\"" <sip:a@example.com;lr>;tag=1;x="y z"');
    const again = parseNameAddr(s);
    assert.equal(again.displayName, 'A "B"');
    assert.deepEqual(again.params, na.params);
    assert.equal(formatNameAddr({ uriText: 'sip:a@b.example', params: new Map() }), '<sip:a@b.example>');
  });
});

describe('parseCSeq', () => {
  test('number and method, LWS and leading zeros', () => {
    assert.deepEqual(parseCSeq('1 INVITE'), { seq: 1, method: 'INVITE' });
    assert.deepEqual(parseCSeq('  0009   INVITE '), { seq: 9, method: 'INVITE' });
    assert.deepEqual(parseCSeq('0 ACK'), { seq: 0, method: 'ACK' });
    assert.deepEqual(parseCSeq('29344 RE%47IST%45R'), { seq: 29344, method: 'RE%47IST%45R' });
  });

  test('bounds: 2**32-1 is the largest sequence number (§8.1.1.5)', () => {
    assert.equal(parseCSeq('4294967295 INVITE').seq, 4294967295);
    assert.throws(() => parseCSeq('4294967296 INVITE'), HeaderError);
    assert.throws(() => parseCSeq('9999999999 INVITE'), HeaderError);
    assert.throws(() => parseCSeq('36893488147419103232 INVITE'), HeaderError);
  });

  for (const bad of ['', 'INVITE', '1', '-1 INVITE', '1.5 INVITE', 'INVITE 1', '1 INV@ITE', '1 INVITE BYE', 'a INVITE', '0x10 INVITE']) {
    test(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseCSeq(bad), HeaderError));
  }
});

describe('parseUint', () => {
  test('bounded decimal values', () => {
    assert.equal(parseUint('70', 255), 70);
    assert.equal(parseUint(' 0068 ', 255), 68);
    assert.equal(parseUint('255', 255), 255);
    assert.equal(parseUint('256', 255), undefined);
    assert.equal(parseUint('4294967295', 0xffffffff), 4294967295);
    assert.equal(parseUint('4294967296', 0xffffffff), undefined);
    for (const bad of ['', '-1', '1e3', '0x1', '1 2', 'five', '12345678901', '+1']) assert.equal(parseUint(bad, Number.MAX_SAFE_INTEGER), undefined, bad);
  });
});
