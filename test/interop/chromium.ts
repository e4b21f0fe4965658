// Debian Chromium (/usr/bin/chromium) driven by playwright-core, for WebRTC interop tests.
//
// launchBrowser() starts ONE persistent context, i.e. one Chromium process with its own fresh
// profile (user data dir). All pages of a persistent context share cookies and localStorage,
// so call launchBrowser() once per simulated user: two users signed in at once need two
// launchBrowser() calls. See DESIGN.md "Known pitfalls": launchPersistentContext (plain
// launch() rejects --user-data-dir), headless: false plus --headless=new, a steady tone file
// for the fake microphone (toneWav) and --allow-loopback-in-peer-connection on a host whose
// only useful interface is lo.
//
// Every browser started here is closed when the test file ends (node:test `after`) and its
// process group is SIGKILLed when the Node process exits; every wait is bounded.
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_INSTALL = 'apt-get install -y chromium';
const LAUNCH_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 10_000;

const live = new Map<string, BrowserHandle>(); // by user data dir
const livePids = new Set<number>();
process.on('exit', () => {
  for (const pid of livePids) {
    // playwright starts the browser detached: it leads its own process group (renderers, GPU, ...)
    try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  for (const dir of live.keys()) { try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ } }
});
try {
  after(async () => { await Promise.all([...live.values()].map((b) => b.close())); });
} catch { /* not inside node:test: the exit hook still applies */ }

/** Fails (never skips) with the install command when Debian's chromium is missing. */
export function requireChromium(): void {
  try { accessSync(CHROMIUM_PATH, constants.X_OK); } catch {
    throw new Error(`chromium is missing: ${CHROMIUM_INSTALL}`);
  }
}

export interface ToneOptions { freqHz?: number; seconds?: number; rate?: number }

/** Writes a steady sine (16-bit PCM mono, half full scale) into `dir`; returns its path. */
export function toneWav(dir: string, opts: ToneOptions = {}): string {
  const freq = opts.freqHz ?? 440;
  const seconds = opts.seconds ?? 30;
  const rate = opts.rate ?? 48000;
  const n = Math.round(seconds * rate);
  const data = n * 2;
  const b = Buffer.alloc(44 + data);
  b.write('RIFF', 0, 'ascii');
  b.writeUInt32LE(36 + data, 4);
  b.write('WAVE', 8, 'ascii');
  b.write('fmt ', 12, 'ascii');
  b.writeUInt32LE(16, 16); // fmt chunk size
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(1, 22); // mono
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2, 28); // byte rate
  b.writeUInt16LE(2, 32); // block align
  b.writeUInt16LE(16, 34); // bits per sample
  b.write('data', 36, 'ascii');
  b.writeUInt32LE(data, 40);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(16383 * Math.sin((2 * Math.PI * freq * i) / rate)), 44 + 2 * i);
  const path = join(dir, `tone-${freq}hz-${rate}.wav`);
  writeFileSync(path, b);
  return path;
}

export interface LaunchOptions {
  /** WAV played by the fake microphone (see toneWav) */
  toneFile: string;
  extraArgs?: string[];
}

export interface BrowserHandle {
  context: BrowserContext;
  /** the Chromium browser process (leader of its process group), when found */
  pid: number | undefined;
  userDataDir: string;
  /** a tab of this context (same profile, same localStorage as the other tabs) */
  newPage(): Promise<Page>;
  /** closes the context, SIGKILLs the process group if it lingers, removes the profile */
  close(): Promise<void>;
}

export function chromiumArgs(toneFile: string, extra: string[] = []): string[] {
  return [
    // --no-zygote (needs --no-sandbox): otherwise the two zygotes outlive the browser on
    // close and linger as <defunct> children of PID 1 (seen by `pgrep chromium`) for a while
    '--headless=new', '--no-sandbox', '--no-zygote', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${toneFile}`,
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    ...extra,
  ];
}

/** The browser process playwright spawned for `userDataDir`: our child whose command line names it. */
function findBrowserPid(userDataDir: string): number | undefined {
  let entries: string[];
  try { entries = readdirSync('/proc'); } catch { return undefined; }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes(`--user-data-dir=${userDataDir}`)) return Number(e);
    } catch { /* exited meanwhile */ }
  }
  return undefined;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

function bounded<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<'timeout'>((r) => { t = setTimeout(() => r('timeout'), ms); })]).finally(() => clearTimeout(t));
}

/** One Chromium process with a fresh profile: call once per simulated user. */
export async function launchBrowser(opts: LaunchOptions): Promise<BrowserHandle> {
  requireChromium();
  const userDataDir = mkdtempSync(join(tmpdir(), 'careflow-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: false, // --headless=new below; playwright's headless mode would add its own flags
      args: chromiumArgs(opts.toneFile, opts.extraArgs),
      permissions: ['microphone'],
      timeout: LAUNCH_TIMEOUT_MS,
    });
  } catch (e) {
    const pid = findBrowserPid(userDataDir);
    if (pid !== undefined) { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }
    rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(`chromium did not start within ${LAUNCH_TIMEOUT_MS} ms (${CHROMIUM_PATH}; ${CHROMIUM_INSTALL}): ${(e as Error).message}`);
  }
  const pid = findBrowserPid(userDataDir);
  if (pid !== undefined) livePids.add(pid);
  let closing: Promise<void> | undefined;
  const used = new WeakSet<Page>();
  const handle: BrowserHandle = {
    context, pid, userDataDir,
    async newPage() {
      // a persistent context opens with one blank tab: use it first
      const blank = context.pages().find((p) => p.url() === 'about:blank' && !used.has(p));
      const page = blank ?? await context.newPage();
      used.add(page);
      return page;
    },
    close() {
      closing ??= (async () => {
        await bounded(context.close().catch(() => undefined), CLOSE_TIMEOUT_MS);
        if (pid !== undefined) {
          for (let i = 0; i < 20 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
          if (alive(pid)) { try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } }
          livePids.delete(pid);
        }
        live.delete(userDataDir);
        rmSync(userDataDir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
  live.set(userDataDir, handle);
  return handle;
}

// ---------------------------------------------------------------- WebRTC stats

export interface SelectedPair {
  localType: string; remoteType: string;
  localAddress: string; localPort: number;
  remoteAddress: string; remotePort: number;
  protocol: string;
}

export interface AudioStats {
  /** false when window.careflow.pc() returned null (no call) */
  hasPc: boolean;
  inboundPackets: number;
  inboundBytes: number;
  audioLevel: number;
  totalAudioEnergy: number;
  outboundPackets: number;
  selectedPair: SelectedPair | null;
}

/** getStats() of `window.careflow.pc()` in the page: inbound/outbound audio and the selected ICE pair. */
export async function audioStats(page: Page): Promise<AudioStats> {
  // Runs in the page (type annotations are stripped by Node before playwright serializes it).
  return page.evaluate(async (): Promise<AudioStats> => {
    type Rec = Record<string, unknown> & { id: string; type: string };
    const cf = (globalThis as unknown as { careflow?: { pc?: () => { getStats(): Promise<Map<string, Rec>> } | null } }).careflow;
    const pc = typeof cf?.pc === 'function' ? cf.pc() : null;
    const out: AudioStats = { hasPc: pc !== null && pc !== undefined, inboundPackets: 0, inboundBytes: 0, audioLevel: 0, totalAudioEnergy: 0, outboundPackets: 0, selectedPair: null };
    if (pc === null || pc === undefined) return out;
    const report = await pc.getStats();
    const all: Rec[] = [];
    report.forEach((s) => { all.push(s); });
    const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
    const kind = (s: Rec): unknown => s.kind ?? s.mediaType;
    let pairId: string | undefined;
    for (const s of all) {
      if (s.type === 'inbound-rtp' && kind(s) === 'audio') {
        out.inboundPackets += num(s.packetsReceived);
        out.inboundBytes += num(s.bytesReceived);
        out.audioLevel = Math.max(out.audioLevel, num(s.audioLevel));
        out.totalAudioEnergy = Math.max(out.totalAudioEnergy, num(s.totalAudioEnergy));
      } else if (s.type === 'outbound-rtp' && kind(s) === 'audio') {
        out.outboundPackets += num(s.packetsSent);
      } else if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') {
        pairId ??= s.selectedCandidatePairId;
      }
    }
    const pair = (pairId !== undefined ? report.get(pairId) : undefined)
      ?? all.find((s) => s.type === 'candidate-pair' && s.nominated === true && s.state === 'succeeded');
    if (pair !== undefined) {
      const l = report.get(String(pair.localCandidateId));
      const r = report.get(String(pair.remoteCandidateId));
      if (l !== undefined && r !== undefined) {
        out.selectedPair = {
          localType: String(l.candidateType), remoteType: String(r.candidateType),
          localAddress: String(l.address ?? l.ip), localPort: num(l.port),
          remoteAddress: String(r.address ?? r.ip), remotePort: num(r.port),
          protocol: String(l.protocol),
        };
      }
    }
    return out;
  });
}

/** Polls audioStats() every 250 ms until `predicate` holds; throws with the last stats (bounded). */
export async function waitForStats(page: Page, predicate: (s: AudioStats) => boolean, timeoutMs = 10_000, what = 'audio stats'): Promise<AudioStats> {
  const deadline = Date.now() + timeoutMs;
  let last: AudioStats | undefined;
  let error: unknown;
  for (;;) {
    try {
      last = await audioStats(page);
      if (predicate(last)) return last;
    } catch (e) { error = e; }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last stats ${JSON.stringify(last)}` +
        `${error !== undefined ? `; last error ${String(error)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---------------------------------------------------------------- console capture

export interface ConsoleLog { lines(): string[]; text(): string }

/** Keeps the page's last 200 console messages, page errors and crashes, prefixed with `label`. */
export function attachConsole(page: Page, label: string): ConsoleLog {
  const lines: string[] = [];
  const push = (l: string): void => { lines.push(`[${label}] ${l}`); if (lines.length > 200) lines.shift(); };
  page.on('console', (m) => push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => push(`pageerror: ${e.stack ?? e.message}`));
  page.on('crash', () => push('page crashed'));
  page.on('requestfailed', (r) => push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`));
  return { lines: () => [...lines], text: () => lines.join('\n') };
}
