// Certificates without effort: ACME (RFC 8555) with the HTTP-01 challenge (§8.3), through
// the `acme-client` library, for the configured domain. Let's Encrypt by default; any ACME
// directory (tests use Debian's pebble).
//
// - The account key, the certificate chain and its key live in <dataDir>/acme/ (mode 0600,
//   written to a temporary file and renamed, so a crash never leaves half a certificate).
// - A certificate is obtained at start when there is none (or it is due), and checked every
//   `checkSeconds`; it is renewed when it expires within `renewDays`. Every new certificate is
//   handed to the listeners (SIP TLS, HTTPS/WSS) without a restart.
// - HTTP-01: an HTTP listener (port 80 by default) answers
//   /.well-known/acme-challenge/<token> with the key authorization and redirects everything
//   else to the HTTPS web phone.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import acme from 'acme-client';

export interface AcmeOptions {
  readonly domain: string;
  readonly email: string | undefined;
  readonly directoryUrl: string;
  readonly dataDir: string;
  readonly http: { readonly host: string; readonly port: number };
  /** Where the HTTP listener redirects browsers (the HTTPS web phone). */
  readonly httpsPort: number;
  readonly renewDays: number;
  readonly checkSeconds: number;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, err?: unknown) => void;
  readonly now?: () => number;
}

export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
  /** ms since the epoch */
  readonly notAfter: number;
}

export type CertificateListener = (pair: CertificatePair) => void;

export class AcmeManager {
  readonly #o: AcmeOptions;
  readonly #dir: string;
  readonly #now: () => number;
  readonly #tokens = new Map<string, string>();
  readonly #listeners: CertificateListener[] = [];
  #server: Server | undefined;
  #timer: NodeJS.Timeout | undefined;
  #current: CertificatePair | undefined;
  #running: Promise<CertificatePair | undefined> | undefined;

  constructor(o: AcmeOptions) {
    this.#o = o;
    this.#dir = join(o.dataDir, 'acme');
    this.#now = o.now ?? Date.now;
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    this.#current = this.#load();
  }

  get current(): CertificatePair | undefined {
    return this.#current;
  }

  onCertificate(listener: CertificateListener): void {
    this.#listeners.push(listener);
  }

  /** Starts the HTTP-01 listener and the renewal timer; resolves with the bound HTTP port. */
  async start(): Promise<number> {
    const server = createServer((req, res) => {
      const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec((req.url ?? '').split('?')[0] ?? '');
      const answer = m !== null ? this.#tokens.get(m[1]!) : undefined;
      if (answer !== undefined) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(answer);
      } else if (m !== null) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no such challenge');
      } else {
        const port = this.#o.httpsPort === 443 ? '' : `:${this.#o.httpsPort}`;
        res.writeHead(301, { location: `https://${this.#o.domain}${port}${req.url ?? '/'}` }).end();
      }
    });
    this.#server = server;
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(
        e.code === 'EACCES' ? `cannot listen on port ${this.#o.http.port} for ACME HTTP-01: run with the capability to bind low ports (CAP_NET_BIND_SERVICE) or set CAREFLOW_ACME_HTTP_LISTEN` :
          e.code === 'EADDRINUSE' ? `port ${this.#o.http.port} is in use: ACME HTTP-01 needs it (stop the other web server or set CAREFLOW_ACME_HTTP_LISTEN)` : e.message,
      )));
      server.listen(this.#o.http.port, this.#o.http.host, () => resolve((server.address() as { port: number }).port));
    });
    this.#timer = setInterval(() => void this.ensure(), this.#o.checkSeconds * 1000);
    this.#timer.unref();
    return port;
  }

  /** A valid certificate, obtained or renewed when due; undefined (and logged) when the CA refused. */
  ensure(): Promise<CertificatePair | undefined> {
    this.#running ??= this.#ensure().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  async #ensure(): Promise<CertificatePair | undefined> {
    const due = this.#current === undefined || this.#current.notAfter - this.#now() < this.#o.renewDays * 86_400_000;
    if (!due) return this.#current;
    try {
      const pair = await this.#issue();
      this.#current = pair;
      this.#o.log('info', `acme: certificate for ${this.#o.domain} issued, valid until ${new Date(pair.notAfter).toISOString()}`);
      for (const l of this.#listeners) {
        try {
          l(pair);
        } catch (e) {
          this.#o.log('error', 'acme: installing the new certificate failed', e);
        }
      }
      return pair;
    } catch (e) {
      this.#o.log('error', `acme: no certificate for ${this.#o.domain} from ${this.#o.directoryUrl} (${(e as Error).message}); ` +
        `check that the name points at this server and that port ${this.#o.http.port} is reachable from the internet; retrying in ${this.#o.checkSeconds} s`, e);
      return this.#current;
    }
  }

  async #issue(): Promise<CertificatePair> {
    const accountKeyFile = join(this.#dir, 'account-key.pem');
    let accountKey: Buffer;
    if (existsSync(accountKeyFile)) accountKey = readFileSync(accountKeyFile);
    else {
      accountKey = await acme.crypto.createPrivateEcdsaKey('P-256');
      writeSecret(accountKeyFile, accountKey);
    }
    const client = new acme.Client({ directoryUrl: this.#o.directoryUrl, accountKey });
    const [key, csr] = await acme.crypto.createCsr({ commonName: this.#o.domain, altNames: [this.#o.domain] }, await acme.crypto.createPrivateEcdsaKey('P-256'));
    const cert = await client.auto({
      csr,
      ...(this.#o.email !== undefined ? { email: this.#o.email } : {}),
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      // The CA validates; acme-client's own pre-check would fetch http://<domain>:80 through
      // this host's resolver, which behind NAT (or a test CA's DNS) says nothing useful.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => { this.#tokens.set(challenge.token, keyAuthorization); },
      challengeRemoveFn: async (_authz, challenge) => { this.#tokens.delete(challenge.token); },
    });
    const notAfter = Date.parse(new X509Certificate(cert).validTo);
    writeSecret(join(this.#dir, 'key.pem'), key);
    writeSecret(join(this.#dir, 'cert.pem'), Buffer.from(cert));
    return { cert, key: key.toString(), notAfter };
  }

  #load(): CertificatePair | undefined {
    try {
      const cert = readFileSync(join(this.#dir, 'cert.pem'), 'utf8');
      const key = readFileSync(join(this.#dir, 'key.pem'), 'utf8');
      const x = new X509Certificate(cert);
      if (!x.checkHost(this.#o.domain)) return undefined; // issued for another name: get a new one
      return { cert, key, notAfter: Date.parse(x.validTo) };
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    const server = this.#server;
    if (server !== undefined) await new Promise<void>((r) => server.close(() => r()));
  }
}

function writeSecret(path: string, data: Buffer): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
