// parseHead cuts header lines, names and values by index (src/sip/parser.ts). This checks it
// against the straightforward reading it replaced (split at /\r?\n/, name = text before the
// first colon with trailing whitespace trimmed, value = the rest trimmed, §7.3.1 folding) on
// random header sections: the same header fields, or the same error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalName, isToken } from '../../src/sip/headers.ts';
import { DEFAULT_LIMITS, type ParseLimits, parseHead, SipParseError } from '../../src/sip/parser.ts';

interface Reading {
  readonly headers: Array<{ name: string; value: string }>;
  readonly error: string | undefined;
}

/** The header lines of `head` as the line-splitting parser read them (its code, unchanged). */
function reference(head: string, limits: ParseLimits): Reading {
  const lines = head.split(/\r?\n/);
  const headers: Array<{ name: string; value: string }> = [];
  let current: { name: string; value: string } | undefined;
  const errors: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    if (line.length > limits.maxHeaderLineBytes) return { headers, error: 'Header line too long' };
    const c = line.charCodeAt(0);
    if (c === 0x20 || c === 0x09) {
      if (current === undefined) return { headers, error: 'Continuation line without header' };
      const more = line.trim();
      if (more !== '') current.value = current.value === '' ? more : `${current.value} ${more}`;
      if (current.value.length > limits.maxHeaderLineBytes) return { headers, error: 'Header line too long' };
      continue;
    }
    const colon = line.indexOf(':');
    const rawName = colon < 0 ? '' : line.slice(0, colon).trimEnd();
    if (colon <= 0 || !isToken(rawName)) {
      errors.push(`malformed header line "${line.slice(0, 40)}"`);
      current = undefined;
      continue;
    }
    current = { name: canonicalName(rawName), value: line.slice(colon + 1).trim() };
    headers.push(current);
    if (headers.length > limits.maxHeaders) return { headers, error: 'Too many headers' };
  }
  return { headers, error: errors[0] };
}

// Valid mandatory headers first; the random lines follow an X- header, so folding never
// touches a header that validate() reads, and no random name is one it reads (via, from, to,
// call-id, cseq, max-forwards, expires, contact, content-length, content-type or their compact forms).
const PREFIX = 'OPTIONS sip:a@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n'
  + 'From: <sip:b@example.org>;tag=1\r\nTo: <sip:a@example.org>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nX-Anchor: a\r\n';
const PIECES = ['a', 'B', 'x-y', '-', '.', ':', ': ', ' ', '\t', '\r', '\n', '\r\n', '\u00a0', '\u3000', 'é', '"', '(', ',', '\u3a61', 'Subject', 'k', '::'];

const NAMES = ['a', 'B', 'x-y', 'k', 'Subject', 'X-Y.z', 'Ab'];
const SPACES = ['', '', ' ', '\t', '  ', '\u00a0'];

function pick(r: () => number, from: readonly string[]): string {
  return from[Math.floor(r() * from.length)]!;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

test('parseHead reads random header lines as the line-splitting parser did (20,000 cases)', () => {
  const r = lcg(20261128);
  const small: ParseLimits = { ...DEFAULT_LIMITS, maxHeaderLineBytes: 24, maxHeaders: 12 };
  let errors = 0;
  for (let n = 0; n < 20000; n++) {
    const limits = n % 4 === 0 ? small : DEFAULT_LIMITS;
    let junk = '';
    const lines = 1 + Math.floor(r() * 8);
    for (let l = 0; l < lines; l++) {
      // Half the lines start as a header field (a name, optional whitespace, a colon), half as anything.
      if (r() < 0.5) junk += pick(r, NAMES) + pick(r, SPACES) + ':' + pick(r, SPACES);
      else if (r() < 0.2) junk += pick(r, [' ', '\t']); // a continuation line
      const len = Math.floor(r() * 8);
      for (let k = 0; k < len; k++) junk += pick(r, PIECES);
      junk += r() < 0.8 ? '\r\n' : '\n';
    }
    const head = PREFIX + junk;
    const want = reference(head, limits);
    let got: Reading;
    try {
      const msg = parseHead(head, limits);
      got = { headers: msg.headers.map((h) => ({ name: h.name, value: h.value })), error: undefined };
    } catch (e) {
      if (!(e instanceof SipParseError)) throw e;
      got = { headers: want.headers, error: e.message };
      errors++;
    }
    assert.deepEqual(got, want, `case ${n}: ${JSON.stringify(head)}`);
  }
  // Both outcomes were exercised.
  assert.ok(errors > 1000 && errors < 19000, `${errors} of 20000 cases were errors`);
});
