// `careflow serve`: starts the server with the validated config, prints how to get going,
// and stops cleanly (registrations flushed, open calls recorded) on SIGTERM / SIGINT.
import { totalmem } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../logger.ts';
import { startServer } from '../server.ts';

export async function runServe(config: Config): Promise<void> {
  // A small server's memory is its budget (a 1 GB VM, a Raspberry Pi): let V8 keep its heap
  // close to the live data instead of growing it for throughput. Measured right after
  // registering 100,000 phones: RSS 392 MiB (fast) vs 227 MiB (small); at 1,000 calls/s small
  // mode used 91 % of a core against 80 % (bench/RESULTS.md).
  const small = config.memoryMode === 'small' || (config.memoryMode === 'auto' && totalmem() <= 4 * 1024 ** 3);
  if (small) setFlagsFromString('--optimize-for-size');
  const logger = createLogger(config.logLevel);
  logger.info(`careflow: memory mode ${small ? 'small (V8 --optimize-for-size)' : 'fast'} (CAREFLOW_MEMORY_MODE=${config.memoryMode})`);
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
