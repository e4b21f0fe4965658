// Follows calls through the proxy and writes exactly one call record per call when it ends:
// at the final non-2xx answer, or at the BYE of an answered call. Answered calls whose BYE
// never passes (a phone lost power) are closed by a sweep after `maxCallMs`.
import type { CallRecord, Disposition, EndedBy } from '../calls/types.ts';

interface ActiveCall {
  callId: string;
  fromTag: string;
  callerUserId: number | undefined;
  callerUri: string;
  calleeUserId: number | undefined;
  calleeUri: string;
  startedAt: number;
  answeredAt: number | undefined;
  answeredDevice: string | undefined;
  mediaMode: CallRecord['mediaMode'];
}

export interface CallSink {
  record(call: CallRecord): Promise<unknown>;
}

export class CallTracker {
  readonly #calls = new Map<string, ActiveCall>();
  readonly #sink: CallSink;
  readonly #log: (msg: string, err?: unknown) => void;
  readonly #maxCallMs: number;
  readonly #sweep: NodeJS.Timeout;
  readonly #pending = new Set<Promise<unknown>>();

  constructor(sink: CallSink, log: (msg: string, err?: unknown) => void, maxCallMs = 12 * 3600_000) {
    this.#sink = sink;
    this.#log = log;
    this.#maxCallMs = maxCallMs;
    this.#sweep = setInterval(() => this.#expire(), 60_000);
    this.#sweep.unref();
  }

  get active(): number {
    return this.#calls.size;
  }

  start(c: { callId: string; fromTag: string; callerUserId?: number; callerUri: string; calleeUserId?: number; calleeUri: string }): void {
    this.#calls.set(c.callId, {
      callId: c.callId, fromTag: c.fromTag, callerUserId: c.callerUserId, callerUri: c.callerUri,
      calleeUserId: c.calleeUserId, calleeUri: c.calleeUri, startedAt: Date.now(), answeredAt: undefined, answeredDevice: undefined, mediaMode: undefined,
    });
  }

  has(callId: string): boolean {
    return this.#calls.has(callId);
  }

  answered(callId: string, device: string, mediaMode?: CallRecord['mediaMode']): void {
    const c = this.#calls.get(callId);
    if (c !== undefined && c.answeredAt === undefined) {
      c.answeredAt = Date.now();
      c.answeredDevice = device;
      c.mediaMode = mediaMode;
    }
  }

  /** The call setup failed with a final non-2xx response. */
  failed(callId: string, status: number, how: { cancelled: boolean; noAnswer: boolean }): void {
    const c = this.#calls.get(callId);
    if (c === undefined || c.answeredAt !== undefined) return;
    let d: Disposition = 'failed';
    if (how.cancelled) d = 'cancelled';
    else if (how.noAnswer) d = 'no_answer';
    else if (status === 486 || status === 600) d = 'busy';
    else if (status === 603) d = 'declined'; // §21.6.2 603 Decline: the callee refused
    else if (status === 480) d = 'unavailable';
    else if (status === 408) d = 'no_answer';
    this.#finish(c, d, status, how.cancelled ? 'caller' : 'server');
  }

  /**
   * A BYE passed: `fromTag` tells whether the caller (its From tag) or the callee hung up.
   * Resolves once the call's record is committed (undefined: no call to record).
   */
  ended(callId: string, byeFromTag: string | undefined): Promise<void> | undefined {
    const c = this.#calls.get(callId);
    if (c === undefined || c.answeredAt === undefined) return undefined;
    return this.#finish(c, 'answered', 200, byeFromTag === c.fromTag ? 'caller' : 'callee');
  }

  /** The server ended an answered call because its media stopped. */
  mediaTimedOut(callId: string): void {
    const c = this.#calls.get(callId);
    if (c === undefined || c.answeredAt === undefined) return;
    this.#finish(c, 'answered', 200, 'media_timeout');
  }

  /** A call refused before any branch was tried (unknown number, nobody online...). */
  rejected(c: { callId: string; callerUserId?: number; callerUri: string; calleeUserId?: number; calleeUri: string }, status: number): void {
    const now = Date.now();
    const d: Disposition = status === 480 ? 'unavailable' : status === 486 ? 'busy' : 'failed';
    this.#write({ ...c, startedAt: now, endedAt: now, disposition: d, finalStatus: status, endedBy: 'server' });
  }

  #finish(c: ActiveCall, disposition: Disposition, status: number, endedBy: EndedBy): Promise<void> {
    this.#calls.delete(c.callId);
    return this.#write({
      callId: c.callId, callerUserId: c.callerUserId, callerUri: c.callerUri, calleeUserId: c.calleeUserId,
      calleeUri: c.calleeUri, startedAt: c.startedAt, answeredAt: c.answeredAt, endedAt: Date.now(),
      disposition, finalStatus: status, answeredDevice: c.answeredDevice, mediaMode: c.mediaMode, endedBy,
    });
  }

  #write(rec: CallRecord): Promise<void> {
    const p = this.#sink.record(rec).then(() => undefined, (e: unknown) => this.#log(`call record for ${rec.callId} not written`, e));
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
    return p;
  }

  #expire(): void {
    const now = Date.now();
    for (const c of this.#calls.values()) {
      if (now - c.startedAt > this.#maxCallMs) this.#finish(c, c.answeredAt !== undefined ? 'answered' : 'failed', c.answeredAt !== undefined ? 200 : 408, 'server');
    }
  }

  /** Server shutdown: close every call still open and wait for the writes. */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    for (const c of [...this.#calls.values()]) {
      if (c.answeredAt !== undefined) this.#finish(c, 'answered', 200, 'server');
      else this.#finish(c, 'failed', 503, 'server');
    }
    await Promise.allSettled([...this.#pending]);
  }
}
