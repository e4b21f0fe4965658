import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  type DigestAlgorithm, type DigestCredentials, DigestServer, digestResponse, ha1, parseAuthorization,
} from '../../src/sip/digest.ts';

// RFC 7616 §3.9.1.
const RFC = {
  username: 'Mufasa', password: 'Circle of Life', realm: 'http-auth@example.org', uri: '/dir/index.html',
  nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v', cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
  opaque: 'FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS',
  md5: '8ca523f5e9506fed4657c9700eebdbec',
  sha256: '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1',
};

test('RFC 7616 §3.9.1 example responses (MD5 and SHA-256)', () => {
  for (const [alg, expected] of [['MD5', RFC.md5], ['SHA-256', RFC.sha256]] as const) {
    const h = ha1(alg, RFC.username, RFC.realm, RFC.password);
    assert.equal(digestResponse(alg, h, RFC.nonce, '00000001', RFC.cnonce, 'auth', 'GET', RFC.uri), expected);
  }
});

test('parseAuthorization: the RFC 7616 §3.9.1 SHA-256 credentials', () => {
  const c = parseAuthorization(`Digest username="Mufasa",
    realm="http-auth@example.org",
    uri="/dir/index.html",
    algorithm=SHA-256,
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    nc=00000001,
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    qop=auth,
    response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`);
  assert.deepEqual(c, {
    username: 'Mufasa', realm: RFC.realm, nonce: RFC.nonce, uri: RFC.uri, response: RFC.sha256,
    algorithm: 'SHA-256', cnonce: RFC.cnonce, qop: 'auth', nc: '00000001', opaque: RFC.opaque,
  });
});

test('parseAuthorization: escapes, commas in quotes, case, defaults, malformed', () => {
  const c = parseAuthorization('digest USERNAME="a\\"b,c", Realm=r, nonce="n", uri="sip:x@y;a=b,c", response="00"');
  assert.ok(c);
  assert.equal(c.username, 'a"b,c');
  assert.equal(c.realm, 'r');
  assert.equal(c.uri, 'sip:x@y;a=b,c');
  assert.equal(c.algorithm, 'MD5');
  assert.equal(c.qop, undefined);
  assert.equal(parseAuthorization('Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=='), undefined);
  assert.equal(parseAuthorization('Digest'), undefined);
  assert.equal(parseAuthorization('Digest username="a'), undefined); // unterminated
  assert.equal(parseAuthorization('Digest username="a" realm="r"'), undefined); // missing comma
  assert.equal(parseAuthorization('Digest realm="r", nonce="n", uri="u", response="x"'), undefined); // no username
  assert.equal(parseAuthorization('Digest username="a", username="b", realm="r", nonce="n", uri="u", response="x"'), undefined);
  assert.equal(parseAuthorization('DigestX username="a", realm="r", nonce="n", uri="u", response="x"'), undefined);
});

function server(now: { t: number }, algorithms: DigestAlgorithm[] = ['SHA-256', 'MD5'], extra: { maxTrackedNonces?: number } = {}): DigestServer {
  return new DigestServer({ secret: Buffer.alloc(32, 7), nonceTtlMs: 300_000, algorithms, now: () => now.t, ...extra });
}

function param(challenge: string, name: string): string {
  const m = new RegExp(`${name}="?([^",]*)"?`).exec(challenge);
  assert.ok(m, `${name} in ${challenge}`);
  return m[1]!;
}

/** What a phone answers to a challenge. */
function answer(challenge: string, nc: number, opts: { password?: string; method?: string; user?: string } = {}): DigestCredentials {
  const algorithm = param(challenge, 'algorithm') as DigestAlgorithm;
  const realm = param(challenge, 'realm');
  const nonce = param(challenge, 'nonce');
  const user = opts.user ?? 'alice';
  const ncs = nc.toString(16).padStart(8, '0');
  const h = ha1(algorithm, user, realm, opts.password ?? 'secret');
  const uri = 'sip:example.org';
  return {
    username: user, realm, nonce, uri, algorithm, cnonce: 'c0ffee', qop: 'auth', nc: ncs, opaque: param(challenge, 'opaque'),
    response: digestResponse(algorithm, h, nonce, ncs, 'c0ffee', 'auth', opts.method ?? 'REGISTER', uri),
  };
}

test('challenge: one value per algorithm in configured order, stale flag', () => {
  const now = { t: 1_700_000_000_000 };
  const a = server(now, ['SHA-256', 'MD5']).challenge('example.org');
  assert.equal(a.length, 2);
  assert.match(a[0]!, /^Digest realm="example.org", nonce="[A-Za-z0-9_-]{40}", opaque="[^"]+", algorithm=SHA-256, qop="auth"$/);
  assert.match(a[1]!, /algorithm=MD5, qop="auth"$/);
  const b = server(now, ['MD5']).challenge('example.org', true);
  assert.equal(b.length, 1);
  assert.match(b[0]!, /algorithm=MD5, qop="auth", stale=true$/);
});

test('challenge: an offer narrowed for one client, ignored when it names nothing configured', () => {
  const now = { t: 1_700_000_000_000 };
  const s = server(now, ['SHA-256', 'MD5']);
  assert.deepEqual(s.challenge('example.org', false, ['MD5']).map((c) => /algorithm=([\w-]+)/.exec(c)?.[1]), ['MD5']);
  assert.deepEqual(s.challenge('example.org', false, ['MD5', 'SHA-256']).map((c) => /algorithm=([\w-]+)/.exec(c)?.[1]), ['SHA-256', 'MD5']);
  const shaOnly = server(now, ['SHA-256']);
  assert.deepEqual(shaOnly.challenge('example.org', false, ['MD5']).map((c) => /algorithm=([\w-]+)/.exec(c)?.[1]), ['SHA-256']);
});

test('verify: ok for both algorithms; wrong password, realm, method, qop are invalid', () => {
  const now = { t: 1_700_000_000_000 };
  const s = server(now);
  const [sha, md5] = s.challenge('example.org');
  const good = ha1('SHA-256', 'alice', 'example.org', 'secret');
  assert.equal(s.verify(answer(sha!, 1), 'REGISTER', good, 'example.org'), 'ok');
  // Both challenges share one nonce (RFC 7616 §3.9.1), hence one nonce-count sequence.
  assert.equal(s.verify(answer(md5!, 2), 'REGISTER', ha1('MD5', 'alice', 'example.org', 'secret'), 'example.org'), 'ok');
  const fresh = s.challenge('example.org')[0]!;
  assert.equal(s.verify(answer(fresh, 1, { password: 'wrong' }), 'REGISTER', good, 'example.org'), 'invalid');
  assert.equal(s.verify(answer(fresh, 1), 'REGISTER', good, 'other.org'), 'invalid');
  assert.equal(s.verify(answer(fresh, 1), 'INVITE', good, 'example.org'), 'invalid');
  assert.equal(s.verify({ ...answer(fresh, 1), qop: undefined }, 'REGISTER', good, 'example.org'), 'invalid');
  assert.equal(s.verify({ ...answer(fresh, 1), nc: 'zz' }, 'REGISTER', good, 'example.org'), 'invalid');
  assert.equal(s.verify({ ...answer(fresh, 1), opaque: 'other' }, 'REGISTER', good, 'example.org'), 'invalid');
  assert.equal(s.verify({ ...answer(fresh, 1), algorithm: 'MD5-SESS' }, 'REGISTER', good, 'example.org'), 'invalid');
  // A nonce issued for another realm is not valid for this one.
  const otherRealm = s.challenge('other.org')[0]!;
  const creds = answer(otherRealm, 1);
  assert.equal(s.verify({ ...creds, realm: 'example.org' }, 'REGISTER', good, 'example.org'), 'invalid');
  // Algorithm not configured.
  const md5only = server(now, ['MD5']);
  assert.equal(md5only.verify(answer(md5only.challenge('example.org')[0]!.replace('MD5', 'SHA-256'), 1), 'REGISTER', good, 'example.org'), 'invalid');
});

test('verify: tampered nonce is invalid; another server secret is invalid', () => {
  const now = { t: 1_700_000_000_000 };
  const s = server(now);
  const ch = s.challenge('example.org')[0]!;
  const nonce = param(ch, 'nonce');
  const flipped = (nonce[0] === 'A' ? 'B' : 'A') + nonce.slice(1);
  const good = ha1('SHA-256', 'alice', 'example.org', 'secret');
  assert.equal(s.verify(answer(ch.replace(nonce, flipped), 1), 'REGISTER', good, 'example.org'), 'invalid');
  assert.equal(s.verify(answer(ch.replace(nonce, nonce.slice(0, 39)), 1), 'REGISTER', good, 'example.org'), 'invalid');
  const other = new DigestServer({ secret: Buffer.alloc(32, 8), nonceTtlMs: 300_000, algorithms: ['SHA-256'], now: () => now.t });
  assert.equal(other.verify({ ...answer(ch, 1), opaque: undefined }, 'REGISTER', good, 'example.org'), 'invalid');
});

test('nonces carry HMAC-SHA256(secret, time || random || realm) and opaque HMAC-SHA256(secret, "opaque\\0" || realm) (RFC 2104), for short and long keys and realms', () => {
  const realms = ['example.org', '127.0.0.1', `ré-${'x'.repeat(300)}`]; // the last: non-ASCII, longer than the prepared buffer
  for (const secret of [Buffer.alloc(16, 1), randomBytes(32), randomBytes(100)]) { // 100 bytes: longer than the block, hashed first
    const s = new DigestServer({ secret, nonceTtlMs: 300_000, algorithms: ['MD5'] });
    for (const realm of realms) {
      for (let i = 0; i < 3; i++) {
        const raw = Buffer.from(param(s.challenge(realm)[0]!, 'nonce'), 'base64url');
        const expected = createHmac('sha256', secret).update(raw.subarray(0, 14)).update(realm, 'utf8').digest().subarray(0, 16);
        assert.deepEqual(raw.subarray(14), expected, `secret of ${secret.length} bytes, realm ${realm.slice(0, 12)}`);
      }
      // The opaque value is the same HMAC over "opaque\0" || realm: unchanged for phones that keep it.
      const opaque = createHmac('sha256', secret).update('opaque\0').update(realm, 'utf8').digest().subarray(0, 12).toString('base64url');
      assert.equal(param(s.challenge(realm)[0]!, 'opaque'), opaque, `opaque, realm ${realm.slice(0, 12)}`);
    }
  }
});

test('verify: stale after the TTL (with an injected clock)', () => {
  const now = { t: 1_700_000_000_000 };
  const s = server(now);
  const ch = s.challenge('example.org')[0]!;
  const good = ha1('SHA-256', 'alice', 'example.org', 'secret');
  now.t += 299_000;
  assert.equal(s.verify(answer(ch, 1), 'REGISTER', good, 'example.org'), 'ok');
  now.t += 2_000;
  assert.equal(s.verify(answer(ch, 2), 'REGISTER', good, 'example.org'), 'stale');
  // stale only when the response is right (RFC 7616 §3.3)
  assert.equal(s.verify(answer(ch, 3, { password: 'x' }), 'REGISTER', good, 'example.org'), 'invalid');
});

test('verify: nonce reuse with increasing nc works; a replayed nc is rejected', () => {
  const now = { t: 1_700_000_000_000 };
  const s = server(now);
  const ch = s.challenge('example.org')[0]!;
  const good = ha1('SHA-256', 'alice', 'example.org', 'secret');
  for (let nc = 1; nc <= 5; nc++) assert.equal(s.verify(answer(ch, nc), 'REGISTER', good, 'example.org'), 'ok');
  assert.equal(s.verify(answer(ch, 5), 'REGISTER', good, 'example.org'), 'stale');
  assert.equal(s.verify(answer(ch, 3), 'REGISTER', good, 'example.org'), 'stale');
  assert.equal(s.verify(answer(ch, 6), 'REGISTER', good, 'example.org'), 'ok');
  assert.equal(s.verify(answer(ch, 0), 'REGISTER', good, 'example.org'), 'invalid');
  assert.equal(s.trackedNonces, 1);
});

test('verify: the replay table stays bounded; evicted nonces cannot be replayed', () => {
  const now = { t: 1_700_000_000_000 };
  const s = server(now, ['MD5'], { maxTrackedNonces: 10 });
  const good = ha1('MD5', 'alice', 'example.org', 'secret');
  const first = s.challenge('example.org')[0]!;
  assert.equal(s.verify(answer(first, 1), 'REGISTER', good, 'example.org'), 'ok');
  for (let i = 0; i < 50; i++) {
    now.t += 1;
    assert.equal(s.verify(answer(s.challenge('example.org')[0]!, 1), 'REGISTER', good, 'example.org'), 'ok');
  }
  assert.ok(s.trackedNonces <= 10);
  // `first` was evicted: its replay (or a later nc) is stale, never ok.
  assert.equal(s.verify(answer(first, 1), 'REGISTER', good, 'example.org'), 'stale');
  assert.equal(s.verify(answer(first, 2), 'REGISTER', good, 'example.org'), 'stale');
  // Expired entries are dropped as new ones arrive.
  now.t += 400_000;
  for (let i = 0; i < 3; i++) assert.equal(s.verify(answer(s.challenge('example.org')[0]!, 1), 'REGISTER', good, 'example.org'), 'ok');
  assert.ok(s.trackedNonces < 10);
});
