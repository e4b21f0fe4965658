// The address the server writes into Via and Record-Route (and the SDP of a media engine):
// CAREFLOW_SIP_ADVERTISE when set, else the SIP listen address, else (listening on every
// address) the first non-internal IPv4 of the machine. Shared by `careflow serve` and
// `careflow doctor`, which checks it against the public address.
import { networkInterfaces } from 'node:os';
import type { Config } from './schema.ts';

export interface InterfaceAddress {
  readonly address: string;
  readonly family: 'IPv4' | 'IPv6';
  readonly internal: boolean;
}

/** This machine's addresses (node:os), flattened. */
export function machineAddresses(): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.push({ address: a.address, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4', internal: a.internal });
  }
  return out;
}

export function advertisedHost(config: Pick<Config, 'sip'>, interfaces: readonly InterfaceAddress[] = machineAddresses()): string {
  if (config.sip.advertise !== undefined) return config.sip.advertise;
  const h = config.sip.listen.host;
  if (h !== '0.0.0.0' && h !== '::') return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  return interfaces.find((a) => a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1';
}
