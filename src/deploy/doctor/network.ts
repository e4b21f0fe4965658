/**
 * Doctor checks of the network: the listening ports (answering when careflow runs, free to
 * bind when it does not), the public address vs the advertised one, and the DNS name.
 */
import { advertisedHost } from '../../config/advertise.ts';
import { BlockList, isIP } from 'node:net';
import type { Config, HostPort } from '../../config/schema.ts';
import { parseIceUrl } from '../stun.ts';
import {
  errorText, fail, hostText, pass, reachableHost, sameAddress, skip, warn, bare,
  type CheckResult, type DoctorOptions, type DoctorProbes, type InterfaceAddress, type SipTransport,
} from './checks.ts';

interface Listener {
  readonly id: string;
  readonly env: string;
  readonly at: HostPort;
  readonly protocol: 'udp' | 'tcp';
  readonly what: string;
}

/** TLS listeners run with certificate files or with ACME (src/server.ts). */
export function tlsEnabled(config: Config): boolean {
  return config.sip.tls !== undefined || config.acme !== undefined;
}

function listeners(config: Config): Listener[] {
  const tls = tlsEnabled(config);
  return [
    { id: 'port.sip.udp', env: 'CAREFLOW_SIP_LISTEN', at: config.sip.listen, protocol: 'udp', what: 'SIP' },
    { id: 'port.sip.tcp', env: 'CAREFLOW_SIP_LISTEN', at: config.sip.listen, protocol: 'tcp', what: 'SIP' },
    ...(tls ? [{ id: 'port.sip.tls', env: 'CAREFLOW_SIP_TLS_LISTEN', at: config.sip.tlsListen, protocol: 'tcp', what: 'SIP over TLS' } as const] : []),
    { id: 'port.http', env: 'CAREFLOW_HTTP_LISTEN', at: config.http.listen, protocol: 'tcp', what: 'HTTP: web phone and API' },
    ...(tls ? [{ id: 'port.https', env: 'CAREFLOW_HTTPS_LISTEN', at: config.http.tlsListen, protocol: 'tcp', what: 'HTTPS and WSS' } as const] : []),
    ...(config.acme !== undefined ? [{ id: 'port.acme', env: 'CAREFLOW_ACME_HTTP_LISTEN', at: config.acme.httpListen, protocol: 'tcp', what: 'ACME HTTP-01 challenges' } as const] : []),
  ];
}

/** Why a port cannot be bound, and what to do, from the errno. */
function bindFailure(l: Listener, code: string, message: string, interfaces: readonly InterfaceAddress[]): CheckResult {
  const port = `port ${l.at.port}/${l.protocol}`;
  switch (code) {
    case 'EADDRINUSE':
      return fail(l.id, 'ports', `${port} (${l.what}) is in use by another program`,
        `stop it (find it with \`ss -l${l.protocol === 'udp' ? 'u' : 't'}np | grep ${l.at.port}\`) or set ${l.env} to another port`);
    case 'EACCES':
    case 'EPERM':
      // A warning: the installed service may hold the capability this user lacks.
      return warn(l.id, 'ports', `this user may not open ${port} (${l.what}): ports below 1024 need root or CAP_NET_BIND_SERVICE`,
        `the installed service has the capability (run careflow doctor as root to check the port); if you start careflow yourself, start it as root or set ${l.env} to a port above 1023`);
    case 'EADDRNOTAVAIL': {
      const mine = interfaces.filter((a) => !a.internal).map((a) => a.address);
      return fail(l.id, 'ports', `${l.at.host} (${l.what}, ${l.env}) is not an address of this machine`,
        `set ${l.env} to 0.0.0.0:${l.at.port}${mine.length > 0 ? ` or to one of this machine's addresses (${mine.join(', ')})` : ''}`);
    }
    default:
      return fail(l.id, 'ports', `cannot open ${port} (${l.what}) on ${l.at.host}: ${message}`, `check ${l.env}`);
  }
}

/**
 * With careflow running (its /api/health answers), each SIP transport must answer an
 * OPTIONS; without it, each configured port must be free to bind.
 */
export async function checkPorts(config: Config, probes: DoctorProbes, timeoutMs: number): Promise<CheckResult[]> {
  const http = config.http.listen;
  const healthUrl = `http://${hostText(reachableHost(http.host))}:${http.port}/api/health`;
  const health = await probes.health(healthUrl, timeoutMs);
  const tls = tlsEnabled(config);
  if (health.kind === 'ok' || health.kind === 'unhealthy') {
    const out: CheckResult[] = [health.kind === 'ok'
      ? pass('server', 'ports', `careflow is running: ${healthUrl} answered ok`)
      : fail('server', 'ports', `careflow is running but unhealthy: ${healthUrl} answered ${health.status}`,
        'its database failed: look at its log (journalctl -u careflow), the free disk space and the permissions of the data directory')];
    const transports: SipTransport[] = tls ? ['udp', 'tcp', 'tls'] : ['udp', 'tcp'];
    out.push(...await Promise.all(transports.map(async (t) => {
      const at = t === 'tls' ? config.sip.tlsListen : config.sip.listen;
      const host = reachableHost(at.host);
      const where = `SIP over ${t.toUpperCase()} at ${hostText(host)}:${at.port}`;
      try {
        const r = await probes.sipOptions(t, host, at.port, timeoutMs);
        return pass(`sip.${t}`, 'ports', `${where} answers OPTIONS (${r.status} ${r.reason})`);
      } catch (error) {
        return fail(`sip.${t}`, 'ports', `${where} did not answer an OPTIONS request (${errorText(error)})`,
          `careflow runs, but not with this configuration, or another program holds the port: compare ${t === 'tls' ? 'CAREFLOW_SIP_TLS_LISTEN' : 'CAREFLOW_SIP_LISTEN'} with the server's settings and read its log (journalctl -u careflow)`);
      }
    })));
    if (tls) {
      const at = config.http.tlsListen;
      const url = `https://${hostText(reachableHost(at.host))}:${at.port}/api/health`;
      const https = await probes.health(url, timeoutMs);
      out.push(https.kind === 'ok'
        ? pass('https', 'ports', `HTTPS answers: ${url}`)
        : fail('https', 'ports', `HTTPS does not answer at ${url} (${https.kind === 'none' ? https.error : `HTTP ${https.status}`})`,
          `${config.acme !== undefined ? 'with ACME the TLS listeners start once a certificate is obtained: read the server\'s log lines about acme; ' : ''}compare CAREFLOW_HTTPS_LISTEN with the server's settings and read its log (journalctl -u careflow)`));
    }
    if (config.acme !== undefined) {
      const at = config.acme.httpListen;
      const url = `http://${hostText(reachableHost(at.host))}:${at.port}/.well-known/acme-challenge/careflow-doctor`;
      const answer = await probes.health(url, timeoutMs);
      out.push(answer.kind !== 'none'
        ? pass('acme-http', 'ports', `the ACME challenge listener answers at ${hostText(reachableHost(at.host))}:${at.port}`)
        : fail('acme-http', 'ports', `the ACME challenge listener does not answer at ${url} (${answer.error})`,
          'compare CAREFLOW_ACME_HTTP_LISTEN with the server\'s settings and read its log; the CA must reach it as port 80 of the domain'));
    }
    return out;
  }
  const seen = health.kind === 'other' ? `HTTP ${health.status} from another program` : 'nothing answered';
  const out: CheckResult[] = [warn('server', 'ports', `careflow is not running (${healthUrl}: ${seen}); checking that its ports are free instead`,
    'start it with `careflow serve` (or `systemctl start careflow`) and run careflow doctor again to check that it answers')];
  const interfaces = probes.interfaces();
  out.push(...await Promise.all(listeners(config).map(async (l): Promise<CheckResult> => {
    if (l.at.port === 0) return skip(l.id, 'ports', `${l.what} listens on port 0 (any free port)`, `set a fixed port in ${l.env} so phones can find it`);
    const r = await probes.bind(l.protocol, bare(l.at.host), l.at.port);
    if (r.kind === 'free') return pass(l.id, 'ports', `port ${l.at.port}/${l.protocol} (${l.what}) is free on ${l.at.host}`);
    return bindFailure(l, r.code, r.message, interfaces);
  })));
  return out;
}

// ---------------------------------------------------------------- addresses

const PRIVATE = new BlockList();
for (const [net, bits] of [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['100.64.0.0', 10], ['169.254.0.0', 16], ['127.0.0.0', 8]] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['fc00::', 7], ['fe80::', 10], ['::1', 128]] as const) PRIVATE.addSubnet(net, bits, 'ipv6');

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && PRIVATE.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

const isLoopback = (a: string): boolean => /^127\./.test(a) || a === '::1';

/**
 * The address careflow puts in Via and Record-Route: the same choice src/server.ts makes
 * (sipAdvertise, else a specific listen address, else the first public IPv4, else loopback).
 */
/** The advertised address, as `careflow serve` chooses it (src/config/advertise.ts). */
export { advertisedHost };

export interface PublicAddress {
  readonly address: string | undefined;
  readonly check: CheckResult;
}

/** The public address: --public-ip, else what the first configured STUN server saw. */
export async function discoverPublicAddress(config: Config, options: DoctorOptions, probes: DoctorProbes): Promise<PublicAddress> {
  if (options.publicIp !== undefined) {
    return { address: options.publicIp, check: pass('public-address', 'addresses', `public address ${options.publicIp} (from --public-ip)`) };
  }
  const url = config.webrtc.stunUrls[0];
  const server = url === undefined ? undefined : parseIceUrl(url);
  if (url === undefined || server === undefined) {
    return {
      address: undefined,
      check: skip('public-address', 'addresses', 'public address not checked',
        'pass --public-ip ADDR (your provider\'s console shows it), or set CAREFLOW_STUN_URLS so careflow doctor can ask a STUN server'),
    };
  }
  try {
    const mapped = await probes.stunBinding(server, options.timeoutMs);
    return { address: mapped.address, check: pass('public-address', 'addresses', `public address ${mapped.address} (the STUN server ${url} saw this machine at ${hostText(mapped.address)}:${mapped.port})`) };
  } catch (error) {
    return {
      address: undefined,
      check: fail('public-address', 'addresses', `the STUN server ${url} did not answer a binding request (${errorText(error)})`,
        'check the host and port in CAREFLOW_STUN_URLS and that the server runs (web phones need it to find their public address), or pass --public-ip ADDR'),
    };
  }
}

async function addressesOf(host: string, probes: DoctorProbes, timeoutMs: number): Promise<string[]> {
  if (isIP(bare(host)) !== 0) return [bare(host)];
  try {
    return await probes.lookup(host, timeoutMs);
  } catch {
    return [];
  }
}

/** The advertised address against this machine's interfaces and its public address. */
export async function checkAdvertised(config: Config, publicAddress: string | undefined, probes: DoctorProbes, timeoutMs: number): Promise<CheckResult> {
  const interfaces = probes.interfaces();
  const adv = advertisedHost(config, interfaces);
  const how = config.sip.advertise !== undefined ? 'CAREFLOW_SIP_ADVERTISE' : 'chosen from CAREFLOW_SIP_LISTEN and the interfaces';
  const addresses = await addressesOf(adv, probes, timeoutMs);
  if (addresses.length === 0) {
    return fail('advertised-address', 'addresses', `the advertised name ${adv} (${how}) does not resolve`,
      `set CAREFLOW_SIP_ADVERTISE to this server's public IP address${publicAddress !== undefined ? ` (${publicAddress})` : ''}`);
  }
  const onMachine = addresses.some((a) => interfaces.some((i) => sameAddress(i.address, a)));
  const named = addresses.length === 1 && sameAddress(addresses[0]!, adv) ? adv : `${adv} (${addresses.join(', ')})`;
  if (publicAddress === undefined) {
    if (!onMachine) {
      return warn('advertised-address', 'addresses', `SIP advertises ${named} (${how}), which is not an address of this machine`,
        'right only if it is your public address behind NAT (confirm with --public-ip ADDR); otherwise set CAREFLOW_SIP_ADVERTISE to this machine\'s address');
    }
    if (addresses.every(isLoopback)) {
      return warn('advertised-address', 'addresses', `SIP advertises the loopback address ${named} (${how}): only this machine can reach it`,
        'set CAREFLOW_SIP_LISTEN to 0.0.0.0:5060, or CAREFLOW_SIP_ADVERTISE to the address phones reach this server at');
    }
    const note = addresses.every(isPrivateAddress) ? ', a private address: phones outside this network need the public one (check with --public-ip ADDR)' : '';
    return pass('advertised-address', 'addresses', `SIP advertises ${named}, an address of this machine${note}`);
  }
  const behindNat = !interfaces.some((i) => sameAddress(i.address, publicAddress));
  if (addresses.some((a) => sameAddress(a, publicAddress))) {
    return pass('advertised-address', 'addresses', `SIP advertises ${named}, the public address${behindNat ? ' (this machine is behind NAT: the SIP and RTP ports must be forwarded to it)' : ''}`);
  }
  if (behindNat) {
    return fail('advertised-address', 'addresses',
      `this machine is behind NAT (its public address ${publicAddress} is on none of its interfaces) but SIP advertises ${named} (${how})`,
      `set CAREFLOW_SIP_ADVERTISE=${publicAddress} so phones send requests and audio to the public address (Oracle Cloud VMs are exactly this case), and forward the SIP and RTP ports to this machine (Oracle: open them in the VCN security list)`);
  }
  return warn('advertised-address', 'addresses', `SIP advertises ${named}, but this machine's public address is ${publicAddress}`,
    `phones outside this network cannot reach ${adv}: set CAREFLOW_SIP_ADVERTISE=${publicAddress}, unless the server is for the local network only`);
}

/** The domain (a name) resolves and points at this server. */
export async function checkDns(config: Config, publicAddress: string | undefined, probes: DoctorProbes, timeoutMs: number): Promise<CheckResult> {
  const domain = bare(config.domain);
  if (isIP(domain) !== 0) {
    return skip('dns', 'dns', `the domain ${domain} is an IP address: no DNS name to check`,
      'phones and browsers use the address directly; a certificate from Let\'s Encrypt needs a DNS name (set CAREFLOW_DOMAIN to it)');
  }
  const interfaces = probes.interfaces();
  const adv = advertisedHost(config, interfaces);
  const target = publicAddress ?? adv;
  const ddns = config.ddns !== undefined ? '; the DuckDNS updater sets it while careflow serve runs: read its log lines starting with "ddns:"' : '';
  let found: string[];
  try {
    found = await probes.lookup(domain, timeoutMs);
  } catch (error) {
    return fail('dns', 'dns', `the domain ${domain} does not resolve (${errorText(error)})`,
      `create a DNS A record for ${domain} pointing at ${target}${ddns}, or set CAREFLOW_DOMAIN to this server's address`);
  }
  const list = found.join(', ');
  if (publicAddress !== undefined) {
    if (found.some((a) => sameAddress(a, publicAddress))) return pass('dns', 'dns', `${domain} points at ${list}, this server's public address`);
    return fail('dns', 'dns', `${domain} points at ${list}, not at this server's public address ${publicAddress}`,
      `change the DNS A record of ${domain} to ${publicAddress}${ddns} (changes take up to the record's TTL to be seen)`);
  }
  const advAddresses = await addressesOf(adv, probes, timeoutMs);
  const here = found.some((a) => advAddresses.some((b) => sameAddress(a, b)) || interfaces.some((i) => sameAddress(i.address, a)));
  if (here) return pass('dns', 'dns', `${domain} points at ${list}, this server`);
  const first = found[0] ?? '';
  return fail('dns', 'dns', `${domain} points at ${list}, which is neither this machine nor the advertised address ${adv}`,
    `point ${domain} at ${adv}${ddns}; or, if ${first} is this server's public address behind NAT, set CAREFLOW_SIP_ADVERTISE=${first} (confirm with --public-ip ${first})`);
}
