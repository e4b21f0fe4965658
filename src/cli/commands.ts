/**
 * The `careflow user ...` and `careflow calls` commands: thin wrappers over AccountService
 * and CallLog that print plain text for people or `--json` for scripts. They open the same
 * SQLite file the running server uses (WAL lets both write); the server reads credentials
 * per request, so changes take effect at once.
 */
import { readFileSync } from 'node:fs';
import type { AccountService, NewAccount } from '../accounts/account-service.ts';
import type { CallLog } from '../calls/call-log.ts';
import { talkSeconds } from '../calls/call-log.ts';
import type { DeviceInfo } from '../http/api.ts';
import { CareflowError } from '../config/errors.ts';
import type { Config } from '../config/schema.ts';
import type { User } from '../store/types.ts';
import { intFlag, parseCommand, stringFlag } from './args.ts';

export interface Output {
  out(text: string): void;
}

export interface CommandContext {
  readonly config: Config;
  readonly accounts: AccountService;
  readonly callLog: CallLog;
  readonly adminToken: string;
  readonly io: Output;
}

const json = (value: unknown): string => JSON.stringify(value, null, 2);

export async function runUserCommand(sub: string, args: readonly string[], ctx: CommandContext): Promise<void> {
  const { accounts, io } = ctx;
  switch (sub) {
    case 'add': {
      const usage = 'careflow user add --name NAME [--number N] [--password P] [--json]';
      const { values } = parseCommand(args, { name: { type: 'string' }, number: { type: 'string' }, password: { type: 'string' }, json: { type: 'boolean' } }, { min: 0, max: 0 }, usage);
      const name = stringFlag(values, 'name');
      if (name === undefined) throw new CareflowError('USAGE', `--name is required\nusage: ${usage}`, '--name');
      const account = await accounts.add({ name, number: stringFlag(values, 'number'), password: stringFlag(values, 'password') });
      io.out(values['json'] === true ? json(accountJson(account)) : describeAccount(`Created user ${account.id}: ${name.trim()}`, account, ctx.config));
      return;
    }
    case 'list': {
      const { values } = parseCommand(args, { query: { type: 'string' }, limit: { type: 'string' }, offset: { type: 'string' }, json: { type: 'boolean' } }, { min: 0, max: 0 }, 'careflow user list [--query Q] [--limit N] [--offset N] [--json]');
      const query = stringFlag(values, 'query');
      const users = await accounts.list({ query, limit: intFlag(values, 'limit', 1000, 1000), offset: Number(stringFlag(values, 'offset') ?? 0) || 0 });
      if (values['json'] === true) {
        io.out(json(users));
      } else {
        const total = await accounts.count(query);
        io.out(table(['ID', 'NUMBER', 'SIP USERNAME', 'ENABLED', 'NAME'], users.map((u) => [String(u.id), u.number, u.sipUsername, u.enabled ? 'yes' : 'no', u.name])));
        io.out(`${users.length} of ${total} users`);
      }
      return;
    }
    case 'show': {
      const { values, positionals } = parseCommand(args, { json: { type: 'boolean' } }, { min: 1, max: 1 }, 'careflow user show ID|NUMBER|SIPUSERNAME [--json]');
      const user = await accounts.show(positionals[0] ?? '');
      const online = await fetchDevices(ctx.config, ctx.adminToken, user.id);
      if (values['json'] === true) {
        io.out(json({ ...user, needsRekey: accounts.needsRekey(user), serverReachable: online.reachable, online: online.devices === undefined ? null : online.devices.length > 0, devices: online.devices ?? null }));
        return;
      }
      io.out(describeUser(user));
      if (accounts.needsRekey(user)) io.out(`  Warning:       password keyed for domain ${user.realm}, now ${ctx.config.domain}: run careflow user passwd ${user.id}`);
      if (online.devices === undefined) {
        io.out(`  Online:        unknown (${online.reason})`);
      } else {
        io.out(`  Online:        ${online.devices.length > 0 ? `yes, ${online.devices.length} device(s)` : 'no'}`);
        for (const d of online.devices) io.out(`    ${d.transport.toUpperCase()} ${d.source}  ${d.userAgent ?? ''}  until ${new Date(d.expiresAt).toISOString()}`);
      }
      return;
    }
    case 'passwd': {
      const { values, positionals } = parseCommand(args, { password: { type: 'string' }, json: { type: 'boolean' } }, { min: 1, max: 1 }, 'careflow user passwd ID [--password P] [--json]');
      const account = await accounts.passwd(positionals[0] ?? '', stringFlag(values, 'password'));
      io.out(values['json'] === true ? json(accountJson(account)) : describeAccount(`New password for user ${account.id}`, account, ctx.config));
      return;
    }
    case 'disable':
    case 'enable': {
      const { positionals } = parseCommand(args, {}, { min: 1, max: 1 }, `careflow user ${sub} ID`);
      const user = await accounts.setEnabled(positionals[0] ?? '', sub === 'enable');
      io.out(`User ${user.id} (${user.number}) ${sub}d.${sub === 'disable' ? ' Its phones can no longer register or call.' : ''}`);
      return;
    }
    case 'remove': {
      const { positionals } = parseCommand(args, {}, { min: 1, max: 1 }, 'careflow user remove ID');
      const user = await accounts.remove(positionals[0] ?? '');
      io.out(`User ${user.id} (${user.number}, ${user.name}) removed.`);
      return;
    }
    case 'import': {
      const { values, positionals } = parseCommand(args, { json: { type: 'boolean' } }, { min: 1, max: 1 }, 'careflow user import FILE.csv [--json]');
      const file = positionals[0] ?? '';
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        throw new CareflowError('USAGE', `cannot read ${file}: ${(error as Error).message}`, 'FILE');
      }
      const created = await accounts.importCsv(text);
      if (values['json'] === true) {
        io.out(json(created.map(accountJson)));
      } else {
        io.out(`Imported ${created.length} users. Passwords are shown only now:`);
        io.out(table(['ID', 'NUMBER', 'SIP USERNAME', 'PASSWORD'], created.map((a) => [String(a.id), a.number, a.sipUsername, a.password])));
      }
      return;
    }
    default:
      throw new CareflowError('USAGE', `unknown user subcommand ${JSON.stringify(sub)}; see careflow user --help`, 'user');
  }
}

export async function runCallsCommand(args: readonly string[], ctx: CommandContext): Promise<void> {
  const { values } = parseCommand(args, { limit: { type: 'string' }, user: { type: 'string' }, json: { type: 'boolean' } }, { min: 0, max: 0 }, 'careflow calls [--limit N] [--user ID] [--json]');
  const ref = stringFlag(values, 'user');
  const userId = ref === undefined ? undefined : (await ctx.accounts.show(ref)).id;
  const calls = await ctx.callLog.list({ limit: intFlag(values, 'limit', 50, 1000), userId });
  if (values['json'] === true) {
    ctx.io.out(json(calls));
    return;
  }
  ctx.io.out(table(
    ['STARTED', 'FROM', 'TO', 'RESULT', 'STATUS', 'TALK'],
    calls.map((c) => [new Date(c.startedAt).toISOString().replace('T', ' ').slice(0, 19), c.callerUri, c.calleeUri, c.disposition, String(c.finalStatus), `${talkSeconds(c)}s`]),
  ));
}

/** Exactly the shape `user add --json` promises. */
function accountJson(a: NewAccount): NewAccount {
  return { id: a.id, number: a.number, sipUsername: a.sipUsername, password: a.password, domain: a.domain };
}

function describeAccount(title: string, a: NewAccount, config: Config): string {
  const tls = config.sip.tls === undefined ? '' : `; ${config.sip.tlsListen.port} for TLS`;
  return [
    title,
    `  Number:        ${a.number}`,
    `  SIP username:  ${a.sipUsername}`,
    `  Password:      ${a.password}`,
    `  Domain:        ${a.domain}`,
    '',
    'The password is shown only now; note it or hand it over. To connect a phone or SIP app:',
    `  Server/domain: ${a.domain}`,
    `  Port:          ${config.sip.listen.port} (UDP or TCP${tls})`,
    `  Username:      ${a.sipUsername} or ${a.number}`,
    `  Password:      ${a.password}`,
  ].join('\n');
}

function describeUser(u: User): string {
  return [
    `User ${u.id}: ${u.name}`,
    `  Number:        ${u.number}`,
    `  SIP username:  ${u.sipUsername}`,
    `  Enabled:       ${u.enabled ? 'yes' : 'no'}`,
    `  Created:       ${new Date(u.createdAt).toISOString()}`,
  ].join('\n');
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** Asks the running server for a user's devices; says why when it cannot. */
async function fetchDevices(config: Config, token: string, userId: number): Promise<{ reachable: boolean; devices?: readonly DeviceInfo[]; reason: string }> {
  const { host, port } = config.http.listen;
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${target}:${port}/api/users/${userId}/devices`;
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) });
    if (!res.ok) return { reachable: true, reason: `server at ${url} answered ${res.status}` };
    const body = (await res.json()) as { devices?: DeviceInfo[] };
    return { reachable: true, devices: body.devices ?? [], reason: '' };
  } catch {
    return { reachable: false, reason: `server not reachable at http://${target}:${port}; is careflow serve running?` };
  }
}
