// Loads the SIP torture corpora (RFC 4475, RFC 5118 wire form) from ../shared/conformance,
// driven by their index.json manifests; checks every file against the manifest's sha256 so a
// corrupted checkout fails loudly instead of testing the wrong bytes.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type Verdict = 'accept' | 'accept-then-reject' | 'reject' | 'drop';

export interface CorpusEntry {
  /** `rfc4475` or `rfc5118`. */
  readonly corpus: 'rfc4475' | 'rfc5118';
  /** Short name, e.g. `wsinv`, `ipv6-bad`. */
  readonly name: string;
  readonly section: string;
  readonly kind: 'request' | 'response';
  readonly verdict: Verdict;
  readonly expectedResponse: string;
  /** Absolute path of the bytes used. */
  readonly path: string;
  readonly bytes: Buffer;
}

/** Root of the shared conformance folder (beside the clone in CI). */
export const CONFORMANCE_ROOT = new URL('../../../shared/conformance/', import.meta.url);

interface RawEntry {
  readonly name: string;
  readonly section: string;
  readonly kind: string;
  readonly verdict: string;
  readonly expected_response: string;
  readonly file?: string;
  readonly sha256?: string;
  readonly wire_file?: string;
  readonly wire_sha256?: string;
}

const VERDICTS = new Set(['accept', 'accept-then-reject', 'reject', 'drop']);

function load(corpus: 'rfc4475' | 'rfc5118'): CorpusEntry[] {
  const dir = new URL(`${corpus}/`, CONFORMANCE_ROOT);
  const index = JSON.parse(readFileSync(new URL('index.json', dir), 'utf8')) as { messages: RawEntry[] };
  return index.messages.map((m) => {
    const rel = corpus === 'rfc4475' ? m.file : m.wire_file;
    const sha = corpus === 'rfc4475' ? m.sha256 : m.wire_sha256;
    if (rel === undefined || sha === undefined) throw new Error(`${corpus}/${m.name}: manifest entry without file/sha256`);
    if (!VERDICTS.has(m.verdict)) throw new Error(`${corpus}/${m.name}: unknown verdict ${m.verdict}`);
    if (m.kind !== 'request' && m.kind !== 'response') throw new Error(`${corpus}/${m.name}: unknown kind ${m.kind}`);
    const url = new URL(rel, dir);
    const bytes = readFileSync(url);
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha) throw new Error(`${corpus}/${rel}: sha256 ${actual} does not match the manifest (${sha})`);
    return {
      corpus, name: m.name, section: m.section, kind: m.kind, verdict: m.verdict as Verdict,
      expectedResponse: m.expected_response, path: fileURLToPath(url), bytes,
    };
  });
}

let cached: CorpusEntry[] | undefined;

/** Every manifest entry of both corpora (49 + 12), in manifest order. */
export function loadCorpus(): CorpusEntry[] {
  cached ??= [...load('rfc4475'), ...load('rfc5118')];
  return cached;
}

/**
 * Extra seed inputs for fuzzing that are not test cases: the RFC 5118 archive form (bare LF,
 * some without the closing empty line) and the stray RFC 4475 archive file.
 */
export function loadExtraSeeds(): Buffer[] {
  const out: Buffer[] = [];
  const dir = new URL('rfc5118/', CONFORMANCE_ROOT);
  const index = JSON.parse(readFileSync(new URL('index.json', dir), 'utf8')) as { messages: Array<{ archive_file: string }> };
  for (const m of index.messages) out.push(readFileSync(new URL(m.archive_file, dir)));
  out.push(readFileSync(new URL('rfc4475/archive-extra/test.dat', CONFORMANCE_ROOT)));
  return out;
}

/** Status codes named (as 3-digit numbers) in a manifest's expected_response text. */
export function namedStatuses(expected: string): number[] {
  return [...expected.matchAll(/\b([1-6]\d\d)\b/g)].map((m) => Number(m[1]));
}
