// `careflow firewall --apply` for real, with nftables and with ufw, each inside a private
// network namespace made here (test/interop/netns.ts; ufw also gets private copies of
// /etc/ufw and /etc/default/ufw, so the host's firewall and files are never touched).
// Checked: the rules the kernel holds name exactly the configured ports; applying twice
// changes nothing; a changed configuration replaces the old rules; and real traffic from a
// second namespace over a veth link: an allowed port connects, any other port is dropped.
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from './harness.ts';
import { link, Netns } from './netns.ts';

const CLI = join(ROOT, 'src', 'cli', 'main.ts');
// Addresses of the veth link between the two test namespaces (TEST-NET-1, RFC 5737): they
// exist only inside them.
const SERVER = '192.0.2.1';
const CLIENT = '192.0.2.2';

for (const [tool, pkg] of [['nft', 'nftables'], ['ufw', 'ufw'], ['nsenter', 'util-linux'], ['ip', 'iproute2']] as const) {
  const found = spawnSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { encoding: 'utf8' }).status === 0;
  if (!found) throw new Error(`${tool} is missing: apt-get install -y ${pkg} (or run scripts/install-test-deps.sh)`);
}

const dir = mkdtempSync(join(tmpdir(), 'careflow-firewall-'));
const cert = join(dir, 'cert.pem');
const key = join(dir, 'key.pem');
// Only the presence of a certificate matters to the firewall (the ports it enables).
writeFileSync(cert, 'not read by careflow firewall\n');
writeFileSync(key, 'not read by careflow firewall\n');
const BASE = ['--data-dir', join(dir, 'data'), '--sip-listen', '0.0.0.0:5060', '--http-listen', '0.0.0.0:8080', '--domain', 'sip.example.org'];
const WITH_TLS = [...BASE, '--rtp-ports', '10000-10010', '--tls-cert', cert, '--tls-key', key, '--sip-tls-listen', '0.0.0.0:5061', '--https-listen', '0.0.0.0:8443'];
const CHANGED = [...BASE, '--rtp-ports', '10000-10020'];

function careflow(ns: Netns, args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  return ns.run(process.execPath, [CLI, 'firewall', ...args], { env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } });
}

function applied(ns: Netns, args: readonly string[]): string {
  const r = careflow(ns, ['--apply', ...args]);
  assert.equal(r.status, 0, `careflow firewall --apply failed:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `tcp 22`, `udp 10000-10010`: every port rule of a listing, whatever the tool. */
function nftPorts(listing: string): string[] {
  return [...listing.matchAll(/^\s*(tcp|udp) dport (\S+) accept/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
}
function ufwPorts(added: string): string[] {
  return [...added.matchAll(/^ufw allow (\d+(?::\d+)?)\/(tcp|udp)/gm)].map((m) => `${m[2]} ${m[1]!.replace(':', '-')}`).sort();
}

const EXPECTED_TLS = ['tcp 22', 'tcp 5060', 'tcp 5061', 'tcp 8080', 'tcp 8443', 'udp 10000-10010', 'udp 5060'];
const EXPECTED_CHANGED = ['tcp 22', 'tcp 5060', 'tcp 8080', 'udp 10000-10020', 'udp 5060'];

// ------------------------------------------------------------------ real traffic

const LISTENER = `
const net = require('node:net'); const dgram = require('node:dgram');
const { tcp, udp } = JSON.parse(process.argv[1]);
let pending = tcp.length + udp.length;
const up = () => { if (--pending === 0) console.log('ready'); };
for (const p of tcp) net.createServer((s) => s.end()).listen(p, '0.0.0.0', up);
for (const p of udp) { const s = dgram.createSocket('udp4'); s.on('message', (m) => console.log('udp ' + p + ' ' + m)); s.bind(p, '0.0.0.0', up); }
setTimeout(() => process.exit(0), 120000).unref();
setInterval(() => {}, 1000);`;

const PROBE = `
const net = require('node:net'); const dgram = require('node:dgram');
const { host, tcp, udp, mark, timeoutMs } = JSON.parse(process.argv[1]);
const connect = (port) => new Promise((resolve) => {
  const s = net.connect({ host, port });
  const t = setTimeout(() => { s.destroy(); resolve('timeout'); }, timeoutMs);
  s.once('connect', () => { clearTimeout(t); s.destroy(); resolve('open'); });
  s.once('error', (e) => { clearTimeout(t); resolve(e.code === 'ECONNREFUSED' ? 'refused' : e.code); });
});
(async () => {
  const out = {};
  await Promise.all(tcp.map(async (p) => { out[p] = await connect(p); }));
  const u = dgram.createSocket('udp4');
  for (const p of udp) await new Promise((r) => u.send(mark, p, host, r));
  u.close();
  console.log(JSON.stringify(out));
})();`;

const TCP_PORTS = [5060, 8080, 9999];
const UDP_PORTS = [5060, 10005, 9998];

async function startListener(ns: Netns): Promise<{ proc: ChildProcess; output: () => string; stop: () => Promise<void> }> {
  const proc = ns.spawn(process.execPath, ['-e', LISTENER, JSON.stringify({ tcp: TCP_PORTS, udp: UDP_PORTS })]);
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => void (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => void (out += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await waitFor(() => out.includes('ready'), 10_000, () => `the listener did not start: ${out}`);
  return {
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        try { process.kill(proc.pid ?? -1, 'SIGKILL'); } catch { /* gone */ }
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      }
    },
  };
}

async function waitFor(done: () => boolean, ms: number, why: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** TCP connects and UDP datagrams from `client` to the server namespace's veth address. */
async function probe(client: Netns, listener: { output: () => string }, mark: string): Promise<{ tcp: Record<string, string>; udp: number[] }> {
  const r = client.run(process.execPath, ['-e', PROBE, JSON.stringify({ host: SERVER, tcp: TCP_PORTS, udp: UDP_PORTS, mark, timeoutMs: 1500 })], { timeoutMs: 20_000 });
  assert.equal(r.status, 0, `probe failed: ${r.stdout}${r.stderr}`);
  const tcp = JSON.parse(r.stdout) as Record<string, string>;
  const got = (): number[] => UDP_PORTS.filter((p) => listener.output().includes(`udp ${p} ${mark}\n`));
  // Datagrams on the link arrive within milliseconds; wait a bounded while for stragglers.
  await waitFor(() => got().length === UDP_PORTS.length, 1500, () => '').catch(() => undefined);
  return { tcp, udp: got() };
}

async function trafficCheck(server: Netns, client: Netns, apply: () => void): Promise<void> {
  const listener = await startListener(server);
  try {
    const before = await probe(client, listener, 'before');
    assert.deepEqual(before, { tcp: { 5060: 'open', 8080: 'open', 9999: 'open' }, udp: [5060, 10005, 9998] }, 'without a firewall every port must answer');
    apply();
    const after = await probe(client, listener, 'after');
    assert.deepEqual(after, { tcp: { 5060: 'open', 8080: 'open', 9999: 'timeout' }, udp: [5060, 10005] }, 'allowed ports connect, 9999/tcp and 9998/udp are dropped');
  } finally {
    await listener.stop();
  }
}

// ------------------------------------------------------------------ nftables

describe('careflow firewall --apply with nftables, in a private network namespace', () => {
  let server: Netns;
  let client: Netns;
  before(async () => {
    server = await Netns.create();
    client = await Netns.create();
    link(server, SERVER, client, CLIENT);
  });
  after(async () => { await Promise.all([server?.close(), client?.close()]); });

  it('lets the configured ports through and drops the rest (TCP connects and UDP datagrams over a veth link)', async () => {
    await trafficCheck(server, client, () => {
      const out = applied(server, [...CHANGED, '--backend', 'nft', '--rtp-ports', '10000-10010']);
      assert.match(out, /SSH \(22\/tcp\) stays open so you do not lock yourself out/);
    });
  });

  it('the kernel holds exactly the configured ports, and exactly the printed table', () => {
    applied(server, [...WITH_TLS, '--backend', 'nft']);
    const listing = server.must('nft', ['list', 'ruleset']);
    assert.deepEqual(nftPorts(listing), EXPECTED_TLS);
    const printed = careflow(server, [...WITH_TLS, '--backend', 'nft']).stdout;
    const table = printed.slice(printed.lastIndexOf('table inet careflow {')).trimEnd();
    assert.equal(listing.trimEnd(), table, 'nft list ruleset is the printed table and nothing else');
    assert.match(listing, /type filter hook input priority filter; policy drop;/);
  });

  it('applying twice gives the same ruleset; a changed configuration replaces it', () => {
    const first = server.must('nft', ['list', 'ruleset']);
    applied(server, [...WITH_TLS, '--backend', 'nft']);
    const second = server.must('nft', ['list', 'ruleset']);
    assert.equal(second, first);
    assert.equal(second.match(/^table /gm)?.length, 1);
    applied(server, [...CHANGED, '--backend', 'nft']);
    assert.deepEqual(nftPorts(server.must('nft', ['list', 'ruleset'])), EXPECTED_CHANGED);
  });
});

// ------------------------------------------------------------------ ufw

describe('careflow firewall --apply with ufw, in a private network and mount namespace', () => {
  let server: Netns;
  let client: Netns;
  before(async () => {
    server = await Netns.create(['/etc/ufw', '/etc/default/ufw']);
    client = await Netns.create();
    link(server, SERVER, client, CLIENT);
  });
  after(async () => { await Promise.all([server?.close(), client?.close()]); });

  it('lets the configured ports through and drops the rest', async () => {
    await trafficCheck(server, client, () => {
      const out = applied(server, [...CHANGED, '--backend', 'ufw', '--rtp-ports', '10000-10010']);
      assert.match(out, /Applied with ufw/);
    });
    assert.match(server.must('ufw', ['status']), /^Status: active/m);
  });

  it('ufw holds exactly the configured ports; applying twice adds nothing; stale careflow rules go, the admin\'s stay', () => {
    server.must('ufw', ['allow', '2222/tcp', 'comment', 'admin rule']);
    applied(server, [...WITH_TLS, '--backend', 'ufw']);
    const first = server.must('ufw', ['show', 'added']);
    assert.deepEqual(ufwPorts(first), [...EXPECTED_TLS, 'tcp 2222'].sort(), first);
    const out = applied(server, [...WITH_TLS, '--backend', 'ufw']);
    assert.doesNotMatch(out, /Deleted/);
    assert.equal(server.must('ufw', ['show', 'added']), first);
    const changed = applied(server, [...CHANGED, '--backend', 'ufw']);
    assert.match(changed, /Deleted the old careflow rule: ufw allow 10000:10010\/udp/);
    assert.match(changed, /Deleted the old careflow rule: ufw allow 5061\/tcp/);
    assert.deepEqual(ufwPorts(server.must('ufw', ['show', 'added'])), [...EXPECTED_CHANGED, 'tcp 2222'].sort());
  });

  it('is chosen automatically when ufw is active', () => {
    const r = careflow(server, [...CHANGED, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const json = JSON.parse(r.stdout) as { backend: string; reason: string; applied: boolean };
    assert.deepEqual([json.backend, json.reason, json.applied], ['ufw', 'ufw is active', false]);
  });
});
