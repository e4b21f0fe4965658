/**
 * Doctor checks of the machine itself: the Node.js version, the data directory and its free
 * disk, and the clock.
 */
import { dirname } from 'node:path';
import { fail, pass, skip, warn, errorText, type CheckResult, type DirKind, type DoctorProbes, type HttpDateAnswer } from './checks.ts';

export const MIN_NODE_MAJOR = 24;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Below this much free disk the run fails: SQLite cannot write its journal, calls are not logged. */
export const DISK_FAIL_BYTES = 100 * MiB;
export const DISK_WARN_BYTES = GiB;
/** Clock skew: up to this much is fine (the Date header has one-second resolution). */
export const CLOCK_OK_MS = 5_000;
/** Beyond this the run fails: certificates, ACME and TURN credentials expire by the clock. */
export const CLOCK_FAIL_MS = 60_000;

export function formatBytes(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(1)} GiB` : `${Math.floor(bytes / MiB)} MiB`;
}

export function checkNode(version: string): CheckResult {
  const major = Number(/^v?(\d+)\./.exec(version)?.[1] ?? 0);
  if (major >= MIN_NODE_MAJOR) return pass('node', 'system', `Node.js ${version}`);
  return fail('node', 'system', `Node.js ${version} is too old: CareFlow needs Node.js ${MIN_NODE_MAJOR} or later`,
    'run `npm install` in the CareFlow directory (it installs Node.js 24 into node_modules/.bin) and start careflow with `npm start`, or install Node.js 24 (nodejs.org, NodeSource)');
}

/** The data directory (exists or can be created, writable) and the free space on its disk. */
export async function checkDataDir(dir: string, probes: DoctorProbes): Promise<CheckResult[]> {
  const kind = await probes.dirKind(dir);
  const chown = `sudo mkdir -p ${dir} && sudo chown <the user careflow runs as> ${dir}`;
  let existing = dir;
  let result: CheckResult;
  if (kind === 'not-dir') {
    return [fail('data-dir', 'system', `the data directory ${dir} is a file, not a directory`,
      'set CAREFLOW_DATA_DIR to a directory (careflow serve creates it), or move the file away')];
  } else if (kind === 'missing') {
    let above: DirKind = 'missing';
    while (above === 'missing' && existing !== dirname(existing)) {
      existing = dirname(existing);
      above = await probes.dirKind(existing);
    }
    if (above === 'not-dir') {
      return [fail('data-dir', 'system', `the data directory ${dir} cannot be created: ${existing} is a file`, 'set CAREFLOW_DATA_DIR to a directory path')];
    }
    result = (await probes.writable(existing))
      ? warn('data-dir', 'system', `the data directory ${dir} does not exist yet`,
        'careflow serve creates it at its first start; if you expected your data there, check CAREFLOW_DATA_DIR (or --data-dir)')
      : fail('data-dir', 'system', `the data directory ${dir} does not exist and cannot be created: ${existing} is not writable by this user`,
        `create it for the user careflow runs as: ${chown}`);
  } else {
    result = (await probes.writable(dir))
      ? pass('data-dir', 'system', `data directory ${dir} exists and is writable`)
      : fail('data-dir', 'system', `the data directory ${dir} is not writable by this user`,
        `give it to the user careflow runs as: sudo chown -R <that user> ${dir} (run careflow doctor as that user)`);
  }
  let free: number;
  try {
    free = await probes.freeBytes(existing);
  } catch (error) {
    return [result, warn('disk', 'system', `cannot tell the free disk space of ${existing}: ${errorText(error)}`, 'check it with `df -h`')];
  }
  const where = `on the disk of ${existing}`;
  const disk = free < DISK_FAIL_BYTES
    ? fail('disk', 'system', `only ${formatBytes(free)} free ${where}`,
      'free some space (journalctl --vacuum-size=100M, apt-get clean, old backups) or grow the disk: with a full disk the database cannot record registrations and calls')
    : free < DISK_WARN_BYTES
      ? warn('disk', 'system', `only ${formatBytes(free)} free ${where}`, 'free some space soon or grow the disk (1 GiB or more is comfortable)')
      : pass('disk', 'system', `${formatBytes(free)} free ${where}`);
  return [result, disk];
}

/** The local clock against an HTTP server's Date header (RFC 9110 §6.6.1). */
export async function checkClock(url: string | undefined, probes: DoctorProbes, timeoutMs: number): Promise<CheckResult> {
  const ntp = 'turn on time synchronisation: `timedatectl set-ntp true` (systemd-timesyncd) or install chrony';
  if (url === undefined) {
    return skip('clock', 'clock', 'clock not checked',
      'pass --time-url URL (any web server, e.g. https://deb.debian.org) to compare this clock with its Date header; certificates, ACME and TURN credentials depend on the clock');
  }
  let answer: HttpDateAnswer;
  try {
    answer = await probes.httpDate(url, timeoutMs);
  } catch (error) {
    return warn('clock', 'clock', `clock not checked: ${url} did not answer (${errorText(error)})`, 'give a reachable web server with --time-url');
  }
  const server = answer.date === undefined ? NaN : Date.parse(answer.date);
  if (Number.isNaN(server)) return warn('clock', 'clock', `clock not checked: ${url} sent no usable Date header`, 'give another web server with --time-url');
  // The header has one-second resolution: the server's time lay in [server, server + 1 s).
  const skew = (answer.sentAt + answer.receivedAt) / 2 - (server + 500);
  const seconds = Math.round(Math.abs(skew) / 1000);
  const how = `${seconds} s ${skew > 0 ? 'ahead of' : 'behind'} ${url}`;
  if (Math.abs(skew) <= CLOCK_OK_MS) return pass('clock', 'clock', `clock agrees with ${url} (within ${Math.max(1, seconds)} s)`);
  if (Math.abs(skew) <= CLOCK_FAIL_MS) return warn('clock', 'clock', `this clock is ${how}`, ntp);
  return fail('clock', 'clock', `this clock is ${how}: certificates, ACME and TURN credentials will be judged wrongly`, ntp);
}
