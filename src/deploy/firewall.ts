/**
 * Firewall rules for exactly the ports CareFlow is configured to use (issue 5, item 4), and
 * nothing else: SIP (UDP and TCP), SIP over TLS and HTTPS/WSS when a certificate is
 * configured, HTTP, the RTP range, plus SSH so the admin does not lock themselves out.
 *
 * Pure: this module computes the plan and renders it as an nftables ruleset (`nft -f` input)
 * or as ufw commands; src/cli/firewall.ts prints or applies them.
 */
import { CareflowError } from '../config/errors.ts';
import type { Config, HostPort } from '../config/schema.ts';

export type FirewallBackend = 'nft' | 'ufw';
export const FIREWALL_BACKENDS: readonly FirewallBackend[] = ['nft', 'ufw'];
export type PortProtocol = 'tcp' | 'udp';

export interface PortRule {
  readonly protocol: PortProtocol;
  /** First port; equal to `to` for a single port. */
  readonly from: number;
  readonly to: number;
  /** What the port is for: shown to the admin and written as the rule's comment. */
  readonly purpose: string;
}

export interface FirewallPlan {
  readonly rules: readonly PortRule[];
  /** Listeners deliberately left closed, and why. */
  readonly notes: readonly string[];
}

/** The nftables table that holds every CareFlow rule (`inet`: IPv4 and IPv6). */
export const NFT_TABLE = 'careflow';
/** ufw rules are tagged with this comment prefix, so they can be told apart from the admin's own. */
export const UFW_COMMENT_PREFIX = 'careflow';
export const DEFAULT_SSH_PORT = 22;
export const SSH_PURPOSE = 'SSH, kept open so you do not lock yourself out';

const LOOPBACK = /^(?:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/i;

/** The ports to open, in a stable order: SSH, SIP, SIP TLS, HTTP, HTTPS, RTP. */
export function firewallPlan(config: Config, options: { readonly sshPort?: number } = {}): FirewallPlan {
  const rules: PortRule[] = [];
  const notes: string[] = [];
  const add = (protocol: PortProtocol, from: number, to: number, purpose: string): void => {
    const same = rules.findIndex((r) => r.protocol === protocol && r.from === from && r.to === to);
    if (same >= 0) rules[same] = { ...rules[same]!, purpose: `${rules[same]!.purpose}; ${purpose}` };
    else rules.push({ protocol, from, to, purpose });
  };
  const listener = (key: string, at: HostPort, protocols: readonly PortProtocol[], purpose: string): void => {
    if (at.port === 0) {
      throw new CareflowError('CONFIG_INVALID', `${key}: port 0 (any free port) cannot be opened in a firewall; set a fixed port, like 0.0.0.0:5060`, key);
    }
    if (LOOPBACK.test(at.host)) {
      notes.push(`${key} ${at.host}:${at.port} listens on the loopback address only: not opened (loopback traffic is always accepted)`);
      return;
    }
    for (const protocol of protocols) add(protocol, at.port, at.port, purpose);
  };

  const ssh = options.sshPort ?? DEFAULT_SSH_PORT;
  if (!Number.isInteger(ssh) || ssh < 1 || ssh > 65535) {
    throw new CareflowError('USAGE', `--ssh-port: expected a port from 1 to 65535, got ${ssh}`, '--ssh-port');
  }
  add('tcp', ssh, ssh, SSH_PURPOSE);
  listener('sipListen', config.sip.listen, ['udp', 'tcp'], 'SIP (sipListen)');
  // TLS comes from certificate files or from ACME (which also needs its HTTP-01 port).
  const tls = config.sip.tls !== undefined || config.acme !== undefined;
  if (tls) listener('sipTlsListen', config.sip.tlsListen, ['tcp'], 'SIP over TLS (sipTlsListen)');
  else notes.push('SIP over TLS and HTTPS/WSS are off (no TLS certificate): their ports are not opened');
  listener('httpListen', config.http.listen, ['tcp'], 'HTTP: web phone, API, SIP over WebSocket (httpListen)');
  if (tls) listener('httpsListen', config.http.tlsListen, ['tcp'], 'HTTPS and WSS (httpsListen)');
  if (config.acme !== undefined) listener('acmeHttpListen', config.acme.httpListen, ['tcp'], 'ACME HTTP-01 challenges (acmeHttpListen)');
  const rtp = config.media.rtpPorts;
  add('udp', rtp.min, rtp.max, 'RTP media (rtpPorts)');
  return { rules, notes };
}

/** `5060`, or `10000-20000` for a range (nftables and the JSON output). */
export function portText(rule: PortRule, rangeSeparator = '-'): string {
  return rule.from === rule.to ? String(rule.from) : `${rule.from}${rangeSeparator}${rule.to}`;
}

/**
 * The `nft list table inet careflow` form of the plan: one base chain hooked at input, policy
 * drop, accepting replies to this machine's own connections, loopback, ICMP/ICMPv6 (IPv6
 * needs neighbour discovery) and the plan's ports. Rendered with tabs exactly as nft lists it.
 */
export function nftTable(plan: FirewallPlan): string {
  const lines = [
    `table inet ${NFT_TABLE} {`,
    '\tchain input {',
    '\t\ttype filter hook input priority filter; policy drop;',
    '\t\tct state established,related accept',
    '\t\tct state invalid drop',
    '\t\tiif "lo" accept',
    '\t\tmeta l4proto { icmp, ipv6-icmp } accept',
    ...plan.rules.map((r) => `\t\t${r.protocol} dport ${portText(r)} accept comment "${r.purpose.replaceAll('"', "'")}"`),
    '\t}',
    '}',
  ];
  return lines.join('\n') + '\n';
}

/**
 * `nft -f` input that replaces the table atomically: declaring it first makes the delete
 * succeed on a machine where it does not exist yet (nft 1.0.6 has no `destroy`), and nft
 * applies the whole file as one transaction.
 */
export function nftRuleset(plan: FirewallPlan): string {
  return `table inet ${NFT_TABLE}\ndelete table inet ${NFT_TABLE}\n${nftTable(plan)}`;
}

export function ufwComment(rule: PortRule): string {
  return `${UFW_COMMENT_PREFIX} ${rule.purpose.replace(/ \(.*\)$/, '').replaceAll("'", '')}`;
}

/** `ufw allow PORT/PROTO comment '...'` for each rule, as argument lists (ufw writes ranges with a colon). */
export function ufwAllowCommands(plan: FirewallPlan): string[][] {
  return plan.rules.map((r) => ['allow', `${portText(r, ':')}/${r.protocol}`, 'comment', ufwComment(r)]);
}

/**
 * The whole ufw setup as argument lists: deny incoming by default, allow the plan's ports,
 * enable (or reload) ufw. ufw skips a rule it already has, so running it twice adds nothing.
 */
export function ufwCommands(plan: FirewallPlan): string[][] {
  return [['default', 'deny', 'incoming'], ...ufwAllowCommands(plan), ['--force', 'enable']];
}

/** Quotes an argument list for a shell, as printed for the admin. */
export function shellLine(program: string, args: readonly string[]): string {
  const quote = (a: string): string => (/^[A-Za-z0-9_./:=+-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`);
  return [program, ...args].map(quote).join(' ');
}

/** One line per rule for the admin: `5060/udp  SIP (sipListen)`. */
export function describeRules(plan: FirewallPlan): string[] {
  const width = Math.max(...plan.rules.map((r) => `${portText(r)}/${r.protocol}`.length));
  return plan.rules.map((r) => `${`${portText(r)}/${r.protocol}`.padEnd(width)}  ${r.purpose}`);
}

/** The `# ...` header printed above the ruleset or the commands: what is opened and how to apply. */
export function planHeader(plan: FirewallPlan, backend: FirewallBackend): string {
  const lines = [
    `CareFlow Voice firewall (${backend === 'nft' ? `nftables, table inet ${NFT_TABLE}` : 'ufw'}), from the configuration. Open:`,
    ...describeRules(plan).map((l) => `  ${l}`),
    ...plan.notes.map((n) => `Note: ${n}`),
  ];
  if (backend === 'nft') {
    lines.push(
      'Everything else arriving here is dropped, except loopback, ICMP/ICMPv6 and replies to',
      "this machine's own connections. Other nftables tables cannot open more ports: a packet",
      'dropped here is dropped whatever they say.',
      'Apply (as root):   careflow firewall --apply',
      '  or:              careflow firewall > careflow.nft && nft -f careflow.nft',
      'Re-applying replaces the table. To keep it after a reboot, save this output as',
      `/etc/careflow/firewall.nft, add the line  include "/etc/careflow/firewall.nft"  to`,
      '/etc/nftables.conf and run: systemctl enable nftables',
    );
  } else {
    lines.push(
      "ufw then denies all other incoming traffic (its default); rules you added yourself stay",
      "(ufw status numbered lists them). Rules tagged 'careflow' that no longer match the",
      'configuration are deleted by --apply.',
      'Apply (as root):   careflow firewall --apply --backend ufw',
      '  or:              careflow firewall --backend ufw | sh',
    );
  }
  return lines.map((l) => `# ${l}`).join('\n') + '\n';
}
