// src/sip/uri.ts: SIP/SIPS/tel/opaque URIs (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  formatHost, formatUri, isIPv4, isIPv6, isSipUri, parseHostPort, parseUri, unescape, UriError, uriEquals,
} from '../../src/sip/uri.ts';

describe('parseUri', () => {
  test('full SIP URI: user, password, host, port, params, headers', () => {
    const u = parseUri('sips:alice:secret@Atlanta.COM:5061;transport=tcp;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent');
    assert.equal(u.scheme, 'sips');
    assert.ok(isSipUri(u));
    assert.equal(u.user, 'alice');
    assert.equal(u.password, 'secret');
    assert.equal(u.host, 'atlanta.com');
    assert.equal(u.port, 5061);
    assert.deepEqual([...u.params], [['transport', 'tcp'], ['lr', null], ['maddr', '239.255.255.1']]);
    assert.deepEqual(u.headers, [['subject', 'project%20x'], ['priority', 'urgent']]);
  });

  test('no userinfo, no port', () => {
    const u = parseUri('sip:example.com');
    assert.equal(u.user, undefined);
    assert.equal(u.password, undefined);
    assert.equal(u.host, 'example.com');
    assert.equal(u.port, undefined);
    assert.equal(u.params.size, 0);
    assert.deepEqual(u.headers, []);
  });

  test('scheme is case-insensitive, parameter names are lower-cased, values kept', () => {
    const u = parseUri('SIP:Bob@Biloxi.com;Transport=UDP');
    assert.equal(u.scheme, 'sip');
    assert.equal(u.user, 'Bob');
    assert.equal(u.params.get('transport'), 'UDP');
  });

  test('user part keeps escapes; ";" and "?" are allowed in it (RFC 4475 §3.1.1.9, §3.1.1.2)', () => {
    assert.equal(parseUri('sip:user;par=u%40example.net@example.com').user, 'user;par=u%40example.net');
    const weird = parseUri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
    assert.equal(weird.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(weird.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    assert.equal(weird.host, 'example.com');
    assert.equal(parseUri('sip:%61lice@atlanta.com').user, '%61lice');
  });

  test('telephone-subscriber user part with user=phone', () => {
    const u = parseUri('sip:+1-212-555-1212:1234@gateway.com;user=phone');
    assert.equal(u.user, '+1-212-555-1212');
    assert.equal(u.password, '1234');
    assert.equal(u.params.get('user'), 'phone');
  });

  test('IPv4 host and port', () => {
    const u = parseUri('sip:alice@192.0.2.4:5070');
    assert.equal(u.host, '192.0.2.4');
    assert.equal(u.port, 5070);
  });

  for (const bad of [
    '', 'sip', ':foo', 'sip:', 'sip:@example.com', 'sip:user@', 'sip:user@host:', 'sip:user@host:65536',
    'sip:user@host:12ab', 'sip:user@host:-1', 'sip:a b@example.com', 'sip:<a@example.com>', 'sip:"a"@example.com',
    'sip:user@exa mple.com', 'sip:user@example.com;;lr', 'sip:user@example.com;a=b;', 'sip:user@exa_mple.com',
    'sip:user@-example.com', 'sip:example.com?noequals', 'sip:user@999.1.1.1.1', 'sip:user@[2001:db8::10',
    'sip:user@[2001:db8::10]x', 'sip:user@[192.0.2.1]', 'sip:user@[zz::1]', '1bad:opaque', 'mailto:',
    'sip:us%er@example.com', 'sip:user@example.com;bad param=1', 'sip:user@example.com;', 'tel:+1234;',
  ]) {
    test(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseUri(bad), UriError);
    });
  }
});

describe('IPv6 references (RFC 3261 §25.1, RFC 5118)', () => {
  test('§4.1 valid reference in a SIP URI', () => {
    const u = parseUri('sip:[2001:db8::10]');
    assert.equal(u.host, '2001:db8::10');
    assert.equal(u.port, undefined);
  });

  test('§4.2 IPv6 address without brackets is rejected', () => {
    assert.throws(() => parseUri('sip:2001:db8::10'), /IPv6 address without/);
    assert.throws(() => parseUri('sip:user@2001:db8::10'), UriError);
    assert.throws(() => parseHostPort('2001:db8::10'), UriError);
  });

  test('§4.3 port ambiguous: [2001:db8::10:5070] has no port', () => {
    const u = parseUri('sip:[2001:db8::10:5070]');
    assert.equal(u.host, '2001:db8::10:5070');
    assert.equal(u.port, undefined);
  });

  test('§4.4 port unambiguous: [2001:db8::10]:5070', () => {
    const u = parseUri('sip:user@[2001:db8::10]:5070;transport=udp');
    assert.equal(u.host, '2001:db8::10');
    assert.equal(u.port, 5070);
    assert.equal(u.params.get('transport'), 'udp');
  });

  test('§4.9 IPv4-mapped IPv6 address', () => {
    assert.equal(parseUri('sip:user@[::ffff:192.0.2.10]').host, '::ffff:192.0.2.10');
    assert.equal(parseHostPort('[::ffff:192.0.2.128]:19823').port, 19823);
  });

  test('§4.10 three colons before an embedded IPv4 are tolerated, two are correct', () => {
    assert.equal(parseUri('sip:[2001:db8:::192.0.2.1]').host, '2001:db8:::192.0.2.1');
    assert.equal(parseUri('sip:[2001:db8::192.0.2.1]').host, '2001:db8::192.0.2.1');
  });

  test('host is lower-cased and re-bracketed on output', () => {
    const u = parseUri('sip:[2001:DB8::AB]:5060');
    assert.equal(u.host, '2001:db8::ab');
    assert.equal(formatUri(u), 'sip:[2001:db8::ab]:5060');
    assert.equal(formatHost('2001:db8::1'), '[2001:db8::1]');
    assert.equal(formatHost('192.0.2.1'), '192.0.2.1');
  });

  for (const good of ['::', '::1', '1::', '2001:db8::1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8',
    'fe80::1:2', '::ffff:192.0.2.1', '1:2:3:4:5:6:192.0.2.1', '2001:db8:::192.0.2.1', 'ABCD:ef01::']) {
    test(`isIPv6 accepts ${good}`, () => assert.equal(isIPv6(good), true));
  }
  for (const bad of ['', ':', '1', '1:2', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::1', 'g::1',
    '::1.2.3.256', '1:2:3:4:5:6:7:192.0.2.1', ':1::2', '1::2:', '::1:', '192.0.2.1', '1:2:3:4:5:6:7:8::',
    '1::2:3:4:5:6:7:8', '[::1]']) {
    test(`isIPv6 rejects ${JSON.stringify(bad)}`, () => assert.equal(isIPv6(bad), false));
  }

  test('isIPv4', () => {
    for (const ok of ['0.0.0.0', '192.0.2.1', '255.255.255.255', '10.0.0.01']) assert.equal(isIPv4(ok), true, ok);
    for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', 'a.b.c.d', '1.2.3.4 ', '']) assert.equal(isIPv4(bad), false, bad);
  });
});

describe('tel and opaque URIs', () => {
  test('tel: global number with visual separators and params', () => {
    const u = parseUri('tel:+1-201-555-0123;ext=42');
    assert.equal(u.scheme, 'tel');
    assert.equal(u.user, '+1-201-555-0123');
    assert.equal(u.host, '');
    assert.equal(u.params.get('ext'), '42');
    assert.ok(!isSipUri(u));
    assert.equal(formatUri(u), 'tel:+1-201-555-0123;ext=42');
  });

  test('tel: local number with phone-context', () => {
    const u = parseUri('tel:7042;phone-context=example.com');
    assert.equal(u.user, '7042');
    assert.equal(u.params.get('phone-context'), 'example.com');
  });

  test('tel: comparison ignores visual separators', () => {
    assert.ok(uriEquals(parseUri('tel:+1-201-555-0123'), parseUri('tel:+12015550123')));
    assert.ok(uriEquals(parseUri('tel:+1(201)555.0123'), parseUri('tel:+12015550123')));
    assert.ok(!uriEquals(parseUri('tel:+12015550123'), parseUri('tel:+12015550124')));
    assert.ok(!uriEquals(parseUri('tel:+12015550123'), parseUri('sip:+12015550123@example.com')));
  });

  test('tel: rejects non-digits and empty', () => {
    assert.throws(() => parseUri('tel:'), UriError);
    assert.throws(() => parseUri('tel:+1 201'), UriError);
    assert.throws(() => parseUri('tel:abc@example.com'), UriError);
  });

  test('unknown schemes are kept opaque (RFC 4475 §3.3.2/3.3.3)', () => {
    const a = parseUri('nobodyKnowsThisScheme:totallyopaquecontent');
    assert.equal(a.scheme, 'nobodyknowsthisscheme');
    assert.equal(a.opaque, 'totallyopaquecontent');
    assert.equal(a.host, '');
    assert.ok(!isSipUri(a));
    const b = parseUri('soap.beep://192.0.2.103:3002');
    assert.equal(b.scheme, 'soap.beep');
    assert.equal(b.opaque, '//192.0.2.103:3002');
    assert.equal(formatUri(b), 'soap.beep://192.0.2.103:3002');
    assert.equal(parseUri('urn:service:sos').opaque, 'service:sos');
    assert.ok(uriEquals(parseUri('http://a/b'), parseUri('HTTP://a/b')));
    assert.ok(!uriEquals(parseUri('http://a/b'), parseUri('http://a/c')));
  });
});

describe('formatUri round trip', () => {
  for (const s of [
    'sip:example.com',
    'sip:alice@atlanta.com',
    'sips:alice:pw@atlanta.com:5061',
    'sip:alice@atlanta.com;transport=tcp;lr',
    'sip:alice@atlanta.com?subject=project%20x&priority=urgent',
    'sip:user;par=u%40example.net@example.com',
    'sip:[2001:db8::10]:5070;maddr=[2001:db8::1]',
    'sip:[::ffff:192.0.2.1]',
    'sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com',
    'sip:+1-212-555-1212:1234@gateway.com;user=phone',
    'tel:+12015550123;phone-context=example.com',
    'urn:service:sos',
  ]) {
    test(s, () => {
      const u = parseUri(s);
      assert.equal(formatUri(u), s);
      assert.ok(uriEquals(parseUri(formatUri(u)), u));
    });
  }

});

describe('unescape', () => {
  test('decodes %HEX only, once, and keeps malformed escapes literal', () => {
    assert.equal(unescape('%61lice'), 'alice');
    assert.equal(unescape('value%25%34%31'), 'value%41');
    assert.equal(unescape('%Z%45'), '%ZE');
    assert.equal(unescape('50%'), '50%');
    assert.equal(unescape('%4'), '%4');
    assert.equal(unescape('null-%00-null'), 'null-\u0000-null');
    assert.equal(unescape('plain'), 'plain');
  });
});

describe('uriEquals: RFC 3261 §19.1.4 examples', () => {
  const equivalent: Array<readonly string[]> = [
    ['sip:%61lice@atlanta.com;transport=TCP', 'sip:alice@AtLanTa.CoM;Transport=tcp'],
    ['sip:carol@chicago.com', 'sip:carol@chicago.com;newparam=5', 'sip:carol@chicago.com;security=on'],
    ['sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com', 'sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com'],
    ['sip:alice@atlanta.com?subject=project%20x&priority=urgent', 'sip:alice@atlanta.com?priority=urgent&subject=project%20x'],
  ];
  for (const group of equivalent) {
    for (let i = 0; i < group.length; i++) {
      for (let j = 0; j < group.length; j++) {
        if (i === j) continue;
        test(`equivalent: ${group[i]} == ${group[j]}`, () => {
          assert.equal(uriEquals(parseUri(group[i]!), parseUri(group[j]!)), true);
        });
      }
    }
  }
  const different: Array<readonly [string, string, string]> = [
    ['SIP:ALICE@AtLanTa.CoM;Transport=udp', 'sip:alice@AtLanTa.CoM;Transport=UDP', 'different usernames'],
    ['sip:bob@biloxi.com', 'sip:bob@biloxi.com:5060', 'can resolve to different ports'],
    ['sip:bob@biloxi.com', 'sip:bob@biloxi.com;transport=udp', 'can resolve to different transports'],
    ['sip:bob@biloxi.com', 'sip:bob@biloxi.com:6000;transport=tcp', 'different port and transport'],
    ['sip:carol@chicago.com', 'sip:carol@chicago.com?Subject=next%20meeting', 'different header component'],
    ['sip:bob@phone21.boxesbybob.com', 'sip:bob@192.0.2.4', 'even though that is what phone21.boxesbybob.com resolves to'],
    ['sip:carol@chicago.com;security=on', 'sip:carol@chicago.com;security=off', 'equivalence is not transitive'],
  ];
  for (const [a, b, why] of different) {
    test(`not equivalent (${why}): ${a} != ${b}`, () => {
      assert.equal(uriEquals(parseUri(a), parseUri(b)), false);
      assert.equal(uriEquals(parseUri(b), parseUri(a)), false);
    });
  }

  test('more §19.1.4 rules: scheme, password, user/ttl/method/maddr when present in either', () => {
    const eq = (a: string, b: string) => uriEquals(parseUri(a), parseUri(b));
    assert.equal(eq('sip:alice@atlanta.com', 'sips:alice@atlanta.com'), false);
    assert.equal(eq('sip:alice:pw@atlanta.com', 'sip:alice@atlanta.com'), false);
    assert.equal(eq('sip:alice@atlanta.com', 'sip:atlanta.com'), false);
    assert.equal(eq('sip:alice@atlanta.com;user=phone', 'sip:alice@atlanta.com'), false);
    assert.equal(eq('sip:alice@atlanta.com;ttl=1', 'sip:alice@atlanta.com'), false);
    assert.equal(eq('sip:alice@atlanta.com;method=INVITE', 'sip:alice@atlanta.com'), false);
    assert.equal(eq('sip:alice@atlanta.com;maddr=239.255.255.1', 'sip:alice@atlanta.com'), false);
    assert.equal(eq('sip:alice@atlanta.com;lr', 'sip:alice@atlanta.com'), true);
    assert.equal(eq('sip:[2001:db8::1]:5060', 'sip:[2001:DB8::1]:5060'), true);
    assert.equal(eq('sip:alice@atlanta.com?subject=a', 'sip:alice@atlanta.com?subject=a&x=y'), false);
  });
});
