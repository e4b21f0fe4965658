/**
 * `careflow doctor [--json] [--public-ip ADDR] [--timeout-ms N] [--time-url URL]`: checks the
 * deployment (src/deploy/doctor.ts) and prints a checklist, each failure with how to fix it.
 * Returns the exit code: 0 when nothing failed (warnings allowed), 1 otherwise.
 */
import { isIP } from 'node:net';
import { CareflowError } from '../config/errors.ts';
import type { Config } from '../config/schema.ts';
import { DEFAULT_TIMEOUT_MS, realProbes, renderJson, renderText, runDoctor, type DoctorProbes } from '../deploy/doctor.ts';
import { intFlag, parseCommand, stringFlag } from './args.ts';
import type { Output } from './commands.ts';

const USAGE = 'careflow doctor [--json] [--public-ip ADDR] [--timeout-ms N] [--time-url URL] [config flags]';

export async function runDoctorCommand(args: readonly string[], config: Config, io: Output, probes: DoctorProbes = realProbes()): Promise<number> {
  const { values } = parseCommand(
    args,
    { json: { type: 'boolean' }, 'public-ip': { type: 'string' }, 'timeout-ms': { type: 'string' }, 'time-url': { type: 'string' } },
    { min: 0, max: 0 },
    USAGE,
  );
  const publicIp = stringFlag(values, 'public-ip');
  if (publicIp !== undefined && isIP(publicIp) === 0) {
    throw new CareflowError('USAGE', `--public-ip: expected an IP address like 203.0.113.7, got ${JSON.stringify(publicIp)}\nusage: ${USAGE}`, '--public-ip');
  }
  const timeUrl = stringFlag(values, 'time-url');
  if (timeUrl !== undefined && !/^https?:\/\/[^/\s]+/.test(timeUrl)) {
    throw new CareflowError('USAGE', `--time-url: expected an http(s) URL like https://deb.debian.org, got ${JSON.stringify(timeUrl)}\nusage: ${USAGE}`, '--time-url');
  }
  const timeoutMs = intFlag(values, 'timeout-ms', DEFAULT_TIMEOUT_MS, 60_000);
  const report = await runDoctor(config, {
    timeoutMs,
    ...(publicIp !== undefined ? { publicIp } : {}),
    ...(timeUrl !== undefined ? { timeUrl } : {}),
  }, probes);
  if (values['json'] === true) {
    io.out(renderJson(report));
  } else {
    const source = config.configFile !== undefined ? `config ${config.configFile}` : 'config from the environment and defaults';
    io.out(renderText(report, `careflow doctor: domain ${config.domain}, ${source}, data ${config.dataDir}`));
  }
  return report.ok ? 0 : 1;
}
