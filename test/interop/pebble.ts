// Debian's pebble, Let's Encrypt's ACME test server, on loopback for the ACME tests: a
// throw-away TLS certificate for its directory (trusted by the server under test through
// NODE_EXTRA_CA_CERTS), pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1),
// HTTP-01 validation against the port the test says CareFlow answers challenges on. Both
// processes are stopped by PID when the test file ends.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { freeTcpPort, freeUdpPort } from './harness.ts';
import { stopper } from './processes.ts';

export const PEBBLE_INSTALL = 'apt-get install -y pebble';

export interface PebbleHandle {
  /** https://127.0.0.1:<port>/dir */
  readonly directoryUrl: string;
  /** PEM file of the certificate pebble's own HTTPS uses (give it to NODE_EXTRA_CA_CERTS). */
  readonly tlsCaFile: string;
  /** The root that signs the certificates pebble issues (generated at each start), PEM. */
  issuingRoot(): Promise<string>;
  logs(): string;
  stop(): Promise<void>;
}

const stops = new Set<() => Promise<unknown>>();
try {
  after(async () => { await Promise.all([...stops].map((s) => s())); });
} catch { /* outside node:test */ }

export function requirePebble(): void {
  for (const bin of ['/usr/bin/pebble', '/usr/bin/pebble-challtestsrv']) {
    try { accessSync(bin, constants.X_OK); } catch { throw new Error(`${bin} is missing: ${PEBBLE_INSTALL}`); }
  }
}

function run(bin: string, args: string[], env: Record<string, string>, ready: RegExp, timeoutMs: number): Promise<{ logs: () => string; stop: () => Promise<number | null> }> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  const append = (d: string): void => { out = (out + d).slice(-100_000); };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  let code: number | null | undefined;
  const exited = new Promise<number | null>((res) => child.on('exit', (c) => { code = c; res(c); }));
  const stop = stopper(child.pid!, exited, () => code);
  stops.add(stop);
  process.on('exit', () => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => { void stop(); reject(new Error(`${bin} not ready within ${timeoutMs} ms:\n${out}`)); }, timeoutMs);
    const check = setInterval(() => {
      if (ready.test(out)) {
        clearTimeout(deadline);
        clearInterval(check);
        resolve({ logs: () => out, stop });
      } else if (code !== undefined) {
        clearTimeout(deadline);
        clearInterval(check);
        reject(new Error(`${bin} exited (${code}):\n${out}`));
      }
    }, 50);
  });
}

/** `httpPort`: where pebble's validator fetches http://<domain>:<httpPort>/.well-known/acme-challenge/. */
export async function startPebble(opts: { httpPort: number }): Promise<PebbleHandle> {
  requirePebble();
  const dir = mkdtempSync(join(tmpdir(), 'careflow-pebble-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const ossl = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '2',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8', timeout: 30_000 });
  if (ossl.status !== 0) throw new Error(`openssl failed: ${ossl.stderr}`);
  const dnsPort = await freeUdpPort();
  const listen = await freeTcpPort();
  const management = await freeTcpPort();
  const dns = await run('/usr/bin/pebble-challtestsrv', [
    '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
    '-management', `127.0.0.1:${await freeTcpPort()}`,
  ], {}, /Answering A questions|Starting challenge servers|DNS/i, 10_000);
  writeFileSync(join(dir, 'pebble.json'), JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${listen}`, managementListenAddress: `127.0.0.1:${management}`, certificate: cert, privateKey: key,
      httpPort: opts.httpPort, tlsPort: await freeTcpPort(), ocspResponderURL: '', externalAccountBindingRequired: false,
    },
  }));
  const pebble = await run('/usr/bin/pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`],
    { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' }, /ACME directory available/i, 15_000);
  const stopAll = async (): Promise<void> => { await pebble.stop(); await dns.stop(); };
  stops.add(stopAll);
  return {
    directoryUrl: `https://127.0.0.1:${listen}/dir`,
    tlsCaFile: cert,
    issuingRoot: () => new Promise((resolve, reject) => {
      request({ host: '127.0.0.1', port: management, path: '/roots/0', ca: [readFileSync(cert)], servername: 'localhost', timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => resolve(body));
      }).on('error', reject).on('timeout', function (this: { destroy(e: Error): void }) { this.destroy(new Error('pebble /roots/0 timed out')); }).end();
    }),
    logs: () => `--- pebble\n${pebble.logs()}\n--- challtestsrv\n${dns.logs()}`,
    stop: stopAll,
  };
}
