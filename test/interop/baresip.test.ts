// Two real user agents nobody here wrote (Debian baresip-core 1.0) call each other through
// CareFlow: A registers over UDP with its SIP username, B over TCP with its NUMBER as the
// digest username (login by number). A calls B by number, B auto-answers, tones flow both
// ways peer to peer on loopback (the proxy passes the SDP unchanged), A hangs up; then
// B calls A, A answers with the ctrl_tcp `accept` command, B hangs up. Each side plays
// its own tone (A 440 Hz, B 660 Hz), so the audio each one receives must be loud and at
// the other side's frequency. The call log must hold both calls, answered, ended by
// the caller.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { startServer, waitFor, type CareflowUser, type ServerHandle } from './harness.ts';
import {
  BARESIP_MODULES, audioStats, makeTone, readWav, requireBaresip, startBaresip,
  type BaresipEvent, type BaresipUa,
} from './baresip.ts';

const TONE_A = 440;
const TONE_B = 660;
const TALK_MS = 4000;

let server: ServerHandle;
let version: string;
let userA: CareflowUser;
let userB: CareflowUser;
let uaA: BaresipUa;
let uaB: BaresipUa;
let mediaDir: string | undefined;
let failed = false;

interface StoredCall {
  callId: string; callerUserId: number | null; calleeUserId: number | null; callerUri: string; calleeUri: string;
  startedAt: number; answeredAt: number | null; endedAt: number | null; disposition: string; finalStatus: number;
  endedBy: string | null; mediaMode: string | null;
}

before(async () => {
  failed = true; // until the setup is complete: keep whatever it left for a look
  version = requireBaresip(); // fails (never skips) with the install command
  // baresip 1.0 (libre) gives up with ENOSYS ("Register: Function not implemented") on a
  // 401/407 that carries any challenge it cannot compute, even when an MD5 one comes first:
  // the default configuration (MD5 only) must work with it: no CAREFLOW_AUTH_ALGORITHMS here.
  server = await startServer();
  userA = await server.addUser('Baresip Alice');
  userB = await server.addUser('Baresip Bob');
  const media = mkdtempSync(join(tmpdir(), 'careflow-tones-'));
  mediaDir = media;
  makeTone(join(media, 'a.wav'), TONE_A);
  makeTone(join(media, 'b.wav'), TONE_B);
  const proxy = { host: '127.0.0.1', port: server.sipPort };
  uaA = await startBaresip({
    name: 'A-udp', toneWav: join(media, 'a.wav'),
    account: { user: userA.sipUsername, domain: server.domain, password: userA.password, proxy, transport: 'udp', answermode: 'manual' },
  });
  uaB = await startBaresip({
    name: 'B-tcp', toneWav: join(media, 'b.wav'),
    account: {
      user: userB.sipUsername, domain: server.domain, password: userB.password, authUser: userB.number,
      proxy, transport: 'tcp', answermode: 'auto',
    },
  });
  failed = false;
});

/** Everything a failure needs: the setup, both user agents and the server's log. */
function context(): string {
  return [
    `setup: ${version}, modules ${BARESIP_MODULES.join(',')}, CareFlow SIP 127.0.0.1:${server.sipPort} (UDP+TCP), HTTP ${server.httpPort}`,
    `A = ${userA.sipUsername} / ${userA.number} (id ${userA.id}) over UDP from 127.0.0.1:${uaA.sipPort}, auth user ${userA.sipUsername}`,
    `B = ${userB.sipUsername} / ${userB.number} (id ${userB.id}) over TCP from 127.0.0.1:${uaB.sipPort}, auth user ${userB.number}`,
    uaA.describe(),
    uaB.describe(),
    `--- last 4 KB of the server log\n${server.logs().slice(-4096)}`,
  ].join('\n');
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try { return await fn(); } catch (e) {
    assert.fail(`${what}: ${(e as Error).message}\n${context()}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const isCall = (type: string) => (e: BaresipEvent): boolean => e.type === type;

async function online(user: CareflowUser, want = true): Promise<void> {
  await waitFor(`${user.sipUsername} ${want ? 'online' : 'offline'}`, async () => {
    const u = await server.apiJson<{ online?: unknown }>(`/api/users/${user.id}`);
    return u.online === want ? true : undefined;
  }, 15_000, 200);
}

// Temp folders (baresip configs, recordings, tones) are kept when a test failed, for a look.
after(async () => {
  await Promise.all([uaA, uaB].map((ua) => ua?.stop()));
  if (failed) return;
  for (const dir of [uaA?.dir, uaB?.dir, mediaDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** A test that marks the run failed (keep the temp folders) when it throws. */
function check(name: string, fn: (t: TestContext) => Promise<void>): void {
  test(name, async (t) => {
    try { await fn(t); } catch (e) { failed = true; throw e; }
  });
}

/** Received audio on `ua` since the dumps in `before` must be the other side's tone; returns a summary. */
function assertHeard(ua: BaresipUa, before: string[], freq: number, from: string): string {
  const files = ua.received().filter((f) => !before.includes(f));
  assert.ok(files.length >= 1, `${ua.name} wrote no received-audio dump (sndfile *-dec.wav) for the call from ${from}\n${context()}`);
  const report: string[] = [];
  let best = { rms: 0, activeSeconds: 0, frequency: 0, dbfs: -Infinity, seconds: 0 };
  for (const f of files) {
    const w = readWav(f);
    const s = audioStats(w.samples, w.sampleRate);
    report.push(`${basename(f)}: ${w.sampleRate} Hz, ${s.seconds.toFixed(2)} s, RMS ${s.rms.toFixed(0)} (${s.dbfs.toFixed(1)} dBFS), ` +
      `active ${s.activeSeconds.toFixed(2)} s, ~${s.frequency.toFixed(0)} Hz`);
    if (s.activeSeconds > best.activeSeconds) best = s;
  }
  const detail = `${ua.name} received (from ${from}, expected ~${freq} Hz):\n  ${report.join('\n  ')}`;
  assert.ok(best.rms > 1000, `received audio is silent or nearly so (RMS ${best.rms.toFixed(0)} <= 1000): ${detail}\n${context()}`);
  assert.ok(best.activeSeconds >= 2, `less than 2 s of audible audio received: ${detail}\n${context()}`);
  assert.ok(Math.abs(best.frequency - freq) <= freq * 0.1, `received audio is not the other side's ${freq} Hz tone: ${detail}\n${context()}`);
  return detail;
}

async function callRecords(): Promise<StoredCall[]> {
  const body = await server.apiJson<{ calls: StoredCall[] }>('/api/calls');
  return body.calls;
}

/** caller dials callee by number; callee answers; talk; caller hangs up; returns what each side heard. */
async function call(caller: BaresipUa, callee: BaresipUa, calleeUser: CareflowUser, answer: 'auto' | 'accept'): Promise<string[]> {
  const fromCaller = caller.events.length;
  const fromCallee = callee.events.length;
  const recCaller = caller.received();
  const recCallee = callee.received();
  const target = `sip:${calleeUser.number}@127.0.0.1:${server.sipPort}`;

  const r = await step(`${caller.name} dial ${target}`, () => caller.command('dial', target));
  assert.ok(r.ok, `${caller.name}: ctrl_tcp dial ${target} refused: ${JSON.stringify(r.raw)}\n${context()}`);
  if (answer === 'accept') {
    // baresip emits CALL_INCOMING only when it does not answer by itself (answermode=manual)
    await step(`${callee.name} sees the incoming call`, () => callee.waitEvent('CALL_INCOMING', isCall('CALL_INCOMING'), 10_000, fromCallee));
    const a = await step(`${callee.name} accept`, () => callee.command('accept'));
    assert.ok(a.ok, `${callee.name}: ctrl_tcp accept refused: ${JSON.stringify(a.raw)}\n${context()}`);
  }
  await step(`${callee.name} call established`, () => callee.waitEvent('CALL_ESTABLISHED', isCall('CALL_ESTABLISHED'), 10_000, fromCallee));
  await step(`${caller.name} call established`, () => caller.waitEvent('CALL_ESTABLISHED', isCall('CALL_ESTABLISHED'), 10_000, fromCaller));
  await sleep(TALK_MS);
  assert.equal(caller.events.slice(fromCaller).some(isCall('CALL_CLOSED')), false, `${caller.name}: call closed during the talk time\n${context()}`);
  assert.equal(callee.events.slice(fromCallee).some(isCall('CALL_CLOSED')), false, `${callee.name}: call closed during the talk time\n${context()}`);

  const h = await step(`${caller.name} hangup`, () => caller.command('hangup'));
  assert.ok(h.ok, `${caller.name}: ctrl_tcp hangup refused: ${JSON.stringify(h.raw)}\n${context()}`);
  await step(`${caller.name} call closed`, () => caller.waitEvent('CALL_CLOSED', isCall('CALL_CLOSED'), 10_000, fromCaller));
  await step(`${callee.name} call closed (BYE through the proxy)`, () => callee.waitEvent('CALL_CLOSED', isCall('CALL_CLOSED'), 10_000, fromCallee));
  await sleep(300); // sndfile closes its dumps when the audio stream is freed

  return [
    assertHeard(callee, recCallee, caller === uaA ? TONE_A : TONE_B, caller.name),
    assertHeard(caller, recCaller, callee === uaA ? TONE_A : TONE_B, callee.name),
  ];
}

/** Waits for the call record from `caller` to `callee` with a Call-ID not in `known`. */
async function newRecord(caller: CareflowUser, callee: CareflowUser, known: Set<string>): Promise<StoredCall> {
  let seen: StoredCall[] = [];
  try {
    return await waitFor(`the call record ${caller.sipUsername} -> ${callee.sipUsername}`, async () => {
      seen = await callRecords();
      return seen.find((c) => !known.has(c.callId) && String(c.callerUserId) === caller.id && String(c.calleeUserId) === callee.id);
    }, 5000, 200);
  } catch (e) {
    assert.fail(`${(e as Error).message}; GET /api/calls: ${JSON.stringify(seen, null, 1)}\n${context()}`);
  }
}

function assertAnswered(rec: StoredCall, what: string): void {
  const msg = `${what}: ${JSON.stringify(rec)}\n${context()}`;
  assert.equal(rec.disposition, 'answered', msg);
  assert.equal(rec.finalStatus, 200, msg);
  assert.equal(typeof rec.answeredAt, 'number', msg);
  assert.equal(typeof rec.endedAt, 'number', msg);
  assert.ok((rec.answeredAt ?? 0) >= rec.startedAt && (rec.endedAt ?? 0) >= (rec.answeredAt ?? Infinity), `timings out of order: ${msg}`);
  const talk = (rec.endedAt ?? 0) - (rec.answeredAt ?? 0);
  assert.ok(talk >= TALK_MS - 500 && talk <= TALK_MS + 10_000, `talk time ${talk} ms, expected about ${TALK_MS} ms: ${msg}`);
  assert.equal(rec.endedBy, 'caller', msg);
  // Two phones on the same host, both reachable where their SDP says: audio goes directly.
  assert.equal(rec.mediaMode, 'direct', msg);
}

check('both baresip user agents register: A over UDP by SIP username, B over TCP by number', async (t) => {
  await step(`A (${userA.sipUsername}, UDP) online`, () => online(userA));
  await step(`B (${userB.sipUsername}, TCP, auth user ${userB.number}) online`, () => online(userB));
  const devices = await server.apiJson<{ devices: unknown[] }>(`/api/users/${userB.id}/devices`);
  assert.match(JSON.stringify(devices), /tcp/i, `B's binding does not say TCP: ${JSON.stringify(devices)}\n${context()}`);
  t.diagnostic(`${version}; CareFlow SIP 127.0.0.1:${server.sipPort}; A UDP from :${uaA.sipPort}, B TCP from :${uaB.sipPort}; B's devices ${JSON.stringify(devices)}`);
});

check('A (UDP) calls B (TCP) by number, B auto-answers, tones flow both ways, A hangs up; the call log has it', async (t) => {
  const known = new Set((await callRecords()).map((c) => c.callId));
  for (const line of await call(uaA, uaB, userB, 'auto')) t.diagnostic(line);
  const rec = await newRecord(userA, userB, known);
  assertAnswered(rec, 'call record A -> B');
  t.diagnostic(`call record: ${JSON.stringify(rec)}`);
});

check('B (TCP) calls A (UDP) by number, A accepts, tones flow both ways, B hangs up; the call log has it', async (t) => {
  const known = new Set((await callRecords()).map((c) => c.callId));
  for (const line of await call(uaB, uaA, userA, 'accept')) t.diagnostic(line);
  const rec = await newRecord(userB, userA, known);
  assertAnswered(rec, 'call record B -> A');
  t.diagnostic(`call record: ${JSON.stringify(rec)}`);
});

check('both user agents unregister when they quit (REGISTER Expires 0 over UDP and TCP)', async () => {
  await Promise.all([uaA.stop(), uaB.stop()]);
  await step(`A (${userA.sipUsername}, UDP) offline after baresip quit`, () => online(userA, false));
  await step(`B (${userB.sipUsername}, TCP) offline after baresip quit`, () => online(userB, false));
});
