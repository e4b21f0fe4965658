// Mutation fuzzing of parseDatagram and StreamFramer, seeded from the torture corpora.
// Reproducible: a fixed seed (FUZZ_SEED to override) and a per-iteration PRNG, so a failure is
// replayed from (seed, iteration) alone; the failing input is also printed as base64.
// Allowed outcomes: a message or SipParseError; the lazy accessors of a parsed message may throw
// HeaderError / MissingHeaderError only. Any single parse over 50 ms (re-measured to rule out GC
// pauses) is a failure: that is catastrophic regex backtracking, a correctness bound.
// The fuzz loop runs in a worker so that a hang is caught (the main thread terminates it).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { loadCorpus, loadExtraSeeds } from '../conformance/corpus.ts';
import { type FrameEvent, StreamFramer } from '../../src/sip/framing.ts';
import { HeaderError } from '../../src/sip/headers.ts';
import { MissingHeaderError, type SipMessage } from '../../src/sip/message.ts';
import { parseDatagram, SipParseError } from '../../src/sip/parser.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eedc0de) >>> 0;
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 15000);
/** The worker stops early (and says so) after this long, keeping the test under 20 s. */
const SOFT_DEADLINE_MS = 14_000;
/** No answer from the worker by then: a hang. */
const HARD_TIMEOUT_MS = 20_000;
const SLOW_MS = 50;
const MAX_FAILURES = 5;

// ---- deterministic input generation -----------------------------------------------------

/** mulberry32: small, fast, good enough for fuzzing; returns a float in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function iterationSeed(seed: number, i: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0;
}

const INTERESTING = [':', ';', ',', '"', '<', '>', '\r', '\n', ' ', '\t', '%', '[', ']', '@', '\\', '=', '?', '/', '\0', '\xff', 'é', '\r\n ', '0', '-'];
const NUMBERS = ['-1', '0', '00000000000000000001', '4294967295', '4294967296', '99999999999', '65536', '1e3', '0x10', '', ' '];

interface Generated {
  readonly input: Buffer;
  /** Split points for the stream framer (ascending, within the input). */
  readonly splits: number[];
  readonly ops: string[];
}

function mutate(r: () => number, seeds: readonly Buffer[], buf: Buffer, ops: string[]): Buffer {
  const int = (n: number): number => Math.floor(r() * n);
  const pos = (): number => int(buf.length + 1);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const op = int(12);
  switch (op) {
    case 0: { // bit flips
      const out = Buffer.from(buf);
      const n = 1 + int(8);
      for (let k = 0; k < n && out.length > 0; k++) {
        const p = int(out.length);
        out[p] = out[p]! ^ (1 << int(8));
      }
      ops.push(`bitflip×${n}`);
      return out;
    }
    case 1: { // byte insert
      const p = pos();
      const ins = r() < 0.7 ? Buffer.from(pick(INTERESTING), 'latin1') : Buffer.from([int(256)]);
      ops.push(`insert@${p}`);
      return Buffer.concat([buf.subarray(0, p), ins, buf.subarray(p)]);
    }
    case 2: { // byte delete
      const p = pos();
      const n = 1 + int(16);
      ops.push(`delete@${p}+${n}`);
      return Buffer.concat([buf.subarray(0, p), buf.subarray(p + n)]);
    }
    case 3: { // chunk duplication
      const a = pos();
      const len = 1 + int(200);
      const at = pos();
      ops.push(`dup@${a}+${len}->${at}`);
      return Buffer.concat([buf.subarray(0, at), buf.subarray(a, a + len), buf.subarray(at)]);
    }
    case 4: { // truncation
      const p = pos();
      ops.push(`truncate@${p}`);
      return buf.subarray(0, p);
    }
    case 5: { // header line shuffle
      const s = buf.toString('latin1');
      const end = s.indexOf('\r\n\r\n');
      const head = end < 0 ? s : s.slice(0, end);
      const lines = head.split('\r\n');
      const from = r() < 0.8 ? 1 : 0;
      for (let k = lines.length - 1; k > from; k--) {
        const j = from + int(k - from + 1);
        [lines[k], lines[j]] = [lines[j]!, lines[k]!];
      }
      ops.push('shuffle');
      return Buffer.from(lines.join('\r\n') + (end < 0 ? '' : s.slice(end)), 'latin1');
    }
    case 6: { // huge repeat of a header line, or of a value
      const s = buf.toString('latin1');
      const lines = s.split('\r\n');
      const k = 1 + int(Math.max(1, lines.length - 1));
      const line = lines[k] ?? 'Via: SIP/2.0/UDP h;branch=z9hG4bK';
      if (r() < 0.5) {
        const n = 20 + int(400);
        lines.splice(k, 0, ...Array.from({ length: n }, () => line));
        ops.push(`repeat-line ${k}×${n}`);
      } else {
        const n = 100 + int(3000);
        const piece = line.slice(line.indexOf(':') + 1) || 'x';
        lines[k] = line + (r() < 0.5 ? ',' : '') + piece.repeat(Math.ceil(n / piece.length)).slice(0, n * 4);
        ops.push(`repeat-value ${k}×${n}`);
      }
      return Buffer.from(lines.join('\r\n'), 'latin1');
    }
    case 7: { // random CRLF injection
      let out = buf;
      const n = 1 + int(5);
      for (let j = 0; j < n; j++) {
        const p = int(out.length + 1);
        out = Buffer.concat([out.subarray(0, p), Buffer.from(pick(['\r\n', '\n', '\r', '\r\n\r\n', '\r\n ', '\n\n'])), out.subarray(p)]);
      }
      ops.push(`crlf×${n}`);
      return out;
    }
    case 8: { // splice with another corpus message
      const other = pick(seeds);
      const p = pos();
      const q = int(other.length + 1);
      ops.push(`splice@${p}/${q}`);
      return Buffer.concat([buf.subarray(0, p), other.subarray(q)]);
    }
    case 9: { // replace a number
      const s = buf.toString('latin1');
      const nums = [...s.matchAll(/\d+/g)];
      if (nums.length === 0) return buf;
      const m = pick(nums);
      ops.push(`number ${m[0]}`);
      return Buffer.from(s.slice(0, m.index) + pick(NUMBERS) + s.slice(m.index + m[0].length), 'latin1');
    }
    case 10: { // whitespace bloat (LWS backtracking)
      const p = pos();
      const n = 500 + int(16000);
      ops.push(`lws@${p}×${n}`);
      return Buffer.concat([buf.subarray(0, p), Buffer.alloc(n, r() < 0.7 ? 0x20 : 0x09), buf.subarray(p)]);
    }
    default: { // repeat one interesting character many times (unclosed quotes/brackets, escapes)
      const p = pos();
      const c = pick(['"', '<', '%', '\\', ';', ',', ':', '[', 'a', '\\"', '%4', ';a=', 'z9hG4bK']);
      const n = 200 + int(8000);
      ops.push(`char ${JSON.stringify(c)}×${n}`);
      return Buffer.concat([buf.subarray(0, p), Buffer.from(c.repeat(n), 'latin1'), buf.subarray(p)]);
    }
  }
}

export function generate(seeds: readonly Buffer[], seed: number, i: number): Generated {
  const r = prng(iterationSeed(seed, i));
  const base = seeds[Math.floor(r() * seeds.length)]!;
  const ops: string[] = [];
  let buf = base;
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) buf = mutate(r, seeds, buf, ops);
  if (buf.length > 70_000) buf = buf.subarray(0, 70_000);
  const splits: number[] = [];
  const ns = Math.floor(r() * 5);
  for (let k = 0; k < ns; k++) splits.push(Math.floor(r() * (buf.length + 1)));
  splits.sort((a, b) => a - b);
  return { input: buf, splits, ops };
}

function allSeeds(): Buffer[] {
  return [...loadCorpus().map((c) => c.bytes), ...loadExtraSeeds()];
}

// ---- checks ---------------------------------------------------------------------------------

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
}

/** Returns a failure description, or undefined when the message's accessors behave. */
function checkAccessors(m: SipMessage): string | undefined {
  const accessors: Array<[string, () => unknown]> = [
    ['via', () => m.via], ['cseq', () => m.cseq], ['from', () => m.from], ['to', () => m.to], ['callId', () => m.callId],
    ['fromTag', () => m.fromTag], ['toTag', () => m.toTag], ["getAll('contact')", () => m.getAll('contact')],
    ["getAll('via')", () => m.getAll('via')], ["first('route')", () => m.first('route')],
  ];
  for (const [name, get] of accessors) {
    try {
      get();
    } catch (e) {
      if (!(e instanceof HeaderError) && !(e instanceof MissingHeaderError)) return `accessor ${name} threw ${describeError(e)}`;
    }
  }
  try {
    m.toBuffer();
  } catch (e) {
    return `toBuffer threw ${describeError(e)}`;
  }
  return undefined;
}

type Outcome = { ok: true; summary: string } | { ok: false; failure: string };

function datagramOutcome(input: Buffer): Outcome {
  let m: SipMessage;
  try {
    m = parseDatagram(input);
  } catch (e) {
    if (e instanceof SipParseError) return { ok: true, summary: `reject ${e.status}` };
    return { ok: false, failure: `parseDatagram threw ${describeError(e)}` };
  }
  const bad = checkAccessors(m);
  if (bad !== undefined) return { ok: false, failure: `parseDatagram result: ${bad}` };
  // What we parsed and print again must parse again, to the same text.
  let again: SipMessage;
  const out = m.toBuffer();
  try {
    again = parseDatagram(out);
  } catch (e) {
    return { ok: false, failure: `re-parse of toBuffer() threw ${describeError(e)}\n${out.toString('base64')}` };
  }
  if (!again.toBuffer().equals(out)) return { ok: false, failure: 're-parse of toBuffer() is not a fixed point' };
  return { ok: true, summary: 'message' };
}

function framerEvents(chunks: Buffer[]): { events: string[] } | { failure: string } {
  const f = new StreamFramer();
  const events: FrameEvent[] = [];
  try {
    for (const c of chunks) events.push(...f.push(c));
  } catch (e) {
    return { failure: `StreamFramer.push threw ${describeError(e)}` };
  }
  const out: string[] = [];
  for (const e of events) {
    if (e.kind === 'message') {
      const bad = checkAccessors(e.message);
      if (bad !== undefined) return { failure: `framed message: ${bad}` };
      out.push(`message ${e.message.toBuffer().toString('base64')}`);
    } else if (e.kind === 'ping') out.push('ping');
    else {
      if (!(e.error instanceof SipParseError)) return { failure: `${e.kind} event without SipParseError` };
      out.push(`${e.kind} ${e.error.status}`);
    }
  }
  return { events: out };
}

function timed<T>(fn: () => T): { value: T; ms: number } {
  const t = performance.now();
  const value = fn();
  return { value, ms: performance.now() - t };
}

/** Runs fn; if it took over SLOW_MS, re-runs it to rule out a GC pause. Returns the minimum time. */
function minTime<T>(fn: () => T): { value: T; ms: number } {
  const first = timed(fn);
  let ms = first.ms;
  for (let k = 0; k < 3 && ms > SLOW_MS; k++) ms = Math.min(ms, timed(fn).ms);
  return { value: first.value, ms };
}

export function checkInput(g: Generated): { failure?: string; parsed: boolean } {
  const d = minTime(() => datagramOutcome(g.input));
  if (!d.value.ok) return { failure: d.value.failure, parsed: false };
  if (d.ms > SLOW_MS) return { failure: `parseDatagram took ${d.ms.toFixed(1)} ms (> ${SLOW_MS} ms)`, parsed: false };
  const chunks: Buffer[] = [];
  let last = 0;
  for (const s of g.splits) {
    chunks.push(g.input.subarray(last, s));
    last = s;
  }
  chunks.push(g.input.subarray(last));
  const whole = minTime(() => framerEvents([g.input]));
  if ('failure' in whole.value) return { failure: whole.value.failure, parsed: false };
  if (whole.ms > SLOW_MS) return { failure: `StreamFramer took ${whole.ms.toFixed(1)} ms (> ${SLOW_MS} ms)`, parsed: false };
  const split = minTime(() => framerEvents(chunks));
  if ('failure' in split.value) return { failure: split.value.failure, parsed: false };
  if (split.ms > SLOW_MS * chunks.length) return { failure: `StreamFramer (split) took ${split.ms.toFixed(1)} ms`, parsed: false };
  // Split invariance: the same bytes in other chunks give the same events.
  if (JSON.stringify(split.value.events) !== JSON.stringify(whole.value.events)) {
    return { failure: `framer events differ with splits ${JSON.stringify(g.splits)}:\n whole ${whole.value.events.map((e) => e.slice(0, 60)).join(' | ')}\n split ${split.value.events.map((e) => e.slice(0, 60)).join(' | ')}`, parsed: false };
  }
  return { parsed: d.value.summary === 'message' };
}

// ---- worker ---------------------------------------------------------------------------------

interface WorkerJob { readonly seed: number; readonly iterations: number; readonly deadlineMs: number; readonly progress: SharedArrayBuffer }
type WorkerReport =
  | { readonly type: 'fail'; readonly i: number; readonly failure: string; readonly ops: string[]; readonly splits: number[]; readonly input: string }
  | { readonly type: 'done'; readonly iterations: number; readonly parsed: number; readonly ms: number; readonly stoppedEarly: boolean };

function runWorker(job: WorkerJob): void {
  const progress = new Int32Array(job.progress);
  const seeds = allSeeds();
  const start = performance.now();
  let parsed = 0;
  let failures = 0;
  let i = 0;
  for (; i < job.iterations; i++) {
    if (performance.now() - start > job.deadlineMs) break;
    Atomics.store(progress, 0, i);
    const g = generate(seeds, job.seed, i);
    const r = checkInput(g);
    if (r.parsed) parsed++;
    if (r.failure !== undefined) {
      const report: WorkerReport = { type: 'fail', i, failure: r.failure, ops: g.ops, splits: g.splits, input: g.input.toString('base64') };
      parentPort!.postMessage(report);
      if (++failures >= MAX_FAILURES) break;
    }
  }
  const done: WorkerReport = { type: 'done', iterations: i, parsed, ms: performance.now() - start, stoppedEarly: i < job.iterations && failures < MAX_FAILURES };
  parentPort!.postMessage(done);
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === 'sip-fuzz') {
  runWorker((workerData as { job: WorkerJob }).job);
}

/** The input as base64; a long one is also written to a file so the log stays readable. */
function printInput(base64: string, i: number): string {
  if (base64.length <= 4096) return `input (base64): ${base64}`;
  const file = join(tmpdir(), `sip-fuzz-0x${SEED.toString(16)}-${i}.b64`);
  writeFileSync(file, base64 + '\n');
  return `input (base64, ${base64.length} chars, full text in ${file}; or FUZZ_SEED=0x${SEED.toString(16)} iteration ${i}): ${base64.slice(0, 4096)}...`;
}

// ---- the test -------------------------------------------------------------------------------

if (isMainThread) {
  test('the generator is deterministic', () => {
    const seeds = allSeeds();
    for (const i of [0, 1, 977]) {
      const a = generate(seeds, SEED, i);
      const b = generate(seeds, SEED, i);
      assert.ok(a.input.equals(b.input));
      assert.deepEqual(a.splits, b.splits);
    }
    assert.ok(!generate(seeds, SEED, 1).input.equals(generate(seeds, SEED, 2).input));
  });

  test('the unmutated corpus passes every fuzz check', () => {
    for (const buf of allSeeds()) {
      const r = checkInput({ input: buf, splits: [Math.floor(buf.length / 3), Math.floor(buf.length / 2)], ops: [] });
      assert.equal(r.failure, undefined, r.failure);
    }
  });

  test(`fuzz parseDatagram + StreamFramer from the torture corpus (seed 0x${SEED.toString(16)})`, { timeout: HARD_TIMEOUT_MS + 10_000 }, async () => {
    const progress = new SharedArrayBuffer(4);
    const job: WorkerJob = { seed: SEED, iterations: ITERATIONS, deadlineMs: SOFT_DEADLINE_MS, progress };
    const worker = new Worker(new URL(import.meta.url), { workerData: { role: 'sip-fuzz', job } });
    const failures: Array<Extract<WorkerReport, { type: 'fail' }>> = [];
    const result = await new Promise<Extract<WorkerReport, { type: 'done' }> | 'hang' | Error>((resolve) => {
      const timer = setTimeout(() => resolve('hang'), HARD_TIMEOUT_MS);
      worker.on('message', (m: WorkerReport) => {
        if (m.type === 'fail') failures.push(m);
        else {
          clearTimeout(timer);
          resolve(m);
        }
      });
      worker.on('error', (e) => {
        clearTimeout(timer);
        resolve(e);
      });
    });
    await worker.terminate();
    const lines: string[] = [];
    for (const f of failures) {
      lines.push(`FUZZ FAILURE seed=0x${SEED.toString(16)} iteration=${f.i} ops=[${f.ops.join(', ')}] splits=${JSON.stringify(f.splits)}`,
        `  ${f.failure.split('\n').slice(0, 8).join('\n  ')}`, `  ${printInput(f.input, f.i)}`);
    }
    if (result === 'hang') {
      const i = Atomics.load(new Int32Array(progress), 0);
      const g = generate(allSeeds(), SEED, i);
      lines.push(`FUZZ HANG seed=0x${SEED.toString(16)} iteration=${i} ops=[${g.ops.join(', ')}]: no result within ${HARD_TIMEOUT_MS} ms`,
        `  ${printInput(g.input.toString('base64'), i)}`);
    } else if (result instanceof Error) {
      lines.push(`fuzz worker crashed: ${describeError(result)}`);
    } else {
      console.log(`fuzz: seed 0x${SEED.toString(16)}, ${result.iterations} iterations in ${(result.ms / 1000).toFixed(1)} s ` +
        `(${result.parsed} parsed as messages, ${result.iterations - result.parsed} rejected)` +
        (result.stoppedEarly ? `; stopped at the ${SOFT_DEADLINE_MS / 1000} s budget before ${ITERATIONS}` : ''));
    }
    if (lines.length > 0) console.log(lines.join('\n'));
    assert.equal(lines.length, 0, lines.slice(0, 3).join('\n'));
  });
}
