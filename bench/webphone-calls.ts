// Browser-to-browser call setup through CareFlow, measured in two real Chromium web phones.
//
//   node_modules/.bin/node bench/webphone-calls.ts [--calls 30] [--mode small|fast]
//
// Starts the server (its own process, fresh data dir, loopback ports), signs two web phones
// in (Debian Chromium, tone microphone), makes B answer automatically as soon as the
// incoming-call screen shows, and has A call B again and again. Per call it records, from
// JsSIP's events and the pages' clocks (both pages share the machine's clock: epoch ms =
// performance.timeOrigin + performance.now()):
//   dial -> confirmed   click on "Call" to the ACK (the call is up for A)
//   dial -> media       click to ICE connected on A (audio can flow)
//   INVITE -> 200       A sends the INVITE to A receives the 200 (includes B's answer work)
//   INVITE relay        A sends the INVITE to B receives it (our server's hop, WS in and out)
//   200 relay           B sends the 200 to A receives it (our server's hop back)
// and prints p50 / p90 / max per measure. Results go to $OUT (default
// /tmp/careflow-bench/webphone-<date>/results.json).
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startServer } from '../test/interop/harness.ts';
import { closePhone, expectState, openPhone, type Phone, signIn } from '../test/interop/webphone.ts';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '30' }, mode: { type: 'string', default: 'small' } } });
const CALLS = Number(values.calls);
const OUT = process.env['OUT'] ?? `/tmp/careflow-bench/webphone-${new Date().toISOString().replace(/[:.]/g, '-')}`;

interface Sample { dialToConfirmed: number; dialToMedia: number; inviteTo200: number; inviteRelay: number; okRelay: number }

// In-page instrumentation (runs in the browser; JsSIP objects through the app's test hook).
const HOOK_CALLER = `(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__bench = { calls: [] };
  window.careflow.ua().on('newRTCSession', ({ session }) => {
    if (session.direction !== 'outgoing') return;
    const rec = window.__bench.current;
    session.on('sending', () => { rec.inviteSent = now(); });
    session.on('accepted', () => { rec.okReceived = now(); });
    session.on('confirmed', () => { rec.confirmed = now(); });
    const watch = (pc) => pc.addEventListener('iceconnectionstatechange', () => {
      if ((pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') && rec.media === undefined) rec.media = now();
    });
    if (session.connection) watch(session.connection); else session.on('peerconnection', ({ peerconnection }) => watch(peerconnection));
  });
})()`;

const HOOK_CALLEE = `(() => {
  const now = () => performance.timeOrigin + performance.now();
  window.__bench = { calls: [] };
  window.careflow.ua().on('newRTCSession', ({ session }) => {
    if (session.direction !== 'incoming') return;
    const rec = { inviteReceived: now() };
    window.__bench.calls.push(rec);
    session.on('accepted', () => { rec.okSent = now(); });
  });
  // Answer as soon as the incoming-call screen shows (what a person does, minus the person).
  const incoming = document.querySelector('#incoming');
  new MutationObserver(() => { if (!incoming.hidden) document.querySelector('#answer').click(); })
    .observe(incoming, { attributes: true, attributeFilter: ['hidden'] });
})()`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

async function oneCall(a: Phone, b: Phone, number: string, i: number): Promise<Sample> {
  const dialed = (await a.page.evaluate(`(() => {
    window.__bench.current = {};
    window.__bench.calls.push(window.__bench.current);
    const t = performance.timeOrigin + performance.now();
    document.querySelector('#directory li[data-number="${number}"] button.call').click();
    return t;
  })()`)) as number;
  await expectState(a, '#call-state', 'confirmed', 20_000);
  await a.page.waitForFunction('window.__bench.current.media !== undefined', undefined, { timeout: 20_000 });
  const ra = (await a.page.evaluate('window.__bench.current')) as Record<string, number>;
  const rb = (await b.page.evaluate(`window.__bench.calls[${i}]`)) as Record<string, number>;
  await a.page.locator('#hangup').click();
  await expectState(a, '#notice', 'ended', 10_000, 'data-kind');
  await b.page.waitForFunction("document.querySelector('#incall')?.hasAttribute('hidden') === true", undefined, { timeout: 10_000 });
  await new Promise((r) => setTimeout(r, 300)); // let both UAs settle before the next call
  return {
    dialToConfirmed: ra['confirmed']! - dialed, dialToMedia: ra['media']! - dialed, inviteTo200: ra['okReceived']! - ra['inviteSent']!,
    inviteRelay: rb['inviteReceived']! - ra['inviteSent']!, okRelay: ra['okReceived']! - rb['okSent']!,
  };
}

async function main(): Promise<void> {
  const server = await startServer({ env: { CAREFLOW_MEMORY_MODE: values.mode ?? 'small' } });
  const base = `http://127.0.0.1:${server.httpPort}/`;
  const alice = await server.addUser('Bench Alice');
  const bob = await server.addUser('Bench Bob');
  const a = await openPhone('alice', base);
  const b = await openPhone('bob', base, 660);
  try {
    await signIn(a, alice.number, alice.password);
    await signIn(b, bob.number, bob.password);
    await a.page.evaluate(HOOK_CALLER);
    await b.page.evaluate(HOOK_CALLEE);
    await oneCall(a, b, bob.number, 0); // warm-up (JIT, first getUserMedia), not counted
    const samples: Sample[] = [];
    for (let i = 1; i <= CALLS; i++) samples.push(await oneCall(a, b, bob.number, i));
    const keys = Object.keys(samples[0]!) as Array<keyof Sample>;
    const rows = keys.map((k) => {
      const xs = samples.map((s) => s[k]);
      return { measure: k, p50: pct(xs, 50), p90: pct(xs, 90), max: Math.max(...xs) };
    });
    console.log(`browser-to-browser calls through CareFlow (${values.mode} memory mode), ${CALLS} calls after one warm-up`);
    console.log('measure              p50 ms   p90 ms   max ms');
    for (const r of rows) console.log(`${r.measure.padEnd(18)} ${r.p50.toFixed(1).padStart(8)} ${r.p90.toFixed(1).padStart(8)} ${r.max.toFixed(1).padStart(8)}`);
    mkdirSync(OUT, { recursive: true });
    writeFileSync(`${OUT}/results.json`, JSON.stringify({ calls: CALLS, mode: values.mode, rows, samples }, null, 2));
    console.log(`results: ${OUT}/results.json`);
  } finally {
    await closePhone(a);
    await closePhone(b);
    await server.stop();
  }
}

await main();
