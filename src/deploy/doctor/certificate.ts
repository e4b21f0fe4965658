/**
 * Doctor checks of the TLS certificate (CAREFLOW_TLS_CERT / CAREFLOW_TLS_KEY): readable,
 * a certificate, the key belongs to it, it names the domain, and it is valid now.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Config } from '../../config/schema.ts';
import { bare, errorText, fail, pass, skip, warn, type CheckResult, type DoctorProbes } from './checks.ts';

/** Fewer days left than this is a warning: automatic renewal should have happened by now. */
export const CERT_WARN_DAYS = 14;
const DAY_MS = 86_400_000;

export function formatDate(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

const renewFiles = 'renew it (`certbot renew`, or ask your certificate authority), point CAREFLOW_TLS_CERT and CAREFLOW_TLS_KEY at the new files and restart careflow';
const renewAcme = 'renew it: careflow renews it by itself CAREFLOW_ACME_RENEW_DAYS before expiry while it runs, so read its log lines about acme (is port 80 reachable from the internet, does the domain point here?)';

/** Where the certificate comes from: the configured files, or what ACME stored in <dataDir>/acme/ (src/deploy/acme.ts). */
function certificateSource(config: Config): { cert: string; key: string; acme: boolean } | undefined {
  if (config.sip.tls !== undefined) return { ...config.sip.tls, acme: false };
  if (config.acme !== undefined) return { cert: join(config.dataDir, 'acme', 'cert.pem'), key: join(config.dataDir, 'acme', 'key.pem'), acme: true };
  return undefined;
}

/** The names a certificate is for, as people read them: its DNS and IP alternative names, else its CN. */
function namesOf(cert: X509Certificate): string {
  const alt = (cert.subjectAltName ?? '').split(', ').map((n) => n.replace(/^(?:DNS|IP Address):/, '')).filter((n) => n !== '');
  if (alt.length > 0) return alt.join(', ');
  return /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? cert.subject;
}

export async function checkCertificate(config: Config, probes: DoctorProbes): Promise<CheckResult[]> {
  const tls = certificateSource(config);
  if (tls === undefined) {
    return [skip('certificate', 'certificate', 'no TLS certificate configured',
      'browsers allow the microphone only on HTTPS pages (or localhost), and phones want SIP over TLS: set CAREFLOW_ACME=on (Let\'s Encrypt), or CAREFLOW_TLS_CERT and CAREFLOW_TLS_KEY to PEM files')];
  }
  const renew = tls.acme ? renewAcme : renewFiles;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await probes.readFile(tls.cert));
  } catch (error) {
    if (tls.acme && (error as NodeJS.ErrnoException).code === 'ENOENT') {
      return [warn('certificate.file', 'certificate', `no certificate from the ACME CA yet (${tls.cert})`,
        'careflow serve gets one at start: the domain must be a DNS name pointing at this server, and port 80 (CAREFLOW_ACME_HTTP_LISTEN) reachable from the internet')];
    }
    return [fail('certificate.file', 'certificate', `cannot use the certificate ${tls.cert}: ${errorText(error)}`,
      'CAREFLOW_TLS_CERT must name a readable PEM certificate (with certbot: fullchain.pem), CAREFLOW_TLS_KEY its key (privkey.pem)')];
  }
  const names = namesOf(cert);
  const out: CheckResult[] = [pass('certificate.file', 'certificate', `certificate ${tls.cert}${tls.acme ? ' (from ACME)' : ''}: for ${names}, issued by ${/(?:^|\n)CN=([^\n]*)/.exec(cert.issuer)?.[1] ?? cert.issuer}`)];

  let key: KeyObject | undefined;
  try {
    key = createPrivateKey(await probes.readFile(tls.key));
  } catch (error) {
    out.push(fail('certificate.key', 'certificate', `cannot use the key ${tls.key}: ${errorText(error)}`,
      'CAREFLOW_TLS_KEY must name the readable, unencrypted PEM private key of the certificate (with certbot: privkey.pem)'));
  }
  if (key !== undefined) {
    out.push(cert.checkPrivateKey(key)
      ? pass('certificate.key', 'certificate', `the key ${tls.key} belongs to the certificate`)
      : fail('certificate.key', 'certificate', `the key ${tls.key} does not belong to the certificate ${tls.cert}`,
        'set CAREFLOW_TLS_KEY to the private key issued with this certificate (with certbot: privkey.pem beside fullchain.pem)'));
  }

  const domain = bare(config.domain);
  const covered = isIP(domain) !== 0 ? cert.checkIP(domain) !== undefined : cert.checkHost(domain) !== undefined;
  out.push(covered
    ? pass('certificate.names', 'certificate', `the certificate covers the domain ${domain}`)
    : fail('certificate.names', 'certificate', `the certificate is for ${names}, not for the domain ${domain}`,
      `get a certificate for ${domain} (e.g. \`certbot certonly --standalone -d ${domain}\`), or set CAREFLOW_DOMAIN to a name it covers`));

  const now = probes.now();
  const from = cert.validFromDate;
  const to = cert.validToDate;
  const daysLeft = Math.floor((to.getTime() - now) / DAY_MS);
  if (now < from.getTime()) {
    out.push(fail('certificate.validity', 'certificate', `the certificate is not valid before ${formatDate(from)}`,
      'check this machine\'s clock (`timedatectl`; turn on time synchronisation with `timedatectl set-ntp true`), or wait until then'));
  } else if (now > to.getTime()) {
    out.push(fail('certificate.validity', 'certificate', `the certificate expired on ${formatDate(to)}`, renew));
  } else if (daysLeft < CERT_WARN_DAYS) {
    out.push(warn('certificate.validity', 'certificate', `the certificate expires in ${daysLeft} day${daysLeft === 1 ? '' : 's'}, on ${formatDate(to)}`,
      `${renew}; automatic renewal (certbot's timer) renews 30 days ahead, so check that it runs`));
  } else {
    out.push(pass('certificate.validity', 'certificate', `the certificate is valid until ${formatDate(to)} (${daysLeft} days left)`));
  }
  return out;
}
