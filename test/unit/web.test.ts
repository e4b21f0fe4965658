// The web phone's server side: sign-in and session tokens, the sign-in limiter, TURN REST
// credentials, presence from the location service, and the WebRTC config fields.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CareflowError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import { PresenceHub, type PresenceState } from '../../src/presence/presence-hub.ts';
import { type Binding, LocationService } from '../../src/registrar/location.ts';
import { iceServersFor, turnRestCredentials } from '../../src/web/ice-servers.ts';
import { LoginLimiter, type WebCredentials, WebSessions } from '../../src/web/sessions.ts';

const REALM = 'care.example.org';
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

function directory(): { users: Map<string, WebCredentials>; setPassword(pw: string): void; disable(): void } {
  const users = new Map<string, WebCredentials>();
  const setPassword = (pw: string): void => {
    const base = { userId: 7, sipUsername: 'careflow_7', number: 'care4w-1000007', enabled: true, realm: REALM };
    users.set('careflow_7', { ...base, ha1Md5: md5(`careflow_7:${REALM}:${pw}`) });
    users.set('care4w-1000007', { ...base, ha1Md5: md5(`care4w-1000007:${REALM}:${pw}`) });
  };
  setPassword('correct horse battery');
  return {
    users, setPassword,
    disable: () => {
      for (const [k, v] of users) users.set(k, { ...v, enabled: false });
    },
  };
}

function sessions(d: ReturnType<typeof directory>, now: { t: number }): WebSessions {
  return new WebSessions({
    findCredentials: async (login) => d.users.get(login), realm: REALM, secret: Buffer.alloc(32, 1), ttlMs: 3_600_000, now: () => now.t,
  });
}

describe('web sessions', () => {
  it('signs in with the SIP username or the number and hands out the HA1 of the SIP username', async () => {
    const d = directory();
    const s = sessions(d, { t: 1_000_000 });
    for (const login of ['careflow_7', 'care4w-1000007']) {
      const signed = await s.signIn(login, 'correct horse battery');
      assert.ok(signed, login);
      assert.equal(signed.userId, 7);
      assert.equal(signed.sipUsername, 'careflow_7');
      // JsSIP authenticates as the SIP username: the HA1 must be over it, whatever the login was.
      assert.equal(signed.ha1, md5(`careflow_7:${REALM}:correct horse battery`));
      assert.equal(signed.expiresAt, 1_000_000 + 3_600_000);
      assert.equal((await s.verify(signed.token))?.userId, 7);
    }
  });

  it('answers a wrong password, an unknown user and a disabled user alike', async () => {
    const d = directory();
    const s = sessions(d, { t: 1 });
    assert.equal(await s.signIn('careflow_7', 'wrong password!'), undefined);
    assert.equal(await s.signIn('careflow_99', 'correct horse battery'), undefined);
    assert.equal(await s.signIn('', ''), undefined);
    d.disable();
    assert.equal(await s.signIn('careflow_7', 'correct horse battery'), undefined);
  });

  it('ends sessions on expiry, password rotation, disabling and tampering', async () => {
    const d = directory();
    const now = { t: 5_000 };
    const s = sessions(d, now);
    const signed = await s.signIn('careflow_7', 'correct horse battery');
    assert.ok(signed);
    const [id, exp, mac] = signed.token.split('.');
    assert.equal(await s.verify(`${id}.${Number(exp) + 1000}.${mac}`), undefined, 'a longer expiry breaks the MAC');
    assert.equal(await s.verify(`8.${exp}.${mac}`), undefined, 'another user id breaks the MAC');
    assert.equal(await s.verify('garbage'), undefined);
    const refreshed = await s.refresh(signed.token);
    assert.ok(refreshed);
    now.t += 3_600_001;
    assert.equal(await s.verify(signed.token), undefined, 'expired');
    const again = await s.signIn('care4w-1000007', 'correct horse battery');
    assert.ok(again);
    d.setPassword('a brand new password');
    assert.equal(await s.verify(again.token), undefined, 'rotated password');
    const third = await s.signIn('careflow_7', 'a brand new password');
    assert.ok(third);
    d.disable();
    assert.equal(await s.verify(third.token), undefined, 'disabled');
  });

  it('limits failed sign-ins per source address', () => {
    const now = { t: 0 };
    const l = new LoginLimiter({ maxFailures: 3, windowMs: 60_000, now: () => now.t });
    for (let i = 0; i < 3; i++) {
      assert.equal(l.retryAfter('10.0.0.1'), 0);
      l.fail('10.0.0.1');
    }
    assert.equal(l.retryAfter('10.0.0.1'), 60);
    assert.equal(l.retryAfter('10.0.0.2'), 0, 'other addresses are not affected');
    now.t = 30_000;
    assert.equal(l.retryAfter('10.0.0.1'), 30);
    now.t = 60_001;
    assert.equal(l.retryAfter('10.0.0.1'), 0, 'the window slides');
    l.fail('10.0.0.3');
    l.succeed('10.0.0.3');
    assert.equal(l.retryAfter('10.0.0.3'), 0);
  });
});

describe('TURN REST credentials', () => {
  it('match coturn use-auth-secret: base64(HMAC-SHA1(secret, "<expiry>:<user>")), checked with openssl', () => {
    const c = turnRestCredentials('s3cret-shared-with-coturn', '42', 600, 1_700_000_000_123);
    assert.equal(c.username, '1700000600:42');
    assert.equal(c.expiresAt, 1_700_000_600_000);
    const openssl = execFileSync('openssl', ['dgst', '-sha1', '-hmac', 's3cret-shared-with-coturn', '-binary'], { input: c.username });
    assert.equal(c.credential, openssl.toString('base64'));
  });

  it('builds iceServers from the configured STUN and TURN URLs', () => {
    const config = {
      stunUrls: ['stun:turn.example.org:3478'], turnUrls: ['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:5349?transport=tcp'],
      turnSecret: 'another-shared-secret', turnTtlSeconds: 3600, iceTransportPolicy: 'all' as const,
    };
    const servers = iceServersFor(config, '3', 0);
    assert.deepEqual(servers[0], { urls: ['stun:turn.example.org:3478'] });
    assert.deepEqual(servers[1]?.urls, config.turnUrls);
    assert.equal(servers[1]?.username, '3600:3');
    assert.deepEqual(iceServersFor({ ...config, stunUrls: [], turnUrls: [] }, '3'), []);
  });
});

describe('presence', () => {
  const T0 = 1_700_000_000_000;
  const binding = (aor: string, key: string, transport: Binding['flow']['transport']): Binding => ({
    aor, key, contact: `sip:${key}@x.invalid;transport=${transport}`, params: '', q: 1, expiresAt: T0 + 60_000, callId: 'c', cseq: 1,
    flow: { transport, remoteAddress: '127.0.0.1', remotePort: 40000, connectionId: key.length }, updatedAt: T0,
  });

  it('counts web and SIP devices and tells subscribers only of real changes', () => {
    const now = { t: T0 };
    const loc = new LocationService({ now: () => now.t, sweepIntervalMs: 60_000 });
    loc.upsert(binding('1', 'restored', 'udp'));
    const hub = new PresenceHub(loc);
    const events: PresenceState[] = [];
    const unsubscribe = hub.subscribe((s) => events.push(s));
    assert.deepEqual(hub.state(1), { userId: 1, online: true, devices: { web: 0, sip: 1 } });
    loc.upsert(binding('2', 'w', 'wss'));
    loc.upsert(binding('2', 'w', 'wss')); // a refresh: no event
    loc.upsert(binding('2', 'ph', 'tcp'));
    assert.deepEqual(events.map((e) => [e.userId, e.online, e.devices.web, e.devices.sip]), [[2, true, 1, 0], [2, true, 1, 1]]);
    loc.removeByConnection(1); // the web phone's connection closed
    loc.remove('2', 'ph');
    assert.deepEqual(events.slice(2).map((e) => [e.userId, e.online, e.devices.web, e.devices.sip]), [[2, true, 0, 1], [2, false, 0, 0]]);
    now.t = T0 + 61_000;
    loc.sweep(); // user 1's binding expires
    assert.deepEqual(events.at(-1), { userId: 1, online: false, devices: { web: 0, sip: 0 } });
    unsubscribe();
    loc.upsert({ ...binding('3', 'x', 'ws'), expiresAt: now.t + 60_000 });
    assert.equal(events.length, 5, 'no events after unsubscribe');
    assert.equal(hub.subscribers, 0);
    hub.close();
    loc.close();
  });
});

describe('WebRTC settings', () => {
  const dir = (): string => mkdtempSync(join(tmpdir(), 'careflow-web-'));
  const load = (env: Record<string, string>) => loadConfig({ argv: ['--data-dir', dir()], env, interfaces: {} });
  const fails = (env: Record<string, string>): CareflowError => {
    try {
      load(env);
    } catch (e) {
      assert.ok(e instanceof CareflowError);
      return e;
    }
    assert.fail('expected a config error');
  };

  it('defaults: no ICE servers, policy all, HTTPS on 8443, 30-day sessions', () => {
    const c = load({});
    assert.deepEqual(c.webrtc, { stunUrls: [], turnUrls: [], turnSecret: undefined, turnTtlSeconds: 43_200, iceTransportPolicy: 'all' });
    assert.deepEqual(c.http.tlsListen, { host: '0.0.0.0', port: 8443 });
    assert.equal(c.web.sessionDays, 30);
  });

  it('parses STUN/TURN lists and names the bad field', () => {
    const c = load({
      CAREFLOW_STUN_URLS: 'stun:127.0.0.1:3478', CAREFLOW_TURN_URLS: 'turn:127.0.0.1:3478?transport=udp, turns:[::1]:5349?transport=tcp',
      CAREFLOW_TURN_SECRET: 'sixteen-chars-or-more', CAREFLOW_ICE_TRANSPORT_POLICY: 'relay',
    });
    assert.deepEqual(c.webrtc.turnUrls, ['turn:127.0.0.1:3478?transport=udp', 'turns:[::1]:5349?transport=tcp']);
    assert.equal(c.webrtc.iceTransportPolicy, 'relay');
    assert.match(fails({ CAREFLOW_TURN_URLS: 'http://turn.example.org', CAREFLOW_TURN_SECRET: 'sixteen-chars-or-more' }).message, /CAREFLOW_TURN_URLS/);
    assert.match(fails({ CAREFLOW_STUN_URLS: 'turn:127.0.0.1' }).message, /CAREFLOW_STUN_URLS/);
    assert.match(fails({ CAREFLOW_TURN_URLS: 'turn:127.0.0.1:3478' }).message, /turnSecret|CAREFLOW_TURN_SECRET/);
    assert.match(fails({ CAREFLOW_ICE_TRANSPORT_POLICY: 'relay' }).message, /iceTransportPolicy|CAREFLOW_ICE_TRANSPORT_POLICY/);
    assert.match(fails({ CAREFLOW_TURN_URLS: 'turn:127.0.0.1', CAREFLOW_TURN_SECRET: 'short' }).message, /at least 16/);
  });
});
