/**
 * The real probes of `careflow doctor`: the file system, sockets, DNS, HTTP, STUN/TURN and
 * RTPEngine, each bounded by the timeout it is given. Nothing here decides pass or fail.
 */
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { constants } from 'node:fs';
import { access, readFile, stat, statfs } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { NgClient } from '../../media/ng-client.ts';
import { stunBinding, turnAllocate } from '../stun.ts';
import type { BindResult, DirKind, DoctorProbes, HealthAnswer, InterfaceAddress } from './checks.ts';
import { sipOptions } from './sip-options.ts';

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function health(url: string, timeoutMs: number): Promise<HealthAnswer> {
  return new Promise((resolve) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { method: 'GET', timeout: timeoutMs, rejectUnauthorized: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { if (body.length < 4096) body += d; });
      res.on('error', (e) => resolve({ kind: 'none', error: e.message }));
      res.on('end', () => {
        let status: unknown;
        try { status = (JSON.parse(body) as { status?: unknown }).status; } catch { /* not careflow */ }
        const code = res.statusCode ?? 0;
        if (code === 200 && status === 'ok') resolve({ kind: 'ok' });
        else if (code === 503 && status === 'unavailable') resolve({ kind: 'unhealthy', status: code });
        else resolve({ kind: 'other', status: code });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ kind: 'none', error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end();
  });
}

function bind(protocol: 'udp' | 'tcp', host: string, port: number): Promise<BindResult> {
  const failed = (e: NodeJS.ErrnoException): BindResult => ({ kind: 'error', code: e.code ?? 'ERROR', message: e.message });
  return new Promise((resolve) => {
    if (protocol === 'udp') {
      const socket = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
      socket.once('error', (e) => { socket.close(); resolve(failed(e)); });
      socket.bind({ port, address: host, exclusive: true }, () => socket.close(() => resolve({ kind: 'free' })));
      return;
    }
    const server = createServer();
    server.once('error', (e) => resolve(failed(e)));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve({ kind: 'free' })));
  });
}

async function dirKind(path: string): Promise<DirKind> {
  try {
    return (await stat(path)).isDirectory() ? 'dir' : 'not-dir';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'ENOTDIR') return 'not-dir';
    throw error;
  }
}

async function ngPing(instances: readonly { host: string; port: number }[], timeoutMs: number): Promise<boolean[]> {
  const client = new NgClient({ instances, timeoutMs, retransmitMs: Math.min(500, timeoutMs) });
  try {
    return await client.ping();
  } finally {
    client.close();
  }
}

export function realProbes(): DoctorProbes {
  return {
    nodeVersion: process.versions.node,
    now: Date.now,
    interfaces: () => Object.values(networkInterfaces()).flatMap((list) => list ?? [])
      .map((a): InterfaceAddress => ({ address: a.address, family: a.family, internal: a.internal })),
    dirKind,
    writable: (path) => access(path, constants.W_OK | constants.X_OK).then(() => true, () => false),
    freeBytes: async (path) => {
      const s = await statfs(path);
      return s.bavail * s.bsize;
    },
    health,
    sipOptions,
    bind,
    stunBinding: (server, timeoutMs) => withTimeout(stunBinding(server, timeoutMs), timeoutMs + 500, 'STUN'),
    turnAllocate: (server, username, password, timeoutMs) => withTimeout(turnAllocate(server, username, password, timeoutMs), 4 * timeoutMs, 'TURN'),
    lookup: async (name, timeoutMs) => (await withTimeout(lookup(name, { all: true }), timeoutMs, `DNS lookup of ${name}`)).map((a) => a.address),
    readFile: (path) => readFile(path),
    httpDate: async (url, timeoutMs) => {
      const sentAt = Date.now();
      const res = await fetch(url, { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
      const receivedAt = Date.now();
      return { date: res.headers.get('date') ?? undefined, sentAt, receivedAt };
    },
    ngPing,
    ephemeralPorts: async () => {
      const m = /^(\d+)\s+(\d+)/.exec(await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => ''));
      return m === null ? undefined : { min: Number(m[1]), max: Number(m[2]) };
    },
  };
}
