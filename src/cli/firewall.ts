/**
 * `careflow firewall [--apply] [--backend nft|ufw] [--ssh-port N] [--json]`: prints, or with
 * --apply applies, firewall rules for exactly the configured ports (the plan and its
 * renderings are in src/deploy/firewall.ts). Backend: ufw when it is active, else nftables.
 */
import { spawnSync } from 'node:child_process';
import { CareflowError } from '../config/errors.ts';
import type { Config } from '../config/schema.ts';
import {
  DEFAULT_SSH_PORT, FIREWALL_BACKENDS, NFT_TABLE, UFW_COMMENT_PREFIX, describeRules, firewallPlan, nftRuleset, planHeader, portText,
  shellLine, ufwAllowCommands, ufwCommands, type FirewallBackend, type FirewallPlan,
} from '../deploy/firewall.ts';
import { intFlag, parseCommand, stringFlag } from './args.ts';
import type { Output } from './commands.ts';

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The program is not installed. */
  readonly missing: boolean;
}
/** Runs a program to completion; tests pass their own. */
export type Runner = (program: string, args: readonly string[], input?: string) => RunResult;

const RUN_TIMEOUT_MS = 60_000;
const INSTALL: Readonly<Record<FirewallBackend, string>> = { nft: 'apt-get install -y nftables', ufw: 'apt-get install -y ufw' };
const USAGE = 'careflow firewall [--apply] [--backend nft|ufw] [--ssh-port N] [--json] [config flags]';

/** spawnSync with a bounded run time; looks in /usr/sbin and /sbin too (not on a user's PATH). */
export const runProgram: Runner = (program, args, input) => {
  let last: RunResult = { status: null, stdout: '', stderr: `${program}: not found`, missing: true };
  for (const path of [program, `/usr/sbin/${program}`, `/sbin/${program}`]) {
    const r = spawnSync(path, args, { input, encoding: 'utf8', timeout: RUN_TIMEOUT_MS });
    const code = (r.error as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT') continue;
    const timedOut = code === 'ETIMEDOUT' ? `${program} did not finish within ${RUN_TIMEOUT_MS / 1000} s` : '';
    last = { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${timedOut}${r.error !== undefined && timedOut === '' ? r.error.message : ''}`, missing: false };
    break;
  }
  return last;
};

/** ufw when it is installed and active (its rules would otherwise fight ours), else nftables. */
export function detectBackend(run: Runner): { backend: FirewallBackend; reason: string } {
  const r = run('ufw', ['status']);
  if (r.missing) return { backend: 'nft', reason: 'ufw is not installed' };
  if (r.status === 0 && /^Status: active/m.test(r.stdout)) return { backend: 'ufw', reason: 'ufw is active' };
  return { backend: 'nft', reason: r.status === 0 ? 'ufw is not active' : 'ufw status failed (run as root to check it)' };
}

function failure(backend: FirewallBackend, what: string, r: RunResult): CareflowError {
  if (r.missing) return new CareflowError('FIREWALL_ERROR', `${backend} is not installed: ${INSTALL[backend]} (or choose the other with --backend)`, '--backend');
  const root = /not permitted|need to be root|permission denied/i.test(r.stderr) ? ' (run as root: sudo careflow firewall --apply)' : '';
  return new CareflowError('FIREWALL_ERROR', `${what}${root}: ${r.stderr.trim() || `exit status ${String(r.status)}`}`);
}

/** Loads the ruleset in one nft transaction: the careflow table is replaced, never duplicated. */
export function applyNft(plan: FirewallPlan, run: Runner): void {
  const r = run('nft', ['-f', '-'], nftRuleset(plan));
  if (r.missing || r.status !== 0) throw failure('nft', 'nft refused the ruleset', r);
}

/** Splits one `ufw show added` line into arguments (single-quoted words are ufw's only quoting). */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '');
}

/**
 * Deletes rules tagged `careflow` that the configuration no longer asks for (a changed port),
 * then runs the ufw commands; ufw itself skips rules it already has. Returns what was deleted.
 */
export function applyUfw(plan: FirewallPlan, run: Runner): string[] {
  const added = run('ufw', ['show', 'added']);
  if (added.missing || added.status !== 0) throw failure('ufw', 'ufw show added failed', added);
  const wanted = new Set(ufwAllowCommands(plan).map((args) => args.slice(0, 2).join(' ')));
  const deleted: string[] = [];
  for (const line of added.stdout.split('\n')) {
    const args = words(line.trim());
    if (args[0] !== 'ufw' || !args.includes('comment')) continue;
    const comment = args[args.indexOf('comment') + 1] ?? '';
    if (!comment.startsWith(`${UFW_COMMENT_PREFIX} `)) continue;
    const rule = args.slice(1, args.indexOf('comment'));
    if (wanted.has(rule.join(' '))) continue;
    const r = run('ufw', ['delete', ...rule]);
    if (r.status !== 0) throw failure('ufw', `ufw delete ${rule.join(' ')} failed`, r);
    deleted.push(rule.join(' '));
  }
  for (const args of ufwCommands(plan)) {
    const r = run('ufw', args);
    if (r.missing || r.status !== 0) throw failure('ufw', `${shellLine('ufw', args)} failed`, r);
  }
  return deleted;
}

export async function runFirewallCommand(args: readonly string[], config: Config, io: Output, run: Runner = runProgram): Promise<void> {
  const { values } = parseCommand(
    args,
    { apply: { type: 'boolean' }, backend: { type: 'string' }, json: { type: 'boolean' }, 'ssh-port': { type: 'string' } },
    { min: 0, max: 0 },
    USAGE,
  );
  const chosen = stringFlag(values, 'backend');
  if (chosen !== undefined && !FIREWALL_BACKENDS.includes(chosen as FirewallBackend)) {
    throw new CareflowError('USAGE', `--backend: expected nft or ufw, got ${JSON.stringify(chosen)}\nusage: ${USAGE}`, '--backend');
  }
  const { backend, reason } = chosen !== undefined ? { backend: chosen as FirewallBackend, reason: 'chosen with --backend' } : detectBackend(run);
  const sshPort = intFlag(values, 'ssh-port', DEFAULT_SSH_PORT, 65535);
  const plan = firewallPlan(config, { sshPort });
  const apply = values['apply'] === true;
  const commands = ufwCommands(plan).map((a) => shellLine('ufw', a));
  let deleted: string[] = [];
  if (apply) {
    if (backend === 'nft') applyNft(plan, run);
    else deleted = applyUfw(plan, run);
  }

  if (values['json'] === true) {
    io.out(JSON.stringify({
      backend, reason, applied: apply,
      rules: plan.rules.map((r) => ({ protocol: r.protocol, ports: portText(r), purpose: r.purpose })),
      notes: plan.notes,
      ...(backend === 'nft' ? { ruleset: nftRuleset(plan) } : { commands }),
      ...(deleted.length > 0 ? { deleted } : {}),
    }, null, 2));
    return;
  }
  if (!apply) {
    // The whole output is valid input for its tool: `nft -f` reads the comments as comments,
    // and the ufw variant is a shell script.
    io.out(`# Backend: ${backend} (${reason}; choose with --backend nft|ufw)`);
    io.out(planHeader(plan, backend) + (backend === 'nft' ? nftRuleset(plan).trimEnd() : commands.join('\n')));
    return;
  }
  io.out([
    backend === 'nft'
      ? `Applied with nftables (${reason}): table inet ${NFT_TABLE}, input policy drop; re-applying replaces it. Open:`
      : `Applied with ufw (${reason}): incoming denied by default. Open:`,
    ...describeRules(plan).map((l) => `  ${l}`),
    ...deleted.map((d) => `Deleted the old careflow rule: ufw ${d}`),
    ...plan.notes.map((n) => `Note: ${n}`),
    `SSH (${sshPort}/tcp) stays open so you do not lock yourself out; for another SSH port use --ssh-port N.`,
    backend === 'nft'
      ? 'This lasts until a reboot: run careflow firewall > /etc/careflow/firewall.nft and include it from /etc/nftables.conf (systemctl enable nftables).'
      : 'ufw keeps these rules across reboots.',
  ].join('\n'));
}
