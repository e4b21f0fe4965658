/**
 * The `careflow` command: dispatches to `serve` (src/cli/serve.ts), `user ...`, `calls`,
 * `firewall` (src/cli/firewall.ts) and `doctor` (src/cli/doctor.ts).
 * Exit codes: 0 ok, 1 runtime error, 2 usage or config error (the message names the flag
 * or field). Config flags are accepted by every command.
 */
import { AccountService } from '../accounts/account-service.ts';
import { CallLog } from '../calls/call-log.ts';
import { databasePath, ensureDataDir } from '../config/data-dir.ts';
import { CareflowError, isUsageError } from '../config/errors.ts';
import { loadConfig, processEnv, splitConfigArgs } from '../config/load.ts';
import type { Env } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { HELP, parseCommand } from './args.ts';
import { runCallsCommand, runUserCommand } from './commands.ts';
import { runDoctorCommand } from './doctor.ts';
import { runFirewallCommand } from './firewall.ts';
import type { Output } from './commands.ts';

interface ServeModule {
  runServe(config: Config): Promise<void>;
}

export interface CliIo extends Output {
  err(text: string): void;
}

const USER_SUBCOMMANDS = new Set(['add', 'list', 'show', 'passwd', 'disable', 'enable', 'remove', 'import']);

/** Runs one command line; returns the exit code. */
export async function runCli(argv: readonly string[], env: Env, io: CliIo): Promise<number> {
  try {
    const { config: configArgs, rest } = splitConfigArgs(argv);
    const [command, ...args] = rest;
    const wantsHelp = rest.includes('--help') || rest.includes('-h');
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      io.out(HELP['main'] ?? '');
      return command === undefined ? 2 : 0;
    }
    if (command !== 'serve' && command !== 'user' && command !== 'calls' && command !== 'firewall' && command !== 'doctor') {
      throw new CareflowError('USAGE', `unknown command ${JSON.stringify(command)}; commands are serve, user, calls, firewall, doctor (see careflow --help)`, command);
    }
    const sub = command === 'user' ? args[0] : undefined;
    if (wantsHelp) {
      io.out(HELP[command] ?? '');
      return 0;
    }
    if (command === 'user' && (sub === undefined || !USER_SUBCOMMANDS.has(sub))) {
      throw new CareflowError('USAGE', `${sub === undefined ? 'missing' : `unknown user subcommand ${JSON.stringify(sub)};`} user subcommands are ${[...USER_SUBCOMMANDS].join(', ')} (see careflow user --help)`, 'user');
    }

    if (command === 'serve') parseCommand(args, {}, { min: 0, max: 0 }, 'careflow serve [config flags]');
    const config = loadConfig({ argv: configArgs, env });
    if (command === 'serve') {
      // Loaded only for `serve` (the other commands do not need the SIP stack).
      const serve = (await import('./serve.ts')) as ServeModule;
      await serve.runServe(config);
      return 0;
    }
    if (command === 'doctor') return await runDoctorCommand(args, config, io);
    if (command === 'firewall') {
      await runFirewallCommand(args, config, io);
      return 0;
    }

    const secrets = ensureDataDir(config);
    const store = new SqliteStore(databasePath(config));
    try {
      const ctx = {
        config,
        accounts: new AccountService({ store, domain: config.domain, numbers: config.numbers }),
        callLog: new CallLog(store),
        adminToken: secrets.adminToken,
        io,
      };
      if (command === 'user') await runUserCommand(sub ?? '', args.slice(1), ctx);
      else await runCallsCommand(args, ctx);
    } finally {
      await store.close();
    }
    return 0;
  } catch (error) {
    if (error instanceof CareflowError) {
      io.err(`careflow: ${error.message}`);
      return isUsageError(error) ? 2 : 1;
    }
    io.err(`careflow: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  }
}

const io: CliIo = {
  out: (text) => void process.stdout.write(`${text}\n`),
  err: (text) => void process.stderr.write(`${text}\n`),
};
process.exitCode = await runCli(process.argv.slice(2), processEnv(), io);
