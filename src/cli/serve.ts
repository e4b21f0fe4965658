// `careflow serve`: starts the server with the validated config, prints how to get going,
// and stops cleanly (registrations flushed, open calls recorded) on SIGTERM / SIGINT.
import type { Config } from '../config/schema.ts';
import { createLogger } from '../logger.ts';
import { startServer } from '../server.ts';
import { applyMemoryMode } from './memory-mode.ts';

export async function runServe(config: Config): Promise<void> {
  // A small server's memory is its budget (a 1 GB VM, a Raspberry Pi); a big one keeps V8's
  // speed with a capped young generation (src/cli/memory-mode.ts, bench/RESULTS.md).
  const memory = applyMemoryMode(config.memoryMode);
  const logger = createLogger(config.logLevel);
  logger.info(`careflow: memory mode ${memory.description} (CAREFLOW_MEMORY_MODE=${config.memoryMode})`);
  const server = await startServer(config, logger);
  const h = config.http.listen.host === '0.0.0.0' ? '127.0.0.1' : config.http.listen.host;
  process.stdout.write(
    [
      '',
      `CareFlow Voice is running. SIP domain: ${config.domain}, SIP port ${server.sipPort} (UDP and TCP).`,
      'Add a user:          careflow user add --name "Alice Smith"   (or: npm run careflow -- user add --name "Alice Smith")',
      `Connect a SIP phone: server ${config.domain}, port ${server.sipPort}, transport UDP or TCP,`,
      '                     username: the SIP username (careflow_<id>) or the number (care4w-...), password: as printed once by user add.',
      `HTTP API:            http://${h}:${server.httpPort}/api (admin token in ${config.dataDir}/secrets.json)`,
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      logger.info(`careflow: ${signal} received, stopping`);
      const force = setTimeout(() => process.exit(1), 10_000);
      force.unref();
      server.stop().then(resolve, (e: unknown) => {
        logger.error('shutdown failed', e);
        resolve();
      });
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}
