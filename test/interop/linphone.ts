// linphonec (Debian `linphone-cli`: liblinphone / belle-sip 5.1) driven from node:test.
//
// Each instance gets its own HOME in a temp dir with a minimal `linphonerc`, and is started
// as `linphonec -c <home>/linphonerc -d 6 -l <home>/linphonec.log` with its stdin on a pipe:
// linphonec reads its console commands from there (`ports`, `register`, `status register`,
// `unregister`, `quit`) and answers on stdout. belle-sip logs every SIP message it sends and
// receives, in full, to the log file; messages() parses them.
//
// Two quirks of linphonec 5.1.65 handled here:
// - it opens no SIP socket for the `sip_port` of the rc file at start (its first REGISTER
//   fails with "No listening point matching"); the console command `ports sip <port>`
//   applies the transports, so the driver sends it first and waits for belle-sip's
//   "Creating listening point ... on [sip:127.0.0.1:<port>;transport=UDP]";
// - `[sip] bind_address=127.0.0.1` keeps that socket on loopback (the default is [::0]).
// No sound card is needed to register: without one liblinphone only logs "Could not find a
// suitable soundcard" and carries on.
//
// Every linphonec started here is stopped (`quit`, then SIGTERM, then SIGKILL, by PID)
// when the test file ends (node:test `after`) and killed when the process exits; every
// wait is bounded.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { freeUdpPort } from './harness.ts';

export const LINPHONE_INSTALL = 'apt-get install -y linphone-cli';

const live = new Map<number, () => Promise<void>>();
process.on('exit', () => {
  for (const pid of live.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
try {
  after(async () => { await Promise.all([...live.values()].map((stop) => stop())); });
} catch { /* not inside node:test: the exit hook still applies */ }

let version: string | undefined;
/** Fails (never skips) with the install command when linphonec is missing; returns its version. */
export function requireLinphonec(): string {
  if (version !== undefined) return version;
  const r = spawnSync('linphonec', ['-v'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) throw new Error(`linphonec not found (${r.error.message}): install it with \`${LINPHONE_INSTALL}\``);
  const m = /version:\s*(\S+)/.exec(`${r.stdout}${r.stderr}`);
  if (m === null) throw new Error(`\`linphonec -v\` printed no version: ${r.stdout}${r.stderr}; install with \`${LINPHONE_INSTALL}\``);
  version = `linphonec ${m[1]}`;
  return version;
}

export interface LinphoneSipMessage {
  direction: 'sent' | 'received';
  /** the transport address of the other side as belle-sip logs it, e.g. UDP://127.0.0.1:5060 */
  peer: string;
  /** the raw message as logged (LF line ends) */
  text: string;
  firstLine: string;
  /** first value of a header, by name (case-insensitive) */
  header(name: string): string | undefined;
  /** every value of a header, in order */
  headers(name: string): string[];
}

export interface LinphoneOptions {
  /** a label for messages and the folder name */
  name: string;
  /** bound for start-up and for the SIP socket to open, default 10 s */
  readyTimeoutMs?: number;
}

export interface Linphonec {
  name: string;
  pid: number;
  /** the temp HOME (rc file, log, linphone's database) */
  home: string;
  rcFile: string;
  logFile: string;
  /** the local SIP UDP port, on 127.0.0.1 */
  sipPort: number;
  /** writes one console command line to linphonec's stdin */
  command(line: string): void;
  /**
   * `register <identity> <proxy> <password>`: adds an account with that password and
   * registers at once (the password is left out of describe()).
   */
  register(identity: string, proxy: string, password: string): void;
  /** sends `status register` until it prints "registered, identity=..." (bounded) */
  waitRegistered(timeoutMs?: number): Promise<string>;
  /** the first match of `re` in stdout at or after character `from` (bounded) */
  waitOutput(what: string, re: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
  /** the first match of `re` in the log file (polled, bounded) */
  waitLog(what: string, re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** every SIP message sent and received so far, from the log file */
  messages(): LinphoneSipMessage[];
  output(): string;
  log(): string;
  exited(): boolean;
  /** a summary for assertion messages: ports, SIP message flow, the end of stdout and log */
  describe(): string;
  /** `quit` (linphonec unregisters), SIGTERM after 3 s, SIGKILL 3 s later */
  stop(): Promise<void>;
}

function rcText(sipPort: number): string {
  return [
    '[sip]',
    'bind_address=127.0.0.1',
    'use_ipv6=0',
    `sip_port=${sipPort}`,
    'sip_tcp_port=0',
    'sip_tls_port=0',
    'register_only_when_network_is_up=0',
    'register_only_when_upnp_is_ok=0',
    'guess_hostname=0',
    '',
    '[video]',
    'capture=0',
    'display=0',
    '',
  ].join('\n');
}

// belle-sip: "<date> <time>:<ms> belle-sip-message-channel [0x..]: message sent to [UDP://h:p], size: [n] bytes"
// and "... received [n] new bytes from [UDP://h:p]:", each followed by the message itself.
const LOG_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} /;
const SENT = /message sent to \[([^\]]+)\], size: \[\d+\] bytes\s*$/;
const RECEIVED = /received \[\d+\] new bytes from \[([^\]]+)\]:\s*$/;

/** SIP messages from a belle-sip log (-d 6). */
export function parseLinphoneLog(log: string): LinphoneSipMessage[] {
  const out: LinphoneSipMessage[] = [];
  const lines = log.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (!LOG_LINE.test(line)) continue;
    const s = SENT.exec(line);
    const r = s === null ? RECEIVED.exec(line) : null;
    if (s === null && r === null) continue;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !LOG_LINE.test(lines[j] ?? ''); j++) body.push((lines[j] ?? '').replace(/\r$/, ''));
    i = j - 1;
    while (body.length > 0 && body[body.length - 1] === '') body.pop();
    if (body.length === 0) continue;
    out.push(makeMessage(s !== null ? 'sent' : 'received', (s ?? r)?.[1] ?? '', body.join('\n')));
  }
  return out;
}

function makeMessage(direction: 'sent' | 'received', peer: string, text: string): LinphoneSipMessage {
  const lines = text.split('\n');
  const values = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    if (line === '') break;
    const c = line.indexOf(':');
    if (c <= 0 || /^\s/.test(line)) continue;
    const key = line.slice(0, c).trim().toLowerCase();
    const list = values.get(key) ?? [];
    list.push(line.slice(c + 1).trim());
    values.set(key, list);
  }
  return {
    direction, peer, text, firstLine: lines[0] ?? '',
    header: (n) => values.get(n.toLowerCase())?.[0],
    headers: (n) => values.get(n.toLowerCase()) ?? [],
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readSafe(path: string): string {
  try { return readFileSync(path, 'utf8'); } catch { return ''; }
}

export async function startLinphonec(opts: LinphoneOptions): Promise<Linphonec> {
  requireLinphonec();
  const home = mkdtempSync(join(tmpdir(), `careflow-linphone-${opts.name.replace(/[^A-Za-z0-9]/g, '')}-`));
  // liblinphone keeps a database there; without the folder it logs an error (harmless)
  mkdirSync(join(home, '.local', 'share', 'linphone'), { recursive: true });
  const rcFile = join(home, 'linphonerc');
  const logFile = join(home, 'linphonec.log');
  const sipPort = await freeUdpPort();
  writeFileSync(rcFile, rcText(sipPort));
  const args = ['-c', rcFile, '-d', '6', '-l', logFile];
  writeFileSync(join(home, 'command'), `HOME=${home} linphonec ${args.join(' ')}\n`);

  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  delete env['DISPLAY'];
  const child = spawn('linphonec', args, { cwd: home, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot spawn linphonec: install it with \`${LINPHONE_INSTALL}\``);
  let out = '';
  const waiters = new Set<() => void>();
  const append = (d: string): void => {
    out = (out + d).slice(-500_000);
    for (const w of [...waiters]) w();
  };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  child.stdin.on('error', () => { /* linphonec gone: writes fail, exit info tells why */ });
  let exitInfo: string | undefined;
  child.on('error', (e) => { append(`\n[driver] spawn error: ${e.message}\n`); });
  const exited = new Promise<void>((res) => child.on('exit', (code, signal) => {
    exitInfo = `exit code ${code} signal ${signal}`;
    live.delete(pid);
    for (const w of [...waiters]) w();
    res();
  }));

  const sent: string[] = [];
  const secrets: string[] = [];
  const redact = (s: string): string => {
    let r = s.replace(/^(linphonec> )?register (\S+) (\S+) .*$/gm, '$1register $2 $3 ***');
    for (const p of secrets) r = r.split(p).join('***');
    return r;
  };

  let stopping: Promise<void> | undefined;
  const lp: Linphonec = {
    name: opts.name, pid, home, rcFile, logFile, sipPort,
    command(line) {
      sent.push(line);
      if (!child.stdin.destroyed) child.stdin.write(`${line}\n`);
    },
    register(identity, proxy, password) {
      if (/\s/.test(password)) throw new Error('linphonec `register` takes the password as one word: no blanks');
      secrets.push(password);
      lp.command(`register ${identity} ${proxy} ${password}`);
    },
    async waitRegistered(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const from = out.length;
        lp.command('status register');
        const m = await lp.waitOutput('a `status register` answer', /^(?:linphonec> )?(registered, identity=\S+ duration=\d+|registered=-?\d+|[^\n]*(?:failed|progress|No default proxy)[^\n]*)$/m, 3000, from)
          .catch(() => undefined);
        if (m?.[1]?.startsWith('registered, identity=') === true) return m[1];
        if (Date.now() > deadline) throw new Error(`${opts.name}: not registered within ${timeoutMs} ms (last status: ${m?.[1] ?? 'none'})`);
        await sleep(300);
      }
    },
    waitOutput(what, re, timeoutMs = 10_000, from = 0) {
      const flags = re.flags.replace('g', '');
      const rx = new RegExp(re.source, flags);
      return new Promise((res, rej) => {
        let timer: NodeJS.Timeout | undefined;
        const check = (): void => {
          const m = rx.exec(out.slice(from));
          if (m !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            res(m);
          } else if (exitInfo !== undefined) {
            clearTimeout(timer);
            waiters.delete(check);
            rej(new Error(`${opts.name}: linphonec ended (${exitInfo}) before ${what}`));
          }
        };
        timer = setTimeout(() => {
          waiters.delete(check);
          rej(new Error(`${opts.name}: no ${what} on stdout within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async waitLog(what, re, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(readSafe(logFile));
        if (m !== null) return m;
        if (Date.now() > deadline) throw new Error(`${opts.name}: no ${what} in ${logFile} within ${timeoutMs} ms`);
        await sleep(100);
      }
    },
    messages: () => parseLinphoneLog(readSafe(logFile)),
    output: () => out,
    log: () => readSafe(logFile),
    exited: () => exitInfo !== undefined,
    describe() {
      const flow = lp.messages().map((m) => `${m.direction === 'sent' ? '-->' : '<--'} ${m.firstLine}   (${m.peer})`).join('\n  ');
      return [
        `--- linphonec "${opts.name}" pid ${pid} (SIP 127.0.0.1:${sipPort}/UDP, HOME ${home}${exitInfo !== undefined ? `, ${exitInfo}` : ''})`,
        `command: HOME=${home} linphonec ${args.join(' ')}`,
        `console commands: ${redact(sent.join(' | ')) || 'none'}`,
        `SIP message flow:\n  ${flow || '(none)'}`,
        `last 3 KB of stdout/stderr:\n${redact(out).slice(-3072)}`,
        `last 4 KB of ${logFile}:\n${redact(lp.log()).slice(-4096)}`,
      ].join('\n');
    },
    stop() {
      if (stopping !== undefined) return stopping;
      stopping = (async () => {
        if (exitInfo === undefined) {
          lp.command('quit');
          const term = setTimeout(() => { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }, 3000);
          const kill = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 6000);
          await exited;
          clearTimeout(term);
          clearTimeout(kill);
        }
      })();
      return stopping;
    },
  };
  live.set(pid, () => lp.stop());

  // Ready: the console prompt, then the SIP socket (see the quirk above). Bounded.
  const readyMs = opts.readyTimeoutMs ?? 10_000;
  try {
    await lp.waitOutput('"linphonec>" prompt', /linphonec> /, readyMs);
    lp.command(`ports sip ${sipPort}`);
    await lp.waitOutput(`"Setting sip port to ${sipPort}"`, new RegExp(`Setting sip port to ${sipPort}\\b`), readyMs);
    await lp.waitLog(`listening point on 127.0.0.1:${sipPort}`,
      new RegExp(`Creating listening point \\[[^\\]]*\\] on \\[sip:127\\.0\\.0\\.1:${sipPort};transport=UDP\\]`), readyMs);
  } catch (e) {
    const d = lp.describe();
    await lp.stop();
    throw new Error(`linphonec "${opts.name}" did not start: ${(e as Error).message}\n${d}`);
  }
  return lp;
}
