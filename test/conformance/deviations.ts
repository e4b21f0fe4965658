// Known, justified differences between CareFlow's parser and a torture-test manifest verdict.
// Every entry is still run: the conformance test asserts that the parser behaves exactly as
// stated here, so a fix (or a regression) forces this list to be updated. Never comment a
// vector out instead (STYLE.md §4).

export interface Deviation {
  /** Corpus and manifest name, e.g. `rfc4475/escruri`. */
  readonly id: string;
  /** The manifest verdict. */
  readonly manifest: 'accept' | 'accept-then-reject' | 'reject' | 'drop';
  /** What parseDatagram does instead. */
  readonly actual: 'parses' | { readonly throwsStatus: number };
  /** Why this is acceptable (cite the RFC text). */
  readonly reason: string;
}

export const DEVIATIONS: readonly Deviation[] = [
  {
    id: 'rfc4475/escruri',
    manifest: 'reject',
    actual: 'parses',
    reason:
      'RFC 4475 §3.1.2.11: an element may ignore the escaped headers in the Request-URI (liberal parse); ' +
      'the URI keeps ?Route=... as an opaque, still-escaped URI header and nothing turns it into a real header.',
  },
  {
    id: 'rfc4475/baddate',
    manifest: 'reject',
    actual: 'parses',
    reason:
      'RFC 4475 §3.1.2.12: an element may ignore the Date header; CareFlow never uses Date, so it is not ' +
      'validated (RFC 3261 §20.17 leaves Date informational).',
  },
];

export function findDeviation(id: string): Deviation | undefined {
  return DEVIATIONS.find((d) => d.id === id);
}
