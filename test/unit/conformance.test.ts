// Every RFC 4475 / RFC 5118 torture message, driven by the manifests in ../shared/conformance.
// accept / accept-then-reject: must parse. reject: SipParseError with a 4xx or 505 (and the
// status the manifest names, when it names one). drop (responses): SipParseError, or parsed as a
// response (the transaction/proxy layer discards it). Known deviations: test/conformance/deviations.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadCorpus, namedStatuses, type CorpusEntry } from '../conformance/corpus.ts';
import { DEVIATIONS, findDeviation } from '../conformance/deviations.ts';
import { parseNameAddr } from '../../src/sip/headers.ts';
import { SipRequest, SipResponse, type SipMessage } from '../../src/sip/message.ts';
import { parseDatagram, SipParseError } from '../../src/sip/parser.ts';
import { parseUri, unescape } from '../../src/sip/uri.ts';

const corpus = loadCorpus();

function byName(name: string): CorpusEntry {
  const e = corpus.find((c) => c.name === name);
  assert.ok(e, `corpus entry ${name} is missing from the manifests`);
  return e;
}

function parse(name: string): SipMessage {
  return parseDatagram(byName(name).bytes);
}

function attempt(buf: Buffer): { message: SipMessage } | { error: SipParseError } {
  try {
    return { message: parseDatagram(buf) };
  } catch (e) {
    if (e instanceof SipParseError) return { error: e };
    throw e; // anything else is a parser bug and fails the test with its own stack
  }
}

test('manifests: 49 RFC 4475 + 12 RFC 5118 messages with the documented verdict counts', () => {
  assert.equal(corpus.filter((c) => c.corpus === 'rfc4475').length, 49);
  assert.equal(corpus.filter((c) => c.corpus === 'rfc5118').length, 12);
  const count = (v: string) => corpus.filter((c) => c.corpus === 'rfc4475' && c.verdict === v).length;
  assert.deepEqual([count('accept'), count('accept-then-reject'), count('reject'), count('drop')], [19, 7, 20, 3]);
});

test('deviations list: every entry names a corpus message with that verdict and gives a reason', () => {
  console.log(`known deviations (${DEVIATIONS.length}):`);
  for (const d of DEVIATIONS) {
    console.log(`  ${d.id}: manifest ${d.manifest}, parser ${typeof d.actual === 'string' ? d.actual : `throws ${d.actual.throwsStatus}`} -- ${d.reason}`);
    const e = corpus.find((c) => `${c.corpus}/${c.name}` === d.id);
    assert.ok(e, `deviation ${d.id} names no corpus message`);
    assert.equal(e.verdict, d.manifest, `deviation ${d.id}: manifest verdict changed`);
    assert.ok(d.reason.length > 20, `deviation ${d.id} needs a real reason`);
  }
  assert.equal(new Set(DEVIATIONS.map((d) => d.id)).size, DEVIATIONS.length, 'duplicate deviation ids');
});

for (const entry of corpus) {
  const id = `${entry.corpus}/${entry.name}`;
  test(`${id} (§${entry.section}, ${entry.kind}): ${entry.verdict}`, () => {
    const r = attempt(entry.bytes);
    const deviation = findDeviation(id);
    if (deviation !== undefined) {
      if (deviation.actual === 'parses') {
        assert.ok('message' in r, `${id}: deviation says it parses, but it throws ${'error' in r ? `${r.error.status} ${r.error.message}` : ''}`);
      } else {
        assert.ok('error' in r, `${id}: deviation says it throws ${deviation.actual.throwsStatus}, but it parses`);
        assert.equal(r.error.status, deviation.actual.throwsStatus);
      }
      return;
    }
    switch (entry.verdict) {
      case 'accept':
      case 'accept-then-reject': {
        assert.ok('message' in r, `${id} must parse, got ${'error' in r ? `${r.error.status} ${r.error.message}` : ''}`);
        assert.equal(r.message instanceof SipRequest ? 'request' : 'response', entry.kind);
        // What every hop reads must be usable on an accepted message.
        assert.ok(r.message.via.host.length > 0);
        assert.ok(r.message.callId.length > 0);
        assert.equal(typeof r.message.cseq.seq, 'number');
        r.message.from;
        r.message.to;
        // Re-serialising and parsing again gives the same message.
        const again = parseDatagram(r.message.toBuffer());
        assert.equal(again.toString(), r.message.toString());
        break;
      }
      case 'reject': {
        assert.ok('error' in r, `${id} must be rejected (manifest: ${entry.expectedResponse})`);
        const s = r.error.status;
        assert.ok((s >= 400 && s < 500) || s === 505, `${id}: status ${s} is neither 4xx nor 505`);
        const named = namedStatuses(entry.expectedResponse);
        if (named.length > 0) {
          assert.ok(named.includes(s), `${id}: status ${s} (${r.error.message}); manifest says "${entry.expectedResponse}"`);
        }
        if (entry.kind === 'request' && r.error.request !== undefined) {
          assert.ok(r.error.request instanceof SipRequest);
        }
        break;
      }
      case 'drop': {
        assert.equal(entry.kind, 'response');
        if ('message' in r) assert.ok(r.message instanceof SipResponse, `${id}: parsed as something other than a response`);
        else assert.ok(r.error.request === undefined, `${id}: a dropped response must not carry a request`);
        break;
      }
    }
  });
}

// ---- semantic expectations ------------------------------------------------------------

test('wsinv: folded, LWS-laden headers give the intended values', () => {
  const m = parse('wsinv');
  assert.ok(m instanceof SipRequest);
  assert.equal(m.method, 'INVITE');
  assert.equal(m.fromTag, '98asjd8');
  assert.equal(m.from.displayName, 'J Rosenberg \\"');
  assert.equal(m.toTag, '1918181833n');
  assert.deepEqual(m.cseq, { seq: 9, method: 'INVITE' });
  assert.equal(Number(m.get('max-forwards')), 68);
  assert.equal(m.via.transport, 'UDP');
  assert.equal(m.via.host, '192.0.2.2');
  assert.equal(m.via.branch, '390skdjuw');
  const vias = m.getAll('via');
  assert.equal(vias.length, 3);
  assert.equal(m.get('subject'), '');
  assert.equal(m.getAll('contact').length, 1);
  assert.equal(m.body.length, 150);
});

test('esc02: method RE%47IST%45R is literal and C%6Fntact is another header (2 Contact values)', () => {
  const m = parse('esc02');
  assert.ok(m instanceof SipRequest);
  assert.equal(m.method, 'RE%47IST%45R');
  assert.notEqual(m.method, 'REGISTER');
  assert.equal(m.cseq.method, 'RE%47IST%45R');
  assert.equal(m.getAll('contact').length, 2);
  assert.equal(m.getAll('c%6fntact').length, 1);
  assert.equal(m.to.displayName, '%Z%45');
});

test('semiuri: the Request-URI user part is "user;par=u@example.net"', () => {
  const m = parse('semiuri');
  assert.ok(m instanceof SipRequest);
  const uri = parseUri(m.uri);
  assert.equal(uri.user, 'user;par=u%40example.net');
  assert.equal(unescape(uri.user!), 'user;par=u@example.net');
  assert.equal(uri.host, 'example.com');
  assert.equal(uri.params.size, 0);
});

test('esc01 / escnull: escapes kept in the URI, NUL does not truncate the user', () => {
  const esc01 = parse('esc01');
  assert.ok(esc01 instanceof SipRequest);
  assert.equal(unescape(parseUri(esc01.uri).user!), 'sips:user@example.com');
  const escnull = parse('escnull');
  const contacts = escnull.getAll('contact').map((c) => c.trim());
  assert.equal(contacts.length, 2);
  const users = escnull.getAll('contact').map((c) => {
    const u = /<([^>]*)>/.exec(c)?.[1];
    assert.ok(u !== undefined);
    return unescape(parseUri(u).user!);
  });
  assert.deepEqual(users, ['\u0000', '\u0000\u0000']);
  assert.notEqual(users[0], users[1], 'two distinct contacts');
  assert.equal(unescape(escnull.from.uri.user!), 'null-\u0000-null');
  assert.equal(escnull.to.uri.user, 'null-%00-null');
});

test('port-ambiguous: [2001:db8::10:5070] is a host with no port; port-unambiguous has port 5070', () => {
  const amb = parse('port-ambiguous');
  assert.ok(amb instanceof SipRequest);
  const u = parseUri(amb.uri);
  assert.equal(u.host, '2001:db8::10:5070');
  assert.equal(u.port, undefined);
  const unamb = parse('port-unambiguous');
  assert.ok(unamb instanceof SipRequest);
  const v = parseUri(unamb.uri);
  assert.equal(v.host, '2001:db8::10');
  assert.equal(v.port, 5070);
});

test('RFC 5118 Via forms: received with and without brackets, IPv6 sent-by with port', () => {
  const withDelim = parse('via-received-param-with-delim');
  assert.equal(withDelim.via.params.get('received'), '[2001:db8::9:255]');
  assert.ok(withDelim.via.branch?.startsWith('z9hG4bK'));
  const noDelim = parse('via-received-param-no-delim');
  assert.equal(noDelim.via.params.get('received'), '2001:db8::9:255');
  assert.ok(noDelim.via.branch?.startsWith('z9hG4bK'));
  const mult = parse('mult-ip-in-header');
  const vias = mult.getAll('via');
  assert.equal(vias.length, 3);
  assert.equal(mult.via.host, '2001:db8::9:1');
  assert.equal(mult.via.port, 6050);
  const three = parse('ipv6-bug-abnf-3-colons');
  assert.ok(three instanceof SipRequest);
  assert.equal(parseUri(three.uri).host, '2001:db8:::192.0.2.1');
});

test('dblreq: Content-Length 0 gives an empty body; the trailing INVITE is discarded', () => {
  const m = parse('dblreq');
  assert.ok(m instanceof SipRequest);
  assert.equal(m.method, 'REGISTER');
  assert.equal(m.body.length, 0);
});

test('mpart01: the binary multipart body is exactly Content-Length octets', () => {
  const m = parse('mpart01');
  assert.equal(m.body.length, Number(m.get('content-length')));
  assert.equal(m.body.length, 553);
  assert.ok(m.body.includes(0), 'binary part with NUL bytes kept');
  assert.ok(m.body.toString('latin1').trimEnd().endsWith('--'), 'body ends with the closing boundary');
});

test('inv2543: no Content-Length, the body is the rest of the datagram', () => {
  const e = byName('inv2543');
  const m = parseDatagram(e.bytes);
  assert.equal(m.get('content-length'), undefined);
  assert.ok(m.body.length > 0);
  assert.equal(m.body.toString(), e.bytes.subarray(e.bytes.indexOf('\r\n\r\n') + 4).toString());
});

test('longreq: 3515-byte request with long values parses', () => {
  const e = byName('longreq');
  assert.equal(e.bytes.length, 3515);
  const m = parseDatagram(e.bytes);
  assert.ok(m instanceof SipRequest);
  assert.ok(m.to.displayName !== undefined && m.to.displayName.length > 100);
  assert.ok(m.to.uri.params.has('unknownparam1'));
  assert.ok(m.from.uri.user!.length > 100);
  assert.ok(m.callId.length > 100);
  assert.equal(m.body.length, Number(m.get('content-length')));
});

test('unreason / noreason: unusual and empty reason phrases', () => {
  const u = parse('unreason');
  assert.ok(u instanceof SipResponse);
  assert.equal(u.status, 200);
  assert.ok(u.reason.includes('= 2**3 * 5**2'));
  const n = parse('noreason');
  assert.ok(n instanceof SipResponse);
  assert.equal(n.status, 100);
  assert.equal(n.reason, '');
});

test('cparam01 / cparam02: contact-param vs URI parameter', () => {
  const c1 = parse('cparam01');
  const c2 = parse('cparam02');
  const a = parseNameAddr(c1.getAll('contact')[0]!);
  const b = parseNameAddr(c2.getAll('contact')[0]!);
  assert.equal(a.bracketed, false);
  assert.ok(a.params.has('unknownparam'));
  assert.ok(!a.uri.params.has('unknownparam'));
  assert.equal(b.bracketed, true);
  assert.ok(b.uri.params.has('unknownparam'));
  assert.ok(!b.params.has('unknownparam'));
});

test('unkscm / novelsc: opaque Request-URI schemes parse (the application answers 416)', () => {
  const a = parse('unkscm');
  const b = parse('novelsc');
  assert.ok(a instanceof SipRequest && b instanceof SipRequest);
  assert.equal(parseUri(a.uri).scheme, 'nobodyknowsthisscheme');
  assert.equal(parseUri(b.uri).scheme, 'soap.beep');
  assert.equal(parseUri(b.uri).opaque, '//192.0.2.103:3002');
});

test('reject reasons point at the actual fault', () => {
  const reason = (name: string): string => {
    const r = attempt(byName(name).bytes);
    assert.ok('error' in r, `${name} must be rejected`);
    return r.error.message;
  };
  assert.match(reason('scalar02'), /cseq/i);
  assert.match(reason('mismatch01'), /cseq/i);
  assert.match(reason('quotbal'), /quot/i);
  assert.match(reason('baddn'), /display name/i);
  assert.match(reason('insuf'), /missing/i);
  assert.match(reason('multi01'), /multiple/i);
  assert.match(reason('mcl01'), /content-length/i);
  assert.match(reason('clerr'), /content-length/i);
  assert.match(reason('ncl'), /content-length/i);
  assert.match(reason('ipv6-bad'), /ipv6/i);
  const badvers = attempt(byName('badvers').bytes);
  assert.ok('error' in badvers && badvers.error.status === 505 && badvers.error.request !== undefined);
});
