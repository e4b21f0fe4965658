// Proves the coturn harness (coturn.ts) with Chromium (chromium.ts), without CareFlow:
// a page served from http://127.0.0.1 (a secure context) gathers ICE candidates with
// iceTransportPolicy 'relay' against a local coturn using TURN REST API credentials.
// The right credential yields a relay candidate; a wrong one yields none (coturn answers 401).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachConsole, launchBrowser, requireChromium, toneWav, type BrowserHandle, type ConsoleLog } from './chromium.ts';
import { requireCoturn, startCoturn, turnRestCredentials, type CoturnHandle } from './coturn.ts';

const SECRET = 'careflow-test-secret';
const REALM = 'careflow.test';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>turn</title></head><body><script>
window.gather = (iceServers, timeoutMs) => new Promise((resolve) => {
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
  const candidates = [];
  const errors = [];
  let done = false;
  const finish = (why) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    pc.close();
    resolve({ candidates, errors, why });
  };
  const timer = setTimeout(() => finish('timeout'), timeoutMs);
  pc.onicecandidate = (e) => {
    if (e.candidate === null) finish('complete');
    else if (e.candidate.candidate) candidates.push(e.candidate.candidate);
  };
  pc.onicecandidateerror = (e) => errors.push({ url: e.url, errorCode: e.errorCode, errorText: e.errorText });
  pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') finish('complete'); };
  pc.addTransceiver('audio');
  pc.createOffer().then((o) => pc.setLocalDescription(o)).catch((err) => { errors.push({ errorText: String(err) }); finish('error'); });
});
</script></body></html>`;

interface Gathered { candidates: string[]; errors: { url?: string; errorCode?: number; errorText?: string }[]; why: string }

const tmp = mkdtempSync(join(tmpdir(), 'careflow-turn-'));
let http: Server | undefined;
let browser: BrowserHandle | undefined;
let turn: CoturnHandle;
let pageUrl: string;
let log: ConsoleLog | undefined;

before(async () => {
  requireChromium(); // both fail (never skip) with the install command
  requireCoturn();
  turn = await startCoturn({ secret: SECRET, realm: REALM });
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(PAGE);
  });
  http = server;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  if (addr === null || typeof addr !== 'object') throw new Error('http server has no port');
  pageUrl = `http://127.0.0.1:${addr.port}/`;
  browser = await launchBrowser({ toneFile: toneWav(tmp, { seconds: 2 }) });
});

after(async () => {
  await browser?.close();
  await turn?.stop();
  await new Promise<void>((r) => { if (http === undefined) r(); else http.close(() => r()); http?.closeAllConnections(); });
  rmSync(tmp, { recursive: true, force: true });
});

async function gather(username: string, credential: string): Promise<Gathered> {
  if (browser === undefined) throw new Error('no browser');
  const page = await browser.newPage();
  log = attachConsole(page, 'turn');
  try {
    await page.goto(pageUrl, { timeout: 10_000 });
    const iceServers = [{ urls: turn.url, username, credential }];
    // gathering is bounded to 10 s in the page; playwright's evaluate is bounded by that
    return await page.evaluate(
      ({ servers, ms }) => (globalThis as unknown as { gather(s: unknown, ms: number): Promise<Gathered> }).gather(servers, ms),
      { servers: iceServers, ms: 10_000 });
  } finally {
    await page.close();
  }
}

const failWith = (what: string, g: Gathered): string =>
  `${what}: ${JSON.stringify(g)}\n--- page console ---\n${log?.text() ?? ''}\n--- coturn ---\n${turn.logs().slice(-4000)}`;

test('turnRestCredentials computes the coturn REST API format', () => {
  const c = turnRestCredentials('s3cret', 'alice', 3600, 1_700_000_000_000);
  assert.equal(c.username, '1700003600:alice');
  // echo -n 1700003600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
  assert.equal(c.credential, 'YAFdW/YDZewZsR1QSgUk2IrfbRI=');
  assert.notEqual(turnRestCredentials('other', 'alice', 3600, 1_700_000_000_000).credential, c.credential);
});

test('chromium gets a relay candidate from coturn with REST credentials', { timeout: 60_000 }, async () => {
  const { username, credential } = turnRestCredentials(SECRET, 'alice', 600);
  const g = await gather(username, credential);
  const relay = g.candidates.filter((c) => / typ relay( |$)/.test(c));
  assert.ok(relay.length > 0, failWith('no relay candidate', g));
  for (const c of relay) assert.match(c, / 127\.0\.0\.1 \d+ typ relay/, failWith('relay candidate not on 127.0.0.1', g));
  const port = Number(/ 127\.0\.0\.1 (\d+) typ relay/.exec(relay[0] ?? '')?.[1]);
  assert.ok(port >= turn.minPort && port <= turn.maxPort, failWith(`relay port ${port} outside ${turn.minPort}-${turn.maxPort}`, g));
  assert.ok(g.candidates.every((c) => / typ relay( |$)/.test(c)), failWith('only relay candidates with policy relay', g));
});

test('chromium gets no relay candidate with a wrong credential', { timeout: 60_000 }, async () => {
  const { username } = turnRestCredentials(SECRET, 'mallory', 600);
  const wrong = turnRestCredentials('not-the-secret', 'mallory', 600).credential;
  const g = await gather(username, wrong);
  assert.equal(g.candidates.filter((c) => / typ relay( |$)/.test(c)).length, 0, failWith('relay candidate with a wrong credential', g));
  assert.ok(g.errors.some((e) => e.errorCode === 401), failWith('no 401 icecandidateerror', g));
});

test('chromium gets no relay candidate with expired credentials', { timeout: 60_000 }, async () => {
  const { username, credential } = turnRestCredentials(SECRET, 'late', -60);
  const g = await gather(username, credential);
  assert.equal(g.candidates.filter((c) => / typ relay( |$)/.test(c)).length, 0, failWith('relay candidate with an expired username', g));
  assert.ok(g.errors.some((e) => e.errorCode === 401), failWith('no 401 icecandidateerror', g));
});
