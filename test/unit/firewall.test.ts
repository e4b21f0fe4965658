// The firewall plan (src/deploy/firewall.ts) from configurations, its nftables and ufw
// renderings, the `careflow firewall` output, backend detection and the rtpPorts setting.
// Applying the rules for real is test/interop/firewall.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { applyNft, applyUfw, detectBackend, type RunResult } from '../../src/cli/firewall.ts';
import { CareflowError } from '../../src/config/errors.ts';
import { loadConfig } from '../../src/config/load.ts';
import { firewallPlan, nftRuleset, nftTable, ufwCommands, type FirewallPlan } from '../../src/deploy/firewall.ts';

const dir = mkdtempSync(join(tmpdir(), 'careflow-fw-'));
const cert = join(dir, 'cert.pem');
writeFileSync(cert, 'x');
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

const config = (...argv: string[]) => loadConfig({ argv: ['--data-dir', join(dir, 'data'), '--domain', 'sip.example.org', ...argv], env: {} });
const ports = (plan: FirewallPlan): string[] => plan.rules.map((r) => `${r.from === r.to ? r.from : `${r.from}-${r.to}`}/${r.protocol}`);

describe('firewall plan', () => {
  it('defaults: SSH, SIP udp+tcp, HTTP, RTP 10000-20000; no TLS ports without a certificate', () => {
    const plan = firewallPlan(config());
    assert.deepEqual(ports(plan), ['22/tcp', '5060/udp', '5060/tcp', '8080/tcp', '10000-20000/udp']);
    assert.match(plan.rules[0]!.purpose, /SSH, kept open so you do not lock yourself out/);
    assert.deepEqual(plan.notes, ['SIP over TLS and HTTPS/WSS are off (no TLS certificate): their ports are not opened']);
  });

  it('with a certificate: SIP TLS and HTTPS from their listen settings; custom ports and SSH port', () => {
    const plan = firewallPlan(
      config('--tls-cert', cert, '--tls-key', cert, '--sip-listen', '[::]:5070', '--sip-tls-listen', '0.0.0.0:5071', '--https-listen', '0.0.0.0:443', '--http-listen', '0.0.0.0:80', '--rtp-ports', '30000-30100'),
      { sshPort: 2222 },
    );
    assert.deepEqual(ports(plan), ['2222/tcp', '5070/udp', '5070/tcp', '5071/tcp', '80/tcp', '443/tcp', '30000-30100/udp']);
    assert.deepEqual(plan.notes, []);
  });

  it('with ACME: SIP TLS, HTTPS and the HTTP-01 challenge port', () => {
    const plan = firewallPlan(config('--acme', 'on'));
    assert.deepEqual(ports(plan), ['22/tcp', '5060/udp', '5060/tcp', '5061/tcp', '8080/tcp', '8443/tcp', '80/tcp', '10000-20000/udp']);
  });

  it('leaves loopback-only listeners closed, merges duplicates, refuses port 0', () => {
    const plan = firewallPlan(config('--http-listen', '127.0.0.1:8080', '--sip-listen', '0.0.0.0:22'));
    assert.deepEqual(ports(plan), ['22/tcp', '22/udp', '10000-20000/udp']);
    assert.match(plan.rules[0]!.purpose, /^SSH.*; SIP \(sipListen\)$/);
    assert.ok(plan.notes.some((n) => /httpListen 127\.0\.0\.1:8080 listens on the loopback address only: not opened/.test(n)));
    assert.throws(() => firewallPlan(config('--sip-listen', '0.0.0.0:0')), (e: unknown) => e instanceof CareflowError && e.field === 'sipListen' && /port 0/.test(e.message));
    assert.throws(() => firewallPlan(config(), { sshPort: 70000 }), /--ssh-port/);
  });

  it('nftables: one table inet careflow, input hook, policy drop, replaced on each load', () => {
    const plan = firewallPlan(config('--rtp-ports', '10000-10010'));
    assert.equal(nftTable(plan), [
      'table inet careflow {',
      '\tchain input {',
      '\t\ttype filter hook input priority filter; policy drop;',
      '\t\tct state established,related accept',
      '\t\tct state invalid drop',
      '\t\tiif "lo" accept',
      '\t\tmeta l4proto { icmp, ipv6-icmp } accept',
      '\t\ttcp dport 22 accept comment "SSH, kept open so you do not lock yourself out"',
      '\t\tudp dport 5060 accept comment "SIP (sipListen)"',
      '\t\ttcp dport 5060 accept comment "SIP (sipListen)"',
      '\t\ttcp dport 8080 accept comment "HTTP: web phone, API, SIP over WebSocket (httpListen)"',
      '\t\tudp dport 10000-10010 accept comment "RTP media (rtpPorts)"',
      '\t}',
      '}',
      '',
    ].join('\n'));
    assert.ok(nftRuleset(plan).startsWith('table inet careflow\ndelete table inet careflow\ntable inet careflow {'));
  });

  it('ufw: deny incoming, one allow per port (ranges with a colon), tagged careflow, enable', () => {
    const lines = ufwCommands(firewallPlan(config('--rtp-ports', '10000-10010'))).map((a) => a.join(' '));
    assert.deepEqual(lines, [
      'default deny incoming',
      'allow 22/tcp comment careflow SSH, kept open so you do not lock yourself out',
      'allow 5060/udp comment careflow SIP',
      'allow 5060/tcp comment careflow SIP',
      'allow 8080/tcp comment careflow HTTP: web phone, API, SIP over WebSocket',
      'allow 10000:10010/udp comment careflow RTP media',
      '--force enable',
    ]);
  });
});

describe('rtpPorts setting', () => {
  it('default 10000-20000; env and flag; validated range', () => {
    assert.deepEqual(config().media.rtpPorts, { min: 10000, max: 20000 });
    assert.deepEqual(loadConfig({ argv: ['--data-dir', join(dir, 'data')], env: { CAREFLOW_RTP_PORTS: '40000-40999' } }).media.rtpPorts, { min: 40000, max: 40999 });
    assert.deepEqual(config('--rtp-ports', '5000 - 5000').media.rtpPorts, { min: 5000, max: 5000 });
    for (const [bad, why] of [['20000-10000', /low port must not exceed the high port .*write it as 10000-20000/], ['80-2000', /within 1024-65535/], ['10000-70000', /within 1024-65535/], ['10000', /LOW-HIGH like 10000-20000/]] as const) {
      assert.throws(() => config('--rtp-ports', bad), (e: unknown) => e instanceof CareflowError && e.code === 'CONFIG_INVALID' && /^--rtp-ports: /.test(e.message) && why.test(e.message), bad);
    }
  });
});

describe('careflow firewall command', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, 'firewall', '--data-dir', join(dir, 'data'), ...args], { encoding: 'utf8', env: { PATH: '' } });

  it('prints an nft -f ruleset with the ports, the SSH note and how to apply it', () => {
    const r = run('--backend', 'nft', '--rtp-ports', '10000-10100');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^# {3}22\/tcp +SSH, kept open so you do not lock yourself out$/m);
    assert.match(r.stdout, /^# {3}10000-10100\/udp +RTP media \(rtpPorts\)$/m);
    assert.match(r.stdout, /^# Apply \(as root\): +careflow firewall --apply$/m);
    assert.match(r.stdout, /^\t\tudp dport 10000-10100 accept comment "RTP media \(rtpPorts\)"$/m);
    assert.ok(r.stdout.split('\n').every((l) => l === '' || l.startsWith('#') || /^(table|delete|\t|\})/.test(l)), 'every line is nft input');
  });

  it('--backend ufw prints a shell script; --json the rules; bad flags are usage errors', () => {
    const ufw = run('--backend', 'ufw');
    assert.match(ufw.stdout, /^ufw allow 10000:20000\/udp comment 'careflow RTP media'$/m);
    const json = JSON.parse(run('--backend', 'nft', '--json').stdout) as { backend: string; applied: boolean; rules: { protocol: string; ports: string }[]; ruleset: string };
    assert.deepEqual([json.backend, json.applied], ['nft', false]);
    assert.deepEqual(json.rules.map((r) => `${r.ports}/${r.protocol}`), ['22/tcp', '5060/udp', '5060/tcp', '8080/tcp', '10000-20000/udp']);
    assert.match(json.ruleset, /policy drop/);
    const bad = run('--backend', 'iptables');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--backend: expected nft or ufw, got "iptables"/);
    assert.equal(run('--ssh-port', 'x').status, 2);
  });

  it('a missing tool or a refusal is a FIREWALL_ERROR that says what to do', () => {
    const plan = firewallPlan(config());
    const missing = () => ({ status: null, stdout: '', stderr: '', missing: true });
    assert.throws(() => applyNft(plan, missing), (e: unknown) => e instanceof CareflowError && e.code === 'FIREWALL_ERROR' && /nft is not installed: apt-get install -y nftables/.test(e.message));
    assert.throws(() => applyUfw(plan, missing), /ufw is not installed: apt-get install -y ufw/);
    const denied = () => ({ status: 1, stdout: '', stderr: 'Error: Could not process rule: Operation not permitted', missing: false });
    assert.throws(() => applyNft(plan, denied), /nft refused the ruleset \(run as root: sudo careflow firewall --apply\): Error: Could not process rule: Operation not permitted/);
  });
});

describe('backend detection', () => {
  const runner = (result: Partial<RunResult>) => () => ({ status: 0, stdout: '', stderr: '', missing: false, ...result });
  it('ufw when active, else nftables', () => {
    assert.deepEqual(detectBackend(runner({ stdout: 'Status: active\n\nTo  Action  From\n' })), { backend: 'ufw', reason: 'ufw is active' });
    assert.deepEqual(detectBackend(runner({ stdout: 'Status: inactive\n' })), { backend: 'nft', reason: 'ufw is not active' });
    assert.deepEqual(detectBackend(runner({ missing: true, status: null })), { backend: 'nft', reason: 'ufw is not installed' });
    assert.equal(detectBackend(runner({ status: 1, stderr: 'ERROR: You need to be root to run this script' })).backend, 'nft');
  });
});
