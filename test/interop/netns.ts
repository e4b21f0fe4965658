// Private network namespaces for tests that change a firewall or need a real link.
//
// A namespace is held by a `sleep` started under `unshare -n` (and, with `privateFiles`,
// `-m` with private mounts: the listed host directories or files are replaced by throw-away
// copies, so a tool like ufw writes its state there and never on the host). Commands run
// inside with `nsenter -t PID`; every run checks first that PID's namespace is not ours, so a
// failed unshare can never make a test change the host's firewall. A namespace vanishes when
// its holder exits: the holder is killed by PID in `close()`, when the test file ends
// (node:test `after`) or the process exits, and its `sleep` ends by itself after 10 minutes.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after } from 'node:test';

const HOLD_SECONDS = 600;
const READY_MS = 10_000;
const RUN_MS = 60_000;

export interface RunOutput { readonly status: number | null; readonly stdout: string; readonly stderr: string }

export class Netns {
  readonly pid: number;
  readonly #holder: ChildProcess;
  readonly #copies: string | undefined;
  readonly #mounts: boolean;
  #closed = false;

  private constructor(holder: ChildProcess, copies: string | undefined) {
    this.#holder = holder;
    this.pid = holder.pid ?? -1;
    this.#copies = copies;
    this.#mounts = copies !== undefined;
  }

  /** A new namespace with `lo` up; `privateFiles` (absolute paths) get private copies. */
  static async create(privateFiles: readonly string[] = []): Promise<Netns> {
    let copies: string | undefined;
    const binds: string[] = [];
    if (privateFiles.length > 0) {
      copies = mkdtempSync(join(tmpdir(), 'careflow-netns-'));
      privateFiles.forEach((path, i) => {
        const copy = join(copies!, `${i}-${basename(path)}`);
        cpSync(path, copy, { recursive: true, preserveTimestamps: true });
        binds.push(`mount --bind '${copy}' '${path}'`);
      });
    }
    const flags = copies !== undefined ? ['-n', '-m', '--propagation', 'private'] : ['-n'];
    const script = ['ip link set lo up', ...binds, 'echo ready', `exec sleep ${HOLD_SECONDS}`].join(' && ');
    const holder = spawn('unshare', [...flags, '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    const ns = new Netns(holder, copies);
    LIVE.add(ns);
    let output = '';
    holder.stdout?.on('data', (d: Buffer) => void (output += d.toString()));
    holder.stderr?.on('data', (d: Buffer) => void (output += d.toString()));
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), READY_MS);
      const check = (): void => {
        if (output.includes('ready')) { clearTimeout(timer); resolve(true); }
      };
      holder.stdout?.on('data', check);
      holder.once('error', (e) => { output += String(e); clearTimeout(timer); resolve(false); });
      holder.once('exit', () => { clearTimeout(timer); resolve(output.includes('ready')); });
    });
    if (!ready || holder.exitCode !== null) {
      await ns.close();
      assert.fail(`cannot make a network namespace (needs root; apt-get install -y util-linux iproute2): ${output.trim()}`);
    }
    assert.notEqual(readlinkSync(`/proc/${ns.pid}/ns/net`), readlinkSync('/proc/self/ns/net'), 'the holder is not in a namespace of its own');
    return ns;
  }

  /** Runs a program inside the namespace, to completion, bounded by `timeoutMs`. */
  run(program: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): RunOutput {
    assert.ok(!this.#closed, 'namespace already closed');
    assert.notEqual(readlinkSync(`/proc/${this.pid}/ns/net`), readlinkSync('/proc/self/ns/net'), 'refusing to run outside a private namespace');
    const r = spawnSync('nsenter', ['-t', String(this.pid), '-n', ...(this.#mounts ? ['-m'] : []), '--', program, ...args], {
      input: options.input, env: options.env, encoding: 'utf8', timeout: options.timeoutMs ?? RUN_MS, maxBuffer: 16 * 1024 * 1024,
    });
    if (r.error !== undefined) return { status: null, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error.message}` };
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Like run(), but fails the test on a non-zero exit. */
  must(program: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
    const r = this.run(program, args, options);
    assert.equal(r.status, 0, `${program} ${args.join(' ')} failed in the namespace:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** Starts a long-running program inside; the caller stops it by PID. */
  spawn(program: string, args: readonly string[]): ChildProcess {
    return spawn('nsenter', ['-t', String(this.pid), '-n', '--', program, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Synchronous last resort at process exit. */
  kill(): void {
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
    if (this.#copies !== undefined) rmSync(this.#copies, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    LIVE.delete(this);
    if (this.#holder.exitCode === null && this.#holder.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.#holder.once('exit', () => resolve()));
      try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    if (this.#copies !== undefined) rmSync(this.#copies, { recursive: true, force: true });
  }
}

/**
 * Joins two namespaces with a veth pair: `a` gets `aAddress`, `b` gets `bAddress` (both /24).
 * The addresses exist only inside these namespaces.
 */
export function link(a: Netns, aAddress: string, b: Netns, bAddress: string): void {
  a.must('ip', ['link', 'add', 'cf-a', 'type', 'veth', 'peer', 'name', 'cf-b', 'netns', String(b.pid)]);
  a.must('ip', ['addr', 'add', `${aAddress}/24`, 'dev', 'cf-a']);
  a.must('ip', ['link', 'set', 'cf-a', 'up']);
  b.must('ip', ['addr', 'add', `${bAddress}/24`, 'dev', 'cf-b']);
  b.must('ip', ['link', 'set', 'cf-b', 'up']);
}

const LIVE = new Set<Netns>();
process.on('exit', () => {
  for (const ns of LIVE) ns.kill();
});
try {
  after(async () => { await Promise.all([...LIVE].map((ns) => ns.close())); });
} catch { /* not inside node:test: the exit hook still applies */ }
