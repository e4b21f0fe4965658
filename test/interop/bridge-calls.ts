// The browser <-> SIP phone scenario both media engines are held to (media-embedded.test.ts,
// media-rtpengine.test.ts): a web worker signed in to the web phone in Chromium (tone
// microphone) and a desk phone, baresip over UDP with auto-answer and a 700 Hz tone of its
// own, on a running server. The two calls, one each way, check the same things whatever the
// engine: the browser hears the phone through the engine's RTP ports (ICE with 127.0.0.1),
// baresip decoded Chromium's 440 Hz tone, the call log says answered / bridge with the right
// caller; each test file adds its engine's own checks through the hooks.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BaresipUa, assertHeardTone, makeTone, startBaresip } from './baresip.ts';
import { type AudioStats, waitForStats } from './chromium.ts';
import type { CareflowUser, ServerHandle } from './harness.ts';
import { dial, expectNotice, expectState, expectVisible, openPhone, type Phone, signIn } from './webphone.ts';



export interface BridgeCalls {
  readonly web: CareflowUser;
  readonly desk: CareflowUser;
  readonly phone: BaresipUa;
  readonly browser: Phone;
  /** The last call of the web worker in the call log. */
  lastCall(): Promise<{ disposition: string; mediaMode: string | null; callerUserId: number }>;
  /** The web phone dials the desk phone, talks, hangs up. */
  browserCallsPhone(checks: CallChecks): Promise<void>;
  /** The desk phone dials the web phone, which answers; the desk phone hangs up. */
  phoneCallsBrowser(checks: CallChecks): Promise<void>;
}

export interface CallChecks {
  /** The engine's RTP port range: the browser's selected ICE pair must end there. */
  readonly ports: { readonly min: number; readonly max: number };
  /** Run while the call is up (after the browser heard the phone), before hanging up. */
  readonly inCall?: (stats: AudioStats) => Promise<void> | void;
  /** Run when the call is over and logged: the engine released what the call held. */
  readonly released: () => Promise<void>;
}

export async function startBridgeCalls(server: ServerHandle, context: (phone: BaresipUa, browser: Phone) => string): Promise<BridgeCalls> {
  const web = await server.addUser('Web Worker');
  const desk = await server.addUser('Desk Phone');
  const tones = mkdtempSync(join(tmpdir(), 'careflow-bridge-'));
  makeTone(join(tones, 'desk.wav'), 700);
  const phone = await startBaresip({
    name: 'desk-udp', toneWav: join(tones, 'desk.wav'),
    account: { user: desk.sipUsername, domain: server.domain, password: desk.password, proxy: { host: '127.0.0.1', port: server.sipPort }, transport: 'udp', answermode: 'auto' },
  });
  const browser = await openPhone('web', `http://127.0.0.1:${server.httpPort}/`);
  await signIn(browser, web.number, web.password);
  const why = (): string => context(phone, browser);

  const lastCall = async (): Promise<{ disposition: string; mediaMode: string | null; callerUserId: number }> => {
    const body = await server.apiJson<{ calls: Array<{ disposition: string; mediaMode: string | null; callerUserId: number }> }>(`/api/calls?userId=${web.id}&limit=1`);
    const row = body.calls[0];
    assert.ok(row !== undefined, 'the call log has the call');
    return row;
  };

  /** The browser hears the phone, through the engine. */
  const browserHears = async (ports: CallChecks['ports']): Promise<AudioStats> => {
    const s = await waitForStats(browser.page, (x) => x.inboundPackets > 100 && x.totalAudioEnergy > 0, 15_000, 'browser hears the phone')
      .catch((e: Error) => assert.fail(`${e.message}\n${why()}`));
    assert.equal(s.selectedPair?.remoteAddress, '127.0.0.1', 'ICE with the media engine');
    assert.ok(s.selectedPair !== null && s.selectedPair.remotePort >= ports.min && s.selectedPair.remotePort <= ports.max,
      `media goes through the engine's RTP range ${ports.min}-${ports.max}: ${JSON.stringify(s.selectedPair)}`);
    return s;
  };

  /** After the call: baresip decoded Chromium's tone, the log says bridge, the engine let go. */
  const afterCall = async (before: string[], callerUserId: number, checks: CallChecks): Promise<void> => {
    await new Promise((r) => setTimeout(r, 300)); // sndfile closes its dump
    assertHeardTone(phone, before, 440, why);
    const row = await lastCall();
    assert.deepEqual([row.disposition, row.mediaMode, row.callerUserId], ['answered', 'bridge', callerUserId]);
    await checks.released();
  };

  return {
    web, desk, phone, browser, lastCall,
    async browserCallsPhone(checks) {
      const before = phone.received();
      const from = phone.events.length;
      await dial(browser, desk.number);
      await phone.waitEvent('CALL_ESTABLISHED', (e) => e.type === 'CALL_ESTABLISHED', 15_000, from).catch((e: Error) => assert.fail(`${e.message}\n${why()}`));
      await expectState(browser, '#call-state', 'confirmed', 15_000);
      const s = await browserHears(checks.ports);
      await new Promise((r) => setTimeout(r, 3000)); // talk
      await checks.inCall?.(s);
      await browser.page.locator('#hangup').click();
      await phone.waitEvent('CALL_CLOSED', (e) => e.type === 'CALL_CLOSED', 10_000, from);
      await afterCall(before, Number(web.id), checks);
    },
    async phoneCallsBrowser(checks) {
      const before = phone.received();
      const from = phone.events.length;
      const r = await phone.command('dial', `sip:${web.number}@127.0.0.1:${server.sipPort}`);
      assert.ok(r.ok, JSON.stringify(r.raw));
      await expectVisible(browser, '#incoming', 15_000);
      await browser.page.locator('#answer').click();
      await expectState(browser, '#call-state', 'confirmed', 15_000);
      const s = await browserHears(checks.ports);
      await phone.waitEvent('CALL_ESTABLISHED', (e) => e.type === 'CALL_ESTABLISHED', 10_000, from);
      await new Promise((r2) => setTimeout(r2, 3000)); // talk
      await checks.inCall?.(s);
      await phone.command('hangup');
      await expectNotice(browser, 'ended');
      await afterCall(before, Number(desk.id), checks);
    },
  };
}
