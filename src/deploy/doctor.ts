/**
 * `careflow doctor` (issue 5, item 6): checks everything that breaks a deployment and says,
 * in plain words, how to fix each problem. The check groups live in ./doctor/ (system,
 * ports, addresses and DNS, certificate, clock, media, TURN); they ask the machine through
 * `DoctorProbes`, so the unit tests drive every branch and the CLI passes the real probes.
 *
 * The run passes when no check fails; warnings and skipped checks do not fail it.
 */
import type { Config } from '../config/schema.ts';
import { checkCertificate } from './doctor/certificate.ts';
import type { CheckGroup, CheckResult, CheckStatus, DoctorOptions, DoctorProbes } from './doctor/checks.ts';
import { checkClock, checkDataDir, checkNode } from './doctor/host.ts';
import { checkRtpEngine, checkRtpRange, checkTurn } from './doctor/media.ts';
import { checkAdvertised, checkDns, checkPorts, discoverPublicAddress } from './doctor/network.ts';

export type { CheckGroup, CheckResult, CheckStatus, DoctorOptions, DoctorProbes } from './doctor/checks.ts';
export { realProbes } from './doctor/probes.ts';

export const DEFAULT_TIMEOUT_MS = 2000;

export interface DoctorReport {
  /** True when no check failed. */
  readonly ok: boolean;
  readonly counts: Readonly<Record<CheckStatus, number>>;
  readonly checks: readonly CheckResult[];
}

export const GROUP_TITLES: Readonly<Record<CheckGroup, string>> = {
  system: 'System', ports: 'Ports', addresses: 'Addresses', dns: 'DNS', certificate: 'Certificate',
  clock: 'Clock', media: 'Media', turn: 'TURN',
};

/** Runs every check, the independent ones at the same time; results in a fixed order. */
export async function runDoctor(config: Config, options: DoctorOptions, probes: DoctorProbes): Promise<DoctorReport> {
  const t = options.timeoutMs;
  const publicAddress = discoverPublicAddress(config, options, probes);
  const groups = await Promise.all([
    checkDataDir(config.dataDir, probes).then((r) => [checkNode(probes.nodeVersion), ...r]),
    checkPorts(config, probes, t),
    publicAddress.then(async (p) => [p.check, await checkAdvertised(config, p.address, probes, t)]),
    publicAddress.then(async (p) => [await checkDns(config, p.address, probes, t)]),
    checkCertificate(config, probes),
    checkClock(options.timeUrl, probes, t).then((r) => [r]),
    Promise.all([checkRtpRange(config, probes), checkRtpEngine(config, probes, t)]).then((r) => r.flat()),
    checkTurn(config, probes, t),
  ]);
  const checks = groups.flat();
  const counts: Record<CheckStatus, number> = { pass: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of checks) counts[c.status]++;
  return { ok: counts.fail === 0, counts, checks };
}

const MARK: Readonly<Record<CheckStatus, string>> = { pass: '✓', warn: '!', fail: '✗', skip: '-' };

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The checklist for people: one line per check under its group, the advice indented below. */
export function renderText(report: DoctorReport, heading: string): string {
  const lines = [heading];
  let group: CheckGroup | undefined;
  for (const c of report.checks) {
    if (c.group !== group) {
      group = c.group;
      lines.push('', GROUP_TITLES[group]);
    }
    lines.push(`  ${MARK[c.status]} ${c.message}`);
    if (c.fix !== undefined) lines.push(`      ${c.status === 'skip' ? 'note' : 'fix'}: ${c.fix}`);
  }
  const { pass, warn, fail, skip } = report.counts;
  lines.push('', `${report.ok ? 'OK' : 'FAILED'}: ${plural(pass, 'check')} passed, ${plural(warn, 'warning')}, ${fail} failed, ${skip} skipped`);
  return lines.join('\n');
}

/** `--json`: {ok, counts, checks: [{id, group, status, message, fix?}]}. */
export function renderJson(report: DoctorReport): string {
  return JSON.stringify(report, null, 2);
}
