// TLS without effort: the server gets its certificate from an ACME CA (Debian's pebble, with
// HTTP-01 validation against the server's challenge listener), serves it on SIP over TLS and
// HTTPS/WSS, keeps it in the data directory, renews it in place, and the web phone loads over
// HTTPS and registers over WSS in Chromium trusting the test CA.
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { test } from 'node:test';
import { requireChromium } from './chromium.ts';
import { freeTcpPort, startServer, type ServerHandle } from './harness.ts';
import { startPebble } from './pebble.ts';
import { openPhone, signIn } from './webphone.ts';

const DOMAIN = 'careflow.test'; // pebble's DNS (challtestsrv) answers 127.0.0.1 for every name
const acmeHttp = await freeTcpPort();
const pebble = await startPebble({ httpPort: acmeHttp });
const root = await pebble.issuingRoot();

async function acmeServer(extra: Record<string, string> = {}, dataDir?: string): Promise<{ server: ServerHandle; httpsPort: number }> {
  const httpsPort = await freeTcpPort();
  const server = await startServer({
    domain: DOMAIN, tlsPort: await freeTcpPort(), ...(dataDir !== undefined ? { dataDir } : {}), readyTimeoutMs: 60_000,
    env: {
      CAREFLOW_ACME: 'on', CAREFLOW_ACME_DIRECTORY: pebble.directoryUrl, CAREFLOW_ACME_HTTP_LISTEN: `127.0.0.1:${acmeHttp}`,
      CAREFLOW_ACME_EMAIL: 'admin@careflow.test', CAREFLOW_HTTPS_LISTEN: `127.0.0.1:${httpsPort}`, NODE_EXTRA_CA_CERTS: pebble.tlsCaFile, ...extra,
    },
  });
  return { server, httpsPort };
}

/** The certificate a TLS port presents for DOMAIN, verified against pebble's root. */
function served(port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: DOMAIN, ca: [root], timeout: 5000 }, () => {
      const der = s.getPeerCertificate().raw;
      s.end();
      if (!s.authorized) reject(new Error(`not trusted: ${String(s.authorizationError)}`));
      else resolve(new X509Certificate(der));
    });
    s.on('error', reject);
    s.on('timeout', () => s.destroy(new Error(`TLS to ${port} timed out`)));
  });
}

test('a certificate from the ACME CA (HTTP-01) on SIP TLS and HTTPS, kept in the data directory with mode 0600', async () => {
  const { server, httpsPort } = await acmeServer();
  try {
    for (const port of [server.tlsPort, httpsPort]) {
      const cert = await served(port);
      assert.ok(cert.checkHost(DOMAIN), cert.subjectAltName);
      assert.match(cert.issuer, /Pebble/i);
    }
    for (const f of ['cert.pem', 'key.pem', 'account-key.pem']) {
      assert.equal(statSync(join(server.dataDir, 'acme', f)).mode & 0o777, 0o600, f);
    }
    // The challenge listener sends browsers on to the HTTPS web phone.
    const redirect = await fetch(`http://127.0.0.1:${acmeHttp}/`, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), `https://${DOMAIN}:${httpsPort}/`);
    const serial = (await served(httpsPort)).serialNumber;
    await server.stop();
    // A restart reuses the stored certificate: no new order.
    const again = await acmeServer({}, server.dataDir);
    assert.equal((await served(again.httpsPort)).serialNumber, serial);
    await again.server.stop();
  } finally {
    await server.stop();
  }
});

test('renewal: a certificate due for renewal is replaced on the running server, without a restart', async () => {
  // Every certificate is "due" with a renewal window of 100 years: the server renews at each check.
  const { server, httpsPort } = await acmeServer({ CAREFLOW_ACME_RENEW_DAYS: '36500', CAREFLOW_ACME_CHECK_SECONDS: '2' });
  try {
    const first = (await served(httpsPort)).serialNumber;
    const end = Date.now() + 30_000;
    let now = first;
    while (now === first) {
      if (Date.now() > end) assert.fail(`not renewed within 30 s\n${server.logs().slice(-3000)}\n${pebble.logs().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 500));
      now = (await served(httpsPort)).serialNumber;
    }
    assert.notEqual((await served(server.tlsPort)).serialNumber, first, 'SIP TLS took the renewed certificate too');
    assert.match(server.logs(), /acme: certificate for careflow\.test issued/);
  } finally {
    await server.stop();
  }
});

test('the web phone loads over HTTPS and registers over WSS with the ACME certificate (Chromium trusting the test CA)', async () => {
  requireChromium();
  const { server, httpsPort } = await acmeServer();
  try {
    const user = await server.addUser('Secure Sam');
    // Chromium trusts the test CA's keys (SPKI pins of pebble's intermediate, which the server
    // sends in its chain, and root) and resolves the name to loopback.
    const chain = readFileSync(join(server.dataDir, 'acme', 'cert.pem'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const spki = (pem: string): string => createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    const pins = [...chain.slice(1), root].map(spki).join(',');
    const phone = await openPhone('secure', `https://${DOMAIN}:${httpsPort}/`, 440, [
      `--ignore-certificate-errors-spki-list=${pins}`, `--host-resolver-rules=MAP ${DOMAIN} 127.0.0.1`,
    ]);
    await signIn(phone, user.number, user.password);
    const devices = await server.apiJson<{ devices: Array<{ transport: string }> }>(`/api/users/${user.id}/devices`);
    assert.deepEqual(devices.devices.map((d) => d.transport), ['wss']);
  } finally {
    await server.stop();
  }
});
