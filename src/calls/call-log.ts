/**
 * CallLog: one durable row per finished call (CDR). `record()` resolves only after the
 * row is committed, so a crash right after loses nothing.
 *
 * Group commit: the calls that end in one event-loop turn are written in one transaction
 * when the turn's I/O is done (setImmediate), not one commit each; a commit costs four
 * inserts (bench/RESULTS.md). The router relays a BYE only once `record()` has resolved, so a
 * hang-up is confirmed to nobody before its record is on disk.
 *
 * It checks shape, not plausibility:
 * a record with odd timings is still written (losing it would be worse), but a record
 * without the fields that identify the call is a bug in the caller and throws.
 */
import { CareflowError } from '../config/errors.ts';
import type { ListCallsQuery, NewCallRow, Store } from '../store/types.ts';
import { DISPOSITIONS } from './types.ts';
import type { CallRecord, StoredCall } from './types.ts';

interface Pending {
  readonly row: NewCallRow;
  readonly resolve: (stored: StoredCall) => void;
  readonly reject: (e: unknown) => void;
}

export class CallLog {
  readonly #store: Store;
  #queue: Pending[] = [];
  #scheduled = false;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Writes a finished call; resolves with the stored row once it is durable. */
  async record(call: CallRecord): Promise<StoredCall> {
    const bad = (field: keyof CallRecord, expected: string): never => {
      throw new CareflowError('INVALID_INPUT', `call record ${field}: expected ${expected}, got ${JSON.stringify(call[field])}`, field);
    };
    if (typeof call.callId !== 'string' || call.callId === '') bad('callId', 'the SIP Call-ID');
    if (typeof call.callerUri !== 'string') bad('callerUri', 'a URI string');
    if (typeof call.calleeUri !== 'string') bad('calleeUri', 'a URI string');
    if (!DISPOSITIONS.includes(call.disposition)) bad('disposition', DISPOSITIONS.join('|'));
    if (!Number.isInteger(call.finalStatus) || call.finalStatus < 100 || call.finalStatus > 699) bad('finalStatus', 'a SIP status 100-699');
    if (!Number.isFinite(call.startedAt)) bad('startedAt', 'ms since the epoch');
    if (!Number.isFinite(call.endedAt)) bad('endedAt', 'ms since the epoch');
    const row: NewCallRow = {
      callId: call.callId,
      callerUserId: call.callerUserId ?? null,
      callerUri: call.callerUri,
      calleeUserId: call.calleeUserId ?? null,
      calleeUri: call.calleeUri,
      startedAt: Math.trunc(call.startedAt),
      answeredAt: call.answeredAt === undefined ? null : Math.trunc(call.answeredAt),
      endedAt: Math.trunc(call.endedAt),
      disposition: call.disposition,
      finalStatus: call.finalStatus,
      answeredDevice: call.answeredDevice ?? null,
      mediaMode: call.mediaMode ?? null,
      endedBy: call.endedBy ?? null,
    };
    return new Promise<StoredCall>((resolve, reject) => {
      this.#queue.push({ row, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    this.#scheduled = false;
    try {
      const stored = await this.#store.insertCalls(batch.map((p) => p.row));
      batch.forEach((p, i) => p.resolve(stored[i]!));
    } catch {
      // One bad row must not cost the others theirs: write them one by one.
      for (const p of batch) {
        try {
          p.resolve((await this.#store.insertCalls([p.row]))[0]!);
        } catch (e) {
          p.reject(e);
        }
      }
    }
  }

  /** Newest first; `before` (ms epoch, exclusive, on the start time) pages back. */
  list(query: ListCallsQuery = {}): Promise<StoredCall[]> {
    return this.#store.listCalls(query);
  }
}

/** Seconds of talk time, 0 when unanswered. */
export function talkSeconds(call: Pick<StoredCall, 'answeredAt' | 'endedAt'>): number {
  return call.answeredAt === null ? 0 : Math.max(0, Math.round((call.endedAt - call.answeredAt) / 1000));
}
