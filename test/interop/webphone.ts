// Drives the CareFlow web phone (served by the server under test) in Debian's Chromium:
// one browser profile per simulated user (localStorage is per profile), a steady tone as the
// microphone, and the UI contract of web/src (ids and data- attributes).
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { after } from 'node:test';
import { attachConsole, type BrowserHandle, type ConsoleLog, launchBrowser, toneWav } from './chromium.ts';

// Functions passed to page.evaluate run in the page; the repo's tsconfig has no DOM lib.
declare const document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null };

export interface Phone {
  readonly label: string;
  readonly page: Page;
  readonly browser: BrowserHandle;
  readonly console: ConsoleLog;
}

const browsers = new Set<BrowserHandle>();
try {
  after(async () => { await Promise.all([...browsers].map((b) => b.close())); });
} catch { /* outside node:test */ }

let tone: string | undefined;

/** A fresh browser profile with the web phone open at `baseUrl` (not signed in). */
export async function openPhone(label: string, baseUrl: string, freqHz = 440, extraArgs: string[] = []): Promise<Phone> {
  tone ??= toneWav(mkdtempSync(join(tmpdir(), 'careflow-tone-')), { freqHz, seconds: 60 });
  const browser = await launchBrowser({ toneFile: tone, extraArgs });
  browsers.add(browser);
  const page = await browser.newPage();
  const log = attachConsole(page, label);
  // Tests measure audio energy: no echo cancellation, noise suppression or gain control.
  await page.addInitScript(() => localStorage.setItem('careflow.audioProcessing', 'off'));
  await page.goto(baseUrl, { timeout: 15_000 });
  return { label, page, browser, console: log };
}

export async function closePhone(p: Phone): Promise<void> {
  browsers.delete(p.browser);
  await p.browser.close();
}

export async function signIn(p: Phone, login: string, password: string): Promise<void> {
  const { page } = p;
  await page.locator('#login').fill(login, { timeout: 10_000 });
  await page.locator('#password').fill(password);
  await page.locator('#signin-submit').click();
  await expectState(p, '#status', 'registered', 15_000);
}

/** Waits (bounded) until `selector` has `data-state` (or `attr`) equal to `value`; fails with the page log. */
export async function expectState(p: Phone, selector: string, value: string, timeoutMs = 10_000, attr = 'data-state'): Promise<void> {
  try {
    await p.page.waitForFunction(
      ([sel, a, v]) => document.querySelector(sel!)?.getAttribute(a!) === v,
      [selector, attr, value] as const,
      { timeout: timeoutMs, polling: 100 },
    );
  } catch (e) {
    const now = await p.page.evaluate(([sel, a]) => document.querySelector(sel!)?.getAttribute(a!) ?? '(absent)', [selector, attr] as const).catch(() => '?');
    assert.fail(`${p.label}: ${selector} [${attr}] did not become ${value} within ${timeoutMs} ms (it is ${now}): ${(e as Error).message}\n${p.console.text()}`);
  }
}

export async function expectVisible(p: Phone, selector: string, timeoutMs = 10_000): Promise<void> {
  try {
    await p.page.locator(selector).waitFor({ state: 'visible', timeout: timeoutMs });
  } catch (e) {
    assert.fail(`${p.label}: ${selector} not visible within ${timeoutMs} ms: ${(e as Error).message}\n${p.console.text()}`);
  }
}

export async function expectHidden(p: Phone, selector: string, timeoutMs = 10_000): Promise<void> {
  try {
    await p.page.locator(selector).waitFor({ state: 'hidden', timeout: timeoutMs });
  } catch (e) {
    assert.fail(`${p.label}: ${selector} still visible after ${timeoutMs} ms: ${(e as Error).message}\n${p.console.text()}`);
  }
}

/** The notice the phone shows (declined, unavailable, ended, ...). */
export async function expectNotice(p: Phone, kind: string, timeoutMs = 10_000): Promise<string> {
  await expectState(p, '#notice', kind, timeoutMs, 'data-kind');
  return (await p.page.locator('#notice').textContent()) ?? '';
}

/** Presence of a colleague in the directory, as the page shows it. */
export async function expectPresence(p: Phone, number: string, online: boolean, timeoutMs = 10_000): Promise<void> {
  await expectState(p, `#directory li[data-number="${number}"]`, String(online), timeoutMs, 'data-online');
}

export async function callFromDirectory(p: Phone, number: string): Promise<void> {
  await p.page.locator(`#directory li[data-number="${number}"] button.call`).click({ timeout: 5000 });
}

export async function dial(p: Phone, number: string): Promise<void> {
  await p.page.locator('#dial').fill(number, { timeout: 5000 });
  await p.page.locator('#dial-call').click();
}

/** What the page keeps in localStorage (to prove the password is not among it). */
export async function storage(p: Phone): Promise<string> {
  return p.page.evaluate(() => JSON.stringify({ ...localStorage }));
}
