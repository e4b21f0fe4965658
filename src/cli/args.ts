/**
 * Command-line parsing and help texts for `careflow`. Config flags (`--data-dir`, ...)
 * are split off first and go to loadConfig; each command then parses its own flags
 * strictly: an unknown flag is a usage error (exit 2) naming the flag.
 */
import { parseArgs } from 'node:util';
import { CareflowError } from '../config/errors.ts';
import { CONFIG_FIELDS } from '../config/schema.ts';

export type FlagSpec = Readonly<Record<string, { readonly type: 'string' | 'boolean' }>>;

export interface ParsedCommand {
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
}

/** Parses a command's own flags; `usage` is the command's synopsis for error messages. */
export function parseCommand(args: readonly string[], flags: FlagSpec, positionals: { min: number; max: number }, usage: string): ParsedCommand {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...args], options: { ...flags, help: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (error) {
    const message = (error as Error).message;
    const flag = /'(-{1,2}[^' ]+)/.exec(message)?.[1];
    const reason = /Unknown option/.test(message)
      ? `unknown flag ${flag ?? ''}`
      : /argument missing|requires? (?:a |an )?(?:argument|value)/i.test(message)
        ? `${flag ?? 'flag'} needs a value`
        : message;
    throw new CareflowError('USAGE', `${reason}\nusage: ${usage}`, flag);
  }
  const count = parsed.positionals.length;
  if (count < positionals.min) throw new CareflowError('USAGE', `missing argument\nusage: ${usage}`);
  if (count > positionals.max) throw new CareflowError('USAGE', `unexpected argument ${JSON.stringify(parsed.positionals[positionals.max])}\nusage: ${usage}`);
  return { values: parsed.values as ParsedCommand['values'], positionals: parsed.positionals };
}

export function stringFlag(values: ParsedCommand['values'], name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A positive whole-number flag, or the default. */
export function intFlag(values: ParsedCommand['values'], name: string, fallback: number, max: number): number {
  const raw = stringFlag(values, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new CareflowError('USAGE', `--${name}: expected a whole number from 1 to ${max}, got ${JSON.stringify(raw)}`, `--${name}`);
  }
  return Number(raw);
}

const CONFIG_HELP = [
  'Config flags (every command; env var in brackets; precedence: flag > env > config file > default):',
  '  --config FILE            JSON config file [CAREFLOW_CONFIG] (default <data-dir>/careflow.json if present)',
  ...CONFIG_FIELDS.map((f) => `  ${`${f.flag} VALUE`.padEnd(24)} ${f.help} [${f.env}]`),
].join('\n');

export const HELP: Readonly<Record<string, string>> = {
  main: `careflow: self-hosted calling server

Usage: careflow COMMAND [flags]

Commands:
  serve                      run the SIP and HTTP server
  user add|list|show|passwd|disable|enable|remove|import
                             manage users (careflow user --help)
  calls                      show the call log
  firewall [--apply]         print or apply firewall rules for the configured ports
  doctor                     check the deployment and explain how to fix what is wrong

Run careflow COMMAND --help for a command's flags.

${CONFIG_HELP}

Exit codes: 0 ok, 1 runtime error, 2 usage or config error.`,
  serve: `Usage: careflow serve [config flags]

Runs the SIP registrar/proxy and the HTTP API until stopped (SIGINT/SIGTERM).

${CONFIG_HELP}`,
  user: `Usage: careflow user SUBCOMMAND [flags]

  add --name NAME [--number N] [--password P] [--json]
                         create a user; the password is shown once
  list [--query Q] [--limit N] [--offset N] [--json]
  show ID|NUMBER|SIPUSERNAME [--json]
                         details, with online devices if the server is running
  passwd ID [--password P] [--json]
                         new password (generated unless given), shown once
  disable ID | enable ID stop / allow the user's registrations and calls
  remove ID              delete the user and their registrations
  import FILE.csv [--json]
                         header row name[,number][,password]; passwords generated where empty

ID may be the user id, the number or the SIP username (careflow_<id>).
Users log in from a phone with the SIP username or the number and the password.

${CONFIG_HELP}`,
  firewall: `Usage: careflow firewall [--apply] [--backend nft|ufw] [--ssh-port N] [--json] [config flags]

Prints the firewall rules for exactly the configured ports: SIP (--sip-listen, UDP and TCP),
SIP over TLS (--sip-tls-listen) and HTTPS/WSS (--https-listen) when a certificate is set,
HTTP (--http-listen), the RTP range (--rtp-ports), and SSH (22/tcp, or --ssh-port) so you
do not lock yourself out. Everything else arriving is dropped.

  --apply                apply them (as root); re-applying replaces them, never duplicates
  --backend nft|ufw      nftables (table inet careflow) or ufw; default: ufw when it is
                         active, else nftables
  --ssh-port N           the SSH port kept open (default 22)
  --json                 the rules, the ruleset or commands, as JSON

${CONFIG_HELP}`,
  doctor: `Usage: careflow doctor [--json] [--public-ip ADDR] [--timeout-ms N] [--time-url URL] [config flags]

Checks everything that breaks a deployment and says how to fix each problem: Node.js
version, data directory and free disk; the ports (answering when careflow runs, free to
bind when it does not); the advertised address against the interfaces and the public
address; the domain's DNS record; the TLS certificate (key, names, expiry); the clock; the
RTP range and RTPEngine; the TURN servers and their secret.
Exit code 0 when no check failed (warnings allowed), 1 when one did.

  --public-ip ADDR       this server's public address (else asked of the first STUN server
                         in --stun-urls; else not checked)
  --timeout-ms N         how long each network check waits (default 2000)
  --time-url URL         compare the clock with this web server's Date header
  --json                 {ok, counts, checks: [{id, group, status, message, fix?}]}

${CONFIG_HELP}`,
  calls: `Usage: careflow calls [--limit N] [--user ID] [--json]

Shows the newest finished calls first.

${CONFIG_HELP}`,
};
