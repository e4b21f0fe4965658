// The real server against every RFC 4475 / RFC 5118 torture message, each sent as one UDP
// datagram from its own 127.0.0.1 socket (the server answers to the source address/port,
// rport-style). Per the manifest: the process survives everything; `reject` requests get a 4xx
// (or the status the manifest names); `drop` responses get no answer; the accept-then-reject
// cases get the application's answer (416, 420, 401, 400). Known parser deviations
// (test/conformance/deviations.ts) are only required not to crash the server.
// The corpus Vias name 192.0.2.x / *.example.com: run this under `unshare -n` (only `lo`), as
// ../shared/conformance/README.md says, so a misbehaving server cannot reach those hosts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { loadCorpus, namedStatuses, type CorpusEntry } from '../conformance/corpus.ts';
import { findDeviation } from '../conformance/deviations.ts';
import { SipResponse } from '../../src/sip/message.ts';
import { parseDatagram, SipParseError } from '../../src/sip/parser.ts';
import { startServer, type ServerHandle } from './harness.ts';

const COLLECT_MS = 1000;

/** Application answers required for the accept-then-reject cases (RFC 4475 §3.3). */
const APP_STATUS: Readonly<Record<string, number>> = {
  'rfc4475/unkscm': 416,
  'rfc4475/novelsc': 416,
  'rfc4475/bext01': 420,
  'rfc4475/regaut01': 401,
  'rfc4475/unksm2': 400,
};

// The corpus Vias and Request-URIs name 192.0.2.x, *.example.com and 255.255.255.255. The file
// re-runs itself inside a private network namespace (`unshare -n`, only `lo`) so that a server
// that misbehaved could not reach them; inside, the server runs with the corpus's domain
// (example.com) so REGISTER/OPTIONS for it are ours, and answers at the datagram's source
// (CAREFLOW_SIP_FORCE_RPORT, the default) so this test sees every answer.
const IN_NETNS = process.env['CAREFLOW_IN_NETNS'] === '1';
let server: ServerHandle;
/**
 * Some corpus requests share branch, sent-by and method (unkscm and novelsc): §17.2.3 makes the
 * second a retransmission of the first while its transaction lives (Timer J, 32 s), and the
 * server rightly answers it to the first sender. Such a message goes to a second server.
 */
let second: ServerHandle | undefined;
const keysSeen = new Set<string>();

function transactionKey(bytes: Buffer): string | undefined {
  try {
    const m = parseDatagram(bytes);
    if (m instanceof SipResponse) return undefined;
    const v = m.via;
    return `${v.branch ?? ''}|${v.host}:${v.port ?? ''}|${m.cseq.method}`;
  } catch {
    return undefined;
  }
}

if (!IN_NETNS) {
  test('RFC 4475 / RFC 5118 corpus against the server, in a private network namespace', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CAREFLOW_IN_NETNS: '1' };
    delete env['NODE_TEST_CONTEXT'];
    const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" --test --test-reporter=spec "$1"', process.execPath, fileURLToPath(import.meta.url)], {
      env, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 * 1024 * 1024,
    });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    console.log(out.split('\n').filter((l) => /^(✔|✖|ℹ|conformance|deviation)/.test(l.trim()) || l.includes('Error')).join('\n'));
    assert.ok(r.error === undefined, `cannot run unshare (needs root or user namespaces; apt-get install -y util-linux iproute2): ${r.error?.message}`);
    assert.equal(r.status, 0, `corpus tests failed inside the namespace:\n${out.slice(-20_000)}`);
  });
} else {
  server = await startServer({ domain: 'example.com' });
  defineCorpusTests();
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Received {
  readonly raw: Buffer;
  readonly response: SipResponse | undefined;
  readonly parseError: string | undefined;
}

/** Sends one datagram from a fresh 127.0.0.1 socket; collects what comes back for `ms`. */
async function exchange(datagram: Buffer, ms = COLLECT_MS, target: ServerHandle = server): Promise<Received[]> {
  const sock: Socket = createSocket('udp4');
  const got: Received[] = [];
  sock.on('message', (raw) => {
    try {
      const m = parseDatagram(raw);
      got.push({ raw, response: m instanceof SipResponse ? m : undefined, parseError: m instanceof SipResponse ? undefined : 'a request, not a response' });
    } catch (e) {
      got.push({ raw, response: undefined, parseError: e instanceof SipParseError ? e.message : String(e) });
    }
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => resolve());
  });
  await new Promise<void>((resolve, reject) => sock.send(datagram, target.sipPort, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  await new Promise((r) => setTimeout(r, ms));
  sock.close();
  return got;
}

/**
 * The final status we got. An error response to a malformed request copies the request's own
 * From/To/Call-ID/CSeq/Via (RFC 3261 §8.2.6.2), so it may not parse as a whole: then its status
 * line must still be well-formed, and that is what is read.
 */
function finalStatus(got: Received[], id: string): number {
  const statuses: number[] = [];
  for (const g of got) {
    if (g.response !== undefined) {
      statuses.push(g.response.status);
      continue;
    }
    const m = /^SIP\/2\.0 ([1-6]\d\d) [^\r\n]*\r\n/.exec(g.raw.toString('latin1'));
    assert.ok(m !== null, `${id}: the server sent something unparseable, not even its status line: ${g.parseError}\n${g.raw.toString('latin1')}`);
    statuses.push(Number(m[1]));
  }
  const finals = statuses.filter((s) => s >= 200);
  assert.ok(finals.length > 0, `${id}: no final response within ${COLLECT_MS} ms (got ${statuses.join(', ') || 'nothing'})`);
  return finals[0]!;
}

function describeEntry(e: CorpusEntry): string {
  return `${e.corpus}/${e.name} (§${e.section}): ${e.verdict}`;
}

function defineCorpusTests(): void {
before(() => {
  const external = Object.entries(networkInterfaces()).filter(([name, addrs]) => name !== 'lo' && (addrs ?? []).some((a) => !a.internal));
  if (external.length > 0) {
    console.log(`conformance-server: WARNING, interfaces besides lo (${external.map(([n]) => n).join(', ')})`);
  }
});

after(async () => {
  await server.stop();
  await second?.stop();
});

describe('torture corpus against the running server', { concurrency: 8 }, () => {
  for (const entry of loadCorpus()) {
    const id = `${entry.corpus}/${entry.name}`;
    test(describeEntry(entry), async () => {
      const key = transactionKey(entry.bytes);
      let target = server;
      if (key !== undefined && keysSeen.has(key)) {
        second ??= await startServer({ domain: 'example.com' });
        target = second;
      } else if (key !== undefined) keysSeen.add(key);
      const got = await exchange(entry.bytes, COLLECT_MS, target);
      assert.ok(isAlive(target.pid), `${id}: the server died\n${target.logs().slice(-4000)}`);
      if (findDeviation(id) !== undefined) return; // parsed liberally; only survival is required
      const app = APP_STATUS[id];
      if (app !== undefined) {
        assert.equal(finalStatus(got, id), app, `${id}: ${entry.expectedResponse}`);
        return;
      }
      switch (entry.verdict) {
        case 'reject': {
          const s = finalStatus(got, id);
          const named = namedStatuses(entry.expectedResponse);
          if (named.length > 0) assert.ok(named.includes(s), `${id}: got ${s}, manifest says "${entry.expectedResponse}"`);
          else assert.ok(s >= 400 && s < 500, `${id}: got ${s}, want a 4xx`);
          break;
        }
        case 'drop':
          assert.equal(got.length, 0, `${id}: a response must be dropped, but the server sent:\n${got.map((g) => g.raw.toString('latin1')).join('\n---\n')}`);
          break;
        case 'accept':
        case 'accept-then-reject':
          for (const g of got) assert.equal(g.parseError, undefined, `${id}: unparseable answer ${g.parseError}`);
          break;
      }
    });
  }
});

test('after the whole corpus the server is alive and still answers OPTIONS', async () => {
  assert.ok(isAlive(server.pid), `server died\n${server.logs().slice(-4000)}`);
  const branch = `z9hG4bK${randomBytes(6).toString('hex')}`;
  const options = Buffer.from([
    `OPTIONS sip:127.0.0.1:${server.sipPort} SIP/2.0`,
    // No port in sent-by: with rport the answer goes to the source port of exchange()'s socket.
    `Via: SIP/2.0/UDP 127.0.0.1;branch=${branch};rport`,
    'Max-Forwards: 70',
    `To: <sip:127.0.0.1:${server.sipPort}>`,
    `From: <sip:probe@127.0.0.1>;tag=${randomBytes(4).toString('hex')}`,
    `Call-ID: ${randomBytes(8).toString('hex')}@127.0.0.1`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n'));
  const got = await exchange(options, 2000);
  const status = finalStatus(got, 'OPTIONS');
  assert.ok(status >= 200 && status < 700, `OPTIONS got ${status}`);
  assert.equal(got.find((g) => (g.response?.status ?? 0) >= 200)!.response!.via.branch, branch);
});
}
