import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import { ensureDataDir } from '../../src/config/data-dir.ts';
import { CareflowError } from '../../src/config/errors.ts';
import { defaultDomain, loadConfig, splitConfigArgs } from '../../src/config/load.ts';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'careflow-config-'));
const noInterfaces = {};

function configError(fn: () => unknown): CareflowError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof CareflowError, `expected CareflowError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected an error');
}

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const dir = tmp();
    const c = loadConfig({ argv: ['--data-dir', dir], env: {}, interfaces: noInterfaces });
    assert.equal(c.dataDir, dir);
    assert.equal(c.domain, '127.0.0.1');
    assert.deepEqual(c.sip.listen, { host: '0.0.0.0', port: 5060 });
    assert.deepEqual(c.sip.tlsListen, { host: '0.0.0.0', port: 5061 });
    assert.equal(c.sip.tls, undefined);
    assert.deepEqual(c.http.listen, { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(c.numbers, { prefix: 'care4w-', start: 1000001 });
    assert.deepEqual(c.auth, { algorithms: ['MD5'], nonceTtlSeconds: 300 });
    assert.deepEqual(c.registrar, { minExpires: 60, maxExpires: 3600, defaultExpires: 3600 });
    assert.deepEqual(c.proxy, { noAnswerSeconds: 60 });
    assert.equal(c.logLevel, 'info');
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.sip.listen));
  });

  it('picks the first non-internal IPv4 address as default domain', () => {
    const lo = { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: null } as const;
    const v6 = { address: 'fe80::1', netmask: 'ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: null, scopeid: 1 } as const;
    const eth = { address: '192.0.2.7', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null } as const;
    assert.equal(defaultDomain({ lo: [lo], eth0: [v6, eth] }), '192.0.2.7');
    assert.equal(defaultDomain({ lo: [lo] }), '127.0.0.1');
  });

  it('applies precedence default < file < env < flag', () => {
    const dir = tmp();
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ domain: 'file.example', numberPrefix: 'f-', regMinExpires: 30, logLevel: 'debug' }));
    const env = { CAREFLOW_CONFIG: file, CAREFLOW_DOMAIN: 'env.example', CAREFLOW_NUMBER_PREFIX: 'e-' };
    const c = loadConfig({ argv: ['--number-prefix=x-', '--data-dir', dir], env, interfaces: noInterfaces });
    assert.equal(c.configFile, file);
    assert.equal(c.numbers.prefix, 'x-'); // flag beats env
    assert.equal(c.domain, 'env.example'); // env beats file
    assert.equal(c.registrar.minExpires, 30); // file beats default
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.sip.listen.port, 5060); // default
  });

  it('reads <dataDir>/careflow.json when present and no file is named', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'careflow.json'), JSON.stringify({ httpListen: '127.0.0.1:9090' }));
    const c = loadConfig({ argv: [], env: { CAREFLOW_DATA_DIR: dir }, interfaces: noInterfaces });
    assert.deepEqual(c.http.listen, { host: '127.0.0.1', port: 9090 });
    assert.equal(c.configFile, join(dir, 'careflow.json'));
  });

  it('names the env var, what it expected and what it got', () => {
    const e = configError(() => loadConfig({ argv: [], env: { CAREFLOW_SIP_LISTEN: 'abc' }, interfaces: noInterfaces }));
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.equal(e.field, 'CAREFLOW_SIP_LISTEN');
    assert.equal(e.message, 'CAREFLOW_SIP_LISTEN: expected host:port like 0.0.0.0:5060, got "abc"');
  });

  it('names the flag when the flag is bad', () => {
    const e = configError(() => loadConfig({ argv: ['--http-listen', '[::1]:70000'], env: {}, interfaces: noInterfaces }));
    assert.equal(e.field, '--http-listen');
    assert.match(e.message, /^--http-listen: port must be 0-65535/);
  });

  it('names the file and key when the file is bad', () => {
    const dir = tmp();
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ nonceTtl: 'soon' }));
    const e = configError(() => loadConfig({ argv: ['--config', file], env: {}, interfaces: noInterfaces }));
    assert.equal(e.message, `${file}: nonceTtl: expected a whole number of seconds, got "soon"`);
    writeFileSync(file, JSON.stringify({ sipPort: 5060 }));
    assert.match(configError(() => loadConfig({ argv: ['--config', file], env: {} })).message, /unknown key "sipPort"/);
    writeFileSync(file, '{ not json');
    assert.equal(configError(() => loadConfig({ argv: ['--config', file], env: {} })).code, 'CONFIG_FILE_INVALID');
    assert.match(configError(() => loadConfig({ argv: ['--config', join(dir, 'missing.json')], env: {} })).message, /^--config: file .* does not exist/);
  });

  it('rejects unknown flags and missing values, naming them', () => {
    const e = configError(() => loadConfig({ argv: ['--sip-port', '5060'], env: {} }));
    assert.equal(e.code, 'USAGE');
    assert.equal(e.field, '--sip-port');
    assert.match(configError(() => loadConfig({ argv: ['--domain'], env: {} })).message, /--domain: missing value/);
  });

  it('checks algorithms, log level, expires ranges and TLS pairs', () => {
    const env = (e: Record<string, string>): CareflowError => configError(() => loadConfig({ argv: [], env: e, interfaces: noInterfaces }));
    assert.match(env({ CAREFLOW_AUTH_ALGORITHMS: 'MD5,SHA1' }).message, /CAREFLOW_AUTH_ALGORITHMS: unknown digest algorithm "SHA1"/);
    assert.deepEqual(loadConfig({ argv: [], env: { CAREFLOW_AUTH_ALGORITHMS: 'sha-256' } }).auth.algorithms, ['SHA-256']);
    assert.match(env({ CAREFLOW_LOG_LEVEL: 'loud' }).message, /CAREFLOW_LOG_LEVEL: expected one of fatal, error/);
    assert.match(env({ CAREFLOW_REG_MIN_EXPIRES: '4000' }).message, /CAREFLOW_REG_MIN_EXPIRES: must not exceed the maximum \(3600\)/);
    assert.match(env({ CAREFLOW_DOMAIN: 'bad domain' }).message, /CAREFLOW_DOMAIN: expected a host name or IP address/);
    const dir = tmp();
    const cert = join(dir, 'cert.pem');
    writeFileSync(cert, 'x');
    assert.equal(env({ CAREFLOW_TLS_CERT: cert }).message, "CAREFLOW_TLS_KEY: TLS needs both a certificate and a key file; set both or neither");
    assert.match(env({ CAREFLOW_TLS_CERT: cert, CAREFLOW_TLS_KEY: join(dir, 'nope.pem') }).message, /^CAREFLOW_TLS_KEY: file .* does not exist/);
    const c = loadConfig({ argv: [], env: { CAREFLOW_TLS_CERT: cert, CAREFLOW_TLS_KEY: cert } });
    assert.deepEqual(c.sip.tls, { cert, key: cert });
  });

  it('splits config flags from command flags', () => {
    assert.deepEqual(splitConfigArgs(['user', 'add', '--data-dir', '/x', '--name', 'A', '--domain=d.example', '--json']), {
      config: ['--data-dir', '/x', '--domain=d.example'],
      rest: ['user', 'add', '--name', 'A', '--json'],
    });
  });
});

describe('ensureDataDir', () => {
  it('creates the directory 0700 and secrets.json 0600 once', () => {
    const dataDir = join(tmp(), 'data', 'nested');
    const first = ensureDataDir({ dataDir });
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dataDir, 'secrets.json')).mode & 0o777, 0o600);
    assert.match(first.nonceSecret, /^[0-9a-f]{64}$/);
    assert.match(first.adminToken, /^[A-Za-z0-9_-]{43}$/);
    const again = ensureDataDir({ dataDir });
    assert.deepEqual({ ...again }, { ...first });
    assert.doesNotMatch(inspect(first), new RegExp(first.adminToken));
    assert.equal(JSON.parse(readFileSync(join(dataDir, 'secrets.json'), 'utf8')).adminToken, first.adminToken);
  });

  it('refuses a damaged secrets file with a clear message', () => {
    const dataDir = tmp();
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, 'secrets.json'), '{}');
    assert.match(configError(() => ensureDataDir({ dataDir })).message, /secrets\.json is damaged/);
  });
});

describe('ACME and media settings', () => {
  const load = (env: Record<string, string>) => loadConfig({ argv: ['--data-dir', tmp()], env, interfaces: noInterfaces });

  it('ACME is off by default; on, it needs a DNS name and no certificate files', () => {
    assert.equal(load({}).acme, undefined);
    const c = load({ CAREFLOW_ACME: 'on', CAREFLOW_DOMAIN: 'care.example.org', CAREFLOW_ACME_EMAIL: 'admin@example.org' });
    assert.deepEqual(c.acme, {
      email: 'admin@example.org', directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory',
      httpListen: { host: '0.0.0.0', port: 80 }, renewDays: 30, checkSeconds: 43_200,
    });
    assert.match(configError(() => load({ CAREFLOW_ACME: 'on', CAREFLOW_DOMAIN: '192.0.2.10' })).message, /DNS names/);
    assert.match(configError(() => load({ CAREFLOW_ACME: 'maybe' })).message, /CAREFLOW_ACME.*on or off/);
    assert.match(configError(() => load({ CAREFLOW_ACME: 'on', CAREFLOW_DOMAIN: 'a.example.org', CAREFLOW_ACME_DIRECTORY: 'http://insecure' })).message, /https:\/\//);
  });

  it('RTPEngine addresses and the media timeout', () => {
    const c = load({ CAREFLOW_RTPENGINE: '127.0.0.1:2223, [::1]:2224', CAREFLOW_MEDIA_TIMEOUT: '30' });
    assert.deepEqual(c.media.rtpengine, [{ host: '127.0.0.1', port: 2223 }, { host: '::1', port: 2224 }]);
    assert.equal(c.media.timeoutSeconds, 30);
    assert.deepEqual(load({}).media.rtpengine, []);
    assert.equal(load({}).media.engine, 'embedded', 'auto without RTPEngine: the embedded engine');
    assert.equal(c.media.engine, 'rtpengine', 'auto with RTPEngine addresses');
    assert.equal(load({ CAREFLOW_MEDIA_ENGINE: 'off' }).media.engine, 'off');
    assert.match(configError(() => load({ CAREFLOW_MEDIA_ENGINE: 'rtpengine' })).message, /CAREFLOW_RTPENGINE/);
    assert.match(configError(() => load({ CAREFLOW_RTPENGINE: 'rtpengine' })).message, /CAREFLOW_RTPENGINE/);
    assert.match(configError(() => load({ CAREFLOW_MEDIA_TIMEOUT: '1' })).message, /CAREFLOW_MEDIA_TIMEOUT/);
  });
});
